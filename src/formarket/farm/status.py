"""Where a deployment stands, for people following it (`formarket deploy --wait`,
`formarket deployments`): its endpoint once the farm routes it, else what the last reconcile
cycle said about it (waiting for its image, being deployed, refused and why)."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any

from formarket.accounts.pseudonym import Pseudonyms, load_pseudonyms
from formarket.atomicfile import write_atomically
from formarket.farm.settings import FarmSettings
from formarket.farm.sleeping import SleepMarks
from formarket.gateway.config import StatePaths, default_state_dir
from formarket.gateway.routes import load_routes

__all__ = ["endpoint", "farm_pseudonyms", "gateway_state", "last_cycle", "progress", "save_cycle"]


def _cycle_file(settings: FarmSettings) -> Path:
    return settings.state / "last-cycle.json"


def save_cycle(settings: FarmSettings, summary: dict[str, Any]) -> None:
    # Not durable: it only tells people how the farm last found things; the next cycle rewrites it.
    data = json.dumps(summary, indent=1, sort_keys=True).encode()
    write_atomically(_cycle_file(settings), data, durable=False)


def last_cycle(settings: FarmSettings) -> dict[str, Any]:
    try:
        data = json.loads(_cycle_file(settings).read_bytes())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def gateway_state(settings: FarmSettings) -> StatePaths:
    """The gateway's state folder the farm shares: routes.json it publishes, the spool it
    meters instance-hours into."""
    return StatePaths(default_state_dir(settings.repo))


def farm_pseudonyms(settings: FarmSettings) -> Pseudonyms:
    """The accounts' pseudonyms, from the key beside the gateway's state (unless
    FORMARKET_PSEUDONYM_KEY names another), which the gateway uses too."""
    return load_pseudonyms(gateway_state(settings).root)


def endpoint(settings: FarmSettings, deployment_id: str) -> str | None:
    """The deployment's endpoint once it runs and answers (the farm routes it then)."""
    routes = load_routes(gateway_state(settings).routes)
    for route in routes.routes:
        if route.deployment == deployment_id:
            return route.endpoint
    return None


def progress(settings: FarmSettings, deployment_id: str) -> str:
    """What the farm last said about the deployment, in a few words."""
    asleep = SleepMarks(settings.state).sleeping().get(deployment_id)
    if asleep is not None:
        return (
            f"idle since {asleep.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC: its VM is stopped"
            " (scaled to zero) and its next call starts it"
        )
    cycle = last_cycle(settings)
    if not cycle:
        return "the farm has not reconciled yet (is a worker and beat running?)"
    for key, words in (("refused", "refused: "), ("waiting", "")):
        found = cycle.get(key, {}).get(deployment_id)
        if found:
            return f"{words}{found}"
    if any(d.startswith(f"{deployment_id} ") for d in cycle.get("deploys", [])):
        return "being deployed"
    if deployment_id in cycle.get("running", []):
        return "running"
    return "not seen by the farm yet"
