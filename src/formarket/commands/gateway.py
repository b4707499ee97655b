"""`formarket gateway`: serve the OpenAI-compatible gateway; manage its keys and routes."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from formarket.commands._options import gateway_options
from formarket.errors import UsageError
from formarket.gateway.ceilings import DEFAULT_LIMITS, GatewayLimits

if TYPE_CHECKING:
    from formarket.gateway.config import StatePaths
    from formarket.schemas.usage import ListingVersion

__all__ = ["command", "state_paths"]

_REF = re.compile(r"^(?P<id>[^@\s]+)@(?P<version>[^@\s]+)$")


def state_paths(repo: Path, gateway_dir: Path | None) -> StatePaths:
    # Imported here: `formarket gateway --help` does not load the gateway.
    from formarket.gateway.config import StatePaths, default_state_dir

    return StatePaths(gateway_dir if gateway_dir is not None else default_state_dir(repo))


@click.group("gateway")
def command() -> None:
    """The inference gateway: OpenAI-compatible access to running deployments, metered.

    \b
    Every call that reaches a deployment is one usage event in the spool; `formarket usage
    flush` commits them to registry/usage/ in git.

    \b
      formarket gateway keys create acme          a key for account acme (shown once)
      formarket gateway routes add dep-1 --endpoint http://10.0.0.5:8000 \\
          --account acme --model acme/llama-8b@1.2.0
      formarket gateway serve --port 8080
      curl -H "Authorization: Bearer $KEY" localhost:8080/v1/models
    """


@command.command("serve")
@gateway_options
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--source",
    default=None,
    help="The usage source, `gateway/<name>` (default: gateway/<host name>).",
)
@click.option(
    "--fsync-interval",
    type=click.FloatRange(0, 10),
    default=0.05,
    show_default=True,
    help="Seconds between syncs of the spool to disk; 0 syncs before each answer.",
)
@click.option(
    "--max-body",
    type=click.IntRange(1024, 1 << 30),
    default=DEFAULT_LIMITS.max_body,
    show_default=True,
    help="The largest request body accepted, in bytes.",
)
@click.option(
    "--max-response",
    type=click.IntRange(1024, 1 << 34),
    default=DEFAULT_LIMITS.max_response,
    show_default=True,
    help="The largest answer passed on, a stream's included, in bytes.",
)
@click.option(
    "--max-duration",
    type=click.FloatRange(0.1),
    default=DEFAULT_LIMITS.max_duration,
    show_default=True,
    help="Seconds a call may last, a stream's included; past them it is cut.",
)
@click.option(
    "--stream-idle",
    type=click.FloatRange(0.1),
    default=120.0,
    show_default=True,
    help="Seconds a deployment may stay silent, between stream chunks included.",
)
@click.option(
    "--wake-timeout",
    type=click.FloatRange(0.1),
    default=60.0,
    show_default=True,
    help="Seconds a call to an idle (scaled to zero) deployment waits for its VM to start;"
    " past them it is answered 503 with Retry-After.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(0.1),
    default=DEFAULT_LIMITS.header_timeout,
    show_default=True,
    help="Seconds a request's head may take to arrive.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(0.1),
    default=DEFAULT_LIMITS.body_timeout,
    show_default=True,
    help="Seconds a request's body may take to arrive.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=DEFAULT_LIMITS.max_connections,
    show_default=True,
    help="Callers' connections open at once.",
)
@click.option(
    "--max-calls-per-key",
    type=click.IntRange(1),
    default=DEFAULT_LIMITS.max_calls_per_key,
    show_default=True,
    help="Calls of one key in progress at once.",
)
def serve(
    repo: Path,
    gateway_dir: Path | None,
    host: str,
    port: int,
    source: str | None,
    fsync_interval: float,
    max_body: int,
    max_response: int,
    max_duration: float,
    stream_idle: float,
    wake_timeout: float,
    header_timeout: float,
    body_timeout: float,
    max_connections: int,
    max_calls_per_key: int,
) -> None:
    """Serve the gateway until interrupted (SIGINT or SIGTERM seal the spool cleanly)."""
    from formarket.gateway.config import GatewayConfig, default_source
    from formarket.gateway.server import serve as run

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = GatewayConfig(
        state_paths(repo, gateway_dir),
        source=source or default_source(),
        fsync_interval=fsync_interval,
        limits=GatewayLimits(
            max_body=max_body,
            max_response=max_response,
            max_duration=max_duration,
            max_calls_per_key=max_calls_per_key,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            max_connections=max_connections,
        ),
        stream_idle_timeout=stream_idle,
        wake_timeout=wake_timeout,
    )
    run(
        config,
        host,
        port,
        lambda url: click.echo(
            f"gateway listening on {url} (source {config.source}, state {config.state.root})"
        ),
    )


@command.command("openapi")
def openapi() -> None:
    """Print the gateway's OpenAPI document."""
    from formarket.gateway.openapi import openapi_document

    click.echo(json.dumps(json.loads(openapi_document()), indent=2))


