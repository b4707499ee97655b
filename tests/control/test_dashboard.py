"""The dashboard: GitHub's web flow through the stand-in, the pages of a signed-in user, and
the hostile cases (a replayed or forged callback, CSRF on every form, another account's ids)."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

from formarket.control.limits import RateLimiter
from tests.control.conftest import Plane
from tests.gateway.helpers import Client, Reply


def _get(url: str, path: str, cookie: str = "") -> Reply:
    return Client(url).request("GET", path, headers={"Cookie": cookie} if cookie else None)


def _post(url: str, path: str, fields: dict[str, str], cookie: str) -> Reply:
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
    return Client(url).request("POST", path, raw=urlencode(fields).encode(), headers=headers)


def _cookie(reply: Reply, name: str) -> str:
    jar = SimpleCookie()
    jar.load(reply.headers["set-cookie"])
    return jar[name].value


def _start(plane: Plane, who: str) -> tuple[str, str]:
    """(the callback's path and query, the state cookie) of a sign-in GitHub approved."""
    started = _get(plane.url, "/dashboard/login")
    assert started.status == 302
    state = _cookie(started, "fmk_oauth_state")
    at_github = Client(plane.github.url).request(
        "GET", started.headers["location"].removeprefix(plane.github.url) + f"&login={who}"
    )
    back = urlsplit(at_github.headers["location"])
    return f"{back.path}?{back.query}", state


def _sign_in(plane: Plane, who: str) -> str:
    """The session cookie of `who`, signed in through the web flow."""
    callback, state = _start(plane, who)
    done = _get(plane.url, callback, f"fmk_oauth_state={state}")
    assert done.status == 303, done.body
    flags = done.headers["set-cookie"].lower()
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "secure" not in flags  # plain HTTP here; set over HTTPS
    return f"fmk_session={_cookie(done, 'fmk_session')}"


def _csrf(page: Reply) -> str:
    found = re.search(rb'name="csrf" value="([0-9a-f]+)"', page.body)
    assert found
    return found.group(1).decode()


def test_signing_in_shows_my_things(plane: Plane) -> None:
    key = plane.sign_in("alice")
    made = plane.call(key, "POST", "/v1/deployments", {"model": "tinyforge/echo-chat"})
    dep = made.json()["deployments"][0]["id"]
    plane.call(key, "POST", "/v1/keys", {"name": "<script>alert(1)</script>"})
    session = _sign_in(plane, "alice")
    page = _get(plane.url, "/dashboard", session)
    assert page.status == 200
    assert b"<script>" not in page.body
    assert b"&lt;script&gt;" in page.body
    assert dep.encode() in page.body
    assert b"curl -s" in page.body
    assert key[-4:].encode() in page.body
    assert key.encode() not in page.body
    assert "script-src" not in page.headers["content-security-policy"]


def test_without_a_session_there_is_only_the_sign_in_page(plane: Plane) -> None:
    page = _get(plane.url, "/dashboard", "fmk_session=made-up")
    assert b"Sign in with GitHub" in page.body
    assert b"My keys" not in page.body


def test_a_replayed_or_forged_callback_signs_no_one_in(plane: Plane) -> None:
    callback, state = _start(plane, "alice")
    assert _get(plane.url, callback).status == 400  # no cookie: another browser's callback
    callback, state = _start(plane, "alice")
    assert _get(plane.url, callback, "fmk_oauth_state=other").status == 400
    callback, state = _start(plane, "alice")
    assert _get(plane.url, callback, f"fmk_oauth_state={state}").status == 303
    replay = _get(plane.url, callback, f"fmk_oauth_state={state}")
    assert replay.status == 400
    assert "set-cookie" not in replay.headers
    forged = "/dashboard/auth/callback?code=made-up&state=made-up"
    assert _get(plane.url, forged, "fmk_oauth_state=made-up").status == 400


def test_every_form_needs_its_sessions_csrf_token(plane: Plane) -> None:
    key = plane.sign_in("alice")
    dep = plane.call(key, "POST", "/v1/deployments", {"model": "tinyforge/echo-chat"}).json()
    dep_id = dep["deployments"][0]["id"]
    key_id = plane.call(key, "GET", "/v1/keys").json()["keys"][0]["id"]
    session = _sign_in(plane, "alice")
    other_session = _sign_in(plane, "alice")
    wrong = _csrf(_get(plane.url, "/dashboard", other_session))
    forms = [
        ("/dashboard/keys", {"name": "x"}),
        (f"/dashboard/keys/{key_id}/revoke", {}),
        (f"/dashboard/deployments/{dep_id}/stop", {}),
        ("/dashboard/logout", {}),
    ]
    for path, fields in forms:
        for token in ({}, {"csrf": ""}, {"csrf": wrong}):
            assert _post(plane.url, path, {**fields, **token}, session).status == 403, path
    # Nothing changed.
    assert len(plane.call(key, "GET", "/v1/keys").json()["keys"]) == 1
    assert plane.call(key, "GET", f"/v1/deployments/{dep_id}").json()["desired"]["state"] == (
        "running"
    )
    right = _csrf(_get(plane.url, "/dashboard", session))
    made = _post(plane.url, "/dashboard/keys", {"name": "web", "csrf": right}, session)
    assert made.status == 200
    shown = re.search(rb"<code id=\"new-key\">(fmk_[^<]+)</code>", made.body)
    assert shown
    assert plane.call(shown.group(1).decode(), "GET", "/v1/keys").status == 200
    stop = _post(plane.url, f"/dashboard/deployments/{dep_id}/stop", {"csrf": right}, session)
    assert stop.status == 303
    assert plane.call(key, "GET", f"/v1/deployments/{dep_id}").json()["actual"] == "stopped"
    assert _post(plane.url, "/dashboard/logout", {"csrf": right}, session).status == 303
    assert b"Sign in with GitHub" in _get(plane.url, "/dashboard", session).body


def test_alice_cannot_stop_or_revoke_bobs_things_from_her_dashboard(plane: Plane) -> None:
    bob = plane.sign_in("bob")
    bob_dep = plane.call(bob, "POST", "/v1/deployments", {"model": "tinyforge/echo-chat"}).json()
    bob_dep_id = bob_dep["deployments"][0]["id"]
    bob_key_id = plane.call(bob, "GET", "/v1/keys").json()["keys"][0]["id"]
    session = _sign_in(plane, "alice")
    page = _get(plane.url, "/dashboard", session)
    assert bob_dep_id.encode() not in page.body
    csrf = _csrf(page)
    for path in (
        f"/dashboard/deployments/{bob_dep_id}/stop",
        f"/dashboard/keys/{bob_key_id}/revoke",
    ):
        assert _post(plane.url, path, {"csrf": csrf}, session).status == 404
    scoped = _post(plane.url, "/dashboard/keys", {"csrf": csrf, "deployment": bob_dep_id}, session)
    assert scoped.status == 404
    assert plane.call(bob, "GET", "/v1/keys").json()["keys"][0]["revoked_at"] is None
    assert plane.call(bob, "GET", f"/v1/deployments/{bob_dep_id}").json()["desired"]["state"] == (
        "running"
    )


def test_an_oversized_form_is_refused(plane: Plane) -> None:
    session = _sign_in(plane, "alice")
    csrf = _csrf(_get(plane.url, "/dashboard", session))
    reply = _post(plane.url, "/dashboard/keys", {"csrf": csrf, "name": "x" * (80 << 10)}, session)
    assert reply.status == 413


def test_starting_sign_ins_is_limited_per_address(plane: Plane) -> None:
    plane.control.sign_in_limiter = RateLimiter(0.01, 2)
    statuses = [_get(plane.url, "/dashboard/login").status for _ in range(4)]
    assert statuses == [302, 302, 429, 429]
