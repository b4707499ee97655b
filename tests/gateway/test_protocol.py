"""The gateway's HTTP/1.1 protocol on its own, over real sockets: what uvicorn's did for the
gateway and this one must keep doing (pipelining, flow control, Expect, keep-alive, HTTP/1.0,
chunked bodies both ways, a caller who leaves, a handler that fails)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from formarket.gateway.protocol import MAX_HEAD, ClientGone, HttpExchange, HttpProtocol

Handler = Callable[[HttpExchange], Coroutine[Any, Any, None]]
JSON = (b"content-type", b"application/json")


@dataclass
class Served:
    port: int
    loop: asyncio.AbstractEventLoop
    connections: set[Any] = field(default_factory=set)
    events: list[str] = field(default_factory=list)


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """Serve a handler through HttpProtocol on a loop in a thread of its own."""
    stops: list[Callable[[], None]] = []

    def start(handler: Handler, keep_alive: float = 30.0) -> Served:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        served = Served(0, loop)

        async def main() -> asyncio.Server:
            tasks: set[asyncio.Task[None]] = set()
            server = await loop.create_server(
                lambda: HttpProtocol(handler, served.connections, tasks, keep_alive, loop),
                "127.0.0.1",
                0,
            )
            served.port = server.sockets[0].getsockname()[1]
            return server

        def run() -> None:
            server = loop.run_until_complete(main())
            ready.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert ready.wait(10)

        def stop() -> None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

        stops.append(stop)
        return served

    yield start
    for stop in stops:
        stop()


async def echo(exchange: HttpExchange) -> None:
    """The request as JSON: method, path, headers and body (read in pieces)."""
    pieces = []
    while True:
        data, more = await exchange.read()
        pieces.append(data)
        if not more:
            break
    answer = {
        "method": exchange.method,
        "path": exchange.path,
        "headers": {k.decode(): v.decode() for k, v in exchange.headers},
        "body": b"".join(pieces).decode(),
        "pieces": len(pieces),
    }
    exchange.respond(200, (JSON,), json.dumps(answer).encode())


class Reader:
    """Answers read off a raw socket, one at a time (so pipelined ones stay apart)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._more():
                raise EOFError("the connection closed mid-answer")
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._more():
                raise EOFError("the connection closed mid-line")
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            if not self._more():
                raise EOFError("the connection closed before an answer")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status < 200:
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, self._take(int(headers["content-length"]))
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._line(), 16):
                body += self._take(size)
                assert self._take(2) == b"\r\n"
            assert self._line() == b""
            return status, headers, body
        while self._more():
            pass
        body, self.buffer = self.buffer, b""
        return status, headers, body

    def closed(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return not self._more()
        except TimeoutError:
            return False


def connect(served: Served) -> tuple[socket.socket, Reader]:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    return sock, Reader(sock)


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: t", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_pipelined_requests_are_answered_in_order(serve: Callable[..., Served]) -> None:
    served = serve(echo)
    sock, reader = connect(served)
    with sock:
        sock.sendall(b"".join(post(f"/n/{n}", b"x" * n) for n in range(1, 6)))
        for n in range(1, 6):
            status, _, body = reader.answer()
            assert status == 200
            assert json.loads(body)["path"] == f"/n/{n}"
            assert json.loads(body)["body"] == "x" * n


def test_the_path_is_percent_decoded_and_header_names_lowered(
    serve: Callable[..., Served],
) -> None:
    sock, reader = connect(serve(echo))
    with sock:
        sock.sendall(post("/v1/models/dep%2D1?x=1", b"", "X-Thing: Value"))
        answer = json.loads(reader.answer()[2])
    assert answer["path"] == "/v1/models/dep-1"
    assert answer["headers"]["x-thing"] == "Value"


def test_a_large_body_is_read_in_pieces_with_reading_paused_between(
    serve: Callable[..., Served],
) -> None:
    served = serve(echo)
    body = b"y" * (3 << 20)
    sock, reader = connect(served)
    with sock:
        sock.sendall(post("/big", body))
        status, _, answer = reader.answer()
    assert status == 200
    echoed = json.loads(answer)
    assert echoed["body"] == body.decode()
    assert echoed["pieces"] > 1


def test_a_chunked_request_body_and_expect_100_continue(serve: Callable[..., Served]) -> None:
    sock, reader = connect(serve(echo))
    with sock:
        sock.sendall(
            b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert reader.answer()[0] == 100
        sock.sendall(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        status, _, answer = reader.answer()
    assert status == 200
    assert json.loads(answer)["body"] == "hello world"


def test_http_1_0_gets_its_answer_and_the_connection_closes(
    serve: Callable[..., Served],
) -> None:
    sock, reader = connect(serve(echo))
    with sock:
        sock.sendall(b"POST /old HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
        status, headers, _ = reader.answer()
        assert status == 200
        assert headers["connection"] == "close"
        assert reader.closed()


def test_an_idle_keep_alive_connection_is_closed(serve: Callable[..., Served]) -> None:
    served = serve(echo, keep_alive=0.3)
    sock, reader = connect(served)
    with sock:
        sock.sendall(post("/a", b""))
        assert reader.answer()[0] == 200
        began = time.monotonic()
        assert reader.closed(timeout=5)
        assert 0.2 < time.monotonic() - began < 3


def test_a_stream_is_chunked_and_a_head_request_gets_no_body(
    serve: Callable[..., Served],
) -> None:
    async def stream(exchange: HttpExchange) -> None:
        exchange.start(200, ((b"content-type", b"text/event-stream"),))
        for n in range(3):
            await exchange.send(b"data: %d\n\n" % n)
        exchange.finish(b"data: [DONE]\n\n")

    async def head(exchange: HttpExchange) -> None:
        exchange.respond(200, (JSON,), b'{"some": "body"}')

    sock, reader = connect(serve(stream))
    with sock:
        sock.sendall(post("/s", b""))
        status, headers, body = reader.answer()
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
    sock, reader = connect(serve(head))
    with sock:
        sock.sendall(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n")
        reader.sock.settimeout(5)
        while b"\r\n\r\n" not in reader.buffer:
            assert reader._more()
        head_only, _, rest = reader.buffer.partition(b"\r\n\r\n")
    assert b"content-length: 16" in head_only
    assert rest == b""


def test_a_caller_who_leaves_is_noticed(serve: Callable[..., Served]) -> None:
    noticed = threading.Event()
    read_failed = threading.Event()

    async def waits(exchange: HttpExchange) -> None:
        if exchange.path == "/body":
            try:
                while (await exchange.read())[1]:
                    pass
            except ClientGone:
                read_failed.set()
            return
        exchange.start(200, ((b"content-type", b"text/event-stream"),))
        await exchange.send(b"data: 1\n\n")
        exchange.on_gone(noticed.set)
        await asyncio.sleep(30)

    served = serve(waits)
    sock, reader = connect(served)
    with sock:
        sock.sendall(post("/stream", b""))
        assert reader._more()
    assert noticed.wait(5)
    sock, _ = connect(served)
    with sock:
        sock.sendall(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        time.sleep(0.2)
    assert read_failed.wait(5)


def test_a_handler_that_fails_or_answers_nothing_gives_a_500(
    serve: Callable[..., Served],
) -> None:
    async def fails(exchange: HttpExchange) -> None:
        if exchange.path == "/raise":
            raise RuntimeError("boom")

    served = serve(fails)
    for path in ("/raise", "/nothing"):
        sock, reader = connect(served)
        with sock:
            sock.sendall(post(path, b""))
            status, _, body = reader.answer()
        assert status == 500
        assert set(json.loads(body)["error"]) == {"message", "type", "param", "code"}


def test_malformed_http_mid_body_is_refused_and_closed(serve: Callable[..., Served]) -> None:
    sock, reader = connect(serve(echo))
    with sock:
        sock.sendall(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        status, headers, body = reader.answer()
        assert status == 400
        assert headers["connection"] == "close"
        assert json.loads(body)["error"]["code"] == "malformed_http"
        assert reader.closed()


@pytest.mark.parametrize(
    "head",
    [
        b"GET /" + b"a" * (MAX_HEAD + 1) + b" HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\n" + b"X-Filler: yyyyyyyy\r\n" * (MAX_HEAD // 16 + 2),
        # Counted as it arrives, from the second piece: a little more than the limit.
        b"GET / HTTP/1.1\r\nX-Endless: " + b"z" * (MAX_HEAD + 8192),
    ],
    ids=["target", "headers", "one endless header"],
)
def test_an_endless_request_head_is_refused_and_closed(
    serve: Callable[..., Served], head: bytes
) -> None:
    sock, reader = connect(serve(echo))
    with sock:
        for start in range(0, len(head), 4096):  # in pieces, as a slow sender would
            try:
                sock.sendall(head[start : start + 4096])
            except (BrokenPipeError, ConnectionResetError):
                break  # refused already
            time.sleep(0.001)
        status, headers, body = reader.answer()
        assert status == 431
        assert headers["connection"] == "close"
        assert json.loads(body)["error"]["code"] == "request_head_too_large"
        assert reader.closed()


def test_a_request_that_closes_is_answered_despite_bytes_after_it(
    serve: Callable[..., Served],
) -> None:
    sock, reader = connect(serve(echo))
    with sock:
        sock.sendall(post("/last", b"{}", "Connection: close") + b"GET /more HTTP/1.1\r\n\r\n")
        status, headers, body = reader.answer()
        assert status == 200
        assert json.loads(body)["path"] == "/last"
        assert headers["connection"] == "close"
        assert reader.closed()


def test_a_shutdown_closes_idle_connections_now_and_busy_ones_after_their_answer(
    serve: Callable[..., Served],
) -> None:
    release = asyncio.Event()

    async def slow(exchange: HttpExchange) -> None:
        if exchange.path == "/slow":
            await release.wait()
        exchange.respond(200, (JSON,), b"{}")

    served = serve(slow)
    idle, idle_reader = connect(served)
    busy, busy_reader = connect(served)
    with idle, busy:
        idle.sendall(post("/quick", b""))
        assert idle_reader.answer()[0] == 200
        busy.sendall(post("/slow", b""))
        time.sleep(0.2)

        def shut() -> None:
            for connection in list(served.connections):
                connection.shutdown()

        served.loop.call_soon_threadsafe(shut)
        assert idle_reader.closed()
        served.loop.call_soon_threadsafe(release.set)
        status, headers, _ = busy_reader.answer()
        assert status == 200
        assert headers["connection"] == "close"
        assert busy_reader.closed()