@command.group("keys")
def keys() -> None:
    """API keys: one or more per account, stored hashed."""


@keys.command("create")
@click.argument("account")
@gateway_options
@click.option(
    "--rate",
    type=click.FloatRange(min=0.001),
    default=20.0,
    show_default=True,
    help="Requests per second.",
)
@click.option(
    "--burst",
    type=click.IntRange(min=1),
    default=None,
    help="Requests at once (default: twice the rate).",
)
@click.option(
    "--requests-per-day",
    type=click.IntRange(min=1),
    default=None,
    help="A daily quota of requests (UTC days).",
)
@click.option(
    "--tokens-per-day",
    type=click.IntRange(min=1),
    default=None,
    help="A daily quota of billed tokens (UTC days).",
)
@click.option(
    "--usd-per-day",
    default=None,
    help="A daily spending cap in the platform's currency, such as 5.00 (UTC days).",
)
@click.option(
    "--scope",
    "scope",
    multiple=True,
    help="A deployment the key may call (repeat it; default: all of the account's).",
)
def keys_create(
    account: str,
    repo: Path,
    gateway_dir: Path | None,
    rate: float,
    burst: int | None,
    requests_per_day: int | None,
    tokens_per_day: int | None,
    usd_per_day: str | None,
    scope: tuple[str, ...],
) -> None:
    """Make a key for ACCOUNT and print it: it is shown this once and stored only hashed."""
    from decimal import Decimal, InvalidOperation

    from formarket.gateway.keys import create_key

    cap: Decimal | None = None
    if usd_per_day is not None:
        try:
            cap = Decimal(usd_per_day)
        except InvalidOperation:
            raise click.BadParameter(
                f"{usd_per_day!r} is not an amount such as 5.00", param_hint="--usd-per-day"
            ) from None

    key, record = create_key(
        state_paths(repo, gateway_dir).keys,
        account,
        rate_per_second=rate,
        burst=burst,
        requests_per_day=requests_per_day,
        tokens_per_day=tokens_per_day,
        usd_per_day=cap,
        scope=scope or None,
    )
    click.echo(key)
    click.echo(
        f"key {record.id} for {account}: {rate:g} requests/s; keep it now, it is not stored",
        err=True,
    )


@keys.command("list")
@gateway_options
def keys_list(repo: Path, gateway_dir: Path | None) -> None:
    """The keys: id, account, limits (never the keys themselves)."""
    from formarket.gateway.keys import load_keys

    for record in sorted(
        load_keys(state_paths(repo, gateway_dir).keys).by_id.values(),
        key=lambda r: (r.account, r.created),
    ):
        quota = []
        if record.requests_per_day:
            quota.append(f"{record.requests_per_day} requests/day")
        if record.tokens_per_day:
            quota.append(f"{record.tokens_per_day} tokens/day")
        if record.usd_per_day is not None:
            quota.append(f"{record.usd_per_day} per day")
        if record.scope is not None:
            quota.append(f"scope {','.join(record.scope)}")
        click.echo(
            f"{record.id}  {record.account}  {record.rate_per_second:g}/s burst {record.burst}"
            f"  {', '.join(quota) or 'no quota'}  created {record.created}"
            + ("  REVOKED" if record.revoked else "")
        )


