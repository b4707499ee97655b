"""With a route that names its model's tokenizer, the gateway bills its own exact counts: on a
fixed corpus, chat, completions and embeddings count what the tokenizer's `encode` counts,
plus the chat template's declared overhead, whatever the upstream reports.

The gateway counts through one `Counter` interface (`formarket.gateway.tokens.counter_for`),
which reaches `formarket.gateway.tokenizer.counter_for_route` for a route that names a
tokenizer; these tests need that interface.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer

from formarket.gateway import tokenizer
from formarket.gateway.config import GatewayConfig, StatePaths
from formarket.gateway.keys import create_key
from formarket.gateway.routes import Route, RouteTokenizer, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from formarket.gateway.tokenizer import load_counter, tokenizer_path
from formarket.schemas.usage import ListingVersion
from formarket.standins.openai import StandIn
from formarket.usage.spool import parse_segment
from tests.gateway.conftest import Setup

ECHO = Path(__file__).parents[2] / "registry/models/tinyforge/echo-chat/tokenizer.json"
DATA = ECHO.read_bytes()
SHA = hashlib.sha256(DATA).hexdigest()
REFERENCE = Tokenizer.from_str(DATA.decode())
PER_MESSAGE, PER_REPLY = 4, 2

CORPUS = (
    "Hello, how are you today?",
    "",
    "Grüße aus Köln: naïve café, déjà vu.",
    "日本語のテキストを数えます。中文文本也一样。",
    "emoji 🙂👍🏽🚀 and ZWJ 👩‍👩‍👧",
    "The quick brown fox jumps over the lazy dog. " * 300,
)


def encoded(text: str) -> int:
    return len(REFERENCE.encode(text, add_special_tokens=False).ids)


@contextmanager
def _exact_gateway(tmp_path: Path, upstream: str) -> Iterator[Setup]:
    """A gateway whose route names echo-chat's tokenizer, in front of `upstream`."""
    state = StatePaths(tmp_path / "state")
    target = tokenizer_path(state.root, SHA)
    target.parent.mkdir(parents=True)
    target.write_bytes(DATA)
    save_routes(
        state.routes,
        [
            Route(
                deployment="dep-echo",
                endpoint=upstream,
                account="acme",
                model=ListingVersion(id="tinyforge/echo-chat", version="1.1.0"),
                tokenizer=RouteTokenizer(sha256=SHA, per_message=PER_MESSAGE, per_reply=PER_REPLY),
            )
        ],
    )
    key, _ = create_key(state.keys, "acme", rate_per_second=1000, burst=1000)
    app = build_gateway(GatewayConfig(state, source="gateway/test", segment_seconds=0.2))
    with ServerThread(app) as server:
        yield Setup(server.url, key, state, upstream)


@pytest.fixture
def exact(tmp_path: Path, upstream: str) -> Iterator[Setup]:
    with _exact_gateway(tmp_path, upstream) as setup:
        yield setup


def _event(setup: Setup, event_id: str) -> dict[str, Any]:
    for segment in sorted(setup.paths.spool.glob("*.seg")):
        for _, payload in parse_segment(segment.read_bytes()).events:
            event = json.loads(payload)
            if event["id"] == event_id:
                data: dict[str, Any] = event["data"]
                return data
    raise AssertionError(f"no event {event_id}")


def test_a_chat_is_billed_the_tokenizers_count_plus_the_template(exact: Setup) -> None:
    client = exact.client()
    for n in range(1, len(CORPUS) + 1):
        messages = [{"role": "user", "content": text} for text in CORPUS[:n]]
        reply = client.request(
            "POST", "/v1/chat/completions", {"model": "dep-echo", "messages": messages}
        )
        assert reply.status == 200, reply.body
        answer = reply.json()["choices"][0]["message"]["content"]
        event = _event(exact, reply.headers["x-request-id"])
        assert event["input_tokens"] == sum(encoded(t) for t in CORPUS[:n]) + (
            PER_MESSAGE * n + PER_REPLY
        )
        assert event["output_tokens"] == encoded(answer)
        assert event["tokens_source"] == f"sha256:{SHA}"


