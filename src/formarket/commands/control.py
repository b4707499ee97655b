"""`formarket control`: serve the control plane, the API of signed-in users."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from formarket.commands._options import BRANCH_OPTION, GATEWAY_DIR_OPTION, REPO_OPTION, STATE_OPTION

__all__ = ["command"]


@click.group("control")
def command() -> None:
    """The control plane: the HTTP API through which signed-in users manage their keys,
    deploy, stop and follow their deployments and read their usage, from any machine.

    It runs as its own process beside the gateway, sharing the accounts database
    (FORMARKET_DATABASE_URL, else accounts.sqlite in the gateway's folder) and the
    marketplace clone the bot commits to.

    \b
    Examples:
      FORMARKET_GITHUB_CLIENT_ID=Iv1.abc formarket control serve --port 8090
      formarket control openapi > control-openapi.json
    """


@command.command("serve")
@REPO_OPTION
@GATEWAY_DIR_OPTION
@BRANCH_OPTION
@STATE_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8090, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(0.01),
    default=10.0,
    show_default=True,
    help="Requests per second each account may make (a burst of four times as many).",
)
def serve(
    repo: Path,
    gateway_dir: Path | None,
    branch: str,
    state: Path | None,
    host: str,
    port: int,
    rate: float,
) -> None:
    """Serve the control plane until interrupted."""
    from formarket.accounts.database import database_url, open_database
    from formarket.accounts.github_login import DEFAULT_API_URL, DEFAULT_SERVER_URL, GitHubLogin
    from formarket.accounts.store import AccountStore
    from formarket.commands._options import farm_settings
    from formarket.commands.gateway import state_paths
    from formarket.control import Control, create_app
    from formarket.control.limits import RateLimiter
    from formarket.control.payments import payments_from_settings
    from formarket.gateway.server import run_app
    from formarket.settings import GATEWAY_URL, GITHUB_CLIENT_ID, GITHUB_CLIENT_SECRET

    settings = farm_settings(repo, branch, state)
    paths = state_paths(repo, gateway_dir)
    engine = open_database(database_url(paths.root))
    client_id = GITHUB_CLIENT_ID.read() or ""
    secret = GITHUB_CLIENT_SECRET.read() or ""
    server_url = os.environ.get("GITHUB_SERVER_URL") or DEFAULT_SERVER_URL
    api_url = os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL
    control = Control(
        store=AccountStore(engine),
        farm=settings,
        github=lambda: GitHubLogin(client_id, secret, server_url=server_url, api_url=api_url),
        gateway_url=GATEWAY_URL.get(),
        limiter=RateLimiter(rate, max(1, int(rate * 4))),
        payments=payments_from_settings(),
        gateway_dir=paths.root,
    )
    run_app(
        create_app(control),
        host,
        port,
        lambda url: click.echo(f"control plane listening on {url} (repository {settings.repo})"),
    )


@command.command("openapi")
def openapi() -> None:
    """Print the control plane's OpenAPI document."""
    from formarket.control import openapi_document

    click.echo(json.dumps(json.loads(openapi_document()), indent=2))
