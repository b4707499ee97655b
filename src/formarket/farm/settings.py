"""The farm's settings, read once from the environment through formarket.settings' table.

The variables (FORMARKET_BROKER_URL, FORMARKET_REPO, FORMARKET_STATE, ...) are described there,
in `formarket settings` and in docs/settings.md; paths are taken from the folder the farm
started in. What is checked here is what spans two settings: the visibility timeout must be
longer than the build time limit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dulwich.repo import Repo

from formarket import settings as table
from formarket.errors import UsageError
from formarket.market.repository import open_repository

__all__ = ["FarmSettings", "open_market"]

_EMBEDDED_BROKER = "broker.sqlite"
_EMBEDDED_RESULTS = "results.sqlite"


@dataclass(frozen=True, slots=True)
class FarmSettings:
    """Where the farm keeps things and how its queue behaves; formarket.settings describes
    each field's variable."""

    repo: Path
    branch: str = table.BRANCH.fallback
    state: Path = Path("build/farm")
    store: Path = Path("build/farm/store")
    cache: Path = Path("build/farm/cache")
    base_cache: Path | None = None
    hosts: Path | None = None
    broker_url: str | None = None
    result_backend: str | None = None
    build_time_limit: int = table.BUILD_TIME_LIMIT.fallback
    visibility_timeout: int = 4500
    reconcile_seconds: float = table.RECONCILE_SECONDS.fallback
    github_repo: str | None = None  # owner/name: where the farm comments on deployment issues
    gateway_url: str = table.GATEWAY_URL.fallback  # what callers use, for those comments
    weights_allow_private: bool = False  # fetch weight files from private addresses too

    @classmethod
    def from_env(
        cls, workdir: Path | None = None, environ: Mapping[str, str] | None = None
    ) -> FarmSettings:
        """Settings from `environ` (default: the process environment); relative paths are
        taken from `workdir` (default: the current folder)."""
        env = os.environ if environ is None else environ
        here = (workdir or Path.cwd()).absolute()

        def path(setting: table.Setting[Path], default: Path) -> Path:
            value = setting.read(env)
            return default if value is None else here / value

        repo = path(table.REPO, here)
        state = path(table.STATE, repo / "build" / "farm")
        limit = table.BUILD_TIME_LIMIT.get(env)
        # Redis hands a task to another worker once it has gone unacknowledged this long, and
        # the clock starts when a worker takes it: shorter than a build, and every long build
        # would run twice.
        default_visibility = limit + max(limit // 4, 60)
        visibility = table.VISIBILITY_TIMEOUT.read(env) or default_visibility
        if visibility <= limit:
            raise UsageError(
                f"{table.VISIBILITY_TIMEOUT.variable}={visibility} is not longer than"
                f" {table.BUILD_TIME_LIMIT.variable}={limit}: a running build would be handed"
                " to a second worker",
                hint=f"unset it for the default ({default_visibility}), or raise it",
            )
        base_cache = table.BASE_CACHE.read(env)
        hosts = table.HOSTS.read(env)
        return cls(
            repo=repo,
            branch=table.BRANCH.get(env),
            state=state,
            store=path(table.STORE, state / "store"),
            cache=path(table.CACHE, state / "cache"),
            base_cache=None if base_cache is None else here / base_cache,
            hosts=None if hosts is None else here / hosts,
            broker_url=table.BROKER_URL.read(env),
            result_backend=table.RESULT_BACKEND.read(env),
            build_time_limit=limit,
            visibility_timeout=visibility,
            reconcile_seconds=table.RECONCILE_SECONDS.get(env),
            github_repo=table.GITHUB_REPO.read(env),
            gateway_url=table.GATEWAY_URL.get(env),
            weights_allow_private=table.WEIGHTS_ALLOW_PRIVATE.get(env),
        )

    @property
    def embedded(self) -> bool:
        """No broker configured: the farm runs on sqlite files in its state folder."""
        return self.broker_url is None

    @property
    def broker(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.state / _EMBEDDED_BROKER}"

    @property
    def backend(self) -> str:
        if self.result_backend:
            return self.result_backend
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return f"db+sqlite:///{self.state / _EMBEDDED_RESULTS}"

    def to_env(self) -> dict[str, str]:
        """The variables that give these settings to another process (a worker)."""
        values: dict[table.Setting[Any], object] = {
            table.REPO: self.repo,
            table.BRANCH: self.branch,
            table.STATE: self.state,
            table.STORE: self.store,
            table.CACHE: self.cache,
            table.BUILD_TIME_LIMIT: self.build_time_limit,
            table.VISIBILITY_TIMEOUT: self.visibility_timeout,
            table.RECONCILE_SECONDS: self.reconcile_seconds,
            table.GATEWAY_URL: self.gateway_url,
            table.BASE_CACHE: self.base_cache,
            table.HOSTS: self.hosts,
            table.BROKER_URL: self.broker_url,
            table.RESULT_BACKEND: self.result_backend,
            table.GITHUB_REPO: self.github_repo,
            table.WEIGHTS_ALLOW_PRIVATE: "1" if self.weights_allow_private else None,
        }
        # repr: a float's shortest text that reads back as the same float.
        return {
            setting.variable: repr(value) if isinstance(value, float) else str(value)
            for setting, value in values.items()
            if value is not None
        }


def open_market(settings: FarmSettings) -> Repo:
    """The marketplace's git repository that the farm's settings name: the one holding
    FORMARKET_REPO (default: the current folder)."""
    return open_repository(settings.repo)
