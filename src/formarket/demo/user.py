"""The user's side of the demo: a user signs in with GitHub's device flow (`formarket login`)
against the GitHub stand-in, makes a key, deploys a model through the control plane's API,
calls it through the gateway with that key, and finds the deployment and its calls in the
dashboard, signed in there with GitHub's web flow.

The control plane and the gateway share one accounts database (SQLite in the demo's folder),
as they would in production; the farm builds and runs what the API commits like any other
deployment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from formarket.accounts import AccountStore, open_database
from formarket.accounts.github_login import DeviceCode, GitHubLogin
from formarket.control import Control, create_app
from formarket.control.client import ControlClient, Credentials, sign_in
from formarket.errors import FormarketError
from formarket.farm.settings import FarmSettings
from formarket.gateway.server import ServerThread
from formarket.httpclient import Client
from formarket.standins.github import StandIn

__all__ = ["DEMO_USER", "UserSide", "demo_control"]

Echo = Callable[[str], None]
DEMO_USER = "ada-lovelace"
# The stand-in's OAuth app: known to it alone, not a secret.
_APP_ID, _APP_SECRET = "formarket-demo", "demo-oauth-secret"


@dataclass
class UserSide:
    """The control plane and GitHub stand-in of the demo, and what the user has done so far."""

    url: str
    github: StandIn
    control: Control  # its gateway_url is set once the gateway listens
    echo: Echo
    credentials: Credentials | None = None
    key: str = ""
    deployment: str = ""
    calls: int = 0  # answered calls of `deployment`

    def sign_in(self, login: str = DEMO_USER) -> None:
        """`formarket login`: the device flow; the user types the code on GitHub's page."""

        def show(device: DeviceCode) -> None:
            self.echo(f"  Open {device.verification_uri} and enter the code {device.user_code}")
            with Client(self.github.url) as web:
                form = urlencode({"user_code": device.user_code, "login": login})
                entered = web.post(
                    "/login/device",
                    content=form.encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
            if entered.status_code != 200:
                raise FormarketError(f"the stand-in refused the code: {entered.text[:200]}")
            self.echo(f"  ({login} enters it on the stand-in's page and approves)")

        self.echo("formarket login")
        self.credentials = sign_in(self.url, "demo laptop", show)
        self.echo(
            f"  signed in as {self.credentials.account}: an account key"
            f" (…{self.credentials.key[-4:]}), which `formarket login` keeps in"
            " ~/.config/formarket/credentials.json (the demo keeps it in memory)"
        )

    def make_key(self) -> None:
        """`formarket keys create demo-app`: a key to put in an application."""
        assert self.credentials is not None
        with ControlClient(self.url, self.credentials.key) as control:
            made = control.create_key("demo-app", None, None)
        self.key = made["key"]
        shown = made["details"]["shown"]
        self.echo(f"formarket keys create demo-app  -> {shown} (stored hashed; shown this once)")

    def deploy(self, model: str) -> str:
        """`POST /v1/deployments`: the plan and price forecast, committed by the bot."""
        assert self.credentials is not None
        self.echo(f"POST {self.url}/v1/deployments {{'model': '{model}'}}")
        with ControlClient(self.url, self.credentials.key) as control:
            planned = control.call("POST", "/v1/deployments", {"model": model})
        for line in planned["plan"]:
            self.echo(f"  {line}")
        self.deployment = planned["deployments"][0]["id"]
        self.echo(f"  committed by the bot for {self.credentials.account}: {self.deployment}")
        return self.deployment

    def call(self, gateway: str, calls: int = 5) -> None:
        """Call the deployment through the gateway with the key, as the dashboard's snippet
        does."""
        body = {"model": self.deployment, "messages": [{"role": "user", "content": "Hello"}]}
        headers = {"Authorization": f"Bearer {self.key}"}
        answer = ""
        with Client(gateway, timeout=30.0) as http:
            for n in range(calls):
                reply = http.post("/v1/chat/completions", json=body, headers=headers)
                if reply.status_code != 200:
                    raise FormarketError(
                        f"{self.deployment} answered {reply.status_code}: {reply.text[:200]}"
                    )
                self.calls += 1
                if n == 0:
                    answer = reply.json()["choices"][0]["message"]["content"]
        self.echo(
            f"  {self.credentials.account if self.credentials else '?'} -> {self.deployment}:"
            f" 'Hello' -> {answer[:60]!r} ({calls} calls with the demo-app key)"
        )

    def dashboard(self) -> str:
        """Sign in to the dashboard with GitHub's web flow and read what it shows of the
        deployment; raises when the deployment or its calls are missing."""
        login = self.credentials.account if self.credentials else DEMO_USER
        with Client(self.url) as control, Client(self.github.url) as web:
            started = control.get("/dashboard/login")
            location = started.headers["location"]
            approved = web.get(location.removeprefix(self.github.url) + f"&login={login}")
            back = urlsplit(approved.headers["location"])
            done = control.get(f"{back.path}?{back.query}")
            if done.status_code != 303:
                raise FormarketError(f"the dashboard's sign-in failed: {done.status_code}")
            page = control.get("/dashboard").text
        usage = page.split("My usage by day", 1)[-1]
        calls = re.search(
            rf"<td>{re.escape(self.deployment)}</td><td>(\d+)</td>", usage.replace("\n", "")
        )
        if self.deployment not in page or "fm-chart" not in usage or calls is None:
            raise FormarketError(
                f"the dashboard does not show {self.deployment} and its calls",
                hint=f"open {self.url}/dashboard",
            )
        return (
            f"the dashboard ({self.url}/dashboard, signed in with GitHub's web flow) shows"
            f" {self.deployment} and its {calls.group(1)} calls in the usage chart"
        )


@contextmanager
def demo_control(scratch: Path, settings: FarmSettings, echo: Echo) -> Iterator[UserSide]:
    """The GitHub stand-in (with an OAuth app) and the control plane over `settings`' clone;
    the accounts database is `database_url(scratch)`."""
    engine = open_database(database_url(scratch))
    try:
        with StandIn() as github:
            github.oauth.add_app(_APP_ID, _APP_SECRET)
            github.oauth.interval = 1  # GitHub's own is 5 s; the demo need not wait that long
            control = Control(
                store=AccountStore(engine),
                farm=settings,
                github=lambda: GitHubLogin(
                    _APP_ID, _APP_SECRET, server_url=github.url, api_url=github.url
                ),
                gateway_url="http://127.0.0.1",
            )
            with ServerThread(create_app(control)) as server:
                echo(f"the control plane listens on {server.url} (API and dashboard);")
                echo(f"GitHub's sign-in is the stand-in's, at {github.url}")
                yield UserSide(server.url, github, control, echo)
    finally:
        engine.dispose()


def database_url(scratch: Path) -> str:
    """The demo's accounts database, shared by the control plane and the gateway."""
    return f"sqlite:///{(scratch / 'accounts.sqlite').absolute()}"
