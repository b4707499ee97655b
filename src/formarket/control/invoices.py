"""An account's invoices over HTTP: `GET /v1/invoices` lists them (period, SHA-256, totals, the
closing balance, where to fetch each), `GET /v1/invoices/{period}` gives one as the exact bytes
whose SHA-256 its close committed to git, so that the account can check it against the public
index. An invoice is the account's own: another account's period is not found, as one that was
never closed.

(No `from __future__ import annotations` here: FastAPI reads the routes' annotations, among
them the app's own dependency that names the caller.)"""

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from formarket.accounts.invoices import InvoiceSummary
from formarket.accounts.store import AccountView
from formarket.control.context import Control
from formarket.errors import NotFoundError
from formarket.schemas.invoices import Invoice
from formarket.schemas.pricing import PLATFORM_CURRENCY
from formarket.schemas.usage import PERIOD_PATTERN

__all__ = ["add_invoices", "invoice_download", "invoice_filename", "own_invoice"]

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_PERIOD = re.compile(PERIOD_PATTERN)
_PERIOD_ID = Annotated[
    str, Path(pattern=PERIOD_PATTERN, max_length=7, description="The period: YYYY-MM.")
]


class InvoiceTotalOut(BaseModel):
    model_config = _FROZEN
    currency: str
    amount: Decimal


class InvoiceOut(BaseModel):
    model_config = _FROZEN
    period: str
    sha256: str = Field(
        description="The SHA-256 of the invoice's bytes: the close committed it to git, in"
        " royalties/YYYY-MM/invoices.json."
    )
    totals: tuple[InvoiceTotalOut, ...] = Field(description="The usage, per currency.")
    closing_balance: Decimal = Field(description="Your prepaid balance by the books at its end.")
    currency: str = Field(description="The balance's currency: the platform's.")
    url: str = Field(description="Where to fetch the invoice itself.")


class InvoiceList(BaseModel):
    model_config = _FROZEN
    invoices: tuple[InvoiceOut, ...] = Field(description="Newest first.")


def invoice_filename(period: str) -> str:
    return f"invoice-{period}.json"


def invoice_download(body: bytes, period: str) -> Response:
    """The invoice's bytes as they are, to save rather than to show."""
    return Response(
        body,
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="{invoice_filename(period)}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
    )


def own_invoice(control: Control, login: str, period: str) -> bytes:
    """`login`'s invoice of `period`; NotFoundError for a period that is not one, was not
    closed, or has no invoice of this account."""
    body = control.invoices.body(login, period) if _PERIOD.fullmatch(period) else None
    if body is None:
        raise NotFoundError(
            f"no invoice of yours for {period!r}",
            hint="a period's invoices are written when it is closed; `GET /v1/invoices`"
            " lists yours",
        )
    return body


def _out(summary: InvoiceSummary, base: str) -> InvoiceOut:
    return InvoiceOut(
        period=summary.period,
        sha256=summary.sha256,
        totals=tuple(InvoiceTotalOut(currency=c, amount=a) for c, a in summary.totals),
        closing_balance=summary.closing_balance,
        currency=PLATFORM_CURRENCY,
        url=f"{base}/v1/invoices/{summary.period}",
    )


def add_invoices(app: FastAPI, ctl: Callable[[], Control], account: Any) -> None:
    """The routes, on `app`; `account` is the app's dependency that names the caller."""

    @app.get("/v1/invoices", response_model=InvoiceList)
    def invoices(me: account, request: Request) -> InvoiceList:
        """Your invoices, one per closed period in which you used, topped up or were charged
        anything, newest first."""
        assert isinstance(me, AccountView)
        base = str(request.base_url).rstrip("/")
        return InvoiceList(invoices=tuple(_out(s, base) for s in ctl().invoices.periods(me.login)))

    @app.get(
        "/v1/invoices/{period}",
        response_model=Invoice,
        response_description="The invoice, as the exact bytes whose SHA-256 its close committed.",
    )
    def invoice(period: _PERIOD_ID, me: account) -> Response:
        """One of your invoices, as a file (`invoice-YYYY-MM.json`): its lines per listing
        version, your top-ups and charges, and your balance by the books. Its SHA-256 is in the
        public index of its period's close, which no one else can tie to you."""
        assert isinstance(me, AccountView)
        return invoice_download(own_invoice(ctl(), me.login, period), period)
