"""`/v1/subscriptions` over HTTP, on SQLite and PostgreSQL: a tier of a subscription-priced
listing is paid from the balance, refused when it cannot be, and one account never sees or
cancels another's (its ids answer as ones that do not exist)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from dulwich.repo import Repo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formarket.accounts.credit import CreditStore
from formarket.accounts.included import IncludedStore, Measure, Slice
from formarket.market.writer import Identity, commit_changes
from tests.accounts.databases import db_url, pg_url
from tests.control.conftest import Plane
from tests.control.test_dashboard import _get, _sign_in

__all__ = ["db_url", "pg_url"]

LISTING = "lumen-labs/sketch-turbo"
ROOT = Path(__file__).parents[2]


@pytest.fixture
def plane_db(db_url: str) -> str:
    return db_url


def _priced_in_usd(plane: Plane) -> None:
    """The starter's subscription listing is priced in EUR; the same in the platform's."""
    path = f"registry/models/{LISTING}/listing.yaml"
    raw = (ROOT / path).read_bytes().replace(b"currency: EUR", b"currency: USD")
    repo = Repo(str(plane.market.repo))
    try:
        commit_changes(repo, "main", {path: raw}, "USD", Identity("mara", "m@x.org"))
    finally:
        repo.close()


def _gateway_leases(plane: Plane, login: str, requests: int) -> tuple[IncludedStore, int, Slice]:
    """A gateway process leases `requests` of `login`'s subscription's included requests."""
    account = plane.store.account(login)
    assert account is not None
    included = IncludedStore(plane.store.engine)
    _, lease = included.take_included(
        account.id,
        LISTING,
        "gw-1",
        None,
        Measure(),
        short=Measure(1, 0),
        more=Measure(requests, 0),
        ttl=timedelta(seconds=60),
    )
    assert lease is not None
    return included, account.id, lease


def _credit(plane: Plane, login: str, amount: str) -> None:
    account = plane.store.account(login)
    assert account is not None
    CreditStore(plane.store.engine).grant(account, Decimal(amount))


def test_a_subscription_is_paid_from_the_balance_and_only_its_account_sees_it(
    plane: Plane,
) -> None:
    alice, mallory = plane.sign_in("alice"), plane.sign_in("mallory")
    # Priced in EUR: balances are in USD, so no subscription.
    refused = plane.call(alice, "POST", "/v1/subscriptions", {"listing": LISTING, "tier": "Hobby"})
    assert refused.status == 400, refused.body
    _priced_in_usd(plane)
    short = plane.call(alice, "POST", "/v1/subscriptions", {"listing": LISTING, "tier": "Hobby"})
    assert short.status == 402
    assert short.json()["error"]["code"] == "insufficient_quota"
    _credit(plane, "alice", "10.00")
    made = plane.call(alice, "POST", "/v1/subscriptions", {"listing": LISTING, "tier": "Hobby"})
    assert made.status == 201, made.body
    sub = made.json()
    assert (Decimal(sub["price"]), sub["currency"], sub["included_requests"]) == (9, "USD", 500)
    assert Decimal(plane.call(alice, "GET", "/v1/balance").json()["balance"]) == 1
    twice = plane.call(alice, "POST", "/v1/subscriptions", {"listing": LISTING, "tier": "Hobby"})
    assert twice.status == 409
    # Another account neither sees nor cancels it.
    assert plane.call(mallory, "GET", "/v1/subscriptions").json() == {"subscriptions": []}
    assert plane.call(mallory, "DELETE", f"/v1/subscriptions/{sub['id']}").status == 404
    assert plane.call(None, "DELETE", f"/v1/subscriptions/{sub['id']}").status == 401
    [mine] = plane.call(alice, "GET", "/v1/subscriptions").json()["subscriptions"]
    assert mine["state"] == "active"
    assert (mine["used_requests"], mine["held_requests"]) == (0, 0)
    # A gateway leases 10 of the included requests, then gives the lease back having used 3.
    included, account_id, lease = _gateway_leases(plane, "alice", 10)
    [mine] = plane.call(alice, "GET", "/v1/subscriptions").json()["subscriptions"]
    assert (mine["used_requests"], mine["held_requests"]) == (0, 10)
    assert included.give_back_included(account_id, lease, Measure(3, 0))
    [mine] = plane.call(alice, "GET", "/v1/subscriptions").json()["subscriptions"]
    assert (mine["used_requests"], mine["held_requests"]) == (3, 0)
    cancelled = plane.call(alice, "DELETE", f"/v1/subscriptions/{sub['id']}")
    assert cancelled.json()["state"] == "cancelled"
    # Unknown tiers and listings, and listings not priced by subscription.
    for body, status in (
        ({"listing": LISTING, "tier": "Gold"}, 400),
        ({"listing": "nobody/nothing", "tier": "Hobby"}, 404),
        ({"listing": "tinyforge/echo-chat", "tier": "Hobby"}, 400),
    ):
        assert plane.call(alice, "POST", "/v1/subscriptions", body).status == status


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    listing=st.text(max_size=80),
    tier=st.one_of(st.text(max_size=60), st.integers(), st.none()),
    sub_id=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%"),
        min_size=1,
        max_size=40,
    ),
)
def test_hostile_subscription_requests_change_nothing(
    plane: Plane, listing: str, tier: object, sub_id: str
) -> None:
    key = plane.sign_in("eve")
    answer = plane.call(key, "POST", "/v1/subscriptions", {"listing": listing, "tier": tier})
    assert answer.status in (400, 402, 404, 422)
    assert plane.call(key, "DELETE", f"/v1/subscriptions/{sub_id}").status in (404, 422)
    assert plane.call(key, "GET", "/v1/subscriptions").json() == {"subscriptions": []}
    assert plane.call(key, "GET", "/v1/balance").json()["balance"] == "0"


def test_the_dashboard_shows_a_subscription_and_its_included_usage(plane: Plane) -> None:
    session = _sign_in(plane, "alice")
    assert b"My subscriptions" not in _get(plane.url, "/dashboard", session).body
    _priced_in_usd(plane)
    _credit(plane, "alice", "10.00")
    alice = plane.sign_in("alice")
    made = plane.call(alice, "POST", "/v1/subscriptions", {"listing": LISTING, "tier": "Hobby"})
    assert made.status == 201, made.body
    _gateway_leases(plane, "alice", 7)
    page = _get(plane.url, "/dashboard", session).body.decode()
    assert "My subscriptions" in page
    row = page.split("My subscriptions", 1)[1]
    assert LISTING in row
    assert "7 of\n500" in row  # held by a gateway for calls now: counted as used
    # Another account sees none of it.
    assert (
        "My subscriptions"
        not in _get(plane.url, "/dashboard", _sign_in(plane, "bob")).body.decode()
    )
