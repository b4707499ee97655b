"""Serving a built site over HTTP on this machine, for a look before publishing and for the
browser tests. Python's own file server: the site is static, nothing else is needed."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from formarket.site.output import STATE

__all__ = ["SiteServer", "start_server"]


class _Handler(SimpleHTTPRequestHandler):
    log: Callable[[str], None] | None = None

    def send_head(self) -> Any:
        # The build's state folder is not part of the site.
        if self.path.split("?", 1)[0].lstrip("/").startswith(STATE):
            self.send_error(404)
            return None
        return super().send_head()

    def log_message(self, format: str, *args: Any) -> None:
        if self.log is not None:
            self.log(format % args)


class SiteServer:
    """A running server; `url` is where the site is, `close()` stops it."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.url = f"http://{host!s}:{port}/"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> SiteServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_server(
    directory: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    log: Callable[[str], None] | None = None,
) -> SiteServer:
    """Serve `directory` in a background thread; port 0 picks a free one."""
    handler = functools.partial(
        type("Handler", (_Handler,), {"log": staticmethod(log) if log else None}),
        directory=str(directory),
    )
    server = ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    return SiteServer(server, thread)
