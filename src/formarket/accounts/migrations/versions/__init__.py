"""One module per revision of the accounts database."""
