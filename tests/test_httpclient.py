"""The one HTTP client: formarket's User-Agent, no redirects followed, httpx's errors turned into
formarket's where they enter, against a real local server and an in-memory transport."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx  # noqa: TID251 - tests hand the client a transport of their own
import pytest

from formarket import __version__
from formarket.errors import FormarketError
from formarket.httpclient import USER_AGENT, Client, HTTPError


class _Handler(BaseHTTPRequestHandler):
    """`/slow` answers after the client gave up; `/moved` redirects; the rest echo."""

    release = threading.Event()

    def do_GET(self) -> None:
        if self.path == "/slow":
            self.release.wait(10)
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = f"{self.path} {self.headers['User-Agent']}".encode()
        self.send_response(404 if self.path == "/missing" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.release.clear()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        _Handler.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_real_server_answers_with_formarkets_user_agent(server: str) -> None:
    with Client(server) as client:
        answer = client.get("/hello")
        missing = client.get("/missing")
        moved = client.get("/moved")
    assert answer.status_code == 200
    assert answer.text == f"/hello formarket/{__version__}"
    # An error status is an answer: the caller reads it.
    assert missing.status_code == 404
    # A redirect is not followed: the answer is the server's own.
    assert (moved.status_code, moved.headers["Location"]) == (302, "/elsewhere")


def test_a_refused_connection_is_a_formarket_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with Client(url, timeout=2) as client, pytest.raises(HTTPError) as caught:
        client.get("/health")
    assert isinstance(caught.value, FormarketError)
    assert caught.value.message.startswith(f"GET {url}/health: ConnectError")
    assert caught.value.hint
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_a_server_that_does_not_answer_in_time_is_a_formarket_error(server: str) -> None:
    with Client(server, timeout=0.3) as client, pytest.raises(HTTPError) as caught:
        client.get("/slow")
    assert "no answer within 0.3s" in caught.value.message
    assert isinstance(caught.value.__cause__, httpx.TimeoutException)


def test_a_transport_replaces_the_network() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/broken":
            raise httpx.RemoteProtocolError("the server hung up", request=request)
        return httpx.Response(201, json={"echo": request.content.decode()})

    transport = httpx.MockTransport(handler)
    with Client("https://api.example", headers={"X-Extra": "1"}, transport=transport) as client:
        answer = client.post("/things", json={"a": 1})
        with pytest.raises(HTTPError) as caught:
            client.get("/broken")
    assert (answer.status_code, answer.json()) == (201, {"echo": '{"a":1}'})
    assert seen[0].url == "https://api.example/things"
    assert seen[0].headers["User-Agent"] == USER_AGENT
    assert seen[0].headers["X-Extra"] == "1"
    assert "https://api.example/broken" in caught.value.message
    assert "the server hung up" in caught.value.message
