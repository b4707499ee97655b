"""Exactly once, the hard way: gateways and flushers killed with SIGKILL at random points while
10,000 calls go through, then restarted; every answered call is committed once, and nothing
else is committed more than once."""

from __future__ import annotations

import collections
import http.client
import random
import threading
import time
from pathlib import Path

import pytest

from formarket.gateway.config import StatePaths
from formarket.gateway.keys import create_key
from formarket.gateway.routes import Route, save_routes
from formarket.process import Runner
from tests.gateway.conftest import MODEL
from tests.gateway.helpers import Client, committed_events, make_market
from tests.gateway.processes import PYTHON, Proc

CALLS = 10_000
CLIENTS = 8
KILLS = 8
SEED = 20261125


class Calls:
    """The client side's ledger: ids of answered calls, and calls cut off mid-flight."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.lock = threading.Lock()
        self.answered: list[str] = []
        self.cut_off = 0
        self.url = ""

    def take(self) -> bool:
        with self.lock:
            return len(self.answered) < self.total

    def client_loop(self, key: str) -> None:
        client: Client | None = None
        url = ""
        while self.take():
            if url != self.url or client is None:
                url = self.url
                client = Client(url, key, timeout=10, keep_alive=True)
            try:
                reply = client.chat("dep-1", "count me once")
            except (OSError, http.client.HTTPException) as exc:
                # Refused: the gateway is down and the call was never made. Cut off: the
                # gateway was killed while answering; if it had metered the call, its event
                # may be committed, but only once.
                if not isinstance(exc, ConnectionRefusedError):
                    with self.lock:
                        self.cut_off += 1
                client.close()
                time.sleep(0.01)
                continue
            assert reply.status == 200, reply.body
            with self.lock:
                self.answered.append(reply.headers["x-request-id"])
        if client is not None:
            client.close()


@pytest.mark.slow
def test_sigkill_of_gateways_and_flushers_loses_and_doubles_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    repo = make_market(tmp_path / "market")
    state = StatePaths(tmp_path / "state")
    logs = tmp_path / "logs"
    logs.mkdir()
    where = ["--repo", str(tmp_path / "market"), "--gateway-dir", str(state.root)]
    upstream = Proc("standin", [PYTHON[0], "-m", "formarket.standins.openai"], logs)
    gateway = Proc(
        "gateway",
        [*PYTHON, "gateway", "serve", *where, "--port", "0", "--source", "gateway/crash"],
        logs,
    )
    flusher = Proc("flusher", [*PYTHON, "usage", "flush", *where, "--every", "0.05"], logs)
    upstream.start()
    save_routes(
        state.routes,
        [Route(deployment="dep-1", endpoint=upstream.url(), account="acme", model=MODEL)],
    )
    key, _ = create_key(state.keys, "acme", rate_per_second=100_000, burst=100_000)
    calls = Calls(CALLS)
    gateway.start()
    calls.url = gateway.url()
    flusher.start()
    clients = [
        threading.Thread(target=calls.client_loop, args=(key,), daemon=True) for _ in range(CLIENTS)
    ]
    started = time.monotonic()
    for thread in clients:
        thread.start()
    kills: collections.Counter[str] = collections.Counter()
    try:
        # Seeded kill points, counted in answered calls rather than seconds, so a fast
        # machine kills as often as a slow one: four of each, in a seeded order.
        points = sorted(rng.sample(range(CALLS // 20, CALLS - CALLS // 20), KILLS))
        victims = [gateway, flusher] * (KILLS // 2)
        rng.shuffle(victims)
        for point, victim in zip(points, victims, strict=True):
            while len(calls.answered) < point and any(t.is_alive() for t in clients):
                time.sleep(0.005)
                assert time.monotonic() - started < 120, "the calls took too long"
            assert flusher.alive(), f"the flusher died by itself:\n{flusher.output()}"
            assert gateway.alive(), f"the gateway died by itself:\n{gateway.output()}"
            victim.kill()
            kills[victim.name] += 1
            victim.start()
            if victim is gateway:
                calls.url = gateway.url()
        for thread in clients:
            thread.join(60)
        # SIGTERM: uvicorn shuts down cleanly (sealing the spool), then exits by the signal.
        assert gateway.stop() in (0, -15), gateway.output()
        print(
            f"calls took {time.monotonic() - started:.1f}s, kills {kills}, cut off {calls.cut_off}"
        )
        flusher.kill()
    finally:
        for proc in (gateway, flusher, upstream):
            if proc.alive():
                proc.kill()
    Runner().run([*PYTHON, "usage", "flush", *where], timeout=120)

    committed = collections.Counter(event["id"] for _, event in committed_events(repo))
    answered = collections.Counter(calls.answered)
    assert len(answered) >= CALLS
    assert max(answered.values()) == 1
    doubled = [i for i, n in committed.items() if n > 1]
    assert not doubled, f"{len(doubled)} events committed twice, such as {doubled[:3]}"
    missing = set(answered) - set(committed)
    assert not missing, f"{len(missing)} answered calls were never committed"
    extra = set(committed) - set(answered)
    assert len(extra) <= calls.cut_off, "events of calls that never happened"
    assert kills == {"gateway": KILLS // 2, "flusher": KILLS // 2}
    assert not list(state.spool.glob("*.seg")), "segments left in the spool"
