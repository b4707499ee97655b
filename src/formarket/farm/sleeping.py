"""Scale to zero, done: stopping an idle deployment's VM and starting it again for a call.

What the farm remembers lives in its state folder, one small file per deployment, so that the
reconciler and a waker in another process never rewrite each other's records:

    <state>/sleeping/<deployment>   its VM is stopped for idleness, since (UTC, ISO 8601)
    <state>/awake/<deployment>      it runs, awake since (idleness counts from here at least)

A sleeping deployment keeps its domain, its disk and its place on its host; its route stays,
marked idle, so the gateway holds a call to it and asks for a wake (`gateway.wake`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from formarket.atomicfile import write_atomically
from formarket.farm import deployer
from formarket.farm.domain import domain_name
from formarket.farm.hosts import Host
from formarket.farm.libvirt_conn import Connections
from formarket.gateway.routes import load_routes, save_routes
from formarket.schemas.usage import DEPLOYMENT_PATTERN

__all__ = ["SleepMarks", "Woken", "set_route_idle", "sleep", "wake"]

_log = logging.getLogger("formarket.farm")
_DEPLOYMENT = re.compile(DEPLOYMENT_PATTERN)


def _stamp(at: datetime) -> bytes:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z").encode()


class SleepMarks:
    """The sleeping and awake records of a farm's state folder."""

    def __init__(self, state: Path) -> None:
        self.asleep_dir = state / "sleeping"
        self.awake_dir = state / "awake"

    @staticmethod
    def _read(folder: Path) -> dict[str, datetime]:
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return {}
        out = {}
        for name in names:
            if not _DEPLOYMENT.fullmatch(name):
                continue
            try:
                out[name] = datetime.fromisoformat((folder / name).read_text().strip())
            except (OSError, ValueError):
                continue
        return out

    def sleeping(self) -> dict[str, datetime]:
        return self._read(self.asleep_dir)

    def awake(self) -> dict[str, datetime]:
        return self._read(self.awake_dir)

    def _write(self, folder: Path, deployment: str, at: datetime) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / deployment, _stamp(at), durable=False)

    def fell_asleep(self, deployment: str, at: datetime) -> None:
        self._write(self.asleep_dir, deployment, at)
        (self.awake_dir / deployment).unlink(missing_ok=True)

    def woke(self, deployment: str, at: datetime) -> None:
        self._write(self.awake_dir, deployment, at)
        (self.asleep_dir / deployment).unlink(missing_ok=True)

    def seen_awake(self, deployment: str, at: datetime) -> None:
        """Idleness of a deployment never called counts from the first time it is seen."""
        if not (self.awake_dir / deployment).exists():
            self._write(self.awake_dir, deployment, at)

    def forget(self, deployment: str) -> None:
        (self.asleep_dir / deployment).unlink(missing_ok=True)
        (self.awake_dir / deployment).unlink(missing_ok=True)


def set_route_idle(routes: Path, deployment: str, since: datetime | None) -> bool:
    """Mark a deployment's route idle (since) or running (None); False when it has none."""
    found = load_routes(routes).routes
    if not any(r.deployment == deployment for r in found):
        return False
    save_routes(
        routes,
        [
            r.model_copy(update={"idle_since": since}) if r.deployment == deployment else r
            for r in found
        ],
    )
    return True


def sleep(
    pool: Connections, host: Host, deployment: str, slot: int, marks: SleepMarks, routes: Path
) -> datetime:
    """Power the deployment's VM in `slot` off (domain and disks kept); when it went idle."""
    at = datetime.now(UTC)
    pool.get(host).power_off(domain_name(deployment, slot))
    marks.fell_asleep(deployment, at)
    set_route_idle(routes, deployment, at)
    _log.info("%s is idle: its VM on %s is stopped until the next call", deployment, host.name)
    return at


@dataclass(frozen=True, slots=True)
class Woken:
    """How long waking took, part by part (seconds)."""

    deployment: str
    start: float  # libvirt starting the domain
    health: float  # from started to its service answering
    endpoint: str | None


def wake(
    pool: Connections,
    host: Host,
    deployment: str,
    slot: int,
    marks: SleepMarks,
    routes: Path,
    *,
    health_timeout: float = 120.0,
    healthy: Callable[[str, float], float] = deployer.wait_healthy,
) -> Woken:
    """Start a sleeping deployment's domain again where it is, wait until it answers, and
    publish its route running. An awake one only has its route published running."""
    conn = pool.get(host)
    began = time.monotonic()
    conn.power_on(domain_name(deployment, slot))
    started = time.monotonic()
    record = next(
        (r for r in deployer.actual(conn) if r.deployment_id == deployment and r.slot == slot),
        None,
    )
    endpoint = record.endpoint if record is not None else None
    if endpoint and not conn.is_test:
        healthy(endpoint, health_timeout)
    answered = time.monotonic()
    marks.woke(deployment, datetime.now(UTC))
    set_route_idle(routes, deployment, None)
    _log.info("%s woke on %s in %.1fs", deployment, host.name, answered - began)
    return Woken(deployment, started - began, answered - started, endpoint)
