"""What became of each deployment's last upgrade, in the farm's state folder (`upgrades.json`).

git holds the version a deployment should run; this file holds what the farm made of the last
change of it: done, or failed with the reason, the old version still serving. A failed upgrade
is not tried again by the reconciler until someone asks for an upgrade again (`formarket
deployments upgrade` forgets the failure), so a version that cannot boot does not cost a VM
start every cycle.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from formarket.atomicfile import write_atomically
from formarket.schemas._base import Document

__all__ = ["Upgrade", "failed_upgrades", "forget", "load", "note"]

_FILE = "upgrades.json"


class Upgrade(Document):
    """One deployment's last upgrade."""

    old: str
    new: str
    outcome: Literal["done", "failed"]
    reason: str = ""
    at: str


def _path(state: Path) -> Path:
    return state / _FILE


def load(state: Path) -> dict[str, Upgrade]:
    """Every deployment's last upgrade; an unreadable file counts as none (it is advisory)."""
    try:
        raw = json.loads(_path(state).read_bytes())
    except (FileNotFoundError, ValueError):
        return {}
    found: dict[str, Upgrade] = {}
    for dep_id, value in raw.items() if isinstance(raw, dict) else ():
        try:
            found[str(dep_id)] = Upgrade.model_validate(value)
        except ValidationError:
            continue
    return found


def _save(state: Path, upgrades: dict[str, Upgrade]) -> None:
    state.mkdir(parents=True, exist_ok=True)
    plain = {k: v.model_dump() for k, v in sorted(upgrades.items())}
    write_atomically(_path(state), json.dumps(plain, indent=1).encode() + b"\n")


def note(
    state: Path,
    deployment_id: str,
    old: str,
    new: str,
    outcome: Literal["done", "failed"],
    reason: str = "",
) -> Upgrade:
    """Record the outcome of upgrading `deployment_id` from version `old` to `new`."""
    upgrades = load(state)
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    upgrades[deployment_id] = made = Upgrade(
        old=old, new=new, outcome=outcome, reason=reason, at=at
    )
    _save(state, upgrades)
    return made


def forget(state: Path, deployment_id: str) -> None:
    upgrades = load(state)
    if upgrades.pop(deployment_id, None) is not None:
        _save(state, upgrades)


def failed_upgrades(state: Path) -> dict[str, str]:
    """Deployment -> the version its last upgrade failed to bring up."""
    return {k: v.new for k, v in load(state).items() if v.outcome == "failed"}
