"""The one place that makes HTTP clients: timeouts, formarket's User-Agent, redirects, limits.

    HTTPError(FormarketError)    a request was not answered: refused, timed out, broken off

Every HTTP call formarket makes as a client goes through a `Client` from here: the GitHub REST
client (`formarket.github`), the farm's health checks of a started deployment, the look into a
booted image (`builder.vm`) and the demo's calls through the gateway. Each client:

- has a timeout for the whole request and a shorter one for connecting, so a host that is down
  is noticed in seconds, not minutes;
- says who it is (`formarket/<version>`), as GitHub's API asks of every caller;
- never follows a redirect: the answer comes from the server that was asked, and a caller that
  must go elsewhere (a next page) checks where first;
- keeps a few connections alive, because each client makes one call at a time;
- takes a `transport`, so that tests pass a real one of their own (`httpx.MockTransport`, a
  WSGI app) rather than patching; without one it speaks HTTP over the network;
- turns httpx's errors into `HTTPError` where they enter (`raise ... from exc`): callers catch
  formarket's errors and never need to know which library sent the request. An answer with an
  error status is an answer, not an error: the caller reads its status.

The one exception is the gateway's own client to deployments (`gateway.upstream`, over
httptools). It forwards every metered call, asynchronously, and the gateway's throughput is
bounded by what each forwarded call costs: on the gateway's benchmark httpx's pool fell to a few
hundred calls per second under 16 concurrent callers, so that hot path keeps its own measured
connections (see that module).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import httpx  # noqa: TID251 - this module is the one place that makes HTTP clients

from formarket import __version__
from formarket.errors import FormarketError

__all__ = [
    "DEFAULT_TIMEOUT",
    "USER_AGENT",
    "Client",
    "HTTPError",
    "Response",
    "Streamed",
    "Transport",
]

USER_AGENT = f"formarket/{__version__}"
DEFAULT_TIMEOUT = 30.0
_CONNECT_TIMEOUT = 10.0
_LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=4, keepalive_expiry=30.0)

# What callers see of httpx: an answer, and the seam tests replace.
Response = httpx.Response
Transport = httpx.BaseTransport


class HTTPError(FormarketError):
    """A request went unanswered: the connection was refused, timed out or broke off."""


class Client:
    """An HTTP client with formarket's policy; a context manager that closes its connections."""

    def __init__(
        self,
        base_url: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: Transport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=base_url,
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            timeout=httpx.Timeout(timeout, connect=min(timeout, _CONNECT_TIMEOUT)),
            follow_redirects=False,
            limits=_LIMITS,
            transport=transport,
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request; its answer, whatever its status. HTTPError when none came."""
        try:
            return self._http.request(method, url, json=json, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise HTTPError(
                f"{method} {self._where(url)}: no answer within {self.timeout:g}s",
                hint="check that the server runs and is reachable from here",
            ) from exc
        except httpx.HTTPError as exc:
            raise HTTPError(
                f"{method} {self._where(url)}: {type(exc).__name__}: {exc}",
                hint="check the address and that the server runs",
            ) from exc

    def get(self, url: str, *, headers: Mapping[str, str] | None = None) -> Response:
        return self.request("GET", url, headers=headers)

    def post(
        self,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        return self.request("POST", url, json=json, content=content, headers=headers)

    @contextmanager
    def stream(
        self,
        url: str,
        *,
        method: str = "GET",
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[Streamed]:
        """Send a request (GET by default) and read its body piece by piece (a large
        download, or an answer that must be cut off), whatever its status; HTTPError when no
        answer came or the body broke off."""
        what = f"{method} {self._where(url)}"
        try:
            with self._http.stream(method, url, content=content, headers=headers) as response:
                yield Streamed(response, what, self.timeout)
        except httpx.TimeoutException as exc:
            raise HTTPError(
                f"{what}: no answer within {self.timeout:g}s",
                hint="check that the server runs and is reachable from here",
            ) from exc
        except httpx.HTTPError as exc:
            raise HTTPError(
                f"{what}: {type(exc).__name__}: {exc}",
                hint="check the address and that the server runs",
            ) from exc

    def _where(self, url: str) -> str:
        return self.base_url + url if url.startswith("/") else url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Streamed:
    """An answer whose body is read as it arrives."""

    def __init__(self, response: httpx.Response, what: str, timeout: float) -> None:
        self._response = response
        self._what = what
        self._timeout = timeout
        self.status_code = response.status_code
        self.headers: Mapping[str, str] = response.headers

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives, each piece as soon as it is read (so that what came
        before a break is not lost in a buffer); HTTPError when it stalls or breaks off."""
        try:
            yield from self._response.iter_bytes()
        except httpx.TimeoutException as exc:
            raise HTTPError(
                f"{self._what}: the body stalled for {self._timeout:g}s",
                hint="try again: a download resumes where it stopped",
            ) from exc
        except httpx.HTTPError as exc:
            raise HTTPError(
                f"{self._what}: the body broke off: {type(exc).__name__}: {exc}",
                hint="try again: a download resumes where it stopped",
            ) from exc
