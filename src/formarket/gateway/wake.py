"""Scale to zero, as the gateway sees it: which deployments were called when, and waking an
idle one on its next call.

The farm stops the VM of a deployment that declares `idle_after` once no call reached it for
that long, keeps its disk, and marks its route idle (`idle_since`). The gateway and the farm
meet in files of the gateway's state folder, so that neither needs the other running:

    <state>/activity/<gateway>.json   each gateway process's last call per deployment (the farm
                                      takes the latest over all of them)
    <state>/wake/<deployment>         a call is waiting for this deployment: start it

A call to an idle route is held: the first one asks for a wake, every call that arrives
meanwhile waits on that same wake (the VM is started once), and all go on as soon as the farm
publishes the route running again, or fail with a clear 503 after `max_wait` seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from formarket.atomicfile import write_atomically
from formarket.gateway.routes import Routes
from formarket.gateway.wire import ApiError
from formarket.schemas.usage import DEPLOYMENT_PATTERN

__all__ = ["Activity", "WakeRequests", "Waker", "last_calls"]

_ACTIVITY_FORMAT = "formarket.gateway-activity/1"
_DEPLOYMENT = re.compile(DEPLOYMENT_PATTERN)
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def _stamp(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat().replace("+00:00", "Z")


class WakeRequests:
    """The wake folder: the gateway asks, the farm reads and clears."""

    def __init__(self, state: Path) -> None:
        self.directory = state / "wake"

    def ask(self, deployment: str, wall: float) -> None:
        if not _DEPLOYMENT.fullmatch(deployment):
            raise ValueError(f"{deployment!r} is not a deployment id")
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomically(
            self.directory / deployment,
            json.dumps({"requested_at": _stamp(wall)}).encode() + b"\n",
            durable=False,
        )

    def pending(self) -> tuple[str, ...]:
        """The deployments a call is waiting for; stray names are not deployment ids and are
        left alone."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return ()
        return tuple(sorted(n for n in names if _DEPLOYMENT.fullmatch(n)))

    def clear(self, deployment: str) -> None:
        if _DEPLOYMENT.fullmatch(deployment):
            (self.directory / deployment).unlink(missing_ok=True)


class Activity:
    """When each deployment was last called through this gateway process. A deployment with a
    call in progress counts as called now: a long stream keeps its VM awake."""

    def __init__(self, state: Path, gateway: str, wall: Callable[[], float] = time.time) -> None:
        self.path = state / "activity" / f"{_NAME.sub('-', gateway)}-{os.getpid()}.json"
        self._wall = wall
        self._last: dict[str, float] = {}
        self._open: dict[str, int] = {}
        self._dirty = False

    def begin(self, deployment: str) -> None:
        # No time taken: a deployment with a call in progress is shown as called now.
        self._open[deployment] = self._open.get(deployment, 0) + 1

    def end(self, deployment: str) -> None:
        left = self._open.get(deployment, 1) - 1
        if left > 0:
            self._open[deployment] = left
        else:
            self._open.pop(deployment, None)
        self._last[deployment] = self._wall()
        self._dirty = True

    def snapshot(self) -> bytes | None:
        """The file's next content, or None when nothing changed since the last one."""
        if not self._dirty and not self._open:
            return None
        self._dirty = False
        now = self._wall()
        last = {**self._last, **dict.fromkeys(self._open, now)}
        body = {"format": _ACTIVITY_FORMAT, "last_call": {d: _stamp(t) for d, t in last.items()}}
        return json.dumps(body, sort_keys=True).encode() + b"\n"

    def publish(self) -> None:
        content = self.snapshot()
        if content is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, content, durable=False)


def last_calls(state: Path) -> dict[str, datetime]:
    """The latest call to each deployment over every gateway process's activity file. A file
    that cannot be read is skipped: activity only ever delays an idle stop."""
    latest: dict[str, datetime] = {}
    folder = state / "activity"
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return latest
    for name in names:
        try:
            doc = json.loads((folder / name).read_bytes())
            calls = doc["last_call"] if doc.get("format") == _ACTIVITY_FORMAT else {}
            for dep, at in calls.items():
                when = datetime.fromisoformat(at)
                if _DEPLOYMENT.fullmatch(dep) and (dep not in latest or when > latest[dep]):
                    latest[dep] = when
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return latest


class Waker:
    """Holds calls to idle deployments until the farm has them running again."""

    def __init__(
        self,
        requests: WakeRequests,
        look: Callable[[], Routes],
        *,
        max_wait: float = 60.0,
        poll: float = 0.05,
        reask: float = 2.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.requests = requests
        self.max_wait = max_wait
        self._look = look
        self._poll = poll
        self._reask = reask
        self._wall = wall
        self._waking: dict[str, asyncio.Task[None]] = {}

    async def running(self, deployment: str) -> None:
        """Return once `deployment`'s route is running; ApiError if it does not come back in
        time or was stopped meanwhile."""
        task = self._waking.get(deployment)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._wake(deployment))
            self._waking[deployment] = task
            task.add_done_callback(lambda _: self._waking.pop(deployment, None))
        # A caller that goes away must not cancel the wake the others wait on.
        await asyncio.shield(task)

    async def _wake(self, deployment: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        asked = float("-inf")
        while True:
            # Asked again now and then: the farm may have published an idle route after it
            # woke the deployment (a cycle that began before), and must see the call waits.
            if loop.time() - asked >= self._reask:
                await asyncio.to_thread(self.requests.ask, deployment, self._wall())
                asked = loop.time()
            route = self._look().by_deployment.get(deployment)
            if route is None:
                raise ApiError(
                    404,
                    f"deployment {deployment} was stopped while it was being woken",
                    code="model_not_found",
                )
            if route.idle_since is None:
                return
            if loop.time() >= deadline:
                raise ApiError(
                    503,
                    f"deployment {deployment} was idle and is still starting after"
                    f" {self.max_wait:g}s; try again shortly",
                    type="upstream_error",
                    code="deployment_starting",
                    headers=[(b"retry-after", b"5")],
                )
            await asyncio.sleep(self._poll)
