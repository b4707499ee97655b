"""The gateway's settings and the folder it keeps its state in.

    <state>/keys.json      API keys, hashed (`formarket gateway keys`)
    <state>/routes.json    running deployments' endpoints (the farm; `formarket gateway routes`)
    <state>/quota.json     how much of its daily quota each key has used
    <state>/spool/         usage events not yet committed (`formarket usage flush`)
    <state>/activity/      each gateway process's last call per deployment (the farm's idle stops)
    <state>/wake/          idle deployments a call waits for (the farm starts them)

The state folder defaults to `formarket-gateway/` inside the registry clone's .git folder (never
in the working tree, never committed), or FORMARKET_GATEWAY_DIR.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from formarket.errors import UsageError
from formarket.gateway.ceilings import GatewayLimits
from formarket.schemas.usage import SOURCE_PATTERN
from formarket.settings import GATEWAY_DIR

__all__ = ["GatewayConfig", "StatePaths", "default_source", "default_state_dir"]

_SOURCE_RE = re.compile(SOURCE_PATTERN)


def default_state_dir(repo: Path, environ: Mapping[str, str] | None = None) -> Path:
    """FORMARKET_GATEWAY_DIR in `environ` (default: the process environment), else the
    folder beside `repo`'s git data."""
    configured = GATEWAY_DIR.read(environ)
    if configured is not None:
        return configured
    git = repo / ".git"
    return (git if git.is_dir() else repo) / "formarket-gateway"


def default_source() -> str:
    """`gateway/<host name>`: one source per gateway machine, as the usage files' names need."""
    name = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")[:63].strip("-")
    return f"gateway/{name or 'gw'}"


def check_source(source: str) -> str:
    if not _SOURCE_RE.match(source):
        raise UsageError(
            f"{source!r} is not a usage source",
            hint="`<kind>/<name>` in lower case, such as gateway/gw-1",
        )
    return source


@dataclass(frozen=True, slots=True)
class StatePaths:
    root: Path

    @property
    def keys(self) -> Path:
        return self.root / "keys.json"

    @property
    def routes(self) -> Path:
        return self.root / "routes.json"

    @property
    def quota(self) -> Path:
        return self.root / "quota.json"

    @property
    def spool(self) -> Path:
        return self.root / "spool"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """How a gateway runs; everything has a default but where its state is."""

    state: StatePaths
    source: str = field(default_factory=default_source)
    fsync_interval: float = 0.05
    segment_seconds: float = 1.0
    segment_bytes: int = 16 << 20
    limits: GatewayLimits = field(default_factory=GatewayLimits)
    connect_timeout: float = 5.0
    response_timeout: float = 600.0
    stream_idle_timeout: float = 120.0
    wake_timeout: float = 60.0  # how long a call to an idle deployment waits for it to start

    def __post_init__(self) -> None:
        check_source(self.source)
        if self.fsync_interval < 0:
            raise UsageError("the fsync interval cannot be negative")
