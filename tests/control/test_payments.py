"""Top-ups through the payment provider's stand-in, with the `stripe` library: a checkout, the
hosted page, the signed webhook. A top-up is credited exactly once however often its webhook
comes; a forged, replayed or out-of-order webhook changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stripe._encode import _api_encode

from formarket.control.payments import Payments
from formarket.gateway.server import ServerThread
from formarket.standins.payments import PaymentsStandIn, parse_form, sign_payload
from tests.accounts.databases import db_url, pg_url
from tests.control.conftest import Plane
from tests.control.test_cli import _login, _run
from tests.gateway.helpers import Client

__all__ = ["db_url", "pg_url"]

SECRET_KEY = "sk_test_formarket"
WEBHOOK_SECRET = "whsec_test_formarket"


@dataclass
class Shop:
    plane: Plane
    provider: PaymentsStandIn
    url: str

    def top_up(self, key: str, amount: str) -> dict[str, str]:
        reply = self.plane.call(key, "POST", "/v1/topups", {"amount": amount})
        assert reply.status == 201, reply.body
        made: dict[str, str] = reply.json()
        return made

    def balance(self, key: str) -> Decimal:
        reply = self.plane.call(key, "GET", "/v1/balance")
        assert reply.status == 200, reply.body
        return Decimal(reply.json()["balance"])

    def webhook(self, payload: bytes, signature: str | None) -> int:
        headers = {"Stripe-Signature": signature} if signature is not None else {}
        return (
            Client(self.plane.url)
            .request("POST", "/v1/payments/webhook", raw=payload, headers=headers)
            .status
        )


@pytest.fixture
def plane_db(db_url: str) -> str:
    """These tests run on SQLite and on PostgreSQL."""
    return db_url


@pytest.fixture
def shop(plane: Plane) -> Iterator[Shop]:
    provider = PaymentsStandIn(
        SECRET_KEY, WEBHOOK_SECRET, webhook_url=f"{plane.url}/v1/payments/webhook"
    )
    with ServerThread(provider) as server:
        plane.control.payments = Payments(server.url, SECRET_KEY, WEBHOOK_SECRET)
        yield Shop(plane, provider, server.url)
        plane.control.payments = None


def _pay_on_the_page(base: str, url: str) -> None:
    """What a payer's browser does: open the hosted page, press Pay."""
    path = url.removeprefix(base)
    page = Client(base).request("GET", path)
    assert page.status == 200
    assert b'id="pay"' in page.body
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    paid = Client(base).request("POST", path, raw=b"", headers=form)
    assert paid.status == 303
    assert paid.headers["location"].endswith("/dashboard?topup=paid")


def test_a_top_up_is_paid_on_the_checkout_page_and_credited_once(shop: Shop) -> None:
    key = shop.plane.sign_in("alice")
    assert shop.balance(key) == 0
    made = shop.top_up(key, "10.00")
    assert made["url"].startswith(shop.url)
    assert (made["amount"], made["currency"]) == ("10.00", "USD")
    assert shop.balance(key) == 0  # not paid yet
    _pay_on_the_page(shop.url, made["url"])
    assert shop.balance(key) == Decimal("10.00")
    event = shop.provider.events[-1]["id"]
    for _ in range(5):  # the provider delivers again, as it does when unsure
        assert shop.provider.deliver(event) == 200
    assert shop.balance(key) == Decimal("10.00")
    topups = shop.plane.call(key, "GET", "/v1/balance").json()["topups"]
    assert [(t["id"], t["state"]) for t in topups] == [(made["id"], "credited")]


def test_a_forged_or_replayed_webhook_changes_nothing(shop: Shop) -> None:
    key = shop.plane.sign_in("alice")
    made = shop.top_up(key, "25.00")
    shop.provider.webhook_url = None  # nothing delivered by itself: the test delivers
    shop.provider.pay(made["id"])
    event = shop.provider.events[-1]
    payload = json.dumps(event).encode()
    now = int(time.time())
    assert shop.webhook(payload, None) == 400
    assert shop.webhook(payload, sign_payload(payload, "whsec_guessed", now)) == 400
    tampered = payload.replace(b'"paid"', b'"unpaid"')
    assert shop.webhook(tampered, sign_payload(payload, WEBHOOK_SECRET, now)) == 400
    assert shop.webhook(payload, sign_payload(payload, WEBHOOK_SECRET, now - 3600)) == 400
    assert shop.webhook(payload, "t=1,v1=00") == 400
    assert shop.balance(key) == 0
    assert shop.webhook(payload, sign_payload(payload, WEBHOOK_SECRET, now)) == 200
    assert shop.balance(key) == Decimal("25.00")


