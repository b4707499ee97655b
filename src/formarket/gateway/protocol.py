"""The gateway's side of its callers' connections: HTTP/1.1 parsed by httptools, each request
handed to the gateway as one `HttpExchange`, without ASGI.

uvicorn still runs the process (the listening socket, signals, the lifespan, the graceful
shutdown); only the protocol spoken on each connection is this one. uvicorn's own turns every
request into an ASGI scope, three message dicts, an event, a task, a coroutine round trip per
message and a check of every header the app answers with; on the gateway's benchmark, this
protocol in its place cut the instructions the gateway spends on a forwarded call by a fifth,
and the gateway's throughput is bounded by its CPU. Here a request is one object, a whole
answer is one write, and one task per connection serves its requests in turn.

Kept from uvicorn's protocol on purpose: llhttp (httptools) parses, so malformed HTTP is refused
before the gateway sees a byte (answered in OpenAI's error shape); one request at a time per
connection (pipelined ones wait, reading paused); at most 64 KiB of a body is read ahead of the
gateway, then reading pauses, and a stream waits while the caller reads slower than it is
written to; `Expect: 100-continue`; a keep-alive connection idle for `keep_alive` seconds is
closed; a graceful shutdown closes idle connections at once and busy ones after their answer.

Added against callers that hold connections open by dripping bytes: a request's head must
arrive within `header_timeout` seconds of its first byte, and its body within `body_timeout`
of its head, or the connection is answered 408 and closed; past `max_connections` open at once,
a new connection is answered 503 and closed.

The header names and values an answer carries are the gateway's own (never a caller's or a
deployment's bytes), so they are not checked here.

    ClientGone(ConnectionError)    the caller closed the connection before the exchange ended
"""

from __future__ import annotations

import asyncio
import collections
import http
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast
from urllib.parse import unquote

import httptools

from formarket.gateway.wire import error_body

__all__ = ["MAX_HEAD", "ClientGone", "HttpExchange", "HttpProtocol", "uvicorn_protocol"]

_log = logging.getLogger("formarket.gateway")
_HIGH_WATER = 1 << 16  # body bytes read ahead of the gateway before reading pauses
# A request's target and headers together; llhttp sets no bound of its own, and an endless
# head would otherwise grow in memory until the keep-alive timer ends it.
MAX_HEAD = 1 << 16

Headers = Sequence[tuple[bytes, bytes]]
Handler = Callable[["HttpExchange"], Coroutine[Any, Any, None]]


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


