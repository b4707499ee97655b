"""Scale to zero, decided: which running deployments have been idle long enough to stop. Pure.

A deployment that declares `idle_after` is stopped (its VM powered off, its disk and domain
kept) once its last call through any gateway, or its waking if that came later, is at least
`idle_after` seconds old. The gateway holds the next call and asks for it to be woken
(`formarket.gateway.wake`); the farm starts the same domain again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from formarket.farm.reconcile import Domain
from formarket.schemas.deployment import Deployment

__all__ = ["Sleep", "idle_stops"]


@dataclass(frozen=True, slots=True)
class Sleep:
    deployment: str
    host: str
    idle_since: datetime  # its last call, or its waking when later

    @property
    def key(self) -> str:
        return f"sleep:{self.deployment}"


def idle_stops(
    desired: Mapping[str, Deployment],
    running: Mapping[str, Domain],
    last_call: Mapping[str, datetime],
    awake_since: Mapping[str, datetime],
    now: datetime,
) -> tuple[Sleep, ...]:
    """The running deployments to stop for idleness. One never called and with no waking on
    record is not stopped: the farm records when it first saw it awake, and counts from there.
    An agent's model is judged on its own calls: the agent's calls to it go through the
    gateway, so a busy agent keeps its model awake."""
    out = []
    for dep_id, domain in sorted(running.items()):
        deployment = desired.get(dep_id)
        if deployment is None or deployment.idle_after is None or deployment.state != "running":
            continue
        seen = [t for t in (last_call.get(dep_id), awake_since.get(dep_id)) if t is not None]
        if not seen:
            continue
        since = max(seen)
        if now - since >= timedelta(seconds=deployment.idle_after):
            out.append(Sleep(dep_id, domain.host, since))
    return tuple(out)
