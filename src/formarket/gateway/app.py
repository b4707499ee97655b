"""The gateway: authenticate, limit, check, route, forward, meter.

    GET  /v1/models                  the deployments the caller may use
    GET  /v1/models/{id}             one of them
    POST /v1/chat/completions        forwarded to the deployment `model` names (streams too)
    POST /v1/completions             ditto
    POST /v1/embeddings              ditto
    GET  /openapi.json               the OpenAPI document of all of this
    GET  /health                     200 while the gateway can meter

Neither a framework nor ASGI: five fixed routes need no router, and every layer between the
socket and the forwarding costs CPU on every call, which is what bounds the gateway's
throughput. The gateway handles an `Exchange` (a request and its answer), which
`formarket.gateway.protocol` makes of each HTTP request. Every refusal is OpenAI's error shape
(`wire.ApiError`); an unexpected failure is a 500 in the same shape, logged, never a traceback
to the caller.

Metering: a call that reached a deployment is one usage event, written to the spool before
the caller has the whole answer (for a stream, before the final `[DONE]`), so a caller who got
an answer was metered even if the gateway dies right after. Refusals before forwarding (no key,
over a limit, malformed, unknown deployment) reach no deployment and are not metered.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

import msgspec

from formarket.accounts.pseudonym import Pseudonyms
from formarket.gateway.account_keys import Authenticator
from formarket.gateway.ceilings import DEFAULT_LIMITS, GatewayLimits
from formarket.gateway.credit import Credit, Hold, Short
from formarket.gateway.included import Beyond, IncludedHold, IncludedUsage
from formarket.gateway.keys import KeyRecord
from formarket.gateway.limits import Limits, Refusal, Reservation
from formarket.gateway.meter import Meter
from formarket.gateway.protocol import ClientGone
from formarket.gateway.routes import Route, Routes, RouteTable, resolve
from formarket.gateway.sse import SseSplitter, event_data
from formarket.gateway.tokens import (
    ESTIMATE,
    Counter,
    Kind,
    Measure,
    Settled,
    Trimmer,
    counter_for,
    embedding_inputs,
    measure_request,
    settle,
    trim_embeddings,
    upstream_usage,
)
from formarket.gateway.upstream import Endpoint, UpstreamError, UpstreamPool, UpstreamResponse
from formarket.gateway.wake import Activity, Waker
from formarket.gateway.wire import ENDPOINTS, ApiError, Request, error_body
from formarket.schemas.pricing import PLATFORM_CURRENCY
from formarket.schemas.usage import EVENT_ID_PATTERN
from formarket.usage.events import CallEvents, Cut, Outcome, Served
from formarket.usage.spool import SpoolError

__all__ = ["DEFAULT_OUTPUT_HOLD", "Exchange", "Gateway", "format_amount"]

Headers = Sequence[tuple[bytes, bytes]]

_log = logging.getLogger("formarket.gateway")
# How often, at most, a deployment whose counts keep disagreeing with ours is logged again.
_DISAGREEMENT_LOG_SECONDS = 60.0
_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode
_JSON = (b"content-type", b"application/json")
_BAD_JSON = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
_PASSED_4XX = frozenset({400, 404, 409, 413, 422, 429})
_KNOWN_KEYS = 10_000  # Authorization headers remembered as verified, at most
_KNOWN_NAMES = 10_000  # (account, scope, model name) remembered with their target, at most
_EVENT_ID = re.compile(EVENT_ID_PATTERN)
_ZERO = Decimal(0)
# What a call that sets no max_tokens holds of prepaid credit for its output, in tokens.
DEFAULT_OUTPUT_HOLD = 16_384


class _Prices(NamedTuple):
    """What a call costs in the platform's currency: per input token, per output token, per
    call. The route's, but for a subscriber's calls (formarket.gateway.included)."""

    input: Decimal
    output: Decimal
    request: Decimal

    @property
    def priced(self) -> bool:
        """Whether the call costs anything (a free call holds no credit)."""
        return self.input > 0 or self.output > 0 or self.request > 0


_FREE = _Prices(_ZERO, _ZERO, _ZERO)


@dataclass(frozen=True, slots=True)
class _Target:
    route: Route
    served: Served
    endpoint: Endpoint
    events: CallEvents
    counter: Counter
    prices: _Prices


class Exchange(Protocol):
    """One HTTP request and its answer, as the gateway needs them (`protocol.HttpExchange`
    is the real one): the method, the percent-decoded path, the headers (names in lower case),
    the body as it arrives, and an answer either whole or streamed."""

    method: str
    path: str
    headers: list[tuple[bytes, bytes]]
    started: bool

    async def read(self) -> tuple[bytes, bool]:
        """The body that arrived since the last read, and whether more is to come; raises
        `protocol.ClientGone` when the caller left first."""
        ...

    def respond(self, status: int, headers: Headers, body: bytes) -> None: ...

    def start(self, status: int, headers: Headers) -> None: ...

    async def send(self, data: bytes) -> None: ...

    def finish(self, data: bytes = b"") -> None: ...

    def on_gone(self, callback: Callable[[], None]) -> None:
        """Call `callback` if the caller leaves before the answer ends."""
        ...


class Gateway:
    """The gateway's logic. Its collaborators are passed in: where keys and routes come from,
    the meter, the pool of connections to deployments and the clocks."""

    def __init__(
        self,
        *,
        keys: Callable[[], Authenticator],
        routes: RouteTable,
        pseudonyms: Pseudonyms,
        meter: Meter,
        pool: UpstreamPool,
        openapi: bytes,
        limits: GatewayLimits = DEFAULT_LIMITS,
        allowance: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_startup: Callable[[], Awaitable[None]] | None = None,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
        counters: Callable[[Route], Counter] = counter_for,
        waker: Waker | None = None,
        activity: Activity | None = None,
        credit: Credit | None = None,
        included: IncludedUsage | None = None,
    ) -> None:
        self.keys = keys
        self.credit = credit
        self.included = included
        self.waker = waker
        self.activity = activity
        self.routes = routes
        # Routes name accounts as git does (by pseudonym); keys, by login.
        self.pseudonyms = pseudonyms
        self.meter = meter
        self.pool = pool
        self.limits = limits
        self.allowance = allowance if allowance is not None else Limits()
        self._openapi = openapi
        self._clock = clock
        self._wall = wall
        self._on_startup = on_startup
        self._on_shutdown = on_shutdown
        self._counters = counters
        # deployment -> (when its disagreement was last logged, disagreements since)
        self._disagreements: dict[str, tuple[float, int]] = {}
        self._snapshot: Routes | None = None
        self._targets: dict[str, _Target] = {}
        self._named: dict[tuple[str, tuple[str, ...] | None, str], _Target] = {}
        self._store: Authenticator | None = None
        self._store_now: Authenticator | None = None  # asked for in this turn of the loop
        self._known: dict[bytes, KeyRecord] = {}
        self._open: dict[str, int] = {}  # calls in progress, by key id

    async def handle(self, exchange: Exchange) -> None:
        """Answer one request."""
        try:
            forwarding = self._dispatch(exchange)
            if forwarding is not None:
                await forwarding
        except ApiError as err:
            if not exchange.started:
                exchange.respond(err.status, (_JSON, *err.headers), err.body())
        except Exception:
            _log.exception("internal error on %s %s", exchange.method, exchange.path)
            if not exchange.started:
                body = error_body("internal error in the gateway", "server_error", None, None)
                exchange.respond(500, (_JSON,), body)

    async def startup(self) -> None:
        if self._on_startup is not None:
            await self._on_startup()

    async def shutdown(self) -> None:
        if self._on_shutdown is not None:
            await self._on_shutdown()

    def _dispatch(self, exchange: Exchange) -> Coroutine[Any, Any, None] | None:
        """Answer a request at once, or return the forwarding of a call to a model for
        `handle` to await (one coroutine fewer on the way of every call)."""
        method = exchange.method
        path = exchange.path
        endpoint = ENDPOINTS.get(path)
        if endpoint is not None:
            _allow(method, "POST")
            return self._forward(exchange, path, *endpoint)
        if path == "/v1/models" or path.startswith("/v1/models/"):
            _allow(method, "GET")
            key = self._authenticate(exchange)
            self._models(
                exchange, key, path[len("/v1/models/") :] if path != "/v1/models" else None
            )
        elif path == "/openapi.json":
            _allow(method, "GET")
            exchange.respond(200, (_JSON,), self._openapi)
        elif path == "/health":
            _allow(method, "GET")
            if self.meter.error is not None:
                raise _metering_down(self.meter.error)
            exchange.respond(200, (_JSON,), b'{"status":"ok"}')
        else:
            raise ApiError(404, f"unknown request URL: {method} {path}", code="unknown_url")
        return None

    # --- who is calling ------------------------------------------------------------------

    def _authenticate(self, exchange: Exchange) -> KeyRecord:
        presented = b""
        for name, value in exchange.headers:
            if name == b"authorization":
                presented = value
                break
        if not presented:
            raise ApiError(
                401,
                "no API key: send `Authorization: Bearer <key>`"
                " (`formarket login` makes one for your account)",
                code="missing_api_key",
                headers=[(b"www-authenticate", b"Bearer")],
            )
        # Checking a key (its form, then the SHA-256 of its secret, or a database query for an
        # account's key) costs more than the rest of authenticating; a header already verified
        # by this very key check is believed again. The check is replaced, and starts afresh,
        # when a key may have stopped being valid (account_keys.AccountKeys says when).
        store = self._store_now
        if store is None:
            store = self._current_keys()
        record = self._known.get(presented)
        if record is not None:
            return record
        scheme, _, token = presented.decode("latin-1").partition(" ")
        record = store.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if record is None:
            raise ApiError(
                401,
                "invalid API key",
                code="invalid_api_key",
                headers=[(b"www-authenticate", b'Bearer error="invalid_token"')],
            )
        record = self._billed(record)
        if len(self._known) >= _KNOWN_KEYS:
            self._known.clear()
        self._known[presented] = record
        return record

    def _current_keys(self) -> Authenticator:
        """The key check, asked for once per turn of the event loop: whether a key may have
        stopped being valid costs a database read (SQLite's `PRAGMA data_version`), as much
        as the rest of authenticating, and the calls that arrived together in one turn cannot
        tell a revocation committed between them from one committed just after."""
        store = self.keys()
        if store is not self._store:
            self._store, self._known = store, {}
        self._store_now = store
        asyncio.get_running_loop().call_soon(self._turn_ended)
        return store

    def _turn_ended(self) -> None:
        self._store_now = None

    def _billed(self, record: KeyRecord) -> KeyRecord:
        """The key the farm makes for an agent's calls to its model (an operator's key,
        scoped to the model's deployment and named for the agent deployment's account by
        its pseudonym: formarket.farm.agentkeys) draws on that account's credit, as the
        account's own keys do. Looked up once per key (each login is hashed), not per call.
        An account the database does not know has no credit to draw on: such a key's calls
        go on as an operator's key's, unheld."""
        if record.account_id is not None or record.scope is None or self.credit is None:
            return record
        try:
            found = self.credit.store.accounts_named((record.account,), self.pseudonyms)
        except Exception as exc:
            _log.exception("the accounts database could not name the account of key %s", record.id)
            raise _credit_down() from exc
        account_id = found.get(record.account)
        if account_id is None:
            _log.info("key %s names an account the accounts database does not know", record.id)
            return record
        return msgspec.structs.replace(record, account_id=account_id)

    def _admit(self, key: KeyRecord) -> None:
        refusal = self.allowance.admit(key, self._clock(), self._wall())
        if refusal is not None:
            raise ApiError(
                429,
                refusal.message,
                type="insufficient_quota" if refusal.code == "insufficient_quota" else "requests",
                code=refusal.code,
                headers=[(b"retry-after", str(refusal.retry_after).encode())],
            )

    def _disagreed(
        self, deployment: str, event_id: str, reported: tuple[int, int] | None, settled: Settled
    ) -> None:
        """Log that a deployment's own counts differed from the gateway's: the first time, then
        at most once a minute per deployment with how many calls did since. A deployment that
        disagrees on every call would otherwise cost every call a log line (a third of the
        gateway's throughput here)."""
        now = self._clock()
        last, since = self._disagreements.get(deployment, (float("-inf"), 0))
        if now - last < _DISAGREEMENT_LOG_SECONDS:
            self._disagreements[deployment] = (last, since + 1)
            return
        self._disagreements[deployment] = (now, 0)
        _log.warning(
            "deployment %s reported %s tokens for call %s; counted (%d, %d)%s",
            deployment,
            reported,
            event_id,
            settled.input_tokens,
            settled.output_tokens,
            f" ({since} more calls disagreed since the last report)" if since else "",
        )

    def _target(self, key: KeyRecord, name: str) -> _Target:
        routes = self.routes.snapshot()
        if routes is not self._snapshot:
            self._snapshot, self._targets, self._named = routes, {}, {}
        # What a name means depends only on the routes, the key's account and its scope.
        asked = (key.account, key.scope, name)
        target = self._named.get(asked)
        if target is not None:
            return target
        found = resolve(routes, self.pseudonyms.names(key.account), name)
        if key.scope is not None:
            if isinstance(found, list):
                found = [dep for dep in found if dep in key.scope]
            elif found.deployment not in key.scope:
                found = []
        if isinstance(found, list):
            if found:
                raise ApiError(
                    404,
                    f"`{name}` is served by several of your deployments"
                    f" ({', '.join(found)}): name one of them",
                    param="model",
                    code="model_ambiguous",
                )
            raise ApiError(
                404,
                f"the model `{name}` does not exist or you do not have access to it",
                param="model",
                code="model_not_found",
            )
        target = self._targets.get(found.deployment)
        if target is None:
            served = found.served()
            target = _Target(
                found,
                served,
                Endpoint.parse(found.endpoint),
                CallEvents(self.meter.source, served),
                self._counters(found),
                _Prices(found.input_price, found.output_price, found.request_price),
            )
            # A route whose tokenizer could not be had yet (the farm may still be writing it)
            # is counted by the estimate for this call only, and looked for again on the next.
            if found.tokenizer is None or target.counter is not ESTIMATE:
                self._targets[found.deployment] = target
        if target is self._targets.get(found.deployment):
            if len(self._named) >= _KNOWN_NAMES:
                self._named.clear()
            self._named[asked] = target
        return target

    # --- GET /v1/models --------------------------------------------------------------------

    def _models(self, exchange: Exchange, key: KeyRecord, one: str | None) -> None:
        routes = self.routes.snapshot().owned_by(self.pseudonyms.names(key.account))
        if key.scope is not None:
            routes = tuple(route for route in routes if route.deployment in key.scope)
        if one is None:
            data = [_model(route) for route in sorted(routes, key=lambda r: r.deployment)]
            exchange.respond(200, (_JSON,), _encode({"object": "list", "data": data}))
            return
        for route in routes:
            if route.deployment == one:
                exchange.respond(200, (_JSON,), _encode(_model(route)))
                return
        raise ApiError(
            404,
            f"the model `{one}` does not exist or you do not have access to it",
            param="model",
            code="model_not_found",
        )

    # --- POST: forward and meter ---------------------------------------------------------

    async def _forward(
        self,
        exchange: Exchange,
        path: str,
        kind: Kind,
        request_type: type[Request],
    ) -> None:
        key = self._authenticate(exchange)
        self._admit(key)
        body = await self._read_body(exchange)
        request, document = _parse(body, request_type)
        target = self._target(key, request.model)
        if target.route.idle_since is not None:
            target = await self._woken(key, request.model, target)
        if self.meter.error is not None:
            raise _metering_down(self.meter.error)
        stream = bool(getattr(request, "stream", False))
        wants_usage = False
        if target.route.upstream_model is not None:
            document["model"] = target.route.upstream_model
        if stream:
            # Ask for the deployment's counts at the end of the stream; the caller sees
            # them only if it asked too.
            options = document.get("stream_options")
            wants_usage = isinstance(options, dict) and options.get("include_usage") is True
            document["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        route = target.route
        measured_in = measure_request(kind, document, target.counter)
        n = getattr(request, "n", 1)
        max_tokens = _max_tokens(request)
        # Checked before anything is reserved, so a refused call has nothing to hand back.
        open_calls = self._open.get(key.id, 0)
        if open_calls >= self.limits.max_calls_per_key:
            raise ApiError(
                429,
                f"this key has {open_calls} calls in progress, the most it may have at once",
                type="requests",
                code="too_many_calls",
                headers=[(b"retry-after", b"1")],
            )
        # Read before anything is held, so that a bad header has nothing to hand back.
        parent = _parent(exchange) if key.scope is not None else None
        want_in = measured_in.tokens if target.counter.method != "estimate" else measured_in.bound
        want_out = 0 if kind == "embedding" else (None if max_tokens is None else max_tokens * n)
        prices = target.prices
        included: IncludedHold | None = None
        if route.subscription and key.account_id is not None and self.included is not None:
            found = await self._included(key.account_id, route, want_in, want_out, kind)
            if isinstance(found, IncludedHold):
                included, prices = found, _FREE
            else:
                prices = _Prices(_ZERO, _ZERO, found)
        reservation: Reservation | Refusal | None = None
        hold: Hold | None = None
        try:
            reservation = self.allowance.reserve(
                key,
                self._wall(),
                need_in=measured_in.tokens,
                want_in=want_in,
                want_out=want_out,
                price_in=prices.input,
                price_out=prices.output,
                price_call=prices.request,
            )
            if isinstance(reservation, Refusal):
                raise ApiError(
                    429,
                    reservation.message,
                    type="insufficient_quota",
                    code=reservation.code,
                    headers=[(b"retry-after", str(reservation.retry_after).encode())],
                )
            budget = reservation.output_tokens if reservation is not None else None
            if included is not None and included.limit is not None and kind != "embedding":
                # The call is cut where the included tokens it holds end.
                room = included.limit - want_in
                budget = room if budget is None else min(budget, room)
            if key.account_id is not None and self.credit is not None and prices.priced:
                hold, budget = await self._hold(
                    key.account_id,
                    prices,
                    measured_in.tokens,
                    reservation.input_tokens if reservation is not None else measured_in.bound,
                    0 if kind == "embedding" else max_tokens * n if max_tokens else None,
                    budget,
                    kind,
                )
        except BaseException:
            if included is not None and self.included is not None:
                self.included.release(included)
            if isinstance(reservation, Reservation):
                self.allowance.settle(reservation, 0, 0, prices.input, prices.output, False)
            raise
        trimmer = Trimmer(target.counter, kind, n=n, max_tokens=max_tokens, budget=budget)
        call = _Call(
            self,
            key,
            target,
            kind,
            measured_in,
            self.meter.next_id(),
            trimmer,
            reservation,
            parent,
            prices,
        )
        call.hold = hold
        call.included = included
        if kind == "embedding":
            call.inputs = embedding_inputs(document)
        self._open[key.id] = open_calls + 1
        if self.activity is not None:
            self.activity.begin(route.deployment)
        try:
            try:
                response = await self.pool.post(
                    target.endpoint, path, _encode(document), call.event_id.encode()
                )
            except UpstreamError as exc:
                await call.record_failure("error")
                raise _upstream_failed(exc) from exc
            # The call's whole duration is bounded: past it reading stops (a stream is cut
            # where it is and billed for what it sent).
            response.limit(self.limits.max_duration)
            try:
                if (
                    stream
                    and response.status == 200
                    and (response.header(b"content-type") or b"").startswith(b"text/event-stream")
                ):
                    await self._stream(call, response, exchange, wants_usage)
                else:
                    await self._complete(call, response, exchange)
            finally:
                response.close()
        finally:
            call.release()
            if self.activity is not None:
                self.activity.end(route.deployment)
            left = self._open.get(key.id, 1) - 1
            if left > 0:
                self._open[key.id] = left
            else:
                self._open.pop(key.id, None)

    async def _included(
        self, account_id: int, route: Route, want_in: int, want_out: int | None, kind: Kind
    ) -> IncludedHold | Decimal:
        """A subscriber's call to the listing it subscribes to: a hold of its included usage
        (for its input and its bound on output, DEFAULT_OUTPUT_HOLD tokens when it sets
        none), or the price it is charged beyond it. Refused when the account has no
        subscription to the listing, and when the included usage is used up and the tier
        sells no more."""
        assert self.included is not None
        listing = route.priced_by
        out = want_out if want_out is not None else DEFAULT_OUTPUT_HOLD
        need = want_in + (0 if kind == "embedding" else 1)
        want = max(need, want_in + out)
        found: IncludedHold | Beyond | bool | None
        found = self.included.try_hold(account_id, listing, need, want)
        if found is True:
            try:
                found = await self.included.hold(account_id, listing, need, want)
            except Exception as exc:
                _log.exception("the accounts database could not hold included usage for a call")
                raise ApiError(
                    503,
                    "your subscription's included usage cannot be checked just now, so calls"
                    " are refused",
                    type="server_error",
                    code="subscription_unavailable",
                    headers=[(b"retry-after", b"1")],
                ) from exc
        if isinstance(found, bool) or found is None:
            # Sold by subscription only: an account without one is not served for free.
            raise ApiError(
                403,
                f"{listing} is sold by subscription: subscribe to one of its tiers first"
                " (POST /v1/subscriptions on the control plane); a new subscription is seen"
                f" here within {self.included.recheck:g} seconds",
                type="insufficient_quota",
                code="subscription_required",
            )
        if isinstance(found, Beyond):
            if found.overage is None:
                raise ApiError(
                    429,
                    f"the usage your subscription to {listing} includes is used up for this"
                    " period, and its tier sells no more: it renews at the next period, or"
                    " subscribe to a larger tier",
                    type="insufficient_quota",
                    code="insufficient_quota",
                )
            return found.overage
        return found

    async def _hold(
        self,
        account_id: int,
        prices: _Prices,
        need_in: int,
        want_in: int,
        want_out: int | None,
        budget: int | None,
        kind: Kind,
    ) -> tuple[Hold, int | None]:
        """Hold the most the call can cost of its account's prepaid credit: its input and
        its bound on output at its prices (a call that sets no bound holds for
        DEFAULT_OUTPUT_HOLD tokens, and is cut there). The call's output budget is what the
        hold pays for."""
        assert self.credit is not None
        price_in, price_out, price_call = prices
        if want_out is None:
            want_out = DEFAULT_OUTPUT_HOLD
        if budget is not None:
            want_out = min(want_out, budget)
        need_out = 0 if kind == "embedding" else 1
        need = need_in * price_in + need_out * price_out + price_call
        want = max(need, want_in * price_in + want_out * price_out + price_call)
        try:
            held = await self.credit.hold(account_id, need, want)
        except Exception as exc:
            _log.exception("the accounts database could not hold credit for a call")
            raise _credit_down() from exc
        if isinstance(held, Short):
            raise ApiError(
                429,
                f"your balance cannot cover this call: it may cost up to"
                f" {format_amount(need)} {PLATFORM_CURRENCY} ({need_in} tokens of input and"
                f" at least {need_out} of output); top up with `formarket topup AMOUNT`",
                type="insufficient_quota",
                code="insufficient_quota",
            )
        if kind == "embedding" or price_out <= 0:
            return held, budget
        afford = int((held.amount - price_call - want_in * price_in) / price_out)
        return held, afford if budget is None else min(budget, afford)

    async def _woken(self, key: KeyRecord, name: str, target: _Target) -> _Target:
        """The target once its idle deployment runs again (the call waits meanwhile)."""
        deployment = target.route.deployment
        if self.waker is None:
            raise ApiError(
                503,
                f"deployment {deployment} is idle and this gateway cannot wake it",
                type="upstream_error",
                code="deployment_idle",
            )
        await self.waker.running(deployment)
        woken = self._target(key, name)
        if woken.route.idle_since is not None:
            raise ApiError(
                503,
                f"deployment {deployment} is still idle; try again shortly",
                type="upstream_error",
                code="deployment_starting",
                headers=[(b"retry-after", b"1")],
            )
        return woken

    async def _read_body(self, exchange: Exchange) -> bytes:
        limit = self.limits.max_body
        content_type = b""
        for name, value in exchange.headers:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise ApiError(400, "the Content-Length header is not a number") from None
                if declared > limit:
                    raise _too_large(limit)
            elif name == b"content-type":
                content_type = value
        if (
            content_type != b"application/json"
            and content_type.split(b";", 1)[0].strip().lower() != b"application/json"
        ):
            raise ApiError(
                415,
                "the request body must be JSON, sent with `Content-Type: application/json`",
                code="unsupported_media_type",
            )
        chunk, more = await _read(exchange)
        size = len(chunk)
        if size > limit:
            raise _too_large(limit)
        if not more:
            return chunk  # the usual body, whole in one piece
        parts = [chunk]
        while more:
            chunk, more = await _read(exchange)
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            parts.append(chunk)
        return b"".join(parts)

    async def _complete(self, call: _Call, response: UpstreamResponse, exchange: Exchange) -> None:
        """A whole answer: read it, trim it to what the request allowed, meter it, pass it on
        with the usage it was billed and its cost."""
        try:
            data = await response.read(self.limits.max_response)
        except UpstreamError as exc:
            if exc.overran:
                call.cut = "duration"
            elif exc.oversized:
                call.cut = "size"
            await call.record_failure("error")
            if call.cut == "duration":
                raise ApiError(
                    504,
                    f"the deployment did not finish its answer in {self.limits.max_duration:g}s",
                    type="upstream_error",
                    code="upstream_timeout",
                    headers=call.headers(),
                ) from exc
            raise _upstream_failed(exc) from exc
        status = response.status
        if 200 <= status < 300:
            try:
                document = _decode(data)
            except _BAD_JSON:
                document = None
            if not isinstance(document, dict):
                await call.record_failure("error")
                raise ApiError(
                    502,
                    "the deployment's answer is not a JSON object",
                    type="upstream_error",
                    code="bad_upstream_response",
                )
            if call.kind == "embedding":
                trim_embeddings(document, call.inputs)
            else:
                call.trimmer.response(document)
            usage = document.get("usage")
            reported = upstream_usage(call.kind, usage)
            settled = call.settle(reported)
            await call.record(settled, "ok")
            # The caller is shown what it was billed and what that cost, never what the
            # deployment claimed.
            document["usage"] = _usage(settled, call.cost(settled))
            data = _encode(document)
            exchange.respond(200, (_JSON, *call.headers()), data)
            return
        if 400 <= status < 500:
            await call.record_failure("rejected")
            raise ApiError(
                status if status in _PASSED_4XX else 400,
                f"the deployment refused the request: {_upstream_message(data)}",
                code="upstream_rejected",
                headers=call.headers(),
            )
        await call.record_failure("error")
        raise ApiError(
            502,
            f"the deployment failed (HTTP {status}): {_upstream_message(data)}",
            type="upstream_error",
            code="upstream_error",
            headers=call.headers(),
        )

    async def _stream(
        self,
        call: _Call,
        response: UpstreamResponse,
        exchange: Exchange,
        wants_usage: bool,
    ) -> None:
        """Pass a stream through event by event, trimming and metering it as it goes, and
        stop it where the request's limits, the key's reservation, the size or the duration
        end it. The final `[DONE]` is held back until the event is in the spool."""
        exchange.start(
            200,
            (
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
                *call.headers(),
            ),
        )
        gone = False

        def leave() -> None:
            nonlocal gone
            gone = True
            response.close()

        exchange.on_gone(leave)
        splitter = SseSplitter()
        trimmer = call.trimmer
        reported: tuple[int, int] | None = None
        done: bytes | None = None
        outcome: Outcome = "ok"
        received = 0
        limit = self.limits.max_response
        try:
            async for chunk in response.chunks():
                # The size is counted as it arrives, before any of it is metered: what is
                # billed is only ever what was passed on.
                received += len(chunk)
                if received > limit:
                    call.cut = "size"
                    break
                forward = []
                for event in splitter.feed(chunk):
                    data = event_data(event)
                    if data == b"[DONE]":
                        done = event
                        continue
                    if data is not None:
                        event, usage = _stream_chunk(call.kind, data, event, trimmer)
                        reported = usage or reported
                    if event:
                        forward.append(event + b"\n\n")
                if forward:
                    await exchange.send(b"".join(forward))
                if trimmer.spent or trimmer.finished:
                    if trimmer.cut is None:
                        call.cut = "budget"
                    break
            else:
                # Text after the last blank line is no event: it is not passed on.
                splitter.rest()
        except UpstreamError as exc:
            # The caller leaving closes the response under us: what it was sent, it used. The
            # call outlasting its duration, or the deployment falling silent, cuts it.
            if exc.overran:
                call.cut = "duration"
            elif exc.timeout and call.cut is None:
                call.cut = "idle"
            outcome = "ok" if gone or call.cut is not None else "error"
        except ValueError:
            # An event longer than the splitter holds: the gateway cuts the stream there.
            call.cut = "size"
        settled = call.settle(reported)
        try:
            if outcome == "ok":
                await call.record(settled, "ok")
            else:
                await call.record_failure("error")
        except ApiError as err:
            tail = _sse_error(err)
        else:
            if outcome == "ok":
                tail = (done or b"data: [DONE]") + b"\n\n"
                if wants_usage:
                    # The deployment's usage chunk stays with the gateway: the caller who
                    # asked for one is shown what it was billed.
                    tail = _usage_event(settled, call.cost(settled)) + tail
            else:
                tail = _sse_error(
                    ApiError(502, "the deployment's stream broke off", type="upstream_error")
                )
        exchange.finish(tail)


class _Call:
    """What a forwarded call knows about itself, for its usage event."""

    __slots__ = (
        "cut",
        "event_id",
        "gateway",
        "hold",
        "included",
        "inputs",
        "key",
        "kind",
        "measured_in",
        "parent",
        "prices",
        "reservation",
        "started",
        "target",
        "trimmer",
        "wall",
    )

    def __init__(
        self,
        gateway: Gateway,
        key: KeyRecord,
        target: _Target,
        kind: Kind,
        measured_in: Measure,
        event_id: str,
        trimmer: Trimmer,
        reservation: Reservation | None,
        parent: str | None,
        prices: _Prices,
    ) -> None:
        self.gateway = gateway
        self.prices = prices
        self.key = key
        self.target = target
        self.kind = kind
        self.measured_in = measured_in
        self.event_id = event_id
        self.trimmer = trimmer
        self.reservation = reservation
        self.parent = parent
        self.cut: Cut | None = None
        self.hold: Hold | None = None
        self.included: IncludedHold | None = None
        self.inputs = 1
        self.started = gateway._clock()
        self.wall = gateway._wall()

    def headers(self) -> tuple[tuple[bytes, bytes], ...]:
        event_id = self.event_id.encode()
        return ((b"x-request-id", event_id), (b"x-formarket-call", event_id))

    def cost(self, settled: Settled) -> Decimal:
        """What the call costs at its prices: its route's, what a close rates it at, but
        for a subscriber's (nothing within its included usage, the overage price beyond)."""
        prices = self.prices
        return (
            settled.input_tokens * prices.input
            + settled.output_tokens * prices.output
            + prices.request
        )

    def settle(self, reported: tuple[int, int] | None) -> Settled:
        reservation = self.reservation
        settled = settle(
            self.target.counter,
            self.measured_in,
            self.trimmer.output_tokens,
            reported,
            reservation.input_tokens if reservation is not None else None,
        )
        if settled.disagreed:
            self.gateway._disagreed(self.target.route.deployment, self.event_id, reported, settled)
        return settled

    async def record(self, settled: Settled, outcome: Outcome) -> None:
        gateway = self.gateway
        cut = self.cut
        if cut is None and outcome == "ok":
            cut = self.trimmer.cut
        payload = self.target.events(
            event_id=self.event_id,
            wall=self.wall,
            input_tokens=settled.input_tokens,
            output_tokens=settled.output_tokens,
            duration_ms=int((gateway._clock() - self.started) * 1000),
            outcome=outcome,
            tokens_source=settled.source,
            cut=cut,
            parent=self.parent,
        )
        try:
            await gateway.meter.record(payload)
        except SpoolError as exc:
            self.release()
            raise _metering_down(exc) from exc
        charged = outcome == "ok"
        hold, self.hold = self.hold, None
        if hold is not None and gateway.credit is not None:
            gateway.credit.settle(hold, self.cost(settled) if charged else _ZERO)
        included, self.included = self.included, None
        if included is not None and gateway.included is not None:
            if charged:
                gateway.included.settle(included, settled.input_tokens + settled.output_tokens)
            else:
                gateway.included.release(included)
        reservation, self.reservation = self.reservation, None
        if reservation is not None:
            prices = self.prices
            gateway.allowance.settle(
                reservation,
                settled.input_tokens,
                settled.output_tokens,
                prices.input,
                prices.output,
                charged,
                prices.request,
            )
        elif charged:
            gateway.allowance.charge(
                self.key, self.wall, settled.input_tokens + settled.output_tokens
            )

    async def record_failure(self, outcome: Outcome) -> None:
        """A call that reached the deployment but was not served: metered, never charged."""
        await self.record(Settled(self.measured_in.tokens, 0, self.target.counter.method), outcome)

    def release(self) -> None:
        """Give back a reservation that no record settled (the call failed in between)."""
        hold, self.hold = self.hold, None
        if hold is not None and self.gateway.credit is not None:
            self.gateway.credit.settle(hold, _ZERO)
        included, self.included = self.included, None
        if included is not None and self.gateway.included is not None:
            self.gateway.included.release(included)
        reservation, self.reservation = self.reservation, None
        if reservation is not None:
            prices = self.prices
            self.gateway.allowance.settle(reservation, 0, 0, prices.input, prices.output, False)


def _usage(settled: Settled, cost: Decimal) -> dict[str, int | str]:
    # The cost is a decimal string, as every amount formarket shows: a JSON number would be a
    # float to most readers, and a float is not money.
    return {
        "prompt_tokens": settled.input_tokens,
        "completion_tokens": settled.output_tokens,
        "total_tokens": settled.input_tokens + settled.output_tokens,
        "cost": format_amount(cost),
        "currency": PLATFORM_CURRENCY,
    }


def format_amount(amount: Decimal) -> str:
    """An amount as plain decimal text: no exponent, no trailing zeros (`0.0000215`, `0`)."""
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _usage_event(settled: Settled, cost: Decimal) -> bytes:
    chunk = {"object": "chat.completion.chunk", "choices": [], "usage": _usage(settled, cost)}
    return b"data: " + _encode(chunk) + b"\n\n"


def _max_tokens(request: Request) -> int | None:
    """The request's bound on output tokens per choice, if it sets one."""
    old: int | None = getattr(request, "max_tokens", None)
    new: int | None = getattr(request, "max_completion_tokens", None)
    if old is None or new is None:
        return old if new is None else new
    return min(old, new)


def _parent(exchange: Exchange) -> str | None:
    """The `X-Formarket-Parent` header: the event id of the agent's call that makes this one."""
    for name, value in exchange.headers:
        if name == b"x-formarket-parent":
            text = value.decode("latin-1").strip()
            if _EVENT_ID.fullmatch(text):
                return text
            raise ApiError(
                400,
                "the X-Formarket-Parent header is not an event id",
                code="invalid_parent",
            )
    return None


def _parse(body: bytes, request_type: type[Request]) -> tuple[Request, dict[str, Any]]:
    """The typed request (its named fields checked) and the whole document (forwarded)."""
    try:
        request = _decode(body, type=request_type)
    except msgspec.ValidationError as exc:
        raise ApiError(
            400, f"invalid request: {exc}", param=_param(exc), code="invalid_value"
        ) from exc
    except _BAD_JSON as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from exc
    document = _decode(body)
    assert isinstance(document, dict)  # the typed decode accepted an object
    return request, document


def _param(exc: msgspec.ValidationError) -> str | None:
    text = str(exc)
    at = text.rfind("at `$")
    if at < 0:
        return None
    return text[at + 5 :].rstrip("`").lstrip(".") or None


def _stream_chunk(
    kind: Kind, data: bytes, event: bytes, trimmer: Trimmer
) -> tuple[bytes, tuple[int, int] | None]:
    """(the event to forward, b"" for none; the counts it reports) for one chunk's data. The
    deployment's counts stay with the gateway (the caller who asks is shown what it was
    billed, at the end)."""
    try:
        chunk = _decode(data)
    except _BAD_JSON:
        chunk = None
    if not isinstance(chunk, dict):
        # Not a chunk anyone can read: no text the model generated, so not passed on.
        return b"", None
    usage = None
    changed = False
    if "usage" in chunk:
        usage = upstream_usage(kind, chunk.pop("usage"))
        changed = True
    choices = chunk.get("choices")
    had_choices = isinstance(choices, list) and bool(choices)
    if trimmer.chunk(chunk):
        changed = True
    if not changed:
        return event, None
    if not chunk.get("choices") and (had_choices or usage is not None or "choices" in chunk):
        return b"", usage  # nothing left of it for the caller
    return b"data: " + _encode(chunk), usage


def _model(route: Route) -> dict[str, Any]:
    return {
        "id": route.deployment,
        "object": "model",
        "created": 0,
        "owned_by": route.account,
        "formarket": {
            "agent": route.agent.model_dump() if route.agent else None,
            "model": route.model.model_dump() if route.model else None,
        },
    }


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise ApiError(
            405,
            f"method {method} is not allowed here; use {allowed}",
            code="method_not_allowed",
            headers=[(b"allow", allowed.encode())],
        )


async def _read(exchange: Exchange) -> tuple[bytes, bool]:
    try:
        return await exchange.read()
    except ClientGone:
        raise ApiError(400, "the client went away", code="client_disconnected") from None


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than {limit} bytes", code="request_too_large")


def _credit_down() -> ApiError:
    return ApiError(
        503,
        "prepaid credit cannot be checked just now, so calls are refused",
        type="server_error",
        code="credit_unavailable",
        headers=[(b"retry-after", b"1")],
    )


def _metering_down(exc: Exception) -> ApiError:
    return ApiError(
        503,
        f"usage metering is unavailable, so calls are refused: {exc}",
        type="server_error",
        code="metering_unavailable",
    )


def _upstream_failed(exc: UpstreamError) -> ApiError:
    return ApiError(
        504 if exc.timeout else 502,
        f"the deployment could not be reached: {exc}",
        type="upstream_error",
        code="upstream_timeout" if exc.timeout else "upstream_unavailable",
    )


def _upstream_message(data: bytes) -> str:
    """The deployment's own error message, if it sent one in OpenAI's shape, else a snippet."""
    try:
        document = _decode(data)
    except _BAD_JSON:
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:500]
    return data[:200].decode("utf-8", "replace") or "(no body)"


def _sse_error(err: ApiError) -> bytes:
    return b"data: " + err.body() + b"\n\n"
