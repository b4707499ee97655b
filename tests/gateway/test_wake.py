"""Scale to zero at the gateway: a call to an idle deployment is held while the farm starts it,
concurrent first calls wake it once, and the last calls are published for the idle stops."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from formarket.gateway.config import GatewayConfig, StatePaths
from formarket.gateway.keys import create_key
from formarket.gateway.routes import Route, load_routes, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from formarket.gateway.wake import Activity, WakeRequests, last_calls
from tests.gateway.conftest import MODEL
from tests.gateway.helpers import Client

IDLE = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CHAT = {"model": "dep-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def _routes(state: StatePaths, upstream: str, idle: bool) -> None:
    save_routes(
        state.routes,
        [
            Route(
                deployment="dep-1",
                endpoint=upstream,
                account="acme",
                model=MODEL,
                idle_since=IDLE if idle else None,
            )
        ],
    )


class Farm:
    """Plays the farm's part through the files alone: sees a wake request, takes `delay`
    seconds to 'boot', publishes the route running and clears the request."""

    def __init__(self, state: StatePaths, upstream: str, delay: float) -> None:
        self.state = state
        self.upstream = upstream
        self.delay = delay
        self.wakes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        requests = WakeRequests(self.state.root)
        while not self._stop.is_set():
            for deployment in requests.pending():
                self.wakes += 1
                time.sleep(self.delay)
                requests.clear(deployment)
                _routes(self.state, self.upstream, idle=False)
            time.sleep(0.01)

    def __enter__(self) -> Farm:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def idle_gateway(state: StatePaths, upstream: str) -> Iterator[tuple[str, str]]:
    _routes(state, upstream, idle=True)
    key, _ = create_key(state.keys, "acme", rate_per_second=1000, burst=1000)
    app = build_gateway(
        GatewayConfig(state, source="gateway/test", segment_seconds=0.2, wake_timeout=10)
    )
    with ServerThread(app) as server:
        yield server.url, key


def test_a_call_to_an_idle_deployment_waits_for_it_and_is_answered(
    state: StatePaths, upstream: str, idle_gateway: tuple[str, str]
) -> None:
    url, key = idle_gateway
    with Farm(state, upstream, delay=0.5) as farm:
        started = time.monotonic()
        reply = Client(url, key).request("POST", "/v1/chat/completions", CHAT)
        waited = time.monotonic() - started
    assert reply.status == 200, reply.body
    assert reply.json()["choices"][0]["message"]["content"]
    assert waited >= 0.5
    assert farm.wakes == 1
    assert WakeRequests(state.root).pending() == ()


def test_concurrent_first_calls_wake_the_deployment_once(
    state: StatePaths, upstream: str, idle_gateway: tuple[str, str]
) -> None:
    url, key = idle_gateway
    with Farm(state, upstream, delay=0.8) as farm, ThreadPoolExecutor(12) as pool:
        replies = list(
            pool.map(
                lambda _: Client(url, key).request("POST", "/v1/chat/completions", CHAT),
                range(12),
            )
        )
    assert [r.status for r in replies] == [200] * 12
    assert farm.wakes == 1


def test_a_deployment_that_does_not_come_back_in_time_is_a_503_to_retry(
    state: StatePaths, upstream: str
) -> None:
    _routes(state, upstream, idle=True)
    key, _ = create_key(state.keys, "acme", rate_per_second=1000, burst=1000)
    app = build_gateway(GatewayConfig(state, source="gateway/test", wake_timeout=0.3))
    with ServerThread(app) as server:
        reply = Client(server.url, key).request("POST", "/v1/chat/completions", CHAT)
    assert reply.status == 503
    assert reply.json()["error"]["code"] == "deployment_starting"
    assert "0.3s" in reply.json()["error"]["message"]
    assert reply.headers["retry-after"] == "5"
    # The request stays for the farm: the next call finds the deployment starting.
    assert WakeRequests(state.root).pending() == ("dep-1",)
    # Nothing was forwarded, so nothing was billed.
    assert not list(state.spool.glob("**/*.jsonl*")) or all(
        not p.read_bytes().strip() for p in state.spool.glob("**/*.jsonl*")
    )


def test_a_deployment_stopped_while_it_wakes_is_not_found(
    state: StatePaths, upstream: str, idle_gateway: tuple[str, str]
) -> None:
    url, key = idle_gateway

    def stop_it() -> None:
        while not WakeRequests(state.root).pending():
            time.sleep(0.01)
        save_routes(state.routes, [])

    threading.Thread(target=stop_it, daemon=True).start()
    reply = Client(url, key).request("POST", "/v1/chat/completions", CHAT)
    assert reply.status == 404
    assert "stopped while it was being woken" in reply.json()["error"]["message"]


def test_the_last_calls_are_published_for_the_farm(state: StatePaths, upstream: str) -> None:
    _routes(state, upstream, idle=False)
    key, _ = create_key(state.keys, "acme", rate_per_second=1000, burst=1000)
    before = datetime.now(UTC).replace(microsecond=0)
    app = build_gateway(GatewayConfig(state, source="gateway/test"))
    with ServerThread(app) as server:
        assert Client(server.url, key).request("POST", "/v1/chat/completions", CHAT).status == 200
    last = last_calls(state.root)
    assert set(last) == {"dep-1"}
    assert before <= last["dep-1"] <= datetime.now(UTC)


def test_a_call_in_progress_counts_as_a_call_now(tmp_path: Path) -> None:
    now = [1_000_000.0]
    activity = Activity(tmp_path, "gateway/a", wall=lambda: now[0])
    activity.begin("dep-000000000001")
    now[0] += 3600  # an hour-long stream
    activity.publish()
    seen = last_calls(tmp_path)["dep-000000000001"]
    assert seen == datetime.fromtimestamp(now[0], UTC)
    activity.end("dep-000000000001")
    assert activity.snapshot() is not None
    assert activity.snapshot() is None  # nothing new since


def test_several_gateways_the_latest_call_counts(tmp_path: Path) -> None:
    one = Activity(tmp_path, "gateway/a", wall=lambda: 1_000.0)
    two = Activity(tmp_path, "gateway/b", wall=lambda: 2_000.0)
    for activity in (one, two):
        activity.begin("dep-1")
        activity.end("dep-1")
        activity.publish()
    assert last_calls(tmp_path) == {"dep-1": datetime.fromtimestamp(2_000.0, UTC)}


@given(st.binary(max_size=300), st.text(max_size=40))
def test_unreadable_activity_and_stray_wake_files_are_ignored(
    tmp_path_factory: pytest.TempPathFactory, junk: bytes, name: str
) -> None:
    root = tmp_path_factory.mktemp("state")
    (root / "activity").mkdir()
    (root / "activity" / "junk.json").write_bytes(junk)
    (root / "activity" / "list.json").write_text(json.dumps([1, 2]))
    (root / "activity" / "bad.json").write_text(
        json.dumps(
            {
                "format": "formarket.gateway-activity/1",
                "last_call": {"../../etc": "2026-01-01T00:00:00Z", "dep-1": "not a time"},
            }
        )
    )
    assert last_calls(root) == {}
    requests = WakeRequests(root)
    requests.directory.mkdir()
    safe = "".join(c for c in name if c.isalnum() or c in "-_") or "x"
    (requests.directory / f"stray-{safe}.tmp").write_text("x")
    assert requests.pending() == ()


@pytest.mark.parametrize("bad", ["../dep-1", "dep-1/../../x", "", "dep 1"])
def test_a_wake_is_asked_only_for_a_deployment_id(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="not a deployment id"):
        WakeRequests(tmp_path).ask(bad, 0.0)


def test_an_idle_route_round_trips_through_the_routes_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    save_routes(
        path,
        [
            Route(
                deployment="dep-1", endpoint="http://h:1", account="a", model=MODEL, idle_since=IDLE
            )
        ],
    )
    assert load_routes(path).routes[0].idle_since == IDLE
