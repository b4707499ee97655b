"""Scale to zero on simulated hosts (libvirt's test driver): a deployment idle for its
`idle_after` has its VM stopped with its domain kept, stays stopped through later cycles, and
is started again where it is when a call asks; instance time is metered only while it runs."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dulwich.repo import Repo

from formarket.farm import operations, status
from formarket.farm.desired import set_state, submit
from formarket.farm.metering import meter_running
from formarket.farm.sleeping import SleepMarks
from formarket.gateway.routes import load_routes
from formarket.gateway.wake import Activity, WakeRequests
from formarket.market.governance import bot_identity
from formarket.usage.events import Served
from formarket.usage.spool import parse_segment
from tests.farm.test_testdriver_farm import Farm, deployment

IDLE = "dep-idle"
BUSY = "dep-busy"


def _routes(farm: Farm) -> dict[str, datetime | None]:
    path = operations.routes_path(farm.settings)
    return {r.deployment: r.idle_since for r in load_routes(path).routes}


def _running(farm: Farm) -> dict[str, bool]:
    actual = operations.observe(operations.inventory(farm.settings).hosts, farm.pool)
    return {d.deployment: d.running for d in actual.domains()}


def _gateway_root(farm: Farm) -> Path:
    return operations.routes_path(farm.settings).parent


def _make_idle(farm: Farm, deployment_id: str) -> None:
    """As if it last woke a minute ago and nobody called since."""
    SleepMarks(farm.settings.state).woke(deployment_id, datetime.now(UTC) - timedelta(minutes=1))


def _farm(tmp_path: Path, marketplace: Repo) -> Farm:
    farm = Farm(tmp_path, marketplace)
    bot = bot_identity(marketplace, "main")
    idle = deployment(IDLE).model_copy(update={"idle_after": 30})
    submit(marketplace, "main", [idle, deployment(BUSY)], "two", bot)
    farm.settle()
    assert _running(farm) == {IDLE: True, BUSY: True}
    return farm


def test_an_idle_deployment_sleeps_with_its_domain_kept_and_wakes_for_a_call(
    tmp_path: Path, marketplace: Repo
) -> None:
    farm = _farm(tmp_path, marketplace)
    try:
        marks = SleepMarks(farm.settings.state)
        assert IDLE in marks.awake()  # idleness counts from the first cycle that saw it
        assert BUSY not in marks.awake()  # no idle_after: never stopped for idleness
        farm.cycle()
        assert _running(farm) == {IDLE: True, BUSY: True}  # not idle for 30 s yet

        _make_idle(farm, IDLE)
        cycle = farm.cycle()
        assert _running(farm) == {IDLE: False, BUSY: True}  # stopped, its domain still there
        routes = _routes(farm)
        assert routes[IDLE] is not None
        assert routes[BUSY] is None
        assert set(marks.sleeping()) == {IDLE}
        assert cycle.plan.idle
        assert status.progress(farm.settings, IDLE).startswith("idle since ")

        # Later cycles leave it asleep: not a crashed domain to make again.
        again = farm.cycle()
        assert not again.plan.deploys
        assert not again.plan.stops
        assert _running(farm)[IDLE] is False
        assert _routes(farm)[IDLE] is not None

        # A call waits: the gateway asks, the farm wakes it where it is.
        WakeRequests(_gateway_root(farm)).ask(IDLE, time.time())
        endpoint = operations.wake_deployment(farm.settings, IDLE, pool=farm.pool)
        assert endpoint
        assert _running(farm) == {IDLE: True, BUSY: True}
        assert _routes(farm) == {IDLE: None, BUSY: None}
        assert WakeRequests(_gateway_root(farm)).pending() == ()
        assert IDLE not in marks.sleeping()
        farm.cycle()  # just woken: not idle again at once
        assert _running(farm)[IDLE] is True
    finally:
        farm.pool.close()


def test_recent_calls_keep_it_awake_and_a_cycle_wakes_it_when_asked(
    tmp_path: Path, marketplace: Repo
) -> None:
    farm = _farm(tmp_path, marketplace)
    try:
        _make_idle(farm, IDLE)
        calls = Activity(_gateway_root(farm), "gateway/test")
        calls.begin(IDLE)
        calls.end(IDLE)
        calls.publish()
        farm.cycle()
        assert _running(farm)[IDLE] is True  # called a moment ago

        # Its last call an hour ago: asleep; then a call asks and the next cycle wakes it.
        stale = Activity(_gateway_root(farm), "gateway/test", wall=lambda: time.time() - 3600)
        stale.begin(IDLE)
        stale.end(IDLE)
        stale.path = calls.path
        stale.publish()
        farm.cycle()
        assert _running(farm)[IDLE] is False
        WakeRequests(_gateway_root(farm)).ask(IDLE, time.time())
        woke = farm.cycle()
        assert woke.enqueued == 1
        assert _running(farm)[IDLE] is True
        assert _routes(farm)[IDLE] is None
    finally:
        farm.pool.close()


def test_the_waker_starts_a_sleeping_deployment_as_soon_as_a_call_asks(
    tmp_path: Path, marketplace: Repo
) -> None:
    farm = _farm(tmp_path, marketplace)
    stop = threading.Event()
    try:
        _make_idle(farm, IDLE)
        farm.cycle()
        assert _running(farm)[IDLE] is False
        waker = threading.Thread(
            target=operations.watch_wakes,
            args=(farm.settings,),
            kwargs={"interval": 0.02, "stop": stop, "pool": farm.pool},
            daemon=True,
        )
        waker.start()
        asked = time.monotonic()
        WakeRequests(_gateway_root(farm)).ask(IDLE, time.time())
        while _routes(farm)[IDLE] is not None:
            assert time.monotonic() - asked < 10, "not woken within 10 s"
            time.sleep(0.02)
        assert _running(farm)[IDLE] is True
    finally:
        stop.set()
        farm.pool.close()


def test_a_sleeping_deployment_stopped_in_git_is_removed_and_forgotten(
    tmp_path: Path, marketplace: Repo
) -> None:
    farm = _farm(tmp_path, marketplace)
    try:
        _make_idle(farm, IDLE)
        farm.cycle()
        set_state(marketplace, "main", IDLE, "stopped", "stop", bot_identity(marketplace, "main"))
        farm.settle()
        assert IDLE not in _running(farm)
        assert IDLE not in _routes(farm)
        marks = SleepMarks(farm.settings.state)
        assert IDLE not in marks.sleeping()
        assert IDLE not in marks.awake()
    finally:
        farm.pool.close()


def test_instance_time_is_metered_only_while_the_vm_runs(tmp_path: Path) -> None:
    served = Served("dep-1", "ada", None, ("tinyforge/echo-chat", "1.0.0"))
    clock, spool = tmp_path / "meter.json", tmp_path / "spool"
    t0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

    def seconds() -> int:
        """Instance seconds in the spool, each event once (a redelivery repeats its id)."""
        found: dict[str, int] = {}
        for segment in spool.rglob("*"):
            if segment.is_file():
                for _, payload in parse_segment(segment.read_bytes()).events:
                    event = json.loads(payload)
                    found[event["id"]] = event["data"]["instance_seconds"]
        return sum(found.values())

    meter_running(clock, spool, "farm/test", {"dep-1": served}, t0)  # first seen: starts here
    meter_running(clock, spool, "farm/test", {"dep-1": served}, t0 + timedelta(minutes=10))
    assert seconds() == 600
    # It went to sleep at 10:15; the cycle at 10:20 meters it up to 10:15 only.
    meter_running(
        clock,
        spool,
        "farm/test",
        {},
        t0 + timedelta(minutes=20),
        ended={"dep-1": (served, t0 + timedelta(minutes=15))},
    )
    assert seconds() == 900
    meter_running(clock, spool, "farm/test", {}, t0 + timedelta(minutes=40))  # asleep
    assert seconds() == 900
    # Woken at 10:45, seen by the cycle at 10:50: metered from its waking.
    meter_running(
        clock,
        spool,
        "farm/test",
        {"dep-1": served},
        t0 + timedelta(minutes=50),
        started={"dep-1": t0 + timedelta(minutes=45)},
    )
    assert seconds() == 1200