def test_a_genuine_event_acts_on_the_checkout_as_it_is_now(shop: Shop) -> None:
    """An event is only news that something changed: a 'completed' event for a checkout the
    provider says is unpaid credits nothing, and an 'expired' one arriving after the payment
    takes nothing back."""
    key = shop.plane.sign_in("alice")
    shop.provider.webhook_url = None
    unpaid = shop.top_up(key, "5.00")
    fake = {
        "id": "evt_fake",
        "object": "event",
        "type": "checkout.session.completed",
        "data": {"object": {"id": unpaid["id"], "object": "checkout.session"}},
    }
    payload = json.dumps(fake).encode()
    assert shop.webhook(payload, sign_payload(payload, WEBHOOK_SECRET, int(time.time()))) == 200
    assert shop.balance(key) == 0
    shop.provider.pay(unpaid["id"])
    late = {**fake, "id": "evt_late", "type": "checkout.session.expired"}
    payload = json.dumps(late).encode()
    assert shop.webhook(payload, sign_payload(payload, WEBHOOK_SECRET, int(time.time()))) == 200
    shop.provider.deliver(shop.provider.events[-1]["id"])  # the completed one, after
    assert shop.balance(key) == Decimal("5.00")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    amounts=st.lists(st.integers(1, 500), min_size=1, max_size=4),
)
def test_each_top_up_is_credited_once_across_retries_replays_and_reordering(
    shop: Shop, data: st.DataObject, amounts: list[int]
) -> None:
    key = shop.plane.sign_in("alice")
    before = shop.balance(key)
    shop.provider.webhook_url = None
    first = len(shop.provider.events)
    made = [shop.top_up(key, f"{cents / 100:.2f}") for cents in amounts]
    paid = data.draw(st.lists(st.booleans(), min_size=len(made), max_size=len(made)))
    for topup, pay in zip(made, paid, strict=True):
        if pay:
            shop.provider.pay(topup["id"])
    events = [json.dumps(e).encode() for e in shop.provider.events[first:]]
    now = int(time.time())
    deliveries = data.draw(
        st.lists(
            st.tuples(
                st.integers(0, len(events) - 1) if events else st.just(-1),
                st.sampled_from(["genuine", "old", "forged"]),
            ),
            max_size=12,
        )
    )
    for which, how in deliveries:
        if which < 0:
            continue
        payload = events[which]
        if how == "genuine":
            signature = sign_payload(payload, WEBHOOK_SECRET, now)
        elif how == "old":
            signature = sign_payload(payload, WEBHOOK_SECRET, now - 301)
        else:
            signature = sign_payload(payload, "whsec_forged", now)
        shop.webhook(payload, signature)
    delivered = {
        json.loads(events[which])["data"]["object"]["id"]
        for which, how in deliveries
        if which >= 0 and how == "genuine"
    }
    expected = sum(
        (
            Decimal(t["amount"])
            for t, pay in zip(made, paid, strict=True)
            if pay and t["id"] in delivered
        ),
        Decimal(0),
    )
    assert shop.balance(key) - before == expected


@pytest.mark.parametrize("amount", ["0", "-5", "10.001", "10000.01", "abc", "NaN", None])
def test_a_top_up_amount_is_checked(shop: Shop, amount: str | None) -> None:
    key = shop.plane.sign_in("alice")
    reply = shop.plane.call(key, "POST", "/v1/topups", {"amount": amount})
    assert reply.status == 422


def test_a_webhook_that_verifies_but_is_no_event_changes_nothing(shop: Shop) -> None:
    key = shop.plane.sign_in("alice")
    now = int(time.time())
    for payload in (b"{", b"[]", b'{"type": "checkout.session.completed"}', b"\xff" * 10):
        status = shop.webhook(payload, sign_payload(payload, WEBHOOK_SECRET, now))
        assert status in (200, 400), payload
    huge = b'{"pad": "' + b"x" * (80 << 10) + b'"}'
    assert shop.webhook(huge, sign_payload(huge, WEBHOOK_SECRET, now)) == 413
    assert shop.balance(key) == 0


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["id", "type", "data", "object", "amount_total"]), inner, max_size=4
            )
        ),
        max_leaves=12,
    ),
    signed=st.booleans(),
)
def test_no_webhook_body_breaks_the_endpoint_or_credits_anything(
    shop: Shop, body: object, signed: bool
) -> None:
    key = shop.plane.sign_in("alice")
    before = shop.balance(key)
    payload = json.dumps(body).encode()
    secret = WEBHOOK_SECRET if signed else "whsec_forged"
    status = shop.webhook(payload, sign_payload(payload, secret, int(time.time())))
    assert status in ((200, 400) if signed else (400,))
    assert shop.balance(key) == before


def test_top_ups_are_off_without_a_provider(plane: Plane) -> None:
    key = plane.sign_in("alice")
    assert plane.call(key, "POST", "/v1/topups", {"amount": "10.00"}).status == 503
    assert plane.call(key, "GET", "/v1/balance").json()["balance"] == "0"
    assert plane.call(None, "GET", "/v1/balance").status == 401


@given(st.binary(max_size=300))
def test_the_stand_ins_form_parser_refuses_what_it_cannot_read(body: bytes) -> None:
    try:
        parsed = parse_form(body)
    except (ValueError, UnicodeDecodeError):
        return
    assert isinstance(parsed, dict)


@given(
    st.dictionaries(
        st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
        st.dictionaries(
            st.from_regex(r"[a-z_]{1,8}", fullmatch=True), st.text(max_size=20), max_size=3
        ),
        max_size=3,
    )
)
def test_the_stand_in_reads_what_the_stripe_library_encodes(
    params: dict[str, dict[str, str]],
) -> None:
    # As the library's requestor encodes a request's params.
    body = urlencode(list(_api_encode(params))).encode()
    expected = {k: v for k, v in params.items() if v}
    assert parse_form(body) == expected


def test_the_command_line_tops_up_and_shows_the_balance(shop: Shop, tmp_path: Path) -> None:
    config = tmp_path / "config"
    assert _login(shop.plane, config, "alice").exit_code == 0
    assert _run(["topup", "ten"], config).exit_code != 0
    made = _run(["topup", "7.5"], config)
    assert made.exit_code == 0, made.output
    assert "Pay USD 7.50 here: " in made.output
    url = made.output.split("here: ")[1].split()[0]
    _pay_on_the_page(shop.url, url)
    shown = _run(["balance", "--json"], config)
    assert shown.exit_code == 0, shown.output
    assert Decimal(json.loads(shown.output)["balance"]) == Decimal("7.50")
    assert "balance: USD 7.5" in _run(["balance"], config).output
