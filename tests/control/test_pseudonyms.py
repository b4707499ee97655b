"""git names an account only by its pseudonym: a user's whole journey through the control
plane, the gateway and the farm's meter leaves their login nowhere in the repository, and
what was committed before pseudonyms, under the login, is still theirs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from dulwich.repo import Repo

from formarket.farm import desired
from formarket.farm.metering import meter_running
from formarket.farm.publish import routes_for, served_by
from formarket.farm.status import gateway_state
from formarket.gateway.config import GatewayConfig
from formarket.gateway.flush import flush_all
from formarket.gateway.routes import Route, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from formarket.market.governance import bot_identity
from formarket.standins.openai import StandIn as Upstream
from tests.control.conftest import Plane
from tests.gateway.helpers import Client
from tests.git_names import places_naming

# Hyphenated, as many logins are: base32 has no hyphen, so no pseudonym holds it by chance.
LOGIN = "Alice-Liddell"


def _flush(plane: Plane, spool: Path) -> None:
    repo = Repo(str(plane.market.repo))
    try:
        assert flush_all(repo, spool)
    finally:
        repo.close()


def test_after_a_journey_git_names_the_account_only_by_its_pseudonym(
    plane: Plane, tmp_path: Path
) -> None:
    key = plane.sign_in(LOGIN)
    made = plane.call(key, "POST", "/v1/deployments", {"model": "tinyforge/echo-chat"})
    assert made.status == 201, made.body
    (dep,) = (d["id"] for d in made.json()["deployments"])
    deployment = plane.control.index.get(LOGIN.lower(), dep)  # GitHub ignores case; so do we
    assert deployment is not None
    pseudonym = plane.control.pseudonyms.of(LOGIN)
    assert deployment.account == deployment.requester == pseudonym
    # The gateway's state is where the farm publishes its routes, and it shares the key.
    state = gateway_state(plane.market)
    with ServerThread(Upstream()) as upstream:
        routes = routes_for({dep: deployment}, {dep: upstream.url})
        save_routes(state.routes, routes)
        config = GatewayConfig(
            state,
            source="gateway/t",
            segment_seconds=0.1,
            database_url=str(plane.store.engine.url),
        )
        with ServerThread(build_gateway(config)) as gateway:
            assert Client(gateway.url, key).chat(dep).status == 200
            assert Client(gateway.url, key).chat("tinyforge/echo-chat").status == 200
            models = Client(gateway.url, key).request("GET", "/v1/models").json()["data"]
            assert [m["id"] for m in models] == [dep]
    now = datetime.now(UTC)
    assert meter_running(
        tmp_path / "meter.json",
        state.spool,
        "farm/t",
        served_by(routes),
        now,
        started={dep: now - timedelta(hours=1)},
    )
    _flush(plane, state.spool)
    rows = plane.call(key, "GET", "/v1/usage").json()["rows"]
    assert sum(r["calls"] for r in rows) == 2
    assert sum(r["seconds"] for r in rows) >= 3600
    listed = plane.call(key, "GET", "/v1/deployments").json()["deployments"]
    assert [d["id"] for d in listed] == [dep]
    assert plane.call(key, "DELETE", f"/v1/deployments/{dep}").status == 200

    # Deployments, usage events (in their gzip files), commit messages, file names.
    assert places_naming(plane.market.repo, [LOGIN]) == []
    assert places_naming(plane.market.repo, [pseudonym])  # the search does find what is there


def test_what_was_committed_under_a_login_before_pseudonyms_is_still_found(
    plane: Plane, tmp_path: Path
) -> None:
    key = plane.sign_in("bob-builder")
    old = plane.call(key, "POST", "/v1/deployments", {"model": "tinyforge/echo-chat"})
    (dep,) = (d["id"] for d in old.json()["deployments"])
    found = plane.control.index.get("bob-builder", dep)
    assert found is not None
    # As the bot wrote it before pseudonyms: the login in plain text.
    repo = Repo(str(plane.market.repo))
    try:
        legacy = found.model_copy(update={"account": "bob-builder", "requester": "bob-builder"})
        desired.submit(repo, "main", [legacy], "Deploy for bob-builder", bot_identity(repo, "main"))
    finally:
        repo.close()
    before = places_naming(plane.market.repo, ["bob-builder"])
    assert before  # the login is in git now
    listed = plane.call(key, "GET", "/v1/deployments").json()["deployments"]
    assert [d["id"] for d in listed] == [dep]
    assert plane.call(key, "GET", f"/v1/deployments/{dep}").status == 200
    assert plane.call(plane.sign_in("mallory"), "GET", f"/v1/deployments/{dep}").status == 404

    state = gateway_state(plane.market)
    with ServerThread(Upstream()) as upstream:
        # Routes published before pseudonyms name the login; new ones, the pseudonym.
        save_routes(
            state.routes,
            [
                *routes_for({dep: legacy}, {dep: upstream.url}),
                Route(
                    deployment="dep-000000000002",
                    endpoint=upstream.url,
                    account=plane.control.pseudonyms.of("bob-builder"),
                    model=routes_for({dep: legacy}, {dep: upstream.url})[0].model,
                ),
            ],
        )
        config = GatewayConfig(
            state,
            source="gateway/t",
            segment_seconds=0.1,
            database_url=str(plane.store.engine.url),
        )
        with ServerThread(build_gateway(config)) as gateway:
            bob = Client(gateway.url, key)
            assert bob.chat(dep).status == 200
            assert bob.chat("dep-000000000002").status == 200
            mallory = Client(gateway.url, plane.sign_in("mallory"))
            assert mallory.chat(dep).status == 404
            assert mallory.chat("dep-000000000002").status == 404
    _flush(plane, state.spool)
    # The events of the old route name the login too, inside their gzip file.
    assert len(places_naming(plane.market.repo, ["bob-builder"])) > len(before)
    rows = plane.call(key, "GET", "/v1/usage").json()["rows"]
    assert {(r["deployment"], r["calls"]) for r in rows} == {(dep, 1), ("dep-000000000002", 1)}
    assert plane.call(plane.sign_in("mallory"), "GET", "/v1/usage").json()["rows"] == []


def test_no_one_signs_in_under_another_accounts_pseudonym(plane: Plane) -> None:
    victim = plane.control.pseudonyms.of("carol")
    token = plane.github.oauth.token_for(victim)  # a GitHub that would give such a login
    reply = Client(plane.url).request("POST", "/v1/login/github", {"github_token": token})
    assert reply.status in (400, 401, 403, 422), reply.body
    assert plane.store.account(victim) is None
