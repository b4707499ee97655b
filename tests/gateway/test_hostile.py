"""A hostile deployment plays each trick a listing paid by usage might; the bill is never more
than the request allowed and the gateway delivered. Then the same as properties: of the
trimming, for any answer, and of the reservations, for any sequence of calls."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formarket.gateway.ceilings import GatewayLimits
from formarket.gateway.config import GatewayConfig, StatePaths
from formarket.gateway.keys import KeyRecord, create_key
from formarket.gateway.limits import Limits, Reservation
from formarket.gateway.routes import Route, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from formarket.gateway.tokens import (
    ESTIMATE,
    ESTIMATE_SLACK,
    Counter,
    Trimmer,
    measure_request,
    settle,
)
from formarket.standins.hostile import Hostile
from tests.gateway.conftest import MODEL
from tests.gateway.helpers import Client
from tests.gateway.test_http import _events, spooled

MAX_TOKENS = 5


def _delivered(reply_body: bytes, stream: bool) -> list[str]:
    """The generated text of each choice the caller received."""
    if stream:
        texts: dict[int, str] = {}
        for data in _events(reply_body):
            if data == b"[DONE]":
                continue
            for choice in json.loads(data).get("choices", []):
                delta = choice.get("delta") or {}
                texts[choice["index"]] = texts.get(choice["index"], "") + (
                    delta.get("content") or ""
                )
        return list(texts.values())
    return [c["message"].get("content") or "" for c in json.loads(reply_body)["choices"]]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("hostile")
    state = StatePaths(tmp / "state")
    with ServerThread(Hostile()) as upstream:  # type: ignore[arg-type]
        save_routes(
            state.routes, [Route(deployment="d", endpoint=upstream.url, account="a", model=MODEL)]
        )
        key, _ = create_key(state.keys, "a", tokens_per_day=2000)
        limits = GatewayLimits(max_duration=3.0)
        config = GatewayConfig(state, source="gateway/t", limits=limits, stream_idle_timeout=2.0)
        with ServerThread(build_gateway(config)) as gw:
            yield gw.url, key, state


@pytest.mark.parametrize(
    ("trick", "stream"),
    [
        ("usage-bound", False),
        ("extra-field", False),
        ("empty-choices", False),
        ("extra-choices", False),
        ("ignore-max", False),
        ("huge", False),
        ("endless", True),
        ("slow-drip", True),
    ],
)
def test_each_trick_is_billed_at_most_what_was_allowed_and_delivered(
    hostile: Any, trick: str, stream: bool
) -> None:
    url, key, state = hostile
    reply = Client(url, key, timeout=60).request(
        "POST",
        "/v1/chat/completions",
        {
            "model": "d",
            "messages": [{"role": "user", "content": trick}],
            "max_tokens": MAX_TOKENS,
            "stream": stream,
        },
    )
    assert reply.status == 200
    delivered = _delivered(reply.body, stream)
    assert len(delivered) <= 1  # n = 1
    event = spooled(state)[reply.headers["x-formarket-call"]]["data"]
    assert event["outcome"] == "ok"
    assert event["output_tokens"] <= MAX_TOKENS
    assert event["output_tokens"] <= sum(ESTIMATE.text(text) for text in delivered)
    prompt = ESTIMATE.text(trick) + ESTIMATE.chat_overhead(1)
    assert event["input_tokens"] <= len(json.dumps({"content": trick})) + 8 + 16
    if trick != "usage-bound":
        assert event["input_tokens"] <= prompt
    assert len(reply.body) < (2 << 20) if trick != "extra-field" else True


# --- properties -------------------------------------------------------------------------------

TEXT = st.text(max_size=60)
CHOICE = st.fixed_dictionaries(
    {"index": st.integers(-2, 6)},
    optional={
        "message": st.fixed_dictionaries(
            {},
            optional={
                "content": TEXT,
                "refusal": TEXT,
                "padding": TEXT,
                "tool_calls": st.lists(
                    st.fixed_dictionaries({"function": st.fixed_dictionaries({"arguments": TEXT})}),
                    max_size=2,
                ),
            },
        ),
        "text": TEXT,
    },
)


def _texts(choice: dict[str, Any], kind: str) -> str:
    if kind == "completion":
        return str(choice.get("text") or "")
    message = choice.get("message") or {}
    parts = [message.get("content") or "", message.get("refusal") or ""]
    parts += [c["function"]["arguments"] for c in message.get("tool_calls") or []]
    return "".join(parts)


class _Words:
    """An exact counter as a tokenizer would be: a token per word or other character, so a
    piece's count is not the sum of its parts' ("a" + "b" is one word, not two)."""

    method = "sha256:" + "0" * 64

    def text(self, text: str) -> int:
        return len(re.findall(r"\w+|[^\w\s]|\s", text))

    def chat_overhead(self, messages: int) -> int:
        return 4 * messages + 2

    def cut_hint(self, text: str, limit: int) -> int | None:
        return None  # the search alone: the hint is tried with a tokenizer elsewhere


WORDS: Counter = _Words()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(CHOICE, max_size=5), min_size=1, max_size=4),
    st.integers(1, 3),
    st.integers(1, 20),
    st.none() | st.integers(0, 40),
    st.sampled_from(["chat", "completion"]),
    st.sampled_from([ESTIMATE, WORDS]),
)
def test_billed_output_never_exceeds_the_bound_nor_what_was_delivered(
    chunks: list[list[dict[str, Any]]],
    n: int,
    max_tokens: int,
    budget: int | None,
    kind: str,
    counter: Counter,
) -> None:
    trimmer = Trimmer(counter, kind, n=n, max_tokens=max_tokens, budget=budget)  # type: ignore[arg-type]
    delivered: dict[int, str] = {}
    for choices in chunks:
        document: dict[str, Any] = {"choices": json.loads(json.dumps(choices))}
        trimmer.chunk(document)
        for choice in document["choices"]:
            assert 0 <= choice["index"] < n
            delivered[choice["index"]] = delivered.get(choice["index"], "") + _texts(choice, kind)
    billed = trimmer.output_tokens
    assert billed <= max_tokens * n
    assert billed <= sum(counter.text(text) for text in delivered.values())
    if budget is not None:
        assert billed <= budget
    slack = ESTIMATE_SLACK if counter is ESTIMATE else 1
    for text in delivered.values():
        assert counter.text(text) <= max_tokens * slack


def test_with_an_exact_counter_the_upstreams_usage_is_only_compared() -> None:
    request = {"messages": [{"role": "user", "content": "hello world"}]}
    measured = measure_request("chat", request, WORDS)
    assert measured.tokens == 3 + WORDS.chat_overhead(1)
    agreed = settle(WORDS, measured, 4, (measured.tokens, 4))
    assert (agreed.input_tokens, agreed.output_tokens, agreed.disagreed) == (9, 4, False)
    assert agreed.source == WORDS.method
    for claim in [(1, 1), (9000, 4000), (9, 5)]:
        told = settle(WORDS, measured, 4, claim)
        assert (told.input_tokens, told.output_tokens, told.disagreed) == (9, 4, True)


KEY = KeyRecord(
    id="k", account="a", sha256="", created="", tokens_per_day=500, usd_per_day=Decimal("0.01")
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 200), st.none() | st.integers(1, 300), st.floats(0, 1)),
        max_size=30,
    ),
    st.integers(0, 5),
    st.sampled_from([Decimal(0), Decimal("0.0005"), Decimal("0.003")]),
)
def test_a_key_is_never_billed_more_than_it_had_left(
    calls: list[tuple[int, int | None, float]], in_flight: int, price_call: Decimal
) -> None:
    limits = Limits()
    price_in, price_out = Decimal("0.00001"), Decimal("0.00003")
    open_calls: list[tuple[Reservation, float]] = []
    for need_in, want_out, share in calls:
        reservation = limits.reserve(
            KEY,
            0.0,
            need_in=need_in,
            want_in=need_in,
            want_out=want_out,
            price_in=price_in,
            price_out=price_out,
            price_call=price_call,
        )
        if isinstance(reservation, Reservation):
            open_calls.append((reservation, share))
        while len(open_calls) > in_flight:
            held, part = open_calls.pop(0)
            # Whatever the deployment does, the gateway bills at most what was reserved.
            billed_out = int((held.output_tokens or 0) * part)
            limits.settle(
                held, held.input_tokens, billed_out, price_in, price_out, True, price_call
            )
    for held, part in open_calls:
        limits.settle(
            held,
            held.input_tokens,
            int((held.output_tokens or 0) * part),
            price_in,
            price_out,
            True,
            price_call,
        )
    day = limits._day("k", 0)
    assert day.tokens <= 500
    assert day.usd <= Decimal("0.01")


def test_a_key_with_tokens_left_cuts_a_stream_at_them(tmp_path: Path) -> None:
    state = StatePaths(tmp_path / "state")
    with ServerThread(Hostile()) as upstream:  # type: ignore[arg-type]
        save_routes(
            state.routes, [Route(deployment="d", endpoint=upstream.url, account="a", model=MODEL)]
        )
        key, _ = create_key(state.keys, "a", tokens_per_day=40)
        with ServerThread(build_gateway(GatewayConfig(state, source="gateway/t"))) as gw:
            client = Client(gw.url, key, timeout=60)
            body = {
                "model": "d",
                "messages": [{"role": "user", "content": "endless"}],
                "stream": True,
            }
            first = client.request("POST", "/v1/chat/completions", body)
            second = client.request("POST", "/v1/chat/completions", body)
    assert first.status == 200
    events = spooled(state)
    billed = sum(e["data"]["input_tokens"] + e["data"]["output_tokens"] for e in events.values())
    assert billed <= 40
    cut = events[first.headers["x-formarket-call"]]["data"]
    assert cut["cut"] == "budget"
    assert second.status in (200, 429)


def test_a_key_with_money_left_is_never_billed_more(tmp_path: Path) -> None:
    state = StatePaths(tmp_path / "state")
    price = Decimal("0.001")
    with ServerThread(Hostile()) as upstream:  # type: ignore[arg-type]
        save_routes(
            state.routes,
            [
                Route(
                    deployment="d",
                    endpoint=upstream.url,
                    account="a",
                    model=MODEL,
                    input_price=price,
                    output_price=price,
                )
            ],
        )
        key, _ = create_key(state.keys, "a", usd_per_day=Decimal("0.05"))
        with ServerThread(build_gateway(GatewayConfig(state, source="gateway/t"))) as gw:
            client = Client(gw.url, key, timeout=60)
            replies = []
            for trick in ("endless", "ignore-max", "endless"):
                body = {
                    "model": "d",
                    "messages": [{"role": "user", "content": trick}],
                    "stream": trick == "endless",
                }
                replies.append(client.request("POST", "/v1/chat/completions", body))
    assert replies[0].status == 200
    spent = sum(
        (e["data"]["input_tokens"] + e["data"]["output_tokens"]) * price
        for e in spooled(state).values()
        if e["data"]["outcome"] == "ok"
    )
    assert 0 < spent <= Decimal("0.05")


@pytest.mark.parametrize(
    ("limits", "cut"),
    [
        (GatewayLimits(max_response=8192), "size"),
        (GatewayLimits(max_duration=1.0), "duration"),
    ],
)
def test_an_endless_stream_without_max_tokens_is_cut_and_billed_for_what_it_sent(
    tmp_path: Path, limits: GatewayLimits, cut: str
) -> None:
    state = StatePaths(tmp_path / "state")
    with ServerThread(Hostile()) as upstream:  # type: ignore[arg-type]
        save_routes(
            state.routes, [Route(deployment="d", endpoint=upstream.url, account="a", model=MODEL)]
        )
        key, _ = create_key(state.keys, "a")
        config = GatewayConfig(state, source="gateway/t", limits=limits)
        with ServerThread(build_gateway(config)) as gw:
            body = {
                "model": "d",
                "messages": [{"role": "user", "content": "endless"}],
                "stream": True,
            }
            started = time.monotonic()
            reply = Client(gw.url, key, timeout=60).request("POST", "/v1/chat/completions", body)
            took = time.monotonic() - started
    assert reply.status == 200
    assert took < 10
    (text,) = _delivered(reply.body, True)
    event = spooled(state)[reply.headers["x-formarket-call"]]["data"]
    assert event["cut"] == cut
    assert event["outcome"] == "ok"
    assert 0 < event["output_tokens"] <= ESTIMATE.text(text)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"index": st.sampled_from([0, 1])},
        optional={
            "message": st.fixed_dictionaries(
                {"content": TEXT},
                optional={"refusal": st.none() | TEXT, "role": st.just("assistant")},
            ),
            "delta": st.just({}),
        },
    ),
    st.integers(1, 20),
    st.none() | st.integers(0, 40),
    st.sampled_from([ESTIMATE, WORDS]),
)
def test_a_whole_answer_is_trimmed_as_a_stream_chunk_would_be(
    choice: dict[str, Any], max_tokens: int, budget: int | None, counter: Counter
) -> None:
    whole = Trimmer(counter, "chat", max_tokens=max_tokens, budget=budget)
    chunked = Trimmer(counter, "chat", max_tokens=max_tokens, budget=budget)
    answer: dict[str, Any] = {"choices": [json.loads(json.dumps(choice))]}
    chunk: dict[str, Any] = {"choices": [json.loads(json.dumps(choice))]}
    assert whole.response(answer) == chunked.chunk(chunk)
    assert answer == chunk
    assert whole.output_tokens == chunked.output_tokens
    assert whole.cut == chunked.cut


class _Programmable:
    """A deployment that answers whatever the test set last."""

    def __init__(self) -> None:
        self.answer = b"{}"

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": self.answer})


@pytest.fixture(scope="module")
def programmable(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("programmable")
    state = StatePaths(tmp / "state")
    upstream_app = _Programmable()
    with ServerThread(upstream_app) as upstream:  # type: ignore[arg-type]
        save_routes(
            state.routes, [Route(deployment="d", endpoint=upstream.url, account="a", model=MODEL)]
        )
        key, _ = create_key(state.keys, "a", rate_per_second=1e6, burst=10**6)
        with ServerThread(build_gateway(GatewayConfig(state, source="gateway/t"))) as gw:
            client = Client(gw.url, key, keep_alive=True)
            yield upstream_app, client, state
            client.close()


USAGE = st.none() | st.fixed_dictionaries(
    {"prompt_tokens": st.integers(0, 10**6), "completion_tokens": st.integers(0, 10**6)}
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(CHOICE, max_size=6),
    USAGE,
    st.integers(1, 3),
    st.integers(1, 12),
    st.sampled_from(["chat", "completion"]),
)
def test_for_any_answer_the_bill_is_within_the_request_and_what_was_delivered(
    programmable: Any,
    choices: list[dict[str, Any]],
    usage: dict[str, int] | None,
    n: int,
    max_tokens: int,
    kind: str,
) -> None:
    upstream_app, client, state = programmable
    answer: dict[str, Any] = {"id": "x", "choices": choices, "padding": "z" * 1000}
    if usage is not None:
        answer["usage"] = usage
    upstream_app.answer = json.dumps(answer).encode()
    if kind == "chat":
        body = {"model": "d", "messages": [{"role": "user", "content": "hi"}]}
        path = "/v1/chat/completions"
    else:
        body = {"model": "d", "prompt": "hi"}
        path = "/v1/completions"
    reply = client.request("POST", path, {**body, "n": n, "max_tokens": max_tokens})
    assert reply.status == 200
    delivered = reply.json()["choices"]
    assert len(delivered) <= n
    event = spooled(state)[reply.headers["x-formarket-call"]]["data"]
    billed = event["output_tokens"]
    assert billed <= max_tokens * n
    assert billed <= sum(ESTIMATE.text(_texts(choice, kind)) for choice in delivered)
    shown = reply.json().get("usage")
    if shown is not None:
        assert (shown["prompt_tokens"], shown["completion_tokens"]) == (
            event["input_tokens"],
            billed,
        )


def test_a_deployment_that_keeps_disagreeing_is_logged_once_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A deployment whose counts differ on every call must not cost every call a log line.
    gateway = build_gateway(GatewayConfig(StatePaths(tmp_path / "state")))
    now = [1000.0]
    gateway._clock = lambda: now[0]
    settled = settle(WORDS, measure_request("chat", {"messages": []}, WORDS), 4, (1, 1))
    with caplog.at_level(logging.WARNING, logger="formarket.gateway"):
        for second in range(130):
            now[0] = 1000.0 + second
            gateway._disagreed("dep-x", f"gw-{second}", (1, 1), settled)
        gateway._disagreed("dep-y", "gw-y", (1, 1), settled)
    lines = [r.getMessage() for r in caplog.records]
    assert len([line for line in lines if "dep-x" in line]) == 3  # at 0 s, 60 s and 120 s
    assert "59 more calls disagreed" in lines[1]
    assert any("dep-y" in line for line in lines)