_STATUS = {status: _status_line(status) for status in range(100, 600)}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Request targets already parsed, and the methods callers send: the same few, call after call.
_PATHS: dict[bytes, str] = {}
_PATHS_KEPT = 1024
_METHODS = {m.encode(): m for m in ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH")}


class _HeadTooLarge(Exception):
    pass


class ClientGone(ConnectionError):
    """The caller closed the connection before the exchange ended."""


class HttpExchange:
    """One request and its answer. The request's method, path (percent-decoded) and headers
    (names in lower case) are known when the gateway gets it; the body is `read` as it arrives.
    The answer is either whole (`respond`) or a stream (`start`, `send`..., `finish`)."""

    __slots__ = (
        "_chunked",
        "_conn",
        "_continue",
        "_head",
        "_more",
        "_on_gone",
        "_parts",
        "_size",
        "_waiter",
        "complete",
        "gone",
        "headers",
        "keep_alive",
        "method",
        "path",
        "started",
    )

    def __init__(
        self,
        conn: HttpProtocol,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        expect_continue: bool,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.keep_alive = keep_alive
        self.started = False  # the answer has begun
        self.complete = False  # the answer has ended
        self.gone = False  # the caller left
        self._conn = conn
        self._continue = expect_continue
        self._parts: list[bytes] = []
        self._size = 0
        self._more = True  # more of the body is to come
        self._waiter: asyncio.Future[None] | None = None
        self._on_gone: Callable[[], None] | None = None
        self._chunked = False
        self._head = b""

    # --- the request, as the protocol receives it ------------------------------------------

    def _feed(self, data: bytes) -> None:
        if self.complete:
            return  # answered already: the rest of the body is read and dropped
        self._parts.append(data)
        self._size += len(data)
        if self._size > _HIGH_WATER:
            self._conn._pause_reading()
        self._wake()

    def _end(self) -> None:
        self._more = False
        self._wake()

    def _lost(self) -> None:
        self.gone = True
        self._wake()
        if self._on_gone is not None and not self.complete:
            callback, self._on_gone = self._on_gone, None
            callback()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the gateway's side ------------------------------------------------------------------

    async def read(self) -> tuple[bytes, bool]:
        """The body that arrived since the last read, and whether more is to come. Raises
        ClientGone when the caller left before sending all of it."""
        conn = self._conn
        while not self._parts and self._more:
            if self.gone:
                raise ClientGone("the caller closed the connection")
            if self._continue:
                self._continue = False
                conn.transport.write(_CONTINUE)
            conn._resume_reading()
            self._waiter = conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        parts = self._parts
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        if self._size > _HIGH_WATER:
            conn._resume_reading()
        self._size = 0
        return data, self._more

    def on_gone(self, callback: Callable[[], None]) -> None:
        """Call `callback` if the caller leaves before the answer ends (now, if it has)."""
        if self.gone:
            callback()
        else:
            self._on_gone = callback

    def respond(self, status: int, headers: Headers, body: bytes) -> None:
        """The whole answer: status, headers (Content-Length is added) and body, in one write."""
        parts = [_STATUS[status]]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"content-length: ", b"%d" % len(body), b"\r\n")
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if self.method != "HEAD":
            parts.append(body)
        self.started = True
        self._write(b"".join(parts))
        self._done()

    def start(self, status: int, headers: Headers) -> None:
        """Begin a streamed answer; its head leaves with the first piece."""
        parts = [_STATUS[status]]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if self.keep_alive:
            self._chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        else:
            parts.append(b"connection: close\r\n")  # the end of the body is the end of it
        parts.append(b"\r\n")
        self.started = True
        self._head = b"".join(parts)

    async def send(self, data: bytes) -> None:
        """A piece of a streamed answer; waits while the caller reads slower than this."""
        self._write(self._framed(data))
        conn = self._conn
        if conn._writable is not None and not self.gone:
            await conn._writable

    def finish(self, data: bytes = b"") -> None:
        """The last piece of a streamed answer."""
        last = self._framed(data)
        if self._chunked:
            last += b"0\r\n\r\n"
        self._write(last)
        self._done()

    def _framed(self, data: bytes) -> bytes:
        if self._chunked and data:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        if self._head:
            data, self._head = self._head + data, b""
        return data

    def _write(self, data: bytes) -> None:
        if data and not self.gone:
            transport = self._conn.transport
            if not transport.is_closing():
                transport.write(data)

    def _done(self) -> None:
        self.complete = True
        self._on_gone = None
        self._conn._answered(self)

    def _settle(self, failed: BaseException | None) -> None:
        """The gateway's handler of this exchange returned (or raised `failed`)."""
        if failed is not None:
            _log.error("the gateway failed on a call", exc_info=failed)
        if self.complete:
            return
        # Ended without answering in full: never leave the caller waiting.
        if self.started:
            self._conn.transport.close()
        else:
            body = error_body("internal error in the gateway", "server_error", None, None)
            self.respond(500, ((b"content-type", b"application/json"),), body)


class HttpProtocol(asyncio.Protocol):
    """One caller's connection. `connections` and `tasks` are the server's: it waits for them
    on a graceful shutdown (and cancels the tasks once it has waited long enough).

    One task per connection runs the handler on each exchange in turn, waiting for the next
    in between: a task made and retired per exchange costs twice as much as handing the next
    exchange to a waiting one (asyncio registers every task in a weak set, and copies the
    context for it)."""

    def __init__(
        self,
        handler: Handler,
        connections: set[Any],
        tasks: set[asyncio.Task[None]],
        keep_alive: float,
        loop: asyncio.AbstractEventLoop,
        header_timeout: float = 10.0,
        body_timeout: float = 30.0,
        max_connections: int = 10_000,
    ) -> None:
        self.handler = handler
        self.connections = connections
        self.tasks = tasks
        self.keep_alive = keep_alive
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.loop = loop
        self._head_began = 0.0  # when the head being read began (loop time)
        self._body_began = 0.0  # when the body being read began (0: none is)
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self.parser = httptools.HttpRequestParser(self)
        # As uvicorn's: bytes after a request that closes the connection are ignored rather
        # than refused, so that request is still answered.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.current: HttpExchange | None = None  # being answered
        self._receiving: HttpExchange | None = None  # whose body is being read
        self._waiting: collections.deque[HttpExchange] = collections.deque()  # pipelined
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._in_head = False  # between a request's first byte and the end of its headers
        self._expect_continue = False
        self._read_paused = False
        self._writable: asyncio.Future[None] | None = None  # set while writing is paused
        self._closing = False
        self._last = 0.0  # when the connection last did something
        self._idle_timer: asyncio.TimerHandle | None = None
        self._worker: asyncio.Task[None] | None = None
        self._next: HttpExchange | None = None  # begun while the worker was still busy
        self._wakeup: asyncio.Future[HttpExchange] | None = None  # the idle worker's

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without deriving from it.
        self.transport = cast(asyncio.Transport, transport)
        if len(self.connections) >= self.max_connections:
            self._refuse("the gateway has too many open connections", 503, "too_many_connections")
            return
        self.connections.add(self)
        self._last = self._head_began = self.loop.time()
        first = min(self.keep_alive, self.header_timeout)
        self._idle_timer = self.loop.call_at(self._last + first, self._idle_check)

    def data_received(self, data: bytes) -> None:
        self._last = self.loop.time()
        try:
            if self._in_head:
                # llhttp hands over a header only once it is whole: one that never ends
                # is counted here, as it arrives.
                self._count_head(len(data))
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol upgrades: the request is answered as plain HTTP, and then the
            # connection closed, as llhttp reads nothing after an upgrade.
            receiving = self._receiving
            if receiving is None or receiving.complete:
                self.transport.close()
            else:
                receiving.keep_alive = False
        except _HeadTooLarge as exc:
            self._refuse(str(exc), 431, "request_head_too_large")
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse(str(exc.__context__), 431, "request_head_too_large")
            else:
                self._refuse(f"malformed HTTP request: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        for exchange in (self.current, self._receiving):
            if exchange is not None and not exchange.complete:
                exchange._lost()
        self._waiting.clear()
        self.resume_writing()
        if self._wakeup is not None:
            self._wakeup.cancel()  # the worker ends

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # --- uvicorn's server asks -------------------------------------------------------------

    def shutdown(self) -> None:
        """Close when idle: now, or once the answer being written has ended."""
        self._closing = True
        if self.current is None:
            self.transport.close()
        else:
            self.current.keep_alive = False  # its answer says so, if it has not begun

    # --- httptools' callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._head_began = self.loop.time()
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._in_head = True
        self._expect_continue = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        # `_count_head`, inline: it runs for every header of every call.
        self._head_size += len(name) + len(value)
        if self._head_size > MAX_HEAD:
            raise _HeadTooLarge(f"the request head is larger than {MAX_HEAD} bytes")
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True
        self._headers.append((name, value))

    def _count_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > MAX_HEAD:
            # Raised through llhttp's callback: feed_data fails with it as the context.
            raise _HeadTooLarge(f"the request head is larger than {MAX_HEAD} bytes")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._body_began = self.loop.time()
        parser = self.parser
        url = self._url
        path = _PATHS.get(url)
        if path is None:
            path = httptools.parse_url(url).path.decode("ascii")
            if "%" in path:
                path = unquote(path)
            if len(_PATHS) >= _PATHS_KEPT:
                _PATHS.clear()
            _PATHS[url] = path
        method = parser.get_method()
        exchange = HttpExchange(
            self,
            _METHODS.get(method) or method.decode("ascii"),
            path,
            self._headers,
            parser.get_http_version() != "1.0" and parser.should_keep_alive(),
            self._expect_continue,
        )
        self._receiving = exchange
        if self.current is None:
            self._begin(exchange)
        else:
            self._waiting.append(exchange)
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        if self._receiving is not None:
            self._receiving._feed(body)

    def on_message_complete(self) -> None:
        self._body_began = 0.0
        if self._receiving is not None:
            self._receiving._end()

    # --- the exchanges -----------------------------------------------------------------------

    def _begin(self, exchange: HttpExchange) -> None:
        self.current = exchange
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set_result(exchange)
        elif self._worker is None or self._worker.done():
            self._worker = self.loop.create_task(self._work(exchange))
            self.tasks.add(self._worker)
            self._worker.add_done_callback(self.tasks.discard)
        else:
            self._next = exchange  # answered within the handler: the worker goes on to it

    async def _work(self, exchange: HttpExchange) -> None:
        while True:
            try:
                await self.handler(exchange)
            except asyncio.CancelledError:
                exchange._settle(None)  # cancelled mid-call (a shutdown that waited too long)
                raise
            except Exception as exc:
                exchange._settle(exc)
            else:
                exchange._settle(None)
            if self._next is not None:
                exchange, self._next = self._next, None
                continue
            if self.transport.is_closing():
                return
            self._wakeup = self.loop.create_future()
            try:
                exchange = await self._wakeup
            except asyncio.CancelledError:
                return

    def _answered(self, exchange: HttpExchange) -> None:
        self.current = None
        self._last = self.loop.time()
        if self._closing or not exchange.keep_alive or self.transport.is_closing():
            self.transport.close()
            return
        self._resume_reading()
        if self._waiting:
            self._begin(self._waiting.popleft())

    def _refuse(self, message: str, status: int = 400, code: str = "malformed_http") -> None:
        """Malformed HTTP: a 400 in OpenAI's shape (unless an answer has begun), then close."""
        current = self.current
        if current is None or not current.started:
            body = error_body(message, "invalid_request_error", None, code)
            self.transport.write(
                b"".join(
                    (
                        _STATUS[status],
                        b"content-type: application/json\r\ncontent-length: ",
                        b"%d" % len(body),
                        b"\r\nconnection: close\r\n\r\n",
                        body,
                    )
                )
            )
        self.transport.close()

    # --- flow control and idleness -------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and not self._waiting:
            self._read_paused = False
            self.transport.resume_reading()

    def _idle_check(self) -> None:
        # One timer per connection, moved on when it fires, rather than one per call.
        self._idle_timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        idle_until = self._last + self.keep_alive
        if self.current is None and now >= idle_until and not self._in_head:
            self.transport.close()
            return
        deadlines = [idle_until]
        # A head begun (or a connection opened) and not ended in time: a slow drip.
        if self._in_head or (self.current is None and self._receiving is None):
            head_until = self._head_began + self.header_timeout
            if now >= head_until:
                self._refuse("the request head took too long to arrive", 408, "request_timeout")
                return
            deadlines.append(head_until)
        if self._body_began:
            body_until = self._body_began + self.body_timeout
            if now >= body_until:
                self._refuse("the request body took too long to arrive", 408, "request_timeout")
                return
            deadlines.append(body_until)
        self._idle_timer = self.loop.call_at(max(min(deadlines), now + 0.05), self._idle_check)


def uvicorn_protocol(
    handler: Handler,
    *,
    header_timeout: float = 10.0,
    body_timeout: float = 30.0,
    max_connections: int = 10_000,
) -> type[asyncio.Protocol]:
    """The protocol class uvicorn's server makes for each connection, calling `handler`."""

    class Bound(HttpProtocol):
        def __init__(
            self,
            config: Any,
            server_state: Any,
            app_state: Any,
            _loop: asyncio.AbstractEventLoop | None = None,
        ) -> None:
            super().__init__(
                handler,
                server_state.connections,
                server_state.tasks,
                float(config.timeout_keep_alive),
                _loop or asyncio.get_event_loop(),
                header_timeout,
                body_timeout,
                max_connections,
            )

    return Bound
