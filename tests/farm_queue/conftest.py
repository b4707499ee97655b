"""Fixtures for the farm's queue: a private Redis, a scratch marketplace repository with a
slow listing, farm settings over both, and real `formarket farm worker` processes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from dulwich.repo import Repo

from formarket.farm.celery_app import QUEUES, make_app
from formarket.farm.embedded import start_worker, stop_worker, wait_ready
from formarket.farm.settings import FarmSettings
from formarket.market.writer import Identity, commit_changes
from formarket.process import Started

ROOT = Path(__file__).parents[2]
LISTING = "testpub/slow-echo"
VERSION = "1.0.0"
MARKER = "ran-marker"


def shared_base_cache() -> Path:
    """Bases shared with the builder's tests: the busybox base (and its kernel) is made once."""
    return Path(os.environ.get("FORMARKET_TEST_CACHE") or ROOT / "build" / "test-cache")


def formfile(seconds: float) -> str:
    """A busybox image whose one RUN step leaves a marker and then takes `seconds`."""
    return (
        "NAME slow-echo\n"
        "FROM busybox\n"
        "VCPU 1\n"
        "MEMORY 512\n"
        "DISK 5\n"
        f"RUN echo started > /{MARKER} && sleep {seconds}\n"
        "EXPOSE 8080\n"
        "ENTRYPOINT httpd -f -p 8080 -h /srv\n"
    )


def make_market(root: Path, seconds: float, version: str = VERSION) -> Path:
    """A marketplace repository whose `main` holds LISTING at `version` and the bases."""
    repo = Repo.init(str(root), mkdir=True)
    files: dict[str, bytes | None] = {
        f"registry/models/{LISTING}/listing.yaml": (
            f"id: {LISTING}\nkind: model\nversion: {version}\n"
        ).encode(),
        f"registry/models/{LISTING}/Formfile": formfile(seconds).encode(),
    }
    for base in sorted((ROOT / "builder" / "bases").glob("*.yaml")):
        files[f"builder/bases/{base.name}"] = base.read_bytes()
    commit_changes(repo, "main", files, "add slow-echo", Identity("t", "t@example.org"))
    repo.close()
    return root


MakeSettings = Callable[..., FarmSettings]


@pytest.fixture
def farm_settings(tmp_path: Path) -> MakeSettings:
    """Settings for a farm in tmp_path: `seconds` is how long the listing's RUN step takes;
    `broker` a URL or None (embedded); `env` further FORMARKET_* variables."""

    def make(
        broker: str | None, seconds: float = 4, env: Mapping[str, str] | None = None
    ) -> FarmSettings:
        repo = tmp_path / "market"
        if not repo.exists():
            make_market(repo, seconds)
        environ = {
            "FORMARKET_REPO": str(repo),
            "FORMARKET_STATE": str(tmp_path / "farm"),
            "FORMARKET_BASE_CACHE": str(shared_base_cache()),
            **({"FORMARKET_BROKER_URL": broker} if broker else {}),
            **(env or {}),
        }
        return FarmSettings.from_env(tmp_path, environ)

    return make


class Worker:
    """A `formarket farm worker` child process: its own process group, its log."""

    def __init__(
        self, settings: FarmSettings, queues: Sequence[str] = QUEUES, concurrency: int = 1
    ) -> None:
        self.app = make_app(settings)
        self.process: Started
        self.process, self.log = start_worker(settings, queues, concurrency)
        wait_ready(self.app, self.process, self.log, queues[0], timeout=60)

    def pool_pids(self) -> list[int]:
        """The worker's pool processes (its children running tasks)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Field 4, after the parenthesised command name, is the parent's pid.
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                found.append(int(entry.name))
        return found

    def kill_group(self) -> None:
        """SIGKILL the worker and its pool at once, as a crashed host or the OOM killer would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.poll()
        deadline = time.monotonic() + 10
        while self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        stop_worker(self.process, grace=15)
        self.app.close()


@pytest.fixture
def workers() -> Iterator[Callable[..., Worker]]:
    """Start workers with `workers(settings, queues, concurrency)`; all stopped at the end."""
    started: list[Worker] = []

    def start(
        settings: FarmSettings, queues: Sequence[str] = QUEUES, concurrency: int = 1
    ) -> Worker:
        worker = Worker(settings, queues, concurrency)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def markers(cache: Path) -> list[Path]:
    """Every copy of the RUN step's marker in the build cache: one per run that started
    (a finished run's layer under layers/, a killed run's scratch layer under tmp/)."""
    while True:
        try:
            return sorted(cache.glob(f"**/t/{MARKER}"))
        except FileNotFoundError:
            continue  # a build removed its scratch folder while the walk was in it


def images(store: Path) -> list[Path]:
    folder = store / "images"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def bump_version(repo_root: Path, version: str) -> None:
    """Bump the listing's version on `main` (what a merged pull request does)."""
    repo = Repo(str(repo_root))
    path = f"registry/models/{LISTING}/listing.yaml"
    text = f"id: {LISTING}\nkind: model\nversion: {version}\n".encode()
    commit_changes(repo, "main", {path: text}, "bump", Identity("t", "t@example.org"))
    repo.close()
