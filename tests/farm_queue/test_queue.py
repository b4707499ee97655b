"""The farm's tasks through a real Redis and real `formarket farm worker` processes.

Every test starts its own redis-server and workers. A build's RUN step leaves a marker in its
layer, so the build cache shows how many times the step started (a killed run's scratch layer
keeps its marker) and how many times it finished (one kept layer).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from celery.result import AsyncResult
from click.testing import CliRunner

from formarket.cli import main
from formarket.errors import NotFoundError
from formarket.farm.embedded import local_worker
from formarket.farm.settings import FarmSettings
from formarket.process import Runner
from tests.farm_queue.conftest import (
    LISTING,
    VERSION,
    MakeSettings,
    Worker,
    images,
    markers,
    wait_for,
)
from tests.redis_server import RedisServer

StartWorker = Callable[..., Worker]


def finished_layers(cache: Path) -> list[Path]:
    return [path for path in markers(cache) if path.parts[-4] == "layers"]


def assert_published_once(settings: FarmSettings, build_id: str) -> None:
    """One image, complete (its manifest is written last), and the RUN step finished once."""
    published = images(settings.store)
    assert [path.name for path in published] == [build_id]
    assert (published[0] / "manifest.json").is_file()
    assert (published[0] / "disk.qcow2").stat().st_size > 0
    assert len(finished_layers(settings.cache)) == 1


def test_ping_round_trip(
    redis_server: RedisServer, farm_settings: MakeSettings, workers: StartWorker
) -> None:
    worker = workers(farm_settings(redis_server.url), queues=("deploy", "build"))
    assert worker.app.send_task("formarket.ping", ({"x": [1, "two"]},)).get(timeout=10) == {
        "x": [1, "two"]
    }
    # A user's mistake reaches the caller as formarket's own error, at once, not retried.
    wrong = worker.app.send_task("formarket.build", (LISTING, "0.0.1"))
    with pytest.raises(NotFoundError) as caught:
        wrong.get(timeout=20)
    assert VERSION in str(caught.value)


@pytest.mark.slow
def test_progress_is_visible_while_a_build_runs(
    redis_server: RedisServer, farm_settings: MakeSettings, workers: StartWorker
) -> None:
    settings = farm_settings(redis_server.url, seconds=1.5)
    worker = workers(settings, queues=("build",))
    result = worker.app.send_task("formarket.build", (LISTING, VERSION))
    seen: list[str] = []
    while not result.ready():
        if result.state == "PROGRESS":
            step = result.info["step"]
            if not seen or seen[-1] != step:
                seen.append(step)
        time.sleep(0.02)
    build_id = result.get(timeout=5)
    assert_published_once(settings, build_id)
    assert "02-run" in seen  # the slow step is seen while it runs
    # What was seen comes in the build's order (a quick step may pass between two polls).
    manifest = json.loads((settings.store / "images" / build_id / "manifest.json").read_text())
    # Writing the manifest and publishing it are the build's last two steps, after the
    # manifest's list of steps was written.
    order = ["export", *(step["name"] for step in manifest["steps"]), "manifest", "publish"]
    positions = [order.index(step) for step in seen]
    assert positions == sorted(positions)


@pytest.mark.slow
def test_a_killed_pool_process_hands_the_build_back(
    redis_server: RedisServer, farm_settings: MakeSettings, workers: StartWorker
) -> None:
    """reject_on_worker_lost: the dead process's build goes back to the queue at once."""
    settings = farm_settings(redis_server.url, seconds=3)
    worker = workers(settings, queues=("build",))
    result = worker.app.send_task("formarket.build", (LISTING, VERSION))
    wait_for(lambda: markers(settings.cache), 30, "the RUN step to start")
    pool = worker.pool_pids()
    assert len(pool) == 1
    os.kill(pool[0], signal.SIGKILL)
    build_id = result.get(timeout=60)
    assert len(markers(settings.cache)) == 2  # started twice...
    assert_published_once(settings, build_id)  # ...finished and published once
    # The killed run's half-made image stayed in staging, where no reader looks.
    assert any((settings.store / "staging").iterdir())


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_the_build_runs_once(
    redis_server: RedisServer, farm_settings: MakeSettings, workers: StartWorker
) -> None:
    """The whole worker dies mid-build (its pool and all): Redis holds the unacknowledged task
    until the visibility timeout, and a worker's restore sweep then queues it again.

    Production waits longer than the longest build (an hour and a quarter by default) so
    that a running build is never handed out twice; this test lowers the build limit to 15 s
    and the timeout to 16 s (the sweep then runs every second) to see it within the test.
    """
    env = {"FORMARKET_BUILD_TIME_LIMIT": "15", "FORMARKET_VISIBILITY_TIMEOUT": "16"}
    settings = farm_settings(redis_server.url, seconds=3, env=env)
    first = workers(settings, queues=("build",))
    result = first.app.send_task("formarket.build", (LISTING, VERSION))
    wait_for(lambda: markers(settings.cache), 30, "the RUN step to start")
    first.kill_group()
    killed_at = time.monotonic()
    second = workers(settings, queues=("build",))
    build_id = result.get(timeout=60)
    waited = time.monotonic() - killed_at
    assert waited > 5  # redelivered by the visibility timeout, not at once
    assert len(markers(settings.cache)) == 2
    assert_published_once(settings, build_id)
    assert second.app.send_task("formarket.ping", (1,), queue="build").get(timeout=10) == 1


