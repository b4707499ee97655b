"""A stand-in deployment: a small, deterministic server speaking OpenAI's API.

It stands where a deployment's VM will (the demo, the tests, the benchmarks): a real server
over real HTTP, not a mock. Its answers are a function of the request alone: the reply's words
are drawn from the SHA-256 of the prompt, its token counts come from a simple word-and-
punctuation tokenizer, and streams are split one word per event. `usage` picks how it reports
usage: `honest` (its own counts), `absent` (none, as some servers do), or `inflated` (a
thousand times too many, as a developer paid by usage might be tempted to), for the gateway's
tests of what it believes.

Given a model's tokenizer (`--tokenizer tokenizer.json`), it answers as a model with that
tokenizer does: a reply holds at most `max_tokens` tokens of it (the words that fit), and its
`usage` counts by it. Without one, a reply is `max_tokens` words, which a real tokenizer may
count as more tokens than that: the gateway then cuts the reply, as it would a model's that
overran its limit.

    python -m formarket.standins.openai [--host 127.0.0.1] [--port 0] [--usage honest]
        [--tokenizer FILE]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import struct
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from formarket.gateway.server import run_app
from formarket.gateway.tokenizer import TokenizerCounter, load_counter

__all__ = ["StandIn", "main"]

Usage = Literal["honest", "absent", "inflated"]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "formarket",
    "meters",
    "every",
    "call",
    "and",
    "commits",
    "usage",
    "to",
    "git",
    "so",
    "royalties",
    "can",
    "be",
    "computed",
    "in",
    "the",
    "open",
    "by",
    "anyone",
    "who",
    "clones",
    "the",
    "repository",
    "and",
    "reads",
    "its",
    "history",
    "line",
    "by",
    "line",
]
_TOKEN = re.compile(r"\w+|[^\w\s]")
_MAX_WORDS = 256
_MAX_CHOICES = 8
# Replies kept by (seed, words) when a tokenizer cuts them: a benchmark repeats its requests,
# and cutting costs several counts.
_KEEP_REPLIES = 4096
_EMBEDDING_SIZE = 8
_decode = msgspec.json.decode
_encode = msgspec.json.encode


def _tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def _texts(value: object) -> list[str]:
    """Every string under `value` (message contents, content parts, prompts)."""
    out: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            stack.extend(v for k, v in item.items() if k not in ("role", "type"))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return out


def _token_ids(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return 1
    if isinstance(value, list):
        return sum(_token_ids(item) for item in value)
    return 0


def _words(seed: str, count: int) -> list[str]:
    digest = hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest()
    out: list[str] = []
    while len(out) < count:
        for byte in digest:
            out.append(_WORDS[byte % len(_WORDS)])
            if len(out) == count:
                break
        digest = hashlib.sha256(digest).digest()
    return out


def _int(value: object, default: int, low: int, high: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(low, min(high, value))
    return default


class StandIn:
    """The ASGI app of the stand-in deployment."""

    def __init__(
        self,
        usage: Usage = "honest",
        name: str = "standin",
        tokenizer: TokenizerCounter | None = None,
    ) -> None:
        self.usage = usage
        self.name = name
        self.calls = 0
        self.tokenizer = tokenizer
        self._replies: dict[tuple[str, int], list[str]] = {}

    def _tokens(self, text: str) -> int:
        return _tokens(text) if self.tokenizer is None else self.tokenizer.text(text)

    def _reply(self, seed: str, count: int) -> list[str]:
        """`count` words; with a tokenizer, the first `count` tokens of them, as a model
        stopped at its limit answers (the last word may be cut)."""
        if self.tokenizer is None:
            return _words(seed, count)
        known = self._replies.get((seed, count))
        if known is not None:
            return known
        tokens = self.tokenizer.text
        text = " ".join(_words(seed, count))
        if tokens(text) > count:
            text = text[: self.tokenizer.cut_hint(text, count)]
            while tokens(text) > count:
                text = text[:-1]
        if len(self._replies) >= _KEEP_REPLIES:
            self._replies.clear()
        reply = self._replies[(seed, count)] = text.split(" ")
        return reply

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if scope["method"] == "GET" and path == "/v1/models":
            body = {"object": "list", "data": [self._model()]}
            await _json(send, 200, _encode(body))
            return
        handler = {
            "/v1/chat/completions": self._chat,
            "/v1/completions": self._completion,
            "/v1/embeddings": self._embeddings,
        }.get(path)
        if handler is None or scope["method"] != "POST":
            await _error(send, 404, f"no route {scope['method']} {path}")
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        try:
            request = _decode(b"".join(chunks))
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            await _error(send, 400, "the body is not JSON")
            return
        if not isinstance(request, dict):
            await _error(send, 400, "the body is not a JSON object")
            return
        self.calls += 1
        await handler(request, send)

    def _model(self) -> dict[str, object]:
        return {"id": self.name, "object": "model", "created": 0, "owned_by": "formarket"}

    def _usage(self, prompt: int, completion: int | None) -> dict[str, int] | None:
        if self.usage == "absent":
            return None
        factor = 1000 if self.usage == "inflated" else 1
        usage = {"prompt_tokens": prompt * factor}
        if completion is not None:
            usage["completion_tokens"] = completion * factor
        usage["total_tokens"] = sum(usage.values())
        return usage

    async def _chat(self, request: dict[str, Any], send: Send) -> None:
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            await _error(send, 400, "messages must be a non-empty array")
            return
        texts = _texts(messages)
        template = 3 * len(messages) + 3  # OpenAI's own accounting
        if self.tokenizer is not None:
            template = self.tokenizer.chat_overhead(len(messages))
        prompt_tokens = sum(map(self._tokens, texts)) + template
        await self._answer(request, send, "\n".join(texts), prompt_tokens, chat=True)

    async def _completion(self, request: dict[str, Any], send: Send) -> None:
        prompt = request.get("prompt")
        texts = _texts(prompt)
        prompt_tokens = sum(map(self._tokens, texts)) + _token_ids(prompt)
        seed = "\n".join(texts) + str(prompt if not texts else "")
        await self._answer(request, send, seed, prompt_tokens, chat=False)

    async def _answer(
        self, request: dict[str, Any], send: Send, seed: str, prompt_tokens: int, *, chat: bool
    ) -> None:
        count = _int(request.get("max_tokens"), 16, 1, _MAX_WORDS)
        choices = _int(request.get("n"), 1, 1, _MAX_CHOICES)
        replies = [self._reply(f"{seed}\0{index}", count) for index in range(choices)]
        completion_tokens = sum(self._tokens(" ".join(words)) for words in replies)
        kind = "chat.completion" if chat else "text_completion"
        ident = "cmpl-" + hashlib.sha256(seed.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        model = request.get("model") if isinstance(request.get("model"), str) else self.name
        if request.get("stream") is True:
            await self._stream(request, send, replies, ident, model, prompt_tokens, chat=chat)
            return
        body: dict[str, object] = {
            "id": ident,
            "object": kind,
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": index,
                    **(
                        {"message": {"role": "assistant", "content": " ".join(words)}}
                        if chat
                        else {"text": " ".join(words)}
                    ),
                    "finish_reason": "length",
                }
                for index, words in enumerate(replies)
            ],
        }
        usage = self._usage(prompt_tokens, completion_tokens)
        if usage is not None:
            body["usage"] = usage
        await _json(send, 200, _encode(body))

    async def _stream(
        self,
        request: dict[str, Any],
        send: Send,
        replies: list[list[str]],
        ident: str,
        model: object,
        prompt_tokens: int,
        *,
        chat: bool,
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        kind = "chat.completion.chunk" if chat else "text_completion"

        def event(choices: list[dict[str, object]], **extra: object) -> bytes:
            chunk = {"id": ident, "object": kind, "created": 0, "model": model, "choices": choices}
            chunk.update(extra)
            return b"data: " + _encode(chunk) + b"\n\n"

        for index, words in enumerate(replies):
            if chat:
                first = {"index": index, "delta": {"role": "assistant"}, "finish_reason": None}
                await _more(send, event([first]))
            for position, word in enumerate(words):
                text = word if position == 0 else " " + word
                piece: dict[str, object] = {"index": index, "finish_reason": None}
                piece.update({"delta": {"content": text}} if chat else {"text": text})
                await _more(send, event([piece]))
            last: dict[str, object] = {"index": index, "finish_reason": "length"}
            last["delta" if chat else "text"] = {} if chat else ""
            await _more(send, event([last]))
        options = request.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            tokens = sum(self._tokens(" ".join(words)) for words in replies)
            usage = self._usage(prompt_tokens, tokens)
            await _more(send, event([], usage=usage))
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _embeddings(self, request: dict[str, Any], send: Send) -> None:
        raw = request.get("input")
        inputs = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
        data = []
        for index, item in enumerate(inputs):
            seed = hashlib.sha256(_encode(item)).digest()
            vector = [(byte - 128) / 128 for byte in seed[:_EMBEDDING_SIZE]]
            embedding: object = vector
            if request.get("encoding_format") == "base64":
                packed = struct.pack(f"<{len(vector)}f", *vector)
                embedding = base64.b64encode(packed).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        texts = _texts(raw)
        prompt_tokens = sum(map(_tokens, texts)) + _token_ids(raw)
        body: dict[str, object] = {
            "object": "list",
            "data": data,
            "model": request.get("model") if isinstance(request.get("model"), str) else self.name,
        }
        usage = self._usage(prompt_tokens, None)
        if usage is not None:
            body["usage"] = usage
        await _json(send, 200, _encode(body))


async def _json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _more(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def _error(send: Send, status: int, message: str) -> None:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }
    await _json(send, status, _encode(body))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m formarket.standins.openai")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--usage", choices=("honest", "absent", "inflated"), default="honest")
    parser.add_argument(
        "--tokenizer",
        type=Path,
        help="a model's tokenizer.json: answer within max_tokens tokens of it, and count by it",
    )
    parser.add_argument(
        "--template",
        default="3,3",
        help="PER_MESSAGE,PER_REPLY: tokens the chat template adds (default: 3,3)",
    )
    args = parser.parse_args(argv)
    counter = None
    if args.tokenizer is not None:
        per_message, per_reply = (int(part) for part in args.template.split(","))
        counter = load_counter(args.tokenizer.read_bytes(), per_message, per_reply)
    app = StandIn(args.usage, tokenizer=counter)
    run_app(app, args.host, args.port, lambda url: print(url, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
