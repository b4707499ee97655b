"""The Formfile: its parser and its diagnostics (docs/formfile.md).

One floor below the registry (which checks Formfiles in pull requests) and the builder (which
turns them into images), so neither imports the other. `parser` is the entry point:

    check_formfile(text)   -> FormfileResult   every error, never raises for bad input
    parse_formfile(text)   -> Formfile         raises LocatedError for the first error
    render_formfile(model) -> str              canonical text that parses back to an equal model
    canonical_json(model)  -> bytes            the deterministic form a build id is made from

The package itself imports nothing, so that reading one of its small modules (its codes, say)
does not load the whole parser.
"""
