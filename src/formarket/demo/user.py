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
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from formarket.accounts import AccountStore, open_database
from formarket.accounts.github_login import DeviceCode, GitHubLogin
from formarket.control import Control, create_app
from formarket.control.client import ControlClient, Credentials, sign_in
from formarket.control.payments import Payments
from formarket.errors import FormarketError
from formarket.farm.settings import FarmSettings
from formarket.gateway.server import ServerThread
from formarket.httpclient import Client
from formarket.standins.github import StandIn
from formarket.standins.payments import PaymentsStandIn

__all__ = ["DEMO_USER", "UserSide", "demo_control"]

Echo = Callable[[str], None]
DEMO_USER = "ada-lovelace"
# The stand-ins' own credentials (an OAuth app, the payment provider's test keys): known to
# them alone, not secrets.
_APP_ID, _APP_SECRET = "formarket-demo", "demo-oauth-secret"
_PAY_KEY, _PAY_HOOK = "sk_test_formarket_demo", "whsec_formarket_demo"


@dataclass
class UserSide:
    """The control plane and GitHub stand-in of the demo, and what the user has done so far."""

    url: str
    github: StandIn
    payments: str  # the payment provider's stand-in
    control: Control  # its gateway_url is set once the gateway listens
    echo: Echo
    credentials: Credentials | None = None
    key: str = ""
    deployment: str = ""
    calls: int = 0  # answered calls of `deployment`
    refused: int = 0  # calls refused for want of credit

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

    def top_up(self, amount: str) -> None:
        """`formarket topup AMOUNT`: a checkout at the payment provider, paid on its page; the
        provider's signed webhook credits the balance."""
        assert self.credentials is not None
        with ControlClient(self.url, self.credentials.key) as control:
            made = control.call("POST", "/v1/topups", {"amount": amount})
            self.echo(f"formarket topup {amount}  -> a checkout at {made['url']}")
            with Client(self.payments) as browser:
                paid = browser.post(
                    made["url"].removeprefix(self.payments),
                    content=b"",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
            if paid.status_code != 303:
                raise FormarketError(f"the checkout page refused to take payment: {paid.text}")
            balance = control.call("GET", "/v1/balance")
        self.echo(
            f"  paid on the provider's page; its signed webhook credited the account:"
            f" formarket balance -> {_money(balance['balance'])} {balance['currency']}"
        )

    def call(self, gateway: str, calls: int) -> None:
        """Call the deployment through the gateway with the key, as the dashboard's snippet
        does, `calls` times or until the balance cannot cover a call."""
        body = {"model": self.deployment, "messages": [{"role": "user", "content": "Hello"}]}
        headers = {"Authorization": f"Bearer {self.key}"}
        answers: list[str] = []
        spent = Decimal(0)
        refusal = ""
        with Client(gateway, timeout=30.0) as http:
            for _ in range(calls):
                reply = http.post("/v1/chat/completions", json=body, headers=headers)
                if reply.status_code == 429 and reply.json()["error"]["code"] == (
                    "insufficient_quota"
                ):
                    self.refused += 1
                    refusal = reply.json()["error"]["message"]
                    break
                if reply.status_code != 200:
                    raise FormarketError(
                        f"{self.deployment} answered {reply.status_code}: {reply.text[:200]}"
                    )
                self.calls += 1
                usage = reply.json()["usage"]
                spent += Decimal(usage["cost"])
                answers.append(reply.json()["choices"][0]["message"]["content"])
        account = self.credentials.account if self.credentials else "?"
        if answers:
            self.echo(
                f"  {account} -> {self.deployment}: 'Hello' -> {answers[0][:40]!r}"
                f" ({len(answers)} calls with the demo-app key, each answer showing its cost:"
                f" {_money(str(spent))} USD in all)"
            )
        if refusal:
            self.echo(f"  the next is refused, 429 insufficient_quota: {refusal}")

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
        provider = PaymentsStandIn(_PAY_KEY, _PAY_HOOK)
        with StandIn() as github, ServerThread(provider) as shop:
            github.oauth.add_app(_APP_ID, _APP_SECRET)
            github.oauth.interval = 1  # GitHub's own is 5 s; the demo need not wait that long
            control = Control(
                store=AccountStore(engine),
                farm=settings,
                github=lambda: GitHubLogin(
                    _APP_ID, _APP_SECRET, server_url=github.url, api_url=github.url
                ),
                gateway_url="http://127.0.0.1",
                payments=Payments(shop.url, _PAY_KEY, _PAY_HOOK),
            )
            with ServerThread(create_app(control)) as server:
                provider.webhook_url = f"{server.url}/v1/payments/webhook"
                echo(f"the control plane listens on {server.url} (API and dashboard);")
                echo(f"GitHub's sign-in is the stand-in's, at {github.url};")
                echo(f"the payment provider is the stand-in's, at {shop.url}")
                yield UserSide(server.url, github, shop.url, control, echo)
    finally:
        engine.dispose()


def database_url(scratch: Path) -> str:
    """The demo's accounts database, shared by the control plane and the gateway."""
    return f"sqlite:///{(scratch / 'accounts.sqlite').absolute()}"


def _money(amount: str) -> str:
    whole, _, fraction = format(Decimal(amount).normalize(), "f").partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"
