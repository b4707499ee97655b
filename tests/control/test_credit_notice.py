"""`GET /v1/balance` tells an account that the farm found at zero when its deployments priced
by the hour stop, on SQLite and PostgreSQL; a top-up clears it, and no account sees another's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from formarket.accounts.credit import CreditStore
from tests.accounts.databases import db_url, pg_url
from tests.control.conftest import Plane
from tests.control.test_cli import _login, _run
from tests.control.test_dashboard import _get, _sign_in

__all__ = ["db_url", "pg_url"]

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def plane_db(db_url: str) -> str:
    return db_url


def test_an_account_at_zero_is_told_when_its_deployments_stop(plane: Plane) -> None:
    alice_key, bob_key = plane.sign_in("alice"), plane.sign_in("bob")
    alice = plane.store.account("alice")
    assert alice is not None
    farm = CreditStore(plane.store.engine, clock=lambda: AT)
    before = plane.call(alice_key, "GET", "/v1/balance").json()
    assert (before["notice"], before["stops_at"]) == (None, None)
    # The farm charges instance time beyond the balance and finds it at zero.
    farm.grant(alice, Decimal("1.00"))
    farm.charge(alice.id, "ih-dep-000000000001-0", Decimal("1.50"), "instance")
    farm.standing(alice.id, mark=True)
    told = plane.call(alice_key, "GET", "/v1/balance").json()
    assert Decimal(told["balance"]) == Decimal("-0.50")
    assert datetime.fromisoformat(told["zero_since"]) == AT
    # The starter terms set no grace of their own: the default, a day.
    assert datetime.fromisoformat(told["stops_at"]) == AT + timedelta(hours=24)
    assert "2026-12-02 09:30 UTC" in told["notice"]
    # Another account's balance says nothing of it.
    other = plane.call(bob_key, "GET", "/v1/balance").json()
    assert (other["notice"], other["stops_at"], other["balance"]) == (None, None, "0")
    # A top-up that leaves it at zero keeps the notice; one that lifts it clears it.
    farm.grant(alice, Decimal("0.50"))
    assert plane.call(alice_key, "GET", "/v1/balance").json()["stops_at"] is not None
    farm.grant(alice, Decimal("0.01"))
    after = plane.call(alice_key, "GET", "/v1/balance").json()
    assert (after["notice"], after["stops_at"]) == (None, None)


def test_the_command_line_shows_the_notice(plane: Plane, tmp_path: Path) -> None:
    config = tmp_path / "config"
    assert _login(plane, config, "alice").exit_code == 0
    alice = plane.store.account("alice")
    assert alice is not None
    assert "notice:" not in _run(["balance"], config).output
    CreditStore(plane.store.engine, clock=lambda: AT).standing(alice.id, mark=True)
    shown = _run(["balance"], config)
    assert shown.exit_code == 0, shown.output
    assert "notice: Your balance has been at or below zero since 2026-12-01 09:30 UTC" in (
        shown.output
    )


def test_the_dashboard_shows_the_notice_to_its_account_only(plane: Plane) -> None:
    alice_session, bob_session = _sign_in(plane, "alice"), _sign_in(plane, "bob")
    alice = plane.store.account("alice")
    assert alice is not None
    assert b"credit-notice" not in _get(plane.url, "/dashboard", alice_session).body
    CreditStore(plane.store.engine, clock=lambda: AT).standing(alice.id, mark=True)
    page = _get(plane.url, "/dashboard", alice_session).body
    assert b'id="credit-notice"' in page
    assert b"2026-12-02 09:30 UTC" in page
    assert b"credit-notice" not in _get(plane.url, "/dashboard", bob_session).body
