"""The gateway's door to deployments: HTTP/1.1 POSTs over pooled keep-alive connections.

Why not httpx or aiohttp: on the gateway's own benchmark (a call forwarded to a deployment on
loopback), httpx's connection pool falls to a few hundred calls per second under 16 concurrent
callers, and aiohttp's client costs about twice the CPU of this one per call; the gateway's
throughput is bounded by exactly that cost. The parsing is not ours: responses are read by
httptools (llhttp, Node's HTTP parser, the one uvicorn uses for requests), which also undoes
chunked transfer coding. What is here is the small rest: a pool of connections per endpoint,
one request at a time on each, timeouts, and flow control for streams (reading from the
deployment pauses while the caller is slower than it).

    UpstreamError      the deployment could not be reached, broke the protocol, or timed out
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = ["Endpoint", "UpstreamError", "UpstreamPool", "UpstreamResponse"]

_HIGH_WATER = 1 << 20  # pause reading from the deployment past this much unread body
_LOW_WATER = 1 << 18


class UpstreamError(Exception):
    """A call to a deployment failed; `timeout` says whether it was too slow, `overran`
    whether the call outlasted the whole duration it was given, `oversized` whether its
    answer grew past the size it was allowed."""

    def __init__(
        self,
        message: str,
        *,
        timeout: bool = False,
        overran: bool = False,
        oversized: bool = False,
    ) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.overran = overran
        self.oversized = oversized


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a deployment's OpenAI-compatible server listens."""

    scheme: str
    host: str
    port: int
    base: str  # path prefix, no trailing slash

    @staticmethod
    def parse(url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return Endpoint(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def host_header(self) -> bytes:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (host if self.port == default else f"{host}:{self.port}").encode("idna")


class _Connection(asyncio.Protocol):
    """One connection and the response being read on it (httptools' callbacks fill it)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        # Kept: asking asyncio for the running loop costs a system call (getpid) each time.
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.requests = 0
        # Timeouts: one timer per connection, moved on only when it fires, rather than a timer
        # made and cancelled for every wait (twice per call). `deadline` is when the wait in
        # progress times out (loop time; 0: no wait in progress).
        self.deadline = 0.0
        self._awaited: asyncio.Future[None] | None = None
        self._expired = False
        self._alarm: asyncio.TimerHandle | None = None
        self._alarm_at = 0.0
        self._reset()

    def _reset(self) -> None:
        self.head: asyncio.Future[None] = self.loop.create_future()
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.done = False
        self.keep_alive = False
        self.received = False
        self.error: UpstreamError | None = None
        self.waiter: asyncio.Future[None] | None = None

    def begin(self) -> None:
        self._reset()
        self.requests += 1

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without deriving from it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"the deployment broke HTTP: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        if not self.done:
            self._fail(UpstreamError("the deployment closed the connection mid-response"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.done = True
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    # timeouts

    async def wait(self, future: asyncio.Future[None], timeout: float) -> None:
        """Await `future`; TimeoutError (and `future` cancelled) after `timeout` seconds."""
        self.deadline = deadline = self.loop.time() + timeout
        if self._alarm is None or deadline < self._alarm_at:
            self._arm(deadline)
        self._awaited = future
        try:
            await future
        except asyncio.CancelledError:
            if self._expired:
                self._expired = False
                raise TimeoutError from None
            raise
        finally:
            self.deadline = 0.0
            self._awaited = None

    def _arm(self, at: float) -> None:
        if self._alarm is not None:
            self._alarm.cancel()
        self._alarm_at = at
        self._alarm = self.loop.call_at(at, self._ring)

    def _disarm(self) -> None:
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None

    def _ring(self) -> None:
        self._alarm = None
        if not self.deadline:
            return  # no wait in progress: the next one arms the timer again
        if self.loop.time() < self.deadline:
            self._arm(self.deadline)
        elif self._awaited is not None and not self._awaited.done():
            self._expired = True
            self._awaited.cancel()

    # the reader's side

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        self.error = error
        if not self.head.done():
            self.head.set_exception(error)
        self._wake()

    async def next_chunk(self, timeout: float, deadline: float = 0.0) -> bytes | None:
        """The next piece of the body; None at its end. `deadline` (loop time; 0: none)
        bounds the whole response, however steadily it arrives."""
        if deadline and self.loop.time() >= deadline:
            raise UpstreamError("the call outlasted its duration limit", overran=True)
        while not self.chunks:
            if self.done:
                return None
            if self.error is not None:
                raise self.error
            self.waiter = self.loop.create_future()
            wait = timeout
            if deadline:
                wait = min(timeout, max(0.0, deadline - self.loop.time()))
            try:
                await self.wait(self.waiter, wait)
            except TimeoutError as exc:
                if wait < timeout:
                    raise UpstreamError(
                        "the call outlasted its duration limit", overran=True
                    ) from exc
                raise UpstreamError(
                    f"the deployment sent nothing for {timeout:g}s", timeout=True
                ) from exc
            finally:
                self.waiter = None
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered < _LOW_WATER and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return chunk

    def close(self) -> None:
        self.closed = True
        self._disarm()
        if self.transport is not None:
            self.transport.close()


class UpstreamResponse:
    """A deployment's response: status and headers now, the body as it arrives. Read it to
    the end or `close` it; either gives the connection back."""

    def __init__(self, pool: UpstreamPool, key: Endpoint, conn: _Connection) -> None:
        self._pool = pool
        self._key = key
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers
        self._finished = False
        self.deadline = 0.0  # loop time by which the whole body must have come (0: none)

    def limit(self, seconds: float) -> None:
        """Bound the rest of the response to `seconds` from now: reading past it raises
        UpstreamError with `overran` set. No timer of its own: the connection's serves."""
        self.deadline = self._conn.loop.time() + seconds

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while True:
                chunk = await self._conn.next_chunk(self._pool.idle_timeout, self.deadline)
                if chunk is None:
                    break
                yield chunk
        finally:
            self.close()

    async def read(self, limit: int) -> bytes:
        """The whole body; UpstreamError past `limit` bytes."""
        parts = []
        size = 0
        conn = self._conn
        try:
            while True:
                # Whatever has arrived at once, rather than a wait per piece.
                while conn.chunks:
                    chunk = conn.chunks.popleft()
                    conn.buffered -= len(chunk)
                    size += len(chunk)
                    if size > limit:
                        raise UpstreamError(
                            f"the deployment's response is larger than {limit} bytes",
                            oversized=True,
                        )
                    parts.append(chunk)
                if conn.paused and conn.transport is not None:
                    conn.paused = False
                    conn.transport.resume_reading()
                more = await conn.next_chunk(self._pool.idle_timeout, self.deadline)
                if more is None:
                    return b"".join(parts)
                conn.chunks.appendleft(more)
                conn.buffered += len(more)
        finally:
            self.close()

    def close(self) -> None:
        if self._finished:
            return
        self._finished = True
        conn = self._conn
        if conn.done and conn.keep_alive and not conn.closed and conn.error is None:
            self._pool._release(self._key, conn)
        else:
            conn.close()


class UpstreamPool:
    """Keep-alive connections to deployments, `max_idle` kept per endpoint."""

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        response_timeout: float = 600.0,
        idle_timeout: float = 120.0,
        max_idle: int = 256,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self._idle: dict[Endpoint, list[_Connection]] = {}
        self._heads: dict[tuple[Endpoint, str], bytes] = {}
        self._tls: ssl.SSLContext | None = None

    def _release(self, key: Endpoint, conn: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < self.max_idle:
            idle.append(conn)
        else:
            conn.close()

    async def _connect(self, endpoint: Endpoint) -> _Connection:
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if endpoint.scheme == "https":
            tls = self._tls = self._tls or ssl.create_default_context()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Connection, endpoint.host, endpoint.port, ssl=tls),
                self.connect_timeout,
            )
        except TimeoutError as exc:
            raise UpstreamError(
                f"could not connect to the deployment in {self.connect_timeout:g}s", timeout=True
            ) from exc
        except OSError as exc:
            raise UpstreamError(f"could not connect to the deployment: {exc}") from exc
        return conn

    def _idle_connection(self, endpoint: Endpoint) -> _Connection | None:
        idle = self._idle.get(endpoint)
        while idle:
            conn = idle.pop()
            transport = conn.transport
            if not conn.closed and transport is not None and not transport.is_closing():
                return conn
        return None

    def _head(self, endpoint: Endpoint, path: str) -> bytes:
        """A request's head up to its length, made once per endpoint and path."""
        head = self._heads.get((endpoint, path))
        if head is None:
            head = b"".join(
                (
                    b"POST ",
                    (endpoint.base + path).encode(),
                    b" HTTP/1.1\r\nHost: ",
                    endpoint.host_header,
                    b"\r\nContent-Type: application/json\r\nAccept: application/json,"
                    b" text/event-stream\r\nContent-Length: ",
                )
            )
            if len(self._heads) < 4096:
                self._heads[(endpoint, path)] = head
        return head

    async def post(
        self, endpoint: Endpoint, path: str, body: bytes, call: bytes = b""
    ) -> UpstreamResponse:
        """POST a JSON body to `path` under the endpoint; the response once its head arrived.
        `call` is the call's event id, sent as `X-Formarket-Call` (an agent passes it on as
        `X-Formarket-Parent` when it calls its model)."""
        if call:
            request = b"%s%d\r\nX-Formarket-Call: %s\r\n\r\n%s" % (
                self._head(endpoint, path),
                len(body),
                call,
                body,
            )
        else:
            request = b"%s%d\r\n\r\n%s" % (self._head(endpoint, path), len(body), body)
        conn = self._idle_connection(endpoint)
        # A kept-alive connection the deployment closed meanwhile fails before any byte of a
        # response: the request was never read, so sending it again on a new one is safe.
        for attempt in (0, 1):
            if conn is None:
                conn = await self._connect(endpoint)
            conn.begin()
            assert conn.transport is not None
            conn.transport.write(request)
            try:
                await conn.wait(conn.head, self.response_timeout)
            except TimeoutError as exc:
                conn.close()
                raise UpstreamError(
                    f"the deployment did not answer in {self.response_timeout:g}s", timeout=True
                ) from exc
            except UpstreamError:
                conn.close()
                if attempt == 0 and not conn.received and conn.requests > 1:
                    conn = None
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            return UpstreamResponse(self, endpoint, conn)
        raise AssertionError("unreachable")

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
