"""The registry: loading, validating and checking changes to the catalog in git."""
