"""The gateway over real HTTP: forwarding, streaming, metering, limits, and hostile input."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from formarket.gateway.config import GatewayConfig, StatePaths
from formarket.gateway.keys import create_key, revoke_key
from formarket.gateway.routes import Route, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from formarket.gateway.tokens import ESTIMATE, ESTIMATE_SLACK
from formarket.schemas.usage import UsageEvent
from formarket.standins.openai import StandIn
from formarket.usage.spool import parse_segment
from tests.gateway.conftest import MODEL, Setup
from tests.gateway.helpers import Client, Reply


def spooled(paths: StatePaths) -> dict[str, dict[str, Any]]:
    """The events in the spool (sealed or not), by id, each checked against the contract."""
    out = {}
    for segment in sorted(paths.spool.glob("*.seg")):
        read = parse_segment(segment.read_bytes())
        assert not read.problems
        for _, payload in read.events:
            UsageEvent.model_validate_json(payload)
            event = json.loads(payload)
            out[event["id"]] = event
    return out


def assert_openai_error(reply: Reply, status: int, code: str | None = None) -> None:
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    if code is not None:
        assert error["code"] == code


def test_models_lists_the_callers_deployments_only(gateway: Setup) -> None:
    reply = gateway.client().request("GET", "/v1/models")
    assert reply.status == 200
    assert [m["id"] for m in reply.json()["data"]] == ["dep-1", "dep-2"]
    one = gateway.client().request("GET", "/v1/models/dep-2")
    assert one.json()["formarket"]["model"] == MODEL.model_dump()
    assert_openai_error(
        gateway.client().request("GET", "/v1/models/dep-other"), 404, "model_not_found"
    )


def test_a_chat_is_forwarded_and_metered_with_the_upstreams_counts(gateway: Setup) -> None:
    reply = gateway.client().chat("dep-1", "what is a royalty?")
    assert reply.status == 200
    usage = reply.json()["usage"]
    event = spooled(gateway.paths)[reply.headers["x-request-id"]]
    assert event["subject"] == "dep-1"
    assert event["source"] == "gateway/test"
    data = event["data"]
    assert data["account"] == "acme"
    assert data["agent"] == {"id": "acme/helper", "version": "0.3.0"}
    assert data["model"] == MODEL.model_dump()
    assert (data["input_tokens"], data["output_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert data["tokens_source"] == "upstream"
    assert data["outcome"] == "ok"
    assert data["requests"] == 1


def test_a_listing_id_routes_to_the_one_deployment_that_serves_it(gateway: Setup) -> None:
    client = gateway.client()
    assert client.chat("acme/helper").status == 200  # only dep-1 runs the agent
    assert_openai_error(client.chat("acme/llama-8b"), 404, "model_ambiguous")


def _events(body: bytes) -> list[bytes]:
    return [line[6:] for line in body.split(b"\n") if line.startswith(b"data: ")]


def test_a_stream_is_passed_through_and_metered_before_its_end(gateway: Setup) -> None:
    reply = gateway.client().chat("dep-2", "stream it", stream=True, max_tokens=7)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    data = _events(reply.body)
    assert data[-1] == b"[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all("usage" not in c for c in chunks), "the usage chunk was not asked for"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    # The gateway enforces max_tokens with its own count (the estimate here, with its slack),
    # and bills no more than max_tokens nor than that count of what it delivered.
    assert 0 < ESTIMATE.text(text) <= 7 * ESTIMATE_SLACK
    event = spooled(gateway.paths)[reply.headers["x-request-id"]]
    assert 0 < event["data"]["output_tokens"] <= min(7, ESTIMATE.text(text))
    assert event["data"]["tokens_source"] in ("upstream", "estimate")


def test_a_stream_shows_usage_when_the_caller_asks(gateway: Setup) -> None:
    reply = gateway.client().chat(
        "dep-2", "x", stream=True, max_tokens=3, stream_options={"include_usage": True}
    )
    chunks = [json.loads(d) for d in _events(reply.body)[:-1]]
    assert chunks[-1]["choices"] == []
    assert all("usage" not in c for c in chunks[:-1])
    # What the caller is shown is what it was billed.
    event = spooled(gateway.paths)[reply.headers["x-request-id"]]["data"]
    assert chunks[-1]["usage"]["prompt_tokens"] == event["input_tokens"]
    assert chunks[-1]["usage"]["completion_tokens"] == event["output_tokens"] <= 3


def test_completions_and_embeddings(gateway: Setup) -> None:
    client = gateway.client()
    text = client.request("POST", "/v1/completions", {"model": "dep-2", "prompt": [1, 2, 3]})
    assert text.status == 200
    assert text.json()["choices"][0]["text"]
    vectors = client.request("POST", "/v1/embeddings", {"model": "dep-2", "input": ["a", "b"]})
    assert vectors.status == 200
    assert len(vectors.json()["data"]) == 2
    event = spooled(gateway.paths)[vectors.headers["x-request-id"]]
    assert event["data"]["output_tokens"] == 0


HOSTILE: list[tuple[str, dict[str, Any], int, str | None]] = [
    ("no key", {"key": ""}, 401, "missing_api_key"),
    ("wrong key", {"key": "fmk_0123456789ab_" + "A" * 43}, 401, "invalid_api_key"),
    ("not a key", {"key": "hello"}, 401, "invalid_api_key"),
    ("malformed JSON", {"raw": b'{"model": "dep-1", "messages": ['}, 400, "invalid_json"),
    ("not UTF-8", {"raw": b'{"model": "\xff"}'}, 400, "invalid_json"),
    ("nested too deep", {"raw": b"[" * 100_000 + b"]" * 100_000}, 400, None),
    ("an array", {"body": [1, 2]}, 400, "invalid_value"),
    ("model a number", {"body": {"model": 5, "messages": [{"role": "u"}]}}, 400, "invalid_value"),
    ("messages a string", {"body": {"model": "dep-1", "messages": "hi"}}, 400, "invalid_value"),
    ("no messages", {"body": {"model": "dep-1", "messages": []}}, 400, "invalid_value"),
    (
        "stream a string",
        {"body": {"model": "dep-1", "messages": [{"role": "u"}], "stream": "yes"}},
        400,
        "invalid_value",
    ),
    (
        "unknown deployment",
        {"body": {"model": "dep-9", "messages": [{"role": "u"}]}},
        404,
        "model_not_found",
    ),
    (
        "someone else's",
        {"body": {"model": "dep-other", "messages": [{"role": "u"}]}},
        404,
        "model_not_found",
    ),
    (
        "CRLF in the model",
        {"body": {"model": "dep-1\r\nX-Injected: 1", "messages": [{"role": "u"}]}},
        404,
        "model_not_found",
    ),
    ("huge body", {"raw": b'{"model": "' + b"x" * (5 << 20) + b'"}'}, 413, "request_too_large"),
    (
        "not JSON",
        {"raw": b"model=dep-1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        415,
        "unsupported_media_type",
    ),
]


@pytest.mark.parametrize(("what", "how", "status", "code"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_gets_a_clean_4xx_in_openais_shape(
    gateway: Setup, what: str, how: dict[str, Any], status: int, code: str | None
) -> None:
    client = gateway.client()
    reply = client.request(
        "POST",
        "/v1/chat/completions",
        how.get("body"),
        raw=how.get("raw"),
        headers=how.get("headers"),
        key=how.get("key"),
    )
    assert_openai_error(reply, status, code)
    assert "x-injected" not in reply.headers
    # Nothing refused before it reached a deployment is metered.
    assert spooled(gateway.paths) == {}


def test_wrong_method_and_unknown_url(gateway: Setup) -> None:
    client = gateway.client()
    wrong = client.request("GET", "/v1/chat/completions")
    assert_openai_error(wrong, 405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST"
    assert_openai_error(client.request("POST", "/v2/whatever", {}), 404, "unknown_url")


def _raw_http(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-A: a\rInjected: 1\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Content-Length: 9\r\n\r\n{}",
        b"GARBAGE\r\n\r\n",
    ],
    ids=["bare CR in a header", "NUL in a header", "two lengths", "not HTTP"],
)
def test_malformed_http_is_refused_in_openais_shape(gateway: Setup, request_bytes: bytes) -> None:
    response = _raw_http(gateway.url, request_bytes)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), response
    assert b"injected" not in head.lower()
    assert set(json.loads(body)["error"]) == {"message", "type", "param", "code"}


def test_rate_limit_and_quota(gateway: Setup) -> None:
    slow, _ = create_key(gateway.paths.keys, "acme", rate_per_second=0.01, burst=2)
    small, _ = create_key(gateway.paths.keys, "acme", requests_per_day=1)
    time.sleep(0.6)  # the gateway looks at the keys file twice a second
    client = Client(gateway.url, slow)
    assert [client.chat("dep-1").status for _ in range(2)] == [200, 200]
    limited = client.chat("dep-1")
    assert_openai_error(limited, 429, "rate_limit_exceeded")
    assert int(limited.headers["retry-after"]) >= 1
    client = Client(gateway.url, small)
    assert client.chat("dep-1").status == 200
    assert_openai_error(client.chat("dep-1"), 429, "insufficient_quota")


def test_a_revoked_key_is_refused(gateway: Setup) -> None:
    key, record = create_key(gateway.paths.keys, "acme")
    time.sleep(0.6)
    client = Client(gateway.url, key)
    assert client.request("GET", "/v1/models").status == 200
    revoke_key(gateway.paths.keys, record.id)
    time.sleep(0.6)
    assert_openai_error(client.request("GET", "/v1/models"), 401, "invalid_api_key")


def test_openapi_document(gateway: Setup) -> None:
    reply = Client(gateway.url).request("GET", "/openapi.json")
    assert reply.status == 200
    doc = reply.json()
    assert doc["openapi"].startswith("3.1")
    assert {"/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings"} <= set(
        doc["paths"]
    )


@pytest.mark.parametrize("usage", ["inflated", "absent"])
def test_counts_the_upstream_cannot_back_are_replaced_by_the_gateways(
    tmp_path: Path, usage: str
) -> None:
    state = StatePaths(tmp_path / "state")
    with ServerThread(StandIn(usage)) as upstream:  # type: ignore[arg-type]
        save_routes(
            state.routes, [Route(deployment="d", endpoint=upstream.url, account="a", model=MODEL)]
        )
        key, _ = create_key(state.keys, "a")
        with ServerThread(build_gateway(GatewayConfig(state, source="gateway/t"))) as gw:
            text = "one two three four five six seven eight nine ten"
            reply = Client(gw.url, key).chat("d", text, max_tokens=20)
            assert reply.status == 200
    event = spooled(state)[reply.headers["x-request-id"]]["data"]
    assert event["tokens_source"] == "estimate"
    assert event["input_tokens"] == ESTIMATE.text(text) + ESTIMATE.chat_overhead(1)
    content = reply.json()["choices"][0]["message"]["content"]
    assert 0 < event["output_tokens"] <= ESTIMATE.text(content)
    if usage == "inflated":
        # The caller is shown what it was billed, never the deployment's claim.
        shown = reply.json()["usage"]
        assert (shown["prompt_tokens"], shown["completion_tokens"]) == (
            event["input_tokens"],
            event["output_tokens"],
        )


def test_an_unreachable_deployment_is_a_502_metered_as_an_error(tmp_path: Path) -> None:
    state = StatePaths(tmp_path / "state")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"  # bound, never listening
        save_routes(state.routes, [Route(deployment="d", endpoint=dead, account="a", model=MODEL)])
        key, _ = create_key(state.keys, "a")
        with ServerThread(build_gateway(GatewayConfig(state, source="gateway/t"))) as gw:
            reply = Client(gw.url, key).chat("d")
    assert_openai_error(reply, 502, "upstream_unavailable")
    (event,) = spooled(state).values()
    assert event["data"]["outcome"] == "error"


def test_no_call_is_served_when_it_cannot_be_metered(gateway: Setup) -> None:
    shutil.rmtree(gateway.paths.spool)
    gateway.paths.spool.write_bytes(b"")  # the spool folder is now a file: nothing can be written
    reply = gateway.client().chat("dep-1")
    assert_openai_error(reply, 503, "metering_unavailable")
    gateway.paths.spool.unlink()
    gateway.paths.spool.mkdir()


class _Stalling:
    """A deployment that reads a request and then sends `first` (maybe nothing) and nothing
    more, keeping the connection open: for the gateway's timeouts."""

    def __init__(self, first: bytes) -> None:
        self.first = first
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            conn.recv(65536)
            if self.first:
                conn.sendall(self.first)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def _gateway_before(tmp_path: Path, upstream: str) -> tuple[StatePaths, str]:
    state = StatePaths(tmp_path / "state")
    save_routes(state.routes, [Route(deployment="d", endpoint=upstream, account="a", model=MODEL)])
    key, _ = create_key(state.keys, "a")
    return state, key