@pytest.mark.slow
def test_a_busy_build_id_is_retried_with_backoff_and_built_once(
    redis_server: RedisServer, farm_settings: MakeSettings, workers: StartWorker
) -> None:
    """Two requests for one build at once: the second finds the lock taken (a transient
    error), retries after 2 s, 4 s... and then finds the image published."""
    settings = farm_settings(redis_server.url, seconds=3)
    worker = workers(settings, queues=("build",), concurrency=2)
    one = worker.app.send_task("formarket.build", (LISTING, VERSION))
    wait_for(lambda: markers(settings.cache), 30, "the RUN step to start")
    started = time.monotonic()
    two = worker.app.send_task("formarket.build", (LISTING, VERSION))
    states: set[str] = set()
    while not two.ready():
        states.add(two.state)
        time.sleep(0.02)
    assert "RETRY" in states
    assert one.get(timeout=30) == two.get(timeout=30)
    assert time.monotonic() - started >= 2  # the first retry waits 2 s
    assert len(markers(settings.cache)) == 1  # the step never ran twice
    assert_published_once(settings, one.get())


@pytest.mark.slow
def test_a_build_over_its_time_limit_fails_cleanly(
    redis_server: RedisServer, farm_settings: MakeSettings, workers: StartWorker
) -> None:
    settings = farm_settings(redis_server.url, seconds=60, env={"FORMARKET_BUILD_TIME_LIMIT": "3"})
    worker = workers(settings, queues=("build",))
    started = time.monotonic()
    result = worker.app.send_task("formarket.build", (LISTING, VERSION))
    with pytest.raises(Exception) as caught:
        result.get(timeout=30)
    assert type(caught.value).__name__ == "SoftTimeLimitExceeded"
    assert time.monotonic() - started < 20
    assert result.state == "FAILURE"
    assert not images(settings.store)
    assert not list((settings.store / "staging").iterdir())  # the build cleaned up
    assert list((settings.store / "failed").iterdir())  # and left its log
    # The worker is still there for the next task.
    assert worker.app.send_task("formarket.ping", (2,), queue="build").get(timeout=10) == 2


@pytest.mark.slow
def test_the_embedded_default_needs_no_redis(farm_settings: MakeSettings) -> None:
    settings = farm_settings(None, seconds=0.1)
    assert settings.embedded
    with local_worker(settings, concurrency=1) as app:
        assert app.send_task("formarket.ping", ("hi",)).get(timeout=20) == "hi"
        build = app.send_task("formarket.build", (LISTING, VERSION))
        build_id = build.get(timeout=60)
        assert AsyncResult(build.id, app=app).state == "SUCCESS"
    assert (settings.state / "broker.sqlite").is_file()
    assert_published_once(settings, build_id)


def test_beat_sends_the_reconcile_every_period(
    redis_server: RedisServer, farm_settings: MakeSettings
) -> None:
    settings = farm_settings(redis_server.url, env={"FORMARKET_RECONCILE_SECONDS": "0.3"})
    argv = [sys.executable, "-m", "formarket", "farm", "beat", "--loglevel", "warning"]
    log = settings.state / "beat.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        beat = Runner().start(argv, output=output, env={**os.environ, **settings.to_env()})
    client = redis_server.client()
    try:
        # No worker: the reconciles wait in the deploy queue, where the farm routes them.
        wait_for(lambda: client.llen("deploy") >= 3, 30, "three reconciles in the deploy queue")
    finally:
        beat.stop()
    sent = [json.loads(raw) for raw in client.lrange("deploy", 0, -1)]
    assert {message["headers"]["task"] for message in sent} == {"formarket.reconcile"}
    assert all(message["headers"]["expires"] for message in sent)  # stale ones are dropped
    assert client.llen("build") == 0


def test_an_unknown_queue_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["farm", "worker", "--queues", "build,bogus"])
    assert result.exit_code == 2
    assert "bogus" in result.output


@pytest.mark.slow
def test_workers_come_back_when_redis_loses_everything(
    redis_server: RedisServer, farm_settings: MakeSettings, workers: StartWorker
) -> None:
    """Redis restarts empty (nothing on disk): the worker reconnects by itself; what was
    queued is gone, which is why desired state lives in git and the reconciler re-sends."""
    worker = workers(farm_settings(redis_server.url), queues=("deploy",))
    assert worker.app.send_task("formarket.ping", (1,)).get(timeout=10) == 1
    redis_server.restart(wipe=True)
    with redis_server.client() as client:
        assert client.dbsize() == 0
    answered = None
    deadline = time.monotonic() + 30
    while answered is None and time.monotonic() < deadline:
        try:
            answered = worker.app.send_task("formarket.ping", (2,)).get(timeout=3)
        except Exception:  # the client's own connections reconnect too
            time.sleep(0.2)
    assert answered == 2
