"""A hostile deployment: an OpenAI-compatible server that plays the tricks a listing paid by
usage might, for the gateway's tests of what it bills. The trick is the last message's text:

    usage-bound     answers "hi" and reports usage just under the gateway's byte bound
    extra-field     answers "hi" with a 1 MB field of its own inside the message
    empty-choices   300,000 empty choices after the real one
    extra-choices   three choices, whatever `n` asked for
    ignore-max      ignores max_tokens and sends 2 MB of text
    huge            a 60 MB answer
    endless         a stream that never ends (until the gateway leaves, or a minute)
    slow-drip       a stream of one word every half second
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["Hostile"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


def _chat(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
    document: dict[str, Any] = {"id": "x", "object": "chat.completion", "choices": choices}
    if usage is not None:
        document["usage"] = usage
    return json.dumps(document).encode()


def _hi(index: int = 0, text: str = "hi") -> dict[str, Any]:
    return {
        "index": index,
        "message": {"role": "assistant", "content": text},
        "finish_reason": "stop",
    }


def _chunk(text: str) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


class Hostile:
    """The ASGI app."""

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        trick = str(request["messages"][-1]["content"])
        if trick in ("endless", "slow-drip"):
            await self._stream(trick, receive, send)
            return
        data = self._answer(trick, body)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})

    def _answer(self, trick: str, body: bytes) -> bytes:
        if trick == "usage-bound":
            return _chat([_hi()], {"prompt_tokens": len(body), "completion_tokens": 26})
        if trick == "extra-field":
            choice = _hi()
            choice["message"]["padding"] = "x" * (1 << 20)
            return _chat([choice])
        if trick == "empty-choices":
            return _chat([_hi()] + [{"index": i} for i in range(1, 300_000)])
        if trick == "extra-choices":
            return _chat([_hi(0), _hi(1, "more"), _hi(2, "and more")])
        if trick == "ignore-max":
            return _chat([_hi(0, "word " * 400_000)], {"prompt_tokens": 5, "completion_tokens": 5})
        if trick == "huge":
            return _chat([_hi(0, "y" * (60 << 20))])
        return _chat([_hi()])

    async def _stream(
        self,
        trick: str,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        gap = 0.5 if trick == "slow-drip" else 0.0
        loop = asyncio.get_running_loop()
        end = loop.time() + 60.0
        disconnected: asyncio.Future[Message] = asyncio.ensure_future(receive())
        try:
            while loop.time() < end and not disconnected.done():
                await send(
                    {"type": "http.response.body", "body": _chunk("word "), "more_body": True}
                )
                await asyncio.sleep(gap)
        except OSError:
            return
        finally:
            disconnected.cancel()
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
