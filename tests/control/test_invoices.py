"""`GET /v1/invoices[/{period}]`: an account's invoices of the closed periods, each served as
the exact bytes whose SHA-256 the close committed to git; a period that is not one, not
closed, or not the account's is refused in the API's error shape and serves no invoice."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import quote

import pytest
from dulwich.repo import Repo
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from formarket.accounts.credit import CreditStore
from formarket.market.refs import branch_tip
from formarket.market.trees import commit_tree, read_path
from formarket.schemas.invoices import Invoice, InvoiceIndex, InvoiceTopUp
from tests.control.conftest import Plane
from tests.control.invoicing import MODEL, PERIOD, close_month


def _committed_index(plane: Plane) -> InvoiceIndex:
    repo = Repo(str(plane.market.repo))
    try:
        tree = commit_tree(repo, branch_tip(repo, "main"))
        raw = read_path(repo, tree, f"royalties/{PERIOD}/invoices.json")
    finally:
        repo.close()
    assert raw is not None
    return InvoiceIndex.model_validate_json(raw)


def test_an_account_lists_its_invoices_and_fetches_the_bytes_git_has_the_hash_of(
    plane: Plane,
) -> None:
    alice, _bob = plane.sign_in("alice"), plane.sign_in("bob")
    close_month(plane.control, {"alice": 3, "bob": 1}, {"alice": Decimal("20.00")})

    listed = plane.call(alice, "GET", "/v1/invoices")
    assert listed.status == 200, listed.body
    (entry,) = listed.json()["invoices"]
    assert entry["period"] == PERIOD
    assert entry["totals"] == [{"currency": "USD", "amount": "2.40"}]
    assert Decimal(entry["closing_balance"]) == Decimal("17.60")
    assert entry["currency"] == "USD"
    assert entry["url"] == f"{plane.url}/v1/invoices/{PERIOD}"

    fetched = plane.call(alice, "GET", f"/v1/invoices/{PERIOD}")
    assert fetched.status == 200, fetched.body
    assert fetched.headers["content-type"] == "application/json"
    assert fetched.headers["content-disposition"] == (
        f'attachment; filename="invoice-{PERIOD}.json"'
    )
    digest = hashlib.sha256(fetched.body).hexdigest()
    assert digest == entry["sha256"]
    assert digest in _committed_index(plane).invoices
    assert fetched.body == plane.control.invoices.body("alice", PERIOD)

    invoice = Invoice.model_validate_json(fetched.body)
    assert invoice.account == plane.control.pseudonyms.of("alice")
    (usd,) = invoice.currencies
    assert {(line.listing, line.version, line.metric, line.quantity) for line in usd.lines} == {
        (*MODEL, "input_tokens", 3_000_000),
        (*MODEL, "output_tokens", 3_000_000),
    }
    assert [t.amount for t in invoice.top_ups] == [Decimal("20.00")]
    assert invoice.balance.closing == Decimal("17.60")
    assert "alice" not in fetched.body.decode()  # it names the account as git does


def test_an_account_without_invoices_lists_none_and_fetches_none(plane: Plane) -> None:
    alice, carol = plane.sign_in("alice"), plane.sign_in("carol")
    close_month(plane.control, {"alice": 1})
    assert plane.call(carol, "GET", "/v1/invoices").json() == {"invoices": []}
    for key, period in ((carol, PERIOD), (alice, "2026-04"), (alice, "1999-01")):
        reply = plane.call(key, "GET", f"/v1/invoices/{period}")
        assert reply.status == 404
        error = reply.json()["error"]
        assert error["code"] == "not_found"
        assert error["hint"]


HOSTILE = [
    "2026-13",
    "2026-00",
    "26-03",
    "2026-3",
    "202603",
    "2026-03-01",
    "2026-03.json",
    "2026-03%0A",
    "2026-03%00",
    "%202026-03",
    "..%2F..%2Fetc%2Fpasswd",
    "..%2F2026-03",
    "2026-03%2F..",
    "2026%2D03",  # an escaped hyphen is still the period: served, it is alice's own
    "x" * 5000,
]


@pytest.mark.parametrize("period", HOSTILE)
def test_odd_periods_are_refused_in_the_apis_shape(plane: Plane, period: str) -> None:
    alice = plane.sign_in("alice")
    close_month(plane.control, {"alice": 1})
    reply = plane.call(alice, "GET", f"/v1/invoices/{period}")
    if period == "2026%2D03":
        assert reply.status == 200
        assert reply.body == plane.control.invoices.body("alice", PERIOD)
        return
    assert reply.status in (404, 422), (period, reply.status)
    assert set(reply.json()["error"]) == {"message", "code", "hint"}
    assert b"formarket.invoice" not in reply.body


@given(period=st.text(min_size=1, max_size=12))
@example(period=PERIOD)
@example(period=PERIOD + "\n")
@example(period="/")
@example(period="2026-03/")
@example(period="..")
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_only_a_closed_period_of_ones_own_serves_an_invoice(
    invoiced: tuple[Plane, str], period: str
) -> None:
    plane, alice = invoiced
    reply = plane.call(alice, "GET", "/v1/invoices/" + quote(period, safe=""))
    if period == PERIOD:
        assert reply.status == 200
        assert reply.body == plane.control.invoices.body("alice", PERIOD)
    elif reply.status == 307:
        # A path that ends with a slash once decoded: the router sends it to the one
        # without, which answers as any other (and serves nothing itself).
        assert period.endswith("/")
        assert reply.body == b""
    else:
        assert reply.status in (404, 405, 422), (period, reply.status)
        assert b"formarket.invoice" not in reply.body
        json.loads(reply.body)  # an error body, never a traceback


@pytest.fixture
def invoiced(plane: Plane) -> tuple[Plane, str]:
    alice = plane.sign_in("alice")
    close_month(plane.control, {"alice": 2})
    return plane, alice


@given(cents=st.integers(min_value=1, max_value=1_000_000))
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_a_top_up_is_on_the_invoice_as_paid(plane: Plane, cents: int) -> None:
    # The database keeps amounts to 18 places; an invoice writes money with at most 8.
    account = plane.store.sign_in("alice", 1)
    credit = CreditStore(plane.store.engine, clock=lambda: datetime(2026, 3, 5, tzinfo=UTC))
    amount = Decimal(cents).scaleb(-2)
    ident = f"cs_test_{cents}_{uuid.uuid4().hex[:8]}"
    credit.open_topup(account, ident, amount)
    assert credit.credit_topup(ident, amount, "USD")
    records = plane.control.invoices.records(PERIOD)
    alices = records.top_ups[plane.control.pseudonyms.of("alice")]
    (paid,) = (t for t in alices if t.reference == ident)
    assert paid.amount == amount
    written = paid.model_dump_json()
    assert InvoiceTopUp.model_validate_json(written) == paid  # reads back as it was written
    assert Decimal(json.loads(written)["amount"]) == amount
