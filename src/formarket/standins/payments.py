"""A stand-in for the payment provider (Stripe): the parts of its API formarket uses, a hosted
checkout page to pay on, and webhooks signed as Stripe signs them.

    POST /v1/checkout/sessions             create a Checkout Session (form-encoded, as the
                                           `stripe` library sends it)
    GET  /v1/checkout/sessions/{id}        retrieve one
    POST /v1/checkout/sessions/{id}/expire expire an open one
    GET  /v1/events, /v1/events/{id}       the events it sent
    POST /v1/transfers                     send money from the platform's balance to a
                                           connected account (`Idempotency-Key` honoured)
    GET  /v1/transfers, /v1/transfers/{id} the transfers sent (`transfer_group` filters)
    GET  /pay/{id}                         the hosted checkout page
    POST /pay/{id}                         "pay" on it: the session completes, its webhook is
                                           delivered, the browser goes to the success URL

The API takes the secret key it was made with (`Authorization: Bearer sk_...`); webhooks
carry `Stripe-Signature: t=<unix time>,v1=<HMAC-SHA256 of "t.payload" with the webhook
secret>`, which `stripe.Webhook.construct_event` verifies. So the `stripe` library runs
against it unchanged: point FORMARKET_PAYMENTS_URL here, or at Stripe, and nothing else
changes. By hand: `python -m formarket.standins.payments --port 8766 --webhook URL`.

Transfers draw on the platform's available balance per currency (what was paid through
checkout, plus what it was started with) and go only to the connected accounts it knows; it
refuses others as Stripe does (`balance_insufficient`, `resource_missing`). As Stripe, it keeps
the first answer to each idempotency key, a refusal included, and gives it again to a retry
with the same parameters: a retry never pays twice.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from formarket.gateway.server import run_app
from formarket.httpclient import Client, HTTPError

__all__ = ["PaymentsStandIn", "parse_form", "sign_payload"]

_MAX_BODY = 64 << 10
_KEY = re.compile(r"[A-Za-z0-9_]{1,40}")
_ID = re.compile(r"cs_test_[0-9a-f]{24}")
_ACCOUNT = re.compile(r"acct_[A-Za-z0-9]{1,64}")
# Stripe's amounts are integers in the currency's minor unit, at most eight digits.
_MAX_AMOUNT = 99_999_999


def sign_payload(payload: bytes, secret: str, timestamp: int) -> str:
    """The `Stripe-Signature` header of `payload` sent at `timestamp`."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def parse_form(body: bytes) -> dict[str, Any]:
    """A form body in Stripe's bracket notation (`line_items[0][price_data][currency]=usd`)
    as nested dicts and lists; ValueError when it is not one."""
    out: dict[str, Any] = {}
    for name, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
        head, _, rest = name.partition("[")
        if rest and not rest.endswith("]"):
            raise ValueError(f"malformed parameter name {name!r}")
        parts = [head] + (rest[:-1].split("][") if rest else [])
        if len(parts) > 6 or not all(_KEY.fullmatch(p) for p in parts):
            raise ValueError(f"malformed parameter name {name!r}")
        node: dict[str, Any] = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"parameter {name!r} is both a value and a group")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise ValueError(f"parameter {name!r} is both a value and a group")
        node[parts[-1]] = value
    return out


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status)


