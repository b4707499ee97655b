"""The farm's settings, read once from the environment (`FORMARKET_*`) with defaults.

FORMARKET_BROKER_URL          the Celery broker; unset = the embedded sqlite broker
FORMARKET_RESULT_BACKEND      where results and progress go; unset = Redis when the broker
                              is Redis, else the embedded sqlite results database
FORMARKET_REPO                the marketplace git repository (default ".")
FORMARKET_BRANCH              its branch (default "main")
FORMARKET_STATE               the farm's state folder (default <repo>/build/farm)
FORMARKET_STORE               the artifact store (default <state>/store)
FORMARKET_CACHE               the build cache: bases and step layers (default <state>/cache)
FORMARKET_BASE_CACHE          where bases are kept, when not in the build cache
FORMARKET_HOSTS               the host inventory file (default: none)
FORMARKET_BUILD_TIME_LIMIT    seconds a build may take (default 3600)
FORMARKET_VISIBILITY_TIMEOUT  seconds before Redis hands an unacknowledged task to another
                              worker (default: the build time limit plus a quarter)
FORMARKET_RECONCILE_SECONDS   how often beat runs the reconciler (default 30)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dulwich.repo import Repo

from formarket.errors import UsageError
from formarket.market.repository import open_repository

__all__ = ["FarmSettings", "open_market"]

_EMBEDDED_BROKER = "broker.sqlite"
_EMBEDDED_RESULTS = "results.sqlite"


def _number(environ: Mapping[str, str], name: str, default: float, *, integer: bool) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(int(raw)) if integer else float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value != value or value == float("inf"):
        kind = "a whole number of seconds" if integer else "a number of seconds"
        raise UsageError(
            f"{name}={raw!r} is not {kind} above zero",
            hint=f"unset {name} for its default ({default:g}), or set it to e.g. {default:g}",
        )
    return value


def _url(environ: Mapping[str, str], name: str) -> str | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    if "://" not in raw:
        raise UsageError(
            f"{name}={raw!r} is not a URL",
            hint="for example redis://localhost:6379/0, or unset it for the embedded default",
        )
    return raw


def _repo_slug(environ: Mapping[str, str]) -> str | None:
    raw = environ.get("FORMARKET_GITHUB_REPO", "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}", raw):
        raise UsageError(
            f"FORMARKET_GITHUB_REPO={raw!r} is not owner/name", hint="for example acme/marketplace"
        )
    return raw


@dataclass(frozen=True, slots=True)
class FarmSettings:
    """Where the farm keeps things and how its queue behaves; see the module for the variables."""

    repo: Path
    branch: str = "main"
    state: Path = Path("build/farm")
    store: Path = Path("build/farm/store")
    cache: Path = Path("build/farm/cache")
    base_cache: Path | None = None
    hosts: Path | None = None
    broker_url: str | None = None
    result_backend: str | None = None
    build_time_limit: int = 3600
    visibility_timeout: int = 4500
    reconcile_seconds: float = 30.0
    github_repo: str | None = None  # owner/name: where the farm comments on deployment issues
    gateway_url: str = "http://127.0.0.1:8080"  # what callers use, for those comments

    @classmethod
    def from_env(
        cls, workdir: Path | None = None, environ: Mapping[str, str] | None = None
    ) -> FarmSettings:
        """Settings from `environ` (default: the process environment); relative paths are
        taken from `workdir` (default: the current folder)."""
        env = os.environ if environ is None else environ
        here = (workdir or Path.cwd()).absolute()

        def path(name: str, default: Path | None) -> Path | None:
            raw = env.get(name, "").strip()
            return here / raw if raw else default

        repo = path("FORMARKET_REPO", here)
        assert repo is not None
        state = path("FORMARKET_STATE", repo / "build" / "farm")
        assert state is not None
        branch = env.get("FORMARKET_BRANCH", "").strip() or "main"
        if branch.startswith("-") or any(c in branch for c in " \t\n\0~^:?*[\\"):
            raise UsageError(
                f"FORMARKET_BRANCH={branch!r} is not a branch name", hint="for example main"
            )
        limit = int(_number(env, "FORMARKET_BUILD_TIME_LIMIT", 3600, integer=True))
        # Redis hands a task to another worker once it has gone unacknowledged this long, and
        # the clock starts when a worker takes it: shorter than a build, and every long build
        # would run twice.
        default_visibility = limit + max(limit // 4, 60)
        visibility = int(
            _number(env, "FORMARKET_VISIBILITY_TIMEOUT", default_visibility, integer=True)
        )
        if visibility <= limit:
            raise UsageError(
                f"FORMARKET_VISIBILITY_TIMEOUT={visibility} is not longer than"
                f" FORMARKET_BUILD_TIME_LIMIT={limit}: a running build would be handed to a"
                " second worker",
                hint=f"unset it for the default ({default_visibility}), or raise it",
            )
        return cls(
            repo=repo,
            branch=branch,
            state=state,
            store=path("FORMARKET_STORE", state / "store") or state / "store",
            cache=path("FORMARKET_CACHE", state / "cache") or state / "cache",
            base_cache=path("FORMARKET_BASE_CACHE", None),
            hosts=path("FORMARKET_HOSTS", None),
            broker_url=_url(env, "FORMARKET_BROKER_URL"),
            result_backend=_url(env, "FORMARKET_RESULT_BACKEND"),
            build_time_limit=limit,
            visibility_timeout=visibility,
            reconcile_seconds=_number(env, "FORMARKET_RECONCILE_SECONDS", 30.0, integer=False),
            github_repo=_repo_slug(env),
            gateway_url=_url(env, "FORMARKET_GATEWAY_URL") or "http://127.0.0.1:8080",
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
        env = {
            "FORMARKET_REPO": str(self.repo),
            "FORMARKET_BRANCH": self.branch,
            "FORMARKET_STATE": str(self.state),
            "FORMARKET_STORE": str(self.store),
            "FORMARKET_CACHE": str(self.cache),
            "FORMARKET_BUILD_TIME_LIMIT": str(self.build_time_limit),
            "FORMARKET_VISIBILITY_TIMEOUT": str(self.visibility_timeout),
            "FORMARKET_RECONCILE_SECONDS": repr(self.reconcile_seconds),
            "FORMARKET_GATEWAY_URL": self.gateway_url,
        }
        optional = {
            "FORMARKET_BASE_CACHE": self.base_cache,
            "FORMARKET_HOSTS": self.hosts,
            "FORMARKET_BROKER_URL": self.broker_url,
            "FORMARKET_RESULT_BACKEND": self.result_backend,
            "FORMARKET_GITHUB_REPO": self.github_repo,
        }
        env.update({name: str(value) for name, value in optional.items() if value is not None})
        return env


def open_market(settings: FarmSettings) -> Repo:
    """The marketplace's git repository that the farm's settings name: the one holding
    FORMARKET_REPO (default: the current folder)."""
    return open_repository(settings.repo)
