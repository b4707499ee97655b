"""Broken object-level authorization, tried on every route: account A never sees, stops or
uses B's keys, deployments, usage or invoices, whatever ids it sends; a revoked, expired, scoped,
malformed or missing key is refused everywhere."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from formarket.control.limits import RateLimiter
from tests.accounts.databases import db_url, pg_url
from tests.control.conftest import Plane
from tests.control.invoicing import PERIOD, close_month

__all__ = ["db_url", "pg_url"]


@pytest.fixture
def plane_db(db_url: str) -> str:
    """These tests run on SQLite and on PostgreSQL."""
    return db_url


ROUTES = [
    ("GET", "/v1/keys", None),
    ("POST", "/v1/keys", {"name": "x"}),
    ("DELETE", "/v1/keys/0123456789ab", None),
    ("GET", "/v1/deployments", None),
    ("POST", "/v1/deployments", {"model": "tinyforge/echo-chat", "dry_run": True}),
    ("GET", "/v1/deployments/dep-1", None),
    ("DELETE", "/v1/deployments/dep-1", None),
    ("POST", "/v1/deployments/dep-1/upgrade", {"dry_run": True}),
    ("GET", "/v1/usage", None),
    ("GET", "/v1/balance", None),
    ("GET", "/v1/subscriptions", None),
    ("POST", "/v1/subscriptions", {"listing": "lumen-labs/sketch-turbo", "tier": "Hobby"}),
    ("DELETE", "/v1/subscriptions/sub_" + "0" * 24, None),
    ("GET", "/v1/invoices", None),
    ("GET", "/v1/invoices/2026-03", None),
]


def _bob_with_things(plane: Plane) -> tuple[str, str, str]:
    """Bob's key, one of his key ids and one of his deployment ids."""
    bob = plane.sign_in("bob")
    key_id = plane.call(bob, "GET", "/v1/keys").json()["keys"][0]["id"]
    made = plane.call(bob, "POST", "/v1/deployments", {"model": "tinyforge/echo-chat"})
    assert made.status == 201, made.body
    return bob, key_id, made.json()["deployments"][0]["id"]


def test_alice_never_reaches_bobs_things(plane: Plane) -> None:
    bob, bob_key_id, bob_dep = _bob_with_things(plane)
    alice = plane.sign_in("alice")
    # Seeing: nothing of Bob's in any of Alice's lists.
    assert bob_key_id not in str(plane.call(alice, "GET", "/v1/keys").body)
    assert plane.call(alice, "GET", "/v1/deployments").json() == {"deployments": []}
    assert plane.call(alice, "GET", "/v1/usage").json()["rows"] == []
    # Naming Bob's ids: answered as missing ones, and nothing changes.
    missing = plane.call(alice, "GET", "/v1/deployments/dep-0000000000").json()["error"]
    for method, path in (
        ("GET", f"/v1/deployments/{bob_dep}"),
        ("DELETE", f"/v1/deployments/{bob_dep}"),
        ("DELETE", f"/v1/deployments/{bob_dep}?cascade=true"),
        ("POST", f"/v1/deployments/{bob_dep}/upgrade"),
        ("DELETE", f"/v1/keys/{bob_key_id}"),
    ):
        reply = plane.call(alice, method, path, {} if method == "POST" else None)
        assert reply.status == 404, (method, path)
        assert reply.json()["error"]["code"] == missing["code"]
    scoped = plane.call(alice, "POST", "/v1/keys", {"deployment": bob_dep})
    assert scoped.status == 404
    # Bob's things are as they were.
    assert plane.call(bob, "GET", f"/v1/deployments/{bob_dep}").json()["desired"]["state"] == (
        "running"
    )
    assert plane.call(bob, "GET", "/v1/keys").json()["keys"][0]["revoked_at"] is None