def _refusal(message: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    """A request the provider read and refused, as Stripe words it."""
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code is not None:
        error["code"] = code
    if param is not None:
        error["param"] = param
    return {"error": error}


class PaymentsStandIn:
    """Checkout sessions and events in memory, served as an ASGI app (`ServerThread` it)."""

    def __init__(
        self,
        secret_key: str,
        webhook_secret: str,
        *,
        webhook_url: str | None = None,
        clock: Callable[[], float] = time.time,
        accounts: Iterable[str] = (),
        balance: Mapping[str, int] | None = None,
    ) -> None:
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.clock = clock
        self.sessions: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.deliveries: list[tuple[str, int]] = []  # (event id, HTTP status) as delivered
        self.accounts: set[str] = set(accounts)  # connected accounts transfers may go to
        # The platform's available funds, in minor units by lower-case currency.
        self.balance: dict[str, int] = {k.lower(): v for k, v in (balance or {}).items()}
        self.transfers: dict[str, dict[str, Any]] = {}
        # Idempotency key -> (the request's parameters, the status and body first answered).
        self._answers: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._app = Starlette(
            routes=[
                Route("/v1/checkout/sessions", self._create, methods=["POST"]),
                Route("/v1/checkout/sessions/{id}", self._retrieve, methods=["GET"]),
                Route("/v1/checkout/sessions/{id}/expire", self._expire, methods=["POST"]),
                Route("/v1/events", self._list_events, methods=["GET"]),
                Route("/v1/events/{id}", self._event, methods=["GET"]),
                Route("/v1/transfers", self._transfer, methods=["POST"]),
                Route("/v1/transfers", self._list_transfers, methods=["GET"]),
                Route("/v1/transfers/{id}", self._get_transfer, methods=["GET"]),
                Route("/pay/{id}", self._page, methods=["GET"]),
                Route("/pay/{id}", self._pay, methods=["POST"]),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)

    # --- what a payer does on the hosted page ---------------------------------------------

    def pay(self, session_id: str) -> dict[str, Any]:
        """Pay an open session (as the hosted page's button does); the event it sent."""
        with self._lock:
            session = self.sessions[session_id]
            if session["status"] != "open":
                raise ValueError(f"session {session_id} is {session['status']}")
            session.update(status="complete", payment_status="paid")
            # What a payer pays becomes the platform's to transfer.
            currency = session["currency"]
            self.balance[currency] = self.balance.get(currency, 0) + session["amount_total"]
            event = self._new_event("checkout.session.completed", session)
        self.deliver(event["id"])
        return event

    def deliver(self, event_id: str, *, timestamp: int | None = None) -> int:
        """POST an event to the webhook URL, signed at `timestamp` (default now), as Stripe
        delivers and redelivers it; the endpoint's status (0: none configured or reached)."""
        event = next(e for e in self.events if e["id"] == event_id)
        payload = json.dumps(event, indent=2).encode()
        signature = sign_payload(payload, self.webhook_secret, timestamp or int(self.clock()))
        status = 0
        if self.webhook_url:
            try:
                with Client(timeout=30) as client:
                    status = client.post(
                        self.webhook_url,
                        content=payload,
                        headers={
                            "Content-Type": "application/json; charset=utf-8",
                            "Stripe-Signature": signature,
                        },
                    ).status_code
            except HTTPError:
                status = 0
        self.deliveries.append((event_id, status))
        return status

    # --- the API ---------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.secret_key.encode()
        )

    async def _form(self, request: Request) -> dict[str, Any] | Response:
        """An authorized API request's form-encoded body, or the refusal to answer with."""
        if not self._authorized(request):
            return _error(401, "Invalid API Key provided", "authentication_error")
        body = await request.body()
        if len(body) > _MAX_BODY:
            return _error(413, "request too large")
        try:
            return parse_form(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"invalid request body: {exc}")

    async def _create(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        try:
            session = self._session(form, str(request.base_url).rstrip("/"))
        except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
            return _error(400, f"invalid checkout session: {exc}")
        with self._lock:
            self.sessions[session["id"]] = session
        return JSONResponse(session)

    def _session(self, form: dict[str, Any], base: str) -> dict[str, Any]:
        if form.get("mode") != "payment":
            raise ValueError("mode must be payment")
        items = form.get("line_items")
        if not isinstance(items, dict) or set(items) != {"0"}:
            raise ValueError("exactly one line item")
        item = items["0"]
        price = item["price_data"]
        currency = str(price["currency"]).lower()
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise ValueError("currency is three letters")
        unit = int(price["unit_amount"])
        quantity = int(item.get("quantity", "1"))
        if not (0 < unit <= _MAX_AMOUNT and 0 < quantity <= 100):
            raise ValueError("unit_amount or quantity out of range")
        for url in (form["success_url"], form.get("cancel_url", "")):
            if url and urlsplit(url).scheme not in ("http", "https"):
                raise ValueError("success_url and cancel_url are http(s) URLs")
        metadata = form.get("metadata", {})
        if not isinstance(metadata, dict) or any(isinstance(v, dict) for v in metadata.values()):
            raise ValueError("metadata is flat")
        session_id = f"cs_test_{secrets.token_hex(12)}"
        return {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "amount_total": unit * quantity,
            "currency": currency,
            "client_reference_id": form.get("client_reference_id"),
            "metadata": metadata,
            "status": "open",
            "payment_status": "unpaid",
            "success_url": form["success_url"],
            "cancel_url": form.get("cancel_url"),
            "url": f"{base}/pay/{session_id}",
            "created": int(self.clock()),
            "livemode": False,
        }

    async def _retrieve(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Invalid API Key provided", "authentication_error")
        session = self.sessions.get(request.path_params["id"])
        if session is None:
            return _error(404, "No such checkout.session")
        return JSONResponse(session)

    async def _expire(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Invalid API Key provided", "authentication_error")
        with self._lock:
            session = self.sessions.get(request.path_params["id"])
            if session is None:
                return _error(404, "No such checkout.session")
            if session["status"] != "open":
                return _error(400, f"the session is {session['status']}")
            session["status"] = "expired"
            event = self._new_event("checkout.session.expired", session)
        await asyncio.to_thread(self.deliver, event["id"])
        return JSONResponse(session)

    async def _list_events(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Invalid API Key provided", "authentication_error")
        data = list(reversed(self.events))
        return JSONResponse(
            {"object": "list", "data": data, "has_more": False, "url": "/v1/events"}
        )

    async def _event(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Invalid API Key provided", "authentication_error")
        for event in self.events:
            if event["id"] == request.path_params["id"]:
                return JSONResponse(event)
        return _error(404, "No such event")

    # --- transfers to connected accounts -------------------------------------------------------

    async def _transfer(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        key = request.headers.get("idempotency-key")
        if key is not None and not 0 < len(key) <= 255:
            return _error(400, "Idempotency-Key is 1 to 255 characters", "idempotency_error")
        with self._lock:
            if key is not None and key in self._answers:
                params, status, answer = self._answers[key]
                if params != form:
                    return _error(
                        400,
                        "Keys for idempotent requests can only be used with the same"
                        " parameters they were first used with",
                        "idempotency_error",
                    )
                return JSONResponse(answer, status, headers={"Idempotent-Replayed": "true"})
            status, answer = self._send(form)
            if key is not None:
                self._answers[key] = (form, status, answer)
        return JSONResponse(answer, status)

    def _send(self, form: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Carry out a transfer (under the lock): the status and body of the answer."""
        try:
            amount = int(form["amount"])
            currency = str(form["currency"]).lower()
            destination = str(form["destination"])
        except (KeyError, ValueError, TypeError) as exc:
            return 400, _refusal(f"invalid transfer: {exc}", None)
        if not (0 < amount <= _MAX_AMOUNT and re.fullmatch(r"[a-z]{3}", currency)):
            return 400, _refusal("amount or currency out of range", None)
        metadata = form.get("metadata", {})
        group = form.get("transfer_group")
        if not isinstance(metadata, dict) or any(isinstance(v, dict) for v in metadata.values()):
            return 400, _refusal("metadata is flat", None)
        if not _ACCOUNT.fullmatch(destination) or destination not in self.accounts:
            return 400, _refusal(
                f"No such destination: '{destination[:80]}'", "resource_missing", "destination"
            )
        if self.balance.get(currency, 0) < amount:
            return 400, _refusal(
                "You have insufficient available funds in your Stripe account. Try adding funds"
                " directly to your available balance by creating Charges.",
                "balance_insufficient",
            )
        self.balance[currency] -= amount
        transfer_id = f"tr_{secrets.token_hex(12)}"
        transfer: dict[str, Any] = {
            "id": transfer_id,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "currency": currency,
            "destination": destination,
            "transfer_group": group if isinstance(group, str) else None,
            "metadata": metadata,
            "created": int(self.clock()),
            "livemode": False,
            "reversed": False,
        }
        self.transfers[transfer_id] = transfer
        return 200, transfer

    async def _list_transfers(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Invalid API Key provided", "authentication_error")
        group = request.query_params.get("transfer_group")
        with self._lock:
            data = [
                t
                for t in reversed(self.transfers.values())
                if group is None or t["transfer_group"] == group
            ]
        return JSONResponse(
            {"object": "list", "data": data, "has_more": False, "url": "/v1/transfers"}
        )

    async def _get_transfer(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Invalid API Key provided", "authentication_error")
        transfer = self.transfers.get(request.path_params["id"])
        if transfer is None:
            return _error(404, "No such transfer")
        return JSONResponse(transfer)

    def _new_event(self, kind: str, session: dict[str, Any]) -> dict[str, Any]:
        event = {
            "id": f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "type": kind,
            "created": int(self.clock()),
            "livemode": False,
            "api_version": "2025-01-27.acacia",
            "data": {"object": dict(session)},
        }
        self.events.append(event)
        return event

    # --- the hosted page -------------------------------------------------------------------

    async def _page(self, request: Request) -> Response:
        session = self.sessions.get(request.path_params["id"])
        if session is None or not _ID.fullmatch(session["id"]):
            return HTMLResponse("<h1>No such checkout</h1>", 404)
        amount = f"{session['amount_total'] / 100:.2f} {session['currency'].upper()}"
        state = html.escape(session["status"])
        button = (
            '<form method="post"><button type="submit" id="pay">Pay '
            f"{html.escape(amount)}</button></form>"
            if session["status"] == "open"
            else f"<p>This checkout is {state}.</p>"
        )
        return HTMLResponse(
            "<!doctype html><html><head><title>Checkout</title></head><body>"
            f"<h1>Pay {html.escape(amount)}</h1><p>Test mode: no card is charged.</p>"
            f"{button}</body></html>"
        )

    async def _pay(self, request: Request) -> Response:
        session = self.sessions.get(request.path_params["id"])
        if session is None:
            return HTMLResponse("<h1>No such checkout</h1>", 404)
        try:
            await asyncio.to_thread(self.pay, session["id"])
        except ValueError as exc:
            return HTMLResponse(f"<h1>{html.escape(str(exc))}</h1>", 409)
        return RedirectResponse(session["success_url"], 303)


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - by hand
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--secret-key", default="sk_test_formarket")
    parser.add_argument("--webhook-secret", default="whsec_formarket")
    parser.add_argument("--webhook", default=None, help="Where to deliver webhooks.")
    parser.add_argument(
        "--account", action="append", default=[], help="A connected account (acct_...)."
    )
    parser.add_argument(
        "--balance",
        action="append",
        default=[],
        help="The platform's funds to start with, as CURRENCY:MINOR_UNITS (usd:100000).",
    )
    args = parser.parse_args(argv)
    funds = {c: int(units) for c, _, units in (b.partition(":") for b in args.balance)}
    app = PaymentsStandIn(
        args.secret_key,
        args.webhook_secret,
        webhook_url=args.webhook,
        accounts=args.account,
        balance=funds,
    )
    run_app(app, "127.0.0.1", args.port, lambda url: print(f"payments stand-in at {url}"))


if __name__ == "__main__":  # pragma: no cover
    main()
