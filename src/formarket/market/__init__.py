"""The marketplace repository, as one porcelain over dulwich.

Every other package reads and writes git through here, one module for each thing:

    discovery    which folder holds the repository, from any folder inside it (no git library)
    repository   opening it (and making a new one)
    refs         branch tips, revisions, first-parent history
    trees        folders and files at a commit, from objects only
    layout       where things are in the repository, and which paths are the bot's alone
    governance   maintainers, deployers and the bot, from registry/governance.yaml
    writer       the one writer: a commit by compare-and-swap, retried when it loses a race
    worktree     ... which brings a checked-out branch's index and working tree along

The package itself imports none of them, so that reading the layout or finding the repository
does not load dulwich.
"""
