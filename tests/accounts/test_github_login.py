"""Signing in with GitHub against the stand-in: the device flow, the web flow, and the
hostile cases (a replayed code or device code, a forged or mismatched return, another app's
code, a denied sign-in)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from formarket.accounts.github_login import DeviceCode, GitHubLogin, LoginError
from formarket.httpclient import Client
from formarket.standins.github import StandIn

CALLBACK = "http://127.0.0.1:9/auth/callback"


@pytest.fixture
def github() -> Iterator[StandIn]:
    with StandIn() as standin:
        standin.oauth.interval = 0
        standin.oauth.add_app("cli-app", "", "")
        standin.oauth.add_app("web-app", "web-secret", "http://127.0.0.1:9/auth/")
        standin.oauth.add_app("other-app", "other-secret", "http://127.0.0.1:9/auth/")
        yield standin


def _login(github: StandIn, client_id: str, secret: str = "") -> GitHubLogin:
    return GitHubLogin(
        client_id, secret, server_url=github.url, api_url=github.url, sleep=lambda _: None
    )


def test_the_device_flow_signs_in_whoever_enters_the_code(github: StandIn) -> None:
    login = _login(github, "cli-app")
    device = login.start_device()
    assert device.verification_uri == f"{github.url}/login/device"
    polls = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 3:  # the user types the code while the CLI polls
            github.oauth.approve(device.user_code, "alice")

    login._sleep = sleep
    token = login.finish_device(device)
    assert login.user(token).login == "alice"
    assert login.user(token).id == github.oauth.user_id("alice")
    # The device code was good once.
    with pytest.raises(LoginError):
        login.finish_device(device)


def test_a_denied_or_unknown_device_code_ends_the_wait(github: StandIn) -> None:
    login = _login(github, "cli-app")
    device = login.start_device()
    github.oauth.deny(device.user_code)
    with pytest.raises(LoginError):
        login.finish_device(device)
    forged = DeviceCode("0" * 40, "AAAA-BBBB", "x", 900, 0)
    with pytest.raises(LoginError):
        login.finish_device(forged)
    with pytest.raises(LoginError):
        _login(github, "no-such-app").start_device()


def test_polling_too_fast_is_slowed_down(github: StandIn) -> None:
    now = [0.0]
    github.oauth.clock = lambda: now[0]
    github.oauth.interval = 5
    login = _login(github, "cli-app")
    device = login.start_device()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds
        if len(waits) == 3:
            github.oauth.approve(device.user_code, "bob")

    login._sleep = sleep
    # A client that ignores the interval it was given (polls at once) is told to slow down,
    # and then waits the longer interval GitHub names.
    hasty = DeviceCode(device.device_code, device.user_code, device.verification_uri, 900, 0)
    token = login.finish_device(hasty, clock=lambda: now[0])
    assert waits == [0, 0, 10]
    assert login.user(token).login == "bob"


def _browser(github: StandIn, url: str, who: str) -> str:
    """What a browser does on the stand-in's page: sign in as `who`; the return address."""
    with Client() as http:
        answer = http.get(f"{url}&login={who}")
    assert answer.status_code == 302
    return answer.headers["location"]


def test_the_web_flow_and_its_replays(github: StandIn) -> None:
    login = _login(github, "web-app", "web-secret")
    url, state = login.authorization_url(CALLBACK)
    assert parse_qs(urlsplit(url).query)["state"] == [state]
    back = _browser(github, url, "carol")
    token = login.finish_web(back, state, CALLBACK)
    assert login.user(token).login == "carol"
    # The same return again: GitHub spends a code once.
    with pytest.raises(LoginError):
        login.finish_web(back, state, CALLBACK)


def test_a_forged_return_is_refused(github: StandIn) -> None:
    login = _login(github, "web-app", "web-secret")
    url, state = login.authorization_url(CALLBACK)
    back = _browser(github, url, "carol")
    code = parse_qs(urlsplit(back).query)["code"][0]
    for forged in (
        f"{CALLBACK}?code={code}&state=not-{state}",  # another sign-in's state
        f"{CALLBACK}?code={code}",  # no state at all
        f"{CALLBACK}?state={state}",  # no code
        f"{CALLBACK}?code=made-up&state={state}",  # a code GitHub never gave
    ):
        with pytest.raises(LoginError):
            login.finish_web(forged, state, CALLBACK)


def test_another_apps_code_or_a_wrong_secret_gets_no_token(github: StandIn) -> None:
    other = _login(github, "other-app", "other-secret")
    url, state = other.authorization_url(CALLBACK)
    back = _browser(github, url, "dave")
    mine = _login(github, "web-app", "web-secret")
    with pytest.raises(LoginError):
        mine.finish_web(back, state, CALLBACK)
    url, state = mine.authorization_url(CALLBACK)
    back = _browser(github, url, "dave")
    with pytest.raises(LoginError):
        _login(github, "web-app", "wrong").finish_web(back, state, CALLBACK)


def test_an_unknown_token_is_nobody(github: StandIn) -> None:
    with pytest.raises(LoginError):
        _login(github, "web-app").user("gho_made_up")


def test_concurrent_device_sign_ins_get_their_own_users(github: StandIn) -> None:
    login = _login(github, "cli-app")
    devices = {who: login.start_device() for who in ("erin", "frank")}
    tokens: dict[str, str] = {}

    def finish(who: str) -> None:
        tokens[who] = _login(github, "cli-app").finish_device(devices[who])

    threads = [threading.Thread(target=finish, args=(who,)) for who in devices]
    for thread in threads:
        thread.start()
    for who, device in devices.items():
        github.oauth.approve(device.user_code, who)
    for thread in threads:
        thread.join(10)
    assert {who: login.user(token).login for who, token in tokens.items()} == {
        "erin": "erin",
        "frank": "frank",
    }
