"""The dashboard's invoices: "My invoices" lists the signed-in account's, one page per period
shows an invoice (its lines per currency, top-ups, charges, the balance by the books, its
SHA-256), and a download serves its exact bytes, as the API does, with the session.

Only GETs, which change nothing: the session cookie (SameSite=Lax) is all they need, and
another account's period is not found, as one that was never closed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from formarket.accounts.store import AccountView
from formarket.control.context import Control
from formarket.control.invoices import invoice_download, own_invoice
from formarket.errors import NotFoundError
from formarket.schemas.invoices import Invoice
from formarket.schemas.pricing import PLATFORM_CURRENCY

__all__ = ["add_invoice_pages"]

# How the pages name a line's metric.
_METRICS = {
    "requests": "Requests",
    "input_tokens": "Input tokens",
    "output_tokens": "Output tokens",
    "instance_seconds": "Instance time",
}
_HERE = "/dashboard/invoices"


def add_invoice_pages(
    app: FastAPI,
    ctl: Callable[[], Control],
    page: Callable[..., HTMLResponse],
    signed_in: Callable[[Request], tuple[AccountView, str] | None],
    csrf: Callable[[str], str],
) -> None:
    """The routes, on `app`, drawn by the dashboard's `page` for the session `signed_in`
    finds (`csrf` for the sign-out form every page carries)."""

    def sign_in(message: str) -> HTMLResponse:
        return page("sign_in", "Sign in", message=message)

    def not_found(account: AccountView, session: str) -> HTMLResponse:
        return page(
            "message",
            "Not found",
            message="No invoice of yours for that period.",
            status=404,
            account=account.login,
            csrf=csrf(session),
            here=_HERE,
        )

    def mine(
        request: Request, period: str, sign_in_first: str
    ) -> tuple[AccountView, str, bytes] | Response:
        """The signed-in account, its session and its invoice of `period`; else the page
        that answers instead (sign in first, or not found)."""
        found = signed_in(request)
        if found is None:
            return sign_in(sign_in_first)
        account, session = found
        try:
            return account, session, own_invoice(ctl(), account.login, period)
        except NotFoundError:
            return not_found(account, session)

    @app.get("/dashboard/invoices", include_in_schema=False, response_class=HTMLResponse)
    def invoices(request: Request) -> Response:
        found = signed_in(request)
        if found is None:
            return sign_in("Sign in to see your invoices.")
        account, session = found
        return page(
            "invoices",
            "My invoices",
            account=account.login,
            invoices=ctl().invoices.periods(account.login),
            currency=PLATFORM_CURRENCY,
            csrf=csrf(session),
            here=_HERE,
        )

    @app.get("/dashboard/invoices/{period}", include_in_schema=False, response_class=HTMLResponse)
    def invoice(period: str, request: Request) -> Response:
        found = mine(request, period, "Sign in to see your invoices.")
        if isinstance(found, Response):
            return found
        account, session, body = found
        shown = Invoice.model_validate_json(body)
        return page(
            "invoice",
            f"Invoice {shown.period}",
            account=account.login,
            invoice=shown,
            balance=shown.balance,
            # Of the bytes the download serves: what the close committed.
            sha256=hashlib.sha256(body).hexdigest(),
            metrics=_METRICS,
            csrf=csrf(session),
            here=_HERE,
        )

    @app.get("/dashboard/invoices/{period}/download", include_in_schema=False)
    def download(period: str, request: Request) -> Response:
        found = mine(request, period, "Sign in to download your invoices.")
        if isinstance(found, Response):
            return found
        return invoice_download(found[2], period)
