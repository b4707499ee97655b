"""Running the gateway: its parts wired together, served by uvicorn.

uvicorn runs the server on uvloop (the listening socket, signals, the lifespan, a graceful
shutdown). The gateway speaks HTTP through its own protocol (`formarket.gateway.protocol`:
llhttp parses, as in uvicorn's, without ASGI's cost per call); any other ASGI app, such as the
stand-in deployment, through uvicorn's httptools protocol. Either refuses malformed HTTP (bad
request lines, header injection through bare CR or LF) before the app sees a byte.
`ServerThread` runs the gateway or an ASGI app in a thread, for the demo and the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from formarket.accounts.credit import CreditStore
from formarket.accounts.database import database_url, open_database
from formarket.accounts.included import IncludedStore
from formarket.accounts.pseudonym import load_pseudonyms
from formarket.accounts.store import AccountStore
from formarket.accounts.watch import watch
from formarket.atomicfile import write_atomically
from formarket.gateway.account_keys import AccountKeys
from formarket.gateway.app import Gateway
from formarket.gateway.config import GatewayConfig
from formarket.gateway.credit import Credit
from formarket.gateway.included import IncludedUsage
from formarket.gateway.keys import KeyStore, load_keys
from formarket.gateway.limits import Limits
from formarket.gateway.meter import Meter
from formarket.gateway.openapi import openapi_document
from formarket.gateway.protocol import uvicorn_protocol
from formarket.gateway.routes import FileRouteTable
from formarket.gateway.tokenizer import counter_for_route
from formarket.gateway.tokens import ESTIMATE
from formarket.gateway.upstream import UpstreamPool
from formarket.gateway.wake import Activity, Waker, WakeRequests
from formarket.gateway.watch import WatchedFile
from formarket.gateway.wire import error_body
from formarket.usage.spool import SpoolWriter

__all__ = ["ServerThread", "bind", "build_gateway", "run_app", "serve"]

_log = logging.getLogger("formarket.gateway")
_QUOTA_SAVE_SECONDS = 2.0
# How often the last calls are published for the farm's idle stops: far below any idle_after.
_ACTIVITY_SAVE_SECONDS = 2.0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one (read it from getsockname())."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def build_gateway(config: GatewayConfig) -> Gateway:
    """The gateway and everything it needs, from its configuration; its lifespan starts and
    stops the background work (syncing and sealing the spool, saving quotas)."""
    paths = config.state
    paths.root.mkdir(parents=True, exist_ok=True)
    writer = SpoolWriter(
        paths.spool,
        segment_bytes=config.segment_bytes,
        segment_seconds=config.segment_seconds,
    )
    meter = Meter(writer, config.source, fsync_interval=config.fsync_interval)
    pool = UpstreamPool(
        connect_timeout=config.connect_timeout,
        response_timeout=config.response_timeout,
        idle_timeout=config.stream_idle_timeout,
    )
    allowance = Limits()
    with contextlib.suppress(FileNotFoundError):
        allowance.load(paths.quota.read_bytes())
    operator_keys: WatchedFile[KeyStore] = WatchedFile(paths.keys, load_keys, KeyStore({}))
    engine = open_database(config.database_url or database_url(paths.root))
    keys = AccountKeys(
        operator_keys.get, AccountStore(engine), watch(engine), rate=config.account_key_rate
    )
    credit = Credit(CreditStore(engine), config.source)
    included = IncludedUsage(IncludedStore(engine), config.source)
    routes = FileRouteTable(paths.routes)
    activity = Activity(paths.root, config.source)
    tasks: list[asyncio.Task[None]] = []

    async def save_quota() -> None:
        while True:
            await asyncio.sleep(_QUOTA_SAVE_SECONDS)
            if allowance.dirty:
                await asyncio.to_thread(
                    write_atomically, paths.quota, allowance.dump(), durable=False
                )

    async def save_activity() -> None:
        while True:
            await asyncio.sleep(_ACTIVITY_SAVE_SECONDS)
            await asyncio.to_thread(activity.publish)

    async def startup() -> None:
        meter.start()
        loop = asyncio.get_running_loop()
        tasks.append(loop.create_task(save_quota()))
        tasks.append(loop.create_task(save_activity()))
        tasks.append(loop.create_task(credit.run()))
        tasks.append(loop.create_task(included.run()))

    async def shutdown() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await meter.stop()
        write_atomically(paths.quota, allowance.dump(), durable=False)
        activity.publish()
        await asyncio.to_thread(credit.close)
        await asyncio.to_thread(included.close)
        pool.close()
        keys.close()
        engine.dispose()

    return Gateway(
        keys=keys.get,
        routes=routes,
        pseudonyms=load_pseudonyms(paths.root),
        meter=meter,
        pool=pool,
        openapi=openapi_document(),
        limits=config.limits,
        allowance=allowance,
        on_startup=startup,
        on_shutdown=shutdown,
        counters=lambda route: counter_for_route(route, paths.root) or ESTIMATE,
        waker=Waker(WakeRequests(paths.root), routes.fresh, max_wait=config.wake_timeout),
        activity=activity,
        credit=credit,
        included=included,
    )


class _Coalesced:
    """A transport whose writes within one turn of the event loop leave as one: uvicorn writes
    a response's head and body separately, and on loopback each write is a system call and a
    wake-up of the reader, a good part of what a forwarded call costs."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            # The first write waits for a second one (a body after its head) until the end of
            # this turn of the loop at the latest.
            self._pending.append(data)
            self._loop.call_soon(self._flush)
            return
        self._pending.append(data)
        self._flush()

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Protocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol for ASGI apps, writing each response in one piece, and
    refusing malformed HTTP (which never reaches the app) in OpenAI's error shape too, so that
    a client sees one shape for every refusal."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, _Coalesced(transport, self.loop)))

    def send_400_response(self, msg: str) -> None:
        body = error_body(msg, "invalid_request_error", None, "malformed_http")
        self.transport.write(
            b"".join(
                (
                    STATUS_LINE[400],
                    b"content-type: application/json\r\n",
                    b"content-length: " + str(len(body)).encode() + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                )
            )
        )
        self.transport.close()


