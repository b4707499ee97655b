"""The embedded default: a farm worker as a child process, on sqlite files, nothing to install.

`formarket demo` and tests run the farm on one machine with it:

    with local_worker(settings, queues=("build", "deploy"), concurrency=1) as app:
        build_id = app.send_task("formarket.build", ("tinyforge/echo-chat", "1.1.0")).get()

The worker is `formarket farm worker` started through formarket.process, so it is the same
worker an operator runs; it is ready when it has answered a ping through its first queue.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from celery import Celery

from formarket.errors import FormarketError
from formarket.farm.celery_app import QUEUES, make_app
from formarket.farm.settings import FarmSettings
from formarket.process import Runner, Started

__all__ = ["WorkerError", "local_worker", "start_worker", "stop_worker", "wait_ready"]

READY_SECONDS = 60.0


class WorkerError(FormarketError):
    """The local worker did not start or stopped answering."""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(f"  | {line}" for line in text.rstrip().splitlines()[-lines:])


def start_worker(
    settings: FarmSettings,
    queues: Sequence[str] = QUEUES,
    concurrency: int = 1,
    *,
    runner: Runner | None = None,
    log: Path | None = None,
    loglevel: str = "info",
) -> tuple[Started, Path]:
    """Start `formarket farm worker` for `settings` in the background; it and its log file.

    The worker leads a process group of its own, so killing the group kills its pool too."""
    log = log or settings.state / "logs" / f"worker-{os.getpid()}-{time.monotonic_ns()}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "formarket", "farm", "worker"]
    argv += ["--queues", ",".join(queues), "--concurrency", str(concurrency)]
    argv += ["--loglevel", loglevel]
    env = {**os.environ, **settings.to_env()}
    with log.open("ab") as output:
        started = (runner or Runner()).start(argv, output=output, env=env)
    return started, log


def wait_ready(
    app: Celery, worker: Started, log: Path, queue: str, timeout: float = READY_SECONDS
) -> float:
    """Wait until the worker answers a ping sent through `queue`; seconds it took."""
    began = time.perf_counter()
    ping = app.send_task("formarket.ping", ("ready",), queue=queue, expires=timeout)
    while time.perf_counter() - began < timeout:
        if worker.poll() is not None:
            raise WorkerError(
                f"the farm worker exited with status {worker.poll()} while starting\n{_tail(log)}",
                hint=f"its log is {log}",
            )
        if ping.ready():
            ping.get(timeout=1)
            return time.perf_counter() - began
        time.sleep(0.05)
    raise WorkerError(
        f"the farm worker did not answer within {timeout:.0f}s\n{_tail(log)}",
        hint=f"is the broker ({app.conf.broker_url}) reachable? the worker's log is {log}",
    )


def stop_worker(worker: Started, grace: float = 10.0) -> None:
    """Warm shutdown (running tasks finish) for `grace` seconds, then kill the process group."""
    worker.stop(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        # Pool processes the worker could not take down with it must not outlive it.
        os.killpg(worker.pid, signal.SIGKILL)


@contextmanager
def local_worker(
    settings: FarmSettings,
    queues: Sequence[str] = QUEUES,
    concurrency: int = 1,
    *,
    timeout: float = READY_SECONDS,
    grace: float = 10.0,
) -> Iterator[Celery]:
    """A farm worker for `settings` while the block runs; the app to send tasks with.

    With no broker configured it runs on the embedded sqlite broker in the state folder."""
    app = make_app(settings)
    worker, log = start_worker(settings, queues, concurrency)
    try:
        wait_ready(app, worker, log, queues[0], timeout)
        yield app
    finally:
        stop_worker(worker, grace)
        app.close()
