"""The dashboard's credit: the balance, a top-up through the payment provider's checkout page
(the stand-in), and the hostile cases: another session's form, amounts that are no amount,
top-ups while no provider is set, and a crafted return address."""

from __future__ import annotations

import re

import pytest

from tests.control.conftest import Plane
from tests.control.test_dashboard import _csrf, _get, _post, _sign_in
from tests.control.test_payments import Shop, shop
from tests.gateway.helpers import Client

__all__ = ["shop"]


def _balance(page: bytes) -> str:
    found = re.search(rb'id="balance">([0-9.]+) USD<', page)
    assert found, page[:2000]
    return found.group(1).decode()


def _pay(shop: Shop, page: bytes) -> str:
    """Follow the checkout link and press Pay, as a browser would; where it returns to."""
    link = re.search(rb'id="checkout" href="([^"]+)"', page)
    assert link
    path = link.group(1).decode().replace("&amp;", "&").removeprefix(shop.url)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    paid = Client(shop.url).request("POST", path, raw=b"", headers=form)
    assert paid.status == 303
    location: str = paid.headers["location"]
    return location


def test_a_user_tops_up_from_the_dashboard(shop: Shop) -> None:
    plane = shop.plane
    session = _sign_in(plane, "alice")
    home = _get(plane.url, "/dashboard", session)
    assert _balance(home.body) == "0.00"
    started = _post(
        plane.url, "/dashboard/topups", {"csrf": _csrf(home), "amount": "12.50"}, session
    )
    assert started.status == 200
    assert b"12.50 USD" in started.body
    back = _pay(shop, started.body)
    assert back.endswith("/dashboard?topup=paid")
    after = _get(plane.url, back.removeprefix(plane.url), session)
    assert _balance(after.body) == "12.50"
    assert b"your balance grows" in after.body
    assert b"credited" in after.body


@pytest.mark.parametrize(
    "amount", ["", "abc", "0", "-1", "1.001", "1e9", "NaN", "Infinity", "10,00", "9" * 40]
)
def test_an_amount_that_is_no_amount_opens_nothing(shop: Shop, amount: str) -> None:
    plane = shop.plane
    session = _sign_in(plane, "alice")
    home = _get(plane.url, "/dashboard", session)
    refused = _post(
        plane.url, "/dashboard/topups", {"csrf": _csrf(home), "amount": amount}, session
    )
    assert refused.status == 400
    assert not shop.provider.sessions


def test_a_top_up_needs_this_sessions_form(shop: Shop) -> None:
    plane = shop.plane
    alice, bob = _sign_in(plane, "alice"), _sign_in(plane, "bob")
    bobs_form = _csrf(_get(plane.url, "/dashboard", bob))
    for fields in ({"amount": "5.00"}, {"csrf": bobs_form, "amount": "5.00"}):
        assert _post(plane.url, "/dashboard/topups", fields, alice).status == 403
    assert _post(plane.url, "/dashboard/topups", {"amount": "5.00"}, "").status == 401
    assert not shop.provider.sessions


def test_without_a_provider_there_is_no_top_up(plane: Plane) -> None:
    session = _sign_in(plane, "alice")
    home = _get(plane.url, "/dashboard", session)
    assert b"Top-ups are off" in home.body
    fields = {"csrf": _csrf(home), "amount": "5.00"}
    assert _post(plane.url, "/dashboard/topups", fields, session).status == 503


def test_the_return_note_is_chosen_never_echoed(plane: Plane) -> None:
    session = _sign_in(plane, "alice")
    page = _get(plane.url, "/dashboard?topup=%3Cscript%3Ealert(1)%3C/script%3E", session)
    assert page.status == 200
    assert b"<script>" not in page.body
    assert b"alert(1)" not in page.body