def test_an_invoice_is_served_to_its_own_account_only(plane: Plane) -> None:
    alice, bob, carol = plane.sign_in("alice"), plane.sign_in("bob"), plane.sign_in("carol")
    close_month(plane.control, {"alice": 1, "bob": 2})
    bobs = plane.call(bob, "GET", f"/v1/invoices/{PERIOD}")
    assert bobs.status == 200
    # Alice has her own invoice of the period: she is given hers, never Bob's.
    (listed,) = plane.call(alice, "GET", "/v1/invoices").json()["invoices"]
    assert listed["sha256"] not in bobs.body.decode()
    alices = plane.call(alice, "GET", f"/v1/invoices/{PERIOD}")
    assert alices.status == 200
    assert alices.body != bobs.body
    assert plane.control.pseudonyms.of("bob") not in alices.body.decode()
    # Carol has none: Bob's period is answered as a missing one.
    assert plane.call(carol, "GET", "/v1/invoices").json() == {"invoices": []}
    theirs = plane.call(carol, "GET", f"/v1/invoices/{PERIOD}")
    missing = plane.call(carol, "GET", "/v1/invoices/2001-01")
    assert theirs.status == missing.status == 404
    assert theirs.json()["error"]["code"] == missing.json()["error"]["code"]
    assert b"formarket.invoice" not in theirs.body


@pytest.mark.parametrize(
    "ident",
    ["..%2F..%2Fetc", "DEP-1", "dep-1%00", "dep-" + "a" * 300, "%20dep-1", "dep-1'--"],
)
def test_hostile_ids_are_refused_before_anything_is_read(plane: Plane, ident: str) -> None:
    alice = plane.sign_in("alice")
    for method in ("GET", "DELETE"):
        reply = plane.call(alice, method, f"/v1/deployments/{ident}")
        assert reply.status in (404, 422), (method, ident, reply.status)
    assert plane.call(alice, "DELETE", f"/v1/keys/{ident}").status in (404, 422)
    assert plane.call(alice, "GET", f"/v1/invoices/{ident}").status in (404, 422)


def _refused_everywhere(plane: Plane, key: str | None, status: int) -> None:
    for method, path, body in ROUTES:
        reply = plane.call(key, method, path, body)
        assert reply.status == status, (method, path, reply.status, reply.body)


def test_a_revoked_key_is_refused_everywhere(plane: Plane) -> None:
    alice = plane.sign_in("alice")
    spare = plane.call(alice, "POST", "/v1/keys", {"name": "spare"}).json()
    plane.call(alice, "DELETE", f"/v1/keys/{spare['details']['id']}")
    _refused_everywhere(plane, spare["key"], 401)


def test_an_expired_key_is_refused_everywhere(plane: Plane) -> None:
    account = plane.store.sign_in("alice", 1)
    key, _ = plane.store.create_key(
        account, expires_at=datetime.now(UTC) + timedelta(milliseconds=300)
    )
    assert plane.call(key, "GET", "/v1/keys").status == 200
    time.sleep(0.4)
    _refused_everywhere(plane, key, 401)


def test_missing_malformed_and_scoped_keys_are_refused_everywhere(plane: Plane) -> None:
    _refused_everywhere(plane, None, 401)
    _refused_everywhere(plane, "fmk_0123456789ab_" + "A" * 43, 401)
    _refused_everywhere(plane, "not-a-key", 401)
    account = plane.store.sign_in("alice", 1)
    scoped, _ = plane.store.create_key(account, deployment="dep-1")
    _refused_everywhere(plane, scoped, 403)


def test_each_account_has_its_own_rate(plane: Plane) -> None:
    alice, bob = plane.sign_in("alice"), plane.sign_in("bob")
    plane.control.limiter = RateLimiter(0.01, 3)
    statuses = [plane.call(alice, "GET", "/v1/keys").status for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    reply = plane.call(alice, "GET", "/v1/keys")
    assert int(reply.headers["retry-after"]) >= 1
    assert plane.call(bob, "GET", "/v1/keys").status == 200
