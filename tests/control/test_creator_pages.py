"""The creators' side of the dashboard: "My listings" shows the usage of the listings of the
publishers whose owners name the signed-in login, by day and by version, and nothing of
anyone else's listings; and the catalog's stylesheets it is drawn with."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dulwich.repo import Repo

from formarket.control.publishers import publishers_of
from formarket.gateway.config import GatewayConfig, StatePaths
from formarket.gateway.flush import flush_all
from formarket.gateway.routes import Route, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from formarket.market.writer import Identity, commit_changes
from formarket.schemas.usage import ListingVersion
from formarket.standins.openai import StandIn as Upstream
from tests.control.conftest import Plane
from tests.control.test_dashboard import _get, _sign_in
from tests.gateway.helpers import Client

ECHO = ListingVersion(id="tinyforge/echo-chat", version="1.1.0")
NORTHWIND = ListingVersion(id="northwind-ai/northwind-chat-8b", version="1.0.0")


def _calls(plane: Plane, tmp_path: Path, plan: list[tuple[str, ListingVersion, int]]) -> None:
    """`plan` holds (deployment, model, calls): made through a gateway, committed to git."""
    key = plane.sign_in("ada")
    state = StatePaths(tmp_path / "gw")
    with ServerThread(Upstream()) as upstream:
        routes = [
            Route(deployment=d, endpoint=upstream.url, account="ada", model=m) for d, m, _ in plan
        ]
        save_routes(state.routes, routes)
        config = GatewayConfig(
            state, source="gateway/t", segment_seconds=0.1, database_url=str(plane.store.engine.url)
        )
        with ServerThread(build_gateway(config)) as gateway:
            for dep, _model, calls in plan:
                for _ in range(calls):
                    assert Client(gateway.url, key).chat(dep).status == 200
    repo = Repo(str(plane.market.repo))
    try:
        assert flush_all(repo, state.spool)
    finally:
        repo.close()


def _rows(body: bytes) -> list[list[str]]:
    table = body.split(b"By day and version", 1)[1].split(b"</table>", 1)[0].decode()
    return [re.findall(r"<td>([^<]*)</td>", row) for row in table.split("<tr>")[2:]]


def test_an_owner_sees_the_usage_of_their_listings_by_version(plane: Plane, tmp_path: Path) -> None:
    _calls(plane, tmp_path, [("dep-echo", ECHO, 3), ("dep-nw", NORTHWIND, 2)])
    sam = _sign_in(plane, "tf-sam")  # registry/publishers/tinyforge.yaml names tf-sam
    page = _get(plane.url, "/dashboard/listings", sam)
    assert page.status == 200
    assert b"<svg" in page.body
    assert b"fm-chart" in page.body
    rows = _rows(page.body)
    assert [r[1:4] for r in rows] == [["tinyforge/echo-chat", "1.1.0", "3"]]
    assert b"northwind" not in page.body  # another publisher's listing, called the same day


def test_an_account_that_owns_no_publisher_sees_no_listing(plane: Plane, tmp_path: Path) -> None:
    _calls(plane, tmp_path, [("dep-echo", ECHO, 1)])
    page = _get(plane.url, "/dashboard/listings", _sign_in(plane, "ada"))
    assert page.status == 200
    assert b"owns no publisher" in page.body
    assert b"tinyforge/echo-chat" not in page.body


def test_without_a_session_the_listings_page_asks_to_sign_in(plane: Plane) -> None:
    page = _get(plane.url, "/dashboard/listings", "fmk_session=made-up")
    assert b"Sign in with GitHub" in page.body
    assert b"By day and version" not in page.body


@pytest.mark.parametrize(
    ("login", "owns"),
    [("tf-sam", True), ("TF-Sam", True), ("tf-sa", False), ("tf-sam ", False), ("", False)],
)
def test_owners_are_matched_as_github_matches_logins(plane: Plane, login: str, owns: bool) -> None:
    repo = Repo(str(plane.market.repo))
    try:
        assert ("tinyforge" in publishers_of(repo, "main", login)) is owns
    finally:
        repo.close()


def test_a_broken_publisher_file_speaks_for_no_one(plane: Plane) -> None:
    repo = Repo(str(plane.market.repo))
    try:
        broken = {
            "registry/publishers/evil.yaml": b"id: evil\nowners: [ada\n",
            "registry/publishers/odd.yaml": b"id: odd\nname: Odd\nowners: ada\n",
        }
        commit_changes(repo, "main", broken, "broken publishers", Identity("m", "m@x.org"))
        assert publishers_of(repo, "main", "ada") == frozenset()
    finally:
        repo.close()


def test_the_catalogs_stylesheets_are_served_and_nothing_else(plane: Plane) -> None:
    sheet = _get(plane.url, "/dashboard/assets/material.css")
    assert sheet.status == 200
    assert sheet.headers["content-type"].startswith("text/css")
    assert b".md-header" in sheet.body
    again = Client(plane.url).request(
        "GET", "/dashboard/assets/material.css", headers={"If-None-Match": sheet.headers["etag"]}
    )
    assert again.status == 304
    for hostile in ("../api.py", "..%2F..%2Fpyproject.toml", "site.css", "material.css.map"):
        assert _get(plane.url, f"/dashboard/assets/{hostile}").status == 404


def _statement(publisher: str, period: str, creator: str, reference: str | None) -> bytes:
    commit = "77f6f647b7b3d558fe4d8a8eb6f11d0b32914272"
    line = {
        "kind": "usage", "usage_period": period, "listing": f"{publisher}/x", "version": "1.0.0",
        "metric": "requests", "quantity": 10, "unit_price": "0.01", "price_unit": "request",
        "royalty_percent": "70", "gross": "0.10", "creator": creator, "platform": "0.03",
    }  # fmt: skip
    payout = {
        "publisher": publisher, "currency": "USD", "opening_balance": "0.00",
        "earned": creator, "held": [], "due": creator, "paid": creator, "fee": "0.00",
        "closing_balance": "0.00", "status": "paid", "method": "paypal", "reference": reference,
    }  # fmt: skip
    statement = {
        "format": "formarket.royalty-statement/1", "period": period, "publisher": publisher,
        "usage_commit": commit, "policy": {"version": 1, "commit": commit},
        "currencies": [
            {"currency": "USD", "lines": [line], "gross": "0.10", "creator": creator,
             "platform": "0.03"}
        ],
        "unrated": [], "payouts": [payout],
    }  # fmt: skip
    return json.dumps(statement).encode()


def test_an_owner_sees_their_earnings_and_payouts_and_no_one_elses(plane: Plane) -> None:
    repo = Repo(str(plane.market.repo))
    try:
        closed = {
            "royalties/2026-10/statements/tinyforge.json": _statement(
                "tinyforge", "2026-10", "0.07", "po_tiny_1"
            ),
            "royalties/2026-10/statements/northwind-ai.json": _statement(
                "northwind-ai", "2026-10", "0.05", "po_north_1"
            ),
            # Hostile or broken: a statement filed under another publisher's name, and junk.
            "royalties/2026-11/statements/tinyforge.json": _statement(
                "northwind-ai", "2026-11", "9.99", "po_forged"
            ),
            "royalties/notaperiod/statements/tinyforge.json": b"{",
        }
        commit_changes(repo, "main", closed, "close", Identity("m", "m@x.org"))
    finally:
        repo.close()
    page = _get(plane.url, "/dashboard/listings", _sign_in(plane, "tf-sam"))
    assert page.status == 200
    assert b"Earnings by period" in page.body
    assert b"po_tiny_1" in page.body
    assert b"0.07" in page.body
    for theirs in (b"po_north_1", b"po_forged", b"9.99"):
        assert theirs not in page.body
    nothing = _get(plane.url, "/dashboard/listings", _sign_in(plane, "ada"))
    assert b"po_" not in nothing.body