@keys.command("revoke")
@click.argument("key_id")
@gateway_options
def keys_revoke(key_id: str, repo: Path, gateway_dir: Path | None) -> None:
    """Revoke a key by its id; a running gateway refuses it within a second."""
    from formarket.gateway.keys import revoke_key

    record = revoke_key(state_paths(repo, gateway_dir).keys, key_id)
    click.echo(f"revoked key {record.id} of {record.account}")


@command.group("routes")
def routes() -> None:
    """Where calls go, until the farm publishes its running deployments itself."""


def _listing(value: str | None, what: str) -> ListingVersion | None:
    from formarket.schemas.usage import ListingVersion

    if value is None:
        return None
    match = _REF.match(value)
    if match is None:
        raise UsageError(f"--{what} {value!r} is not ID@VERSION", hint="such as acme/llama@1.2.0")
    return ListingVersion(id=match["id"], version=match["version"])


@routes.command("add")
@click.argument("deployment")
@click.option(
    "--endpoint", required=True, help="The deployment's server, such as http://10.0.0.5:8000."
)
@click.option("--account", required=True, help="The account that deployed it (who may call it).")
@click.option("--model", "model", default=None, help="The model it serves, ID@VERSION.")
@click.option("--agent", "agent", default=None, help="The agent it runs, ID@VERSION.")
@click.option("--upstream-model", default=None, help="The model name its server expects.")
@gateway_options
def routes_add(
    deployment: str,
    endpoint: str,
    account: str,
    model: str | None,
    agent: str | None,
    upstream_model: str | None,
    repo: Path,
    gateway_dir: Path | None,
) -> None:
    """Route DEPLOYMENT (replacing its route if it has one)."""
    from pydantic import ValidationError

    from formarket.gateway.routes import Route, load_routes, save_routes

    path = state_paths(repo, gateway_dir).routes
    try:
        route = Route(
            deployment=deployment,
            endpoint=endpoint,
            account=account,
            agent=_listing(agent, "agent"),
            model=_listing(model, "model"),
            upstream_model=upstream_model,
        )
    except ValidationError as exc:
        raise UsageError(f"not a route:\n{exc}") from exc
    others = [r for r in load_routes(path).routes if r.deployment != deployment]
    save_routes(path, [*others, route])
    click.echo(f"{deployment} -> {endpoint} for {account}")


@routes.command("list")
@gateway_options
def routes_list(repo: Path, gateway_dir: Path | None) -> None:
    """The routes."""
    from formarket.gateway.routes import load_routes

    for route in load_routes(state_paths(repo, gateway_dir).routes).routes:
        served = ", ".join(
            f"{what} {ref.id}@{ref.version}"
            for what, ref in (("agent", route.agent), ("model", route.model))
            if ref is not None
        )
        click.echo(f"{route.deployment}  {route.endpoint}  {route.account}  {served}")


@routes.command("remove")
@click.argument("deployment")
@gateway_options
def routes_remove(deployment: str, repo: Path, gateway_dir: Path | None) -> None:
    """Stop routing DEPLOYMENT."""
    from formarket.errors import NotFoundError
    from formarket.gateway.routes import load_routes, save_routes

    path = state_paths(repo, gateway_dir).routes
    current = load_routes(path).routes
    kept = [r for r in current if r.deployment != deployment]
    if len(kept) == len(current):
        raise NotFoundError(f"no route for {deployment}")
    save_routes(path, kept)
    click.echo(f"{deployment} is no longer routed")
