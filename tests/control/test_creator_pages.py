"""The creators' side of the dashboard: "My listings" shows the usage of the listings of the
publishers whose owners name the signed-in login, by day and by version, and nothing of
anyone else's listings; and the catalog's stylesheets it is drawn with."""

from __future__ import annotations

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