class _Lifespan:
    """The ASGI app uvicorn runs for the gateway: its lifespan only (its calls go through
    `protocol.HttpProtocol` straight to `Gateway.handle`)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            raise RuntimeError("the gateway is served by its own HTTP protocol, not by ASGI")
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.gateway.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.gateway.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _uvicorn_config(app: Any, *, log_level: str = "warning") -> uvicorn.Config:
    """How uvicorn serves `app`: the gateway through its own protocol, an ASGI app through
    uvicorn's."""
    if isinstance(app, Gateway):
        limits = app.limits
        app, http = (
            _Lifespan(app),
            uvicorn_protocol(
                app.handle,
                header_timeout=limits.header_timeout,
                body_timeout=limits.body_timeout,
                max_connections=limits.max_connections,
            ),
        )
    else:
        http = _Protocol
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=http,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        server_header=False,
        proxy_headers=False,  # the gateway trusts no X-Forwarded-For from its callers
        date_header=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
    )


def run_app(app: Any, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve the gateway or an ASGI app in this thread until SIGINT or SIGTERM; `announce`
    is told where."""
    sock = bind(host, port)
    server = uvicorn.Server(_uvicorn_config(app))
    announce(f"http://{host}:{sock.getsockname()[1]}")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def serve(config: GatewayConfig, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve the gateway until SIGINT or SIGTERM; `announce` is told where it listens."""
    run_app(build_gateway(config), host, port, announce)


class ServerThread:
    """The gateway or an ASGI app served by uvicorn in a thread of this process, on
    `host`:`port` (0: any free port); `url` says where once `start` returns."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sock = bind(host, port)
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(_uvicorn_config(app))
        self._thread = threading.Thread(target=self._run, name=f"server {self.url}", daemon=True)

    def _run(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