def test_a_deployment_that_never_answers_is_a_504_metered_as_an_error(tmp_path: Path) -> None:
    silent = _Stalling(b"")
    try:
        state, key = _gateway_before(tmp_path, silent.url)
        config = GatewayConfig(state, source="gateway/t", response_timeout=0.5)
        with ServerThread(build_gateway(config)) as gw:
            began = time.monotonic()
            reply = Client(gw.url, key).chat("d")
            waited = time.monotonic() - began
    finally:
        silent.close()
    assert_openai_error(reply, 504, "upstream_timeout")
    assert 0.4 < waited < 5
    (event,) = spooled(state).values()
    assert event["data"]["outcome"] == "error"


def test_a_stream_that_stalls_is_cut_and_billed_for_what_it_delivered(
    tmp_path: Path,
) -> None:
    chunk = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
    stalling = _Stalling(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(chunk), chunk)
    )
    try:
        state, key = _gateway_before(tmp_path, stalling.url)
        config = GatewayConfig(state, source="gateway/t", stream_idle_timeout=0.5)
        with ServerThread(build_gateway(config)) as gw:
            reply = Client(gw.url, key).chat("d", stream=True)
    finally:
        stalling.close()
    assert reply.status == 200
    data = _events(reply.body)
    assert json.loads(data[0])["choices"][0]["delta"]["content"] == "hi"
    assert data[-1] == b"[DONE]"
    (event,) = spooled(state).values()
    assert event["data"]["outcome"] == "ok"
    assert event["data"]["cut"] == "idle"
    assert event["data"]["output_tokens"] == ESTIMATE.text("hi")
