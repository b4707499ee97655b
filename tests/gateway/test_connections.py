"""Callers' connections: slow drips are closed, open connections and calls are capped, and a
scoped key's calls carry their parent."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from formarket.gateway.ceilings import GatewayLimits
from formarket.gateway.config import GatewayConfig, StatePaths
from formarket.gateway.keys import create_key, load_keys
from formarket.gateway.routes import Route, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from formarket.standins.openai import StandIn
from tests.gateway.conftest import MODEL
from tests.gateway.helpers import Client
from tests.gateway.test_http import spooled

DRIPS = 1000


def _setup(tmp_path: Path, upstream: str, **key: Any) -> tuple[StatePaths, str]:
    state = StatePaths(tmp_path / "state")
    save_routes(
        state.routes,
        [
            Route(deployment="d", endpoint=upstream, account="a", model=MODEL),
            Route(deployment="e", endpoint=upstream, account="a", model=MODEL),
        ],
    )
    made, _ = create_key(state.keys, "a", rate_per_second=1000, burst=1000, **key)
    return state, made


def test_a_thousand_slow_drips_do_not_stop_ordinary_calls(tmp_path: Path) -> None:
    with ServerThread(StandIn("honest")) as upstream:  # type: ignore[arg-type]
        state, key = _setup(tmp_path, upstream.url)
        limits = GatewayLimits(header_timeout=3.0)
        with ServerThread(
            build_gateway(GatewayConfig(state, source="gateway/t", limits=limits))
        ) as gw:
            port = int(gw.url.rsplit(":", 1)[1])
            drips = []
            for _ in range(DRIPS):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
                sock.setblocking(False)
                drips.append(sock)
            client = Client(gw.url, key, timeout=5)
            started = time.monotonic()
            answered = 0
            while time.monotonic() - started < 2.0:
                for sock in drips:
                    with contextlib.suppress(OSError):
                        sock.send(b"X")
                call = time.monotonic()
                reply = client.chat("d", "hello", max_tokens=5)
                assert reply.status == 200
                assert time.monotonic() - call < 1.0
                answered += 1
            assert answered >= 5
            # Past the head timeout, the drips are answered 408 and closed.
            time.sleep(3.0)
            closed = 0
            for sock in drips:
                sock.setblocking(True)
                sock.settimeout(2)
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/1.1 408") or data == b"":
                    closed += 1
                sock.close()
            assert closed == DRIPS


def test_connections_past_the_cap_are_refused(tmp_path: Path) -> None:
    with ServerThread(StandIn("honest")) as upstream:  # type: ignore[arg-type]
        state, key = _setup(tmp_path, upstream.url)
        limits = GatewayLimits(max_connections=3)
        with ServerThread(
            build_gateway(GatewayConfig(state, source="gateway/t", limits=limits))
        ) as gw:
            port = int(gw.url.rsplit(":", 1)[1])
            held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
            time.sleep(0.2)
            extra = socket.create_connection(("127.0.0.1", port), timeout=5)
            assert extra.recv(4096).startswith(b"HTTP/1.1 503")
            for sock in (*held, extra):
                sock.close()
            time.sleep(0.2)
            assert Client(gw.url, key).chat("d", "hi").status == 200


class _Echo:
    """A deployment that answers with the X-Formarket-Call header it was sent."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = dict(scope["headers"])
        self.calls.append(headers.get(b"x-formarket-call", b"").decode())
        body = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}]}'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def test_a_scoped_key_calls_only_its_deployments_and_records_its_parent(tmp_path: Path) -> None:
    echo = _Echo()
    with ServerThread(echo) as upstream:  # type: ignore[arg-type]
        state, key = _setup(tmp_path, upstream.url, scope=("d",))
        (record,) = load_keys(state.keys).by_id.values()
        assert record.scope == ("d",)
        with ServerThread(build_gateway(GatewayConfig(state, source="gateway/t"))) as gw:
            client = Client(gw.url, key)
            assert client.chat("e", "hi").status == 404
            listed = client.request("GET", "/v1/models").json()["data"]
            assert [model["id"] for model in listed] == ["d"]
            reply = client.request(
                "POST",
                "/v1/chat/completions",
                {"model": "d", "messages": [{"role": "user", "content": "hi"}]},
                headers={"X-Formarket-Parent": "gw-parent-1"},
            )
            bad = client.request(
                "POST",
                "/v1/chat/completions",
                {"model": "d", "messages": [{"role": "user", "content": "hi"}]},
                headers={"X-Formarket-Parent": "not an id!"},
            )
    assert reply.status == 200
    assert bad.status == 400
    call = reply.headers["x-formarket-call"]
    assert echo.calls == [call]
    event = spooled(state)[call]["data"]
    assert event["parent"] == "gw-parent-1"


def test_an_unscoped_keys_parent_header_is_not_recorded(tmp_path: Path) -> None:
    with ServerThread(StandIn("honest")) as upstream:  # type: ignore[arg-type]
        state, key = _setup(tmp_path, upstream.url, usd_per_day=Decimal("5.00"))
        with ServerThread(build_gateway(GatewayConfig(state, source="gateway/t"))) as gw:
            reply = Client(gw.url, key).request(
                "POST",
                "/v1/chat/completions",
                {"model": "d", "messages": [{"role": "user", "content": "hi"}]},
                headers={"X-Formarket-Parent": "gw-parent-1"},
            )
    assert reply.status == 200
    assert "parent" not in spooled(state)[reply.headers["x-formarket-call"]]["data"]


def test_a_keys_calls_in_progress_are_capped(tmp_path: Path) -> None:
    from formarket.standins.hostile import Hostile

    with ServerThread(Hostile()) as upstream:  # type: ignore[arg-type]
        state, key = _setup(tmp_path, upstream.url)
        limits = GatewayLimits(max_calls_per_key=1, max_duration=2.0)
        with ServerThread(
            build_gateway(GatewayConfig(state, source="gateway/t", limits=limits))
        ) as gw:
            body = {
                "model": "d",
                "messages": [{"role": "user", "content": "slow-drip"}],
                "stream": True,
            }
            first: list[int] = []
            thread = threading.Thread(
                target=lambda: first.append(
                    Client(gw.url, key, timeout=30)
                    .request("POST", "/v1/chat/completions", body)
                    .status
                )
            )
            thread.start()
            time.sleep(0.7)
            second = Client(gw.url, key).chat("d", "hi")
            thread.join(30)
            third = Client(gw.url, key).chat("d", "hi")
    assert first == [200]
    assert second.status == 429
    assert second.json()["error"]["code"] == "too_many_calls"
    assert third.status == 200