def test_completions_and_embeddings_are_billed_the_tokenizers_count(exact: Setup) -> None:
    client = exact.client()
    prompts = [t for t in CORPUS if t]
    text = client.request("POST", "/v1/completions", {"model": "dep-echo", "prompt": prompts})
    assert text.status == 200, text.body
    event = _event(exact, text.headers["x-request-id"])
    assert event["input_tokens"] == sum(encoded(p) for p in prompts)
    # Each choice is a piece of its own.
    assert event["output_tokens"] == sum(encoded(c["text"]) for c in text.json()["choices"])

    vectors = client.request("POST", "/v1/embeddings", {"model": "dep-echo", "input": list(CORPUS)})
    assert vectors.status == 200, vectors.body
    event = _event(exact, vectors.headers["x-request-id"])
    assert event["input_tokens"] == sum(encoded(t) for t in CORPUS)
    assert event["output_tokens"] == 0
    assert event["tokens_source"] == f"sha256:{SHA}"


def test_a_tokenizer_that_arrives_late_is_counted_with_once_it_is_there(
    tmp_path: Path, upstream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The farm may still be copying the file when the first call comes: that call is not
    # counted exactly (and says so), and the next, once the file is there, is.
    monkeypatch.setattr(tokenizer, "_RETRY_SECONDS", 0.0)
    state = StatePaths(tmp_path / "state")
    sha = hashlib.sha256(DATA + b" ").hexdigest()  # a digest no other test has loaded
    save_routes(
        state.routes,
        [
            Route(
                deployment="dep-echo",
                endpoint=upstream,
                account="acme",
                model=ListingVersion(id="tinyforge/echo-chat", version="1.1.0"),
                tokenizer=RouteTokenizer(sha256=sha, per_message=PER_MESSAGE, per_reply=PER_REPLY),
            )
        ],
    )
    key, _ = create_key(state.keys, "acme", rate_per_second=1000, burst=1000)
    app = build_gateway(GatewayConfig(state, source="gateway/test", segment_seconds=0.2))
    with ServerThread(app) as server:
        setup = Setup(server.url, key, state, upstream)
        client = setup.client()
        body = {"model": "dep-echo", "messages": [{"role": "user", "content": "hello"}]}
        first = client.request("POST", "/v1/chat/completions", body)
        # Without its tokenizer the call is not counted exactly (estimated, or the upstream's
        # counts believed where possible), and its event says so.
        assert _event(setup, first.headers["x-request-id"])["tokens_source"] in (
            "estimate",
            "upstream",
        )
        target = tokenizer_path(state.root, sha)
        target.parent.mkdir(parents=True)
        target.write_bytes(DATA + b" ")
        second = client.request("POST", "/v1/chat/completions", body)
        assert _event(setup, second.headers["x-request-id"])["tokens_source"] == f"sha256:{sha}"


def test_an_upstream_with_the_models_tokenizer_is_not_cut_and_agrees(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The stand-in answers as a model with this tokenizer does: within max_tokens of it, and
    # its usage counted by it. The gateway then passes the answer on whole and agrees.
    model = StandIn(tokenizer=load_counter(DATA, PER_MESSAGE, PER_REPLY))
    with ServerThread(model) as upstream, _exact_gateway(tmp_path, upstream.url) as setup:
        client = setup.client()
        for max_tokens in (1, 5, 16, 40):
            body = {
                "model": "dep-echo",
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": f"tell me {max_tokens} things"}],
            }
            reply = client.request("POST", "/v1/chat/completions", body)
            assert reply.status == 200, reply.body
            answer = reply.json()["choices"][0]["message"]["content"]
            assert 0 < encoded(answer) <= max_tokens
            event = _event(setup, reply.headers["x-request-id"])
            assert event["output_tokens"] == encoded(answer)
            assert event.get("cut") is None
            assert reply.json()["usage"]["completion_tokens"] == encoded(answer)
    assert "disagree" not in caplog.text
