"""A real local HTTP server of generated weight files, which tests make play by the rules or
not; it counts the requests and bytes it answers."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from formarket.schemas.listing import WeightFile

__all__ = ["Files", "Plan", "fetches", "serving"]


@dataclass
class Plan:
    """How the server answers one path."""

    body: bytes
    ranges: bool = True  # honours Range requests
    cut_after: list[int] = field(default_factory=list)  # break off after N bytes, once each
    extra: bytes = b""  # sent past the body, unannounced
    announce: int | None = None  # a Content-Length other than the body's (-1: none)
    redirect: str | None = None
    status: int = 200


class Files:
    """A local HTTP server of generated files; counts what it sends."""

    def __init__(self) -> None:
        self.plans: dict[str, Plan] = {}
        self.sent = 0
        self.requests: list[tuple[str, str | None]] = []
        files = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                files.requests.append((self.path, self.headers.get("Range")))
                plan = files.plans.get(self.path)
                if plan is None:
                    self.send_error(404)
                    return
                if plan.redirect is not None:
                    self.send_response(302)
                    self.send_header("Location", plan.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if plan.status != 200:
                    self.send_error(plan.status)
                    return
                start = 0
                asked = self.headers.get("Range")
                if asked and plan.ranges:
                    start = int(asked.removeprefix("bytes=").rstrip("-"))
                    if start >= len(plan.body):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header(
                        "Content-Range", f"bytes {start}-{len(plan.body) - 1}/{len(plan.body)}"
                    )
                else:
                    self.send_response(200)
                body = plan.body[start:] + plan.extra
                length = plan.announce if plan.announce is not None else len(body) - len(plan.extra)
                if length >= 0:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                if plan.cut_after:
                    body = body[: plan.cut_after.pop(0)]
                    # Counted before they are written: a client that has read them all may
                    # look at the count before this thread gets to it after writing.
                    files.sent += len(body)
                    self.wfile.write(body)
                    self.close_connection = True
                    return
                files.sent += len(body)
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def serve(self, path: str, plan: Plan) -> WeightFile:
        self.plans[path] = plan
        return WeightFile(
            url=self.url + path,
            sha256=hashlib.sha256(plan.body).hexdigest(),
            size_bytes=len(plan.body),
        )


@contextmanager
def serving() -> Iterator[Files]:
    """A server of generated files on 127.0.0.1, shut when done."""
    server = Files()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def fetches(server: Files, path: str) -> int:
    """How many times `path` was asked for."""
    return sum(asked == path for asked, _range in server.requests)
