"""Where things are in the marketplace repository, and who writes them: one table.

Paths are from the repository's top folder, with `/` and no trailing slash. Publishers write
their own listings (the pull-request check says which are theirs), maintainers the platform's
files, and the bot, alone, what the farm, the gateway and the royalty close record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AGENTS",
    "BOT_PATHS",
    "DEPLOYMENTS",
    "GOVERNANCE",
    "MAINTAINER_FILES",
    "MODELS",
    "PLACES",
    "POLICY",
    "PUBLISHERS",
    "REGISTRY",
    "ROYALTIES",
    "SOLUTIONS",
    "TRANSFERS",
    "USAGE",
    "Place",
    "bot_writes",
    "deployment_path",
    "period_folder",
    "place",
    "transfers_path",
]

Writer = Literal["publishers", "maintainers", "bot"]
_PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, slots=True)
class Place:
    """One place in the repository: a folder or a file, who writes it and what it holds."""

    name: str
    path: str
    folder: bool
    writer: Writer
    holds: str


PLACES: tuple[Place, ...] = (
    Place("publishers", "registry/publishers", True, "publishers", "<publisher>.yaml, each"),
    Place("models", "registry/models", True, "publishers", "<publisher>/<slug>/listing.yaml"),
    Place("agents", "registry/agents", True, "publishers", "<publisher>/<slug>/listing.yaml"),
    Place("solutions", "registry/solutions", True, "publishers", "<publisher>/<slug>.yaml"),
    Place("governance", "registry/governance.yaml", False, "maintainers", "maintainers, bot"),
    Place("deployments", "registry/deployments", True, "bot", "<deployment id>.yaml"),
    Place("usage", "registry/usage", True, "bot", "YYYY/MM/DD/<kind>/<name>-<seq>.jsonl.gz"),
    Place("royalties", "royalties", True, "bot", "YYYY-MM/: a closed period, never changed"),
    Place("policy", "royalties/policy.yaml", False, "maintainers", "the royalty terms"),
    # Beside the closed periods, not in them: a closed folder never changes, while the payouts
    # it decided are sent (and a refused one sent again) after it closed.
    Place("transfers", "royalties/transfers", True, "bot", "YYYY-MM.json: payouts as sent"),
)


def place(name: str) -> Place:
    """The place called `name` in the table."""
    for found in PLACES:
        if found.name == name:
            return found
    raise KeyError(name)


REGISTRY = "registry"
PUBLISHERS = place("publishers").path
MODELS = place("models").path
AGENTS = place("agents").path
SOLUTIONS = place("solutions").path
GOVERNANCE = place("governance").path
DEPLOYMENTS = place("deployments").path
USAGE = place("usage").path
ROYALTIES = place("royalties").path
POLICY = place("policy").path
TRANSFERS = place("transfers").path

# Prefixes that only the bot may write (`path.startswith(BOT_PATHS)`)...
_BOT_FOLDERS = [f"{p.path}/" for p in PLACES if p.writer == "bot" and p.folder]
# (a bot folder inside another, as royalties/transfers/ in royalties/, adds nothing)
BOT_PATHS: tuple[str, ...] = tuple(
    f for f in _BOT_FOLDERS if not any(f != g and f.startswith(g) for g in _BOT_FOLDERS)
)
# ...except these files inside them, which are the maintainers' (the bot never sets its terms).
MAINTAINER_FILES: frozenset[str] = frozenset(
    p.path for p in PLACES if p.writer != "bot" and p.path.startswith(BOT_PATHS)
)


def bot_writes(path: str) -> bool:
    """Whether `path` is the bot's alone to write."""
    return path.startswith(BOT_PATHS) and path not in MAINTAINER_FILES


def deployment_path(deployment_id: str) -> str:
    return f"{DEPLOYMENTS}/{deployment_id}.yaml"


def period_folder(period: str) -> str:
    """The folder of a closed period (`YYYY-MM`): its summary, statements and payouts."""
    if not _PERIOD.fullmatch(period):
        raise ValueError(f"{period!r} is not a period (YYYY-MM)")
    return f"{ROYALTIES}/{period}"


def transfers_path(period: str) -> str:
    """The record of the transfers that paid out closed period `period`."""
    if not _PERIOD.fullmatch(period):
        raise ValueError(f"{period!r} is not a period (YYYY-MM)")
    return f"{TRANSFERS}/{period}.json"
