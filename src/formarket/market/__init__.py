"""The marketplace repository, as one porcelain over dulwich.

Every other package reads and writes git through here:

    repository   open the repository from any folder inside it, as git does
    refs         branch tips, revisions, first-parent history
    trees        folders and files at a commit, from objects only
    layout       where things are in the repository, and which paths are the bot's alone
    governance   maintainers, deployers and the bot, from registry/governance.yaml
    writer       the one writer: a commit by compare-and-swap, retried when it loses a race
    worktree     ... which brings a checked-out branch's index and working tree along
"""

from formarket.market.governance import bot_at, bot_identity, read_governance
from formarket.market.refs import branch_tip, find_tip, resolve_rev
from formarket.market.repository import open_repository
from formarket.market.writer import (
    ConflictError,
    Identity,
    LocalChangesError,
    commit_changes,
)

__all__ = [
    "ConflictError",
    "Identity",
    "LocalChangesError",
    "bot_at",
    "bot_identity",
    "branch_tip",
    "commit_changes",
    "find_tip",
    "open_repository",
    "read_governance",
    "resolve_rev",
]
