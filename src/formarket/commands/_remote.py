"""Client mode: `deployments list|show|stop` and `usage show` through the control plane.

A command is in client mode when its user is signed in (`formarket login` kept a key) and it
is not pointed at a marketplace clone: no --repo or FORMARKET_REPO, and no git repository
around the current folder. On a clone, with the farm's settings, it is in operator mode and
reads and commits the clone, as it always did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from formarket.control.client import ControlClient

__all__ = [
    "MODES",
    "ModalCommand",
    "account_client",
    "mode_now",
    "remote",
    "remote_deploy",
    "remote_deployments",
    "remote_usage",
]

MODES = (
    "Signed in (`formarket login`) and outside a marketplace clone, it asks the control"
    " plane for your account (client mode); in a clone, or with --repo, it reads the clone"
    " (operator mode)."
)


def mode_now() -> str:
    """Which mode a command run here, now, would be in, and why (for its --help)."""
    from formarket.control.client import Credentials, credentials_path
    from formarket.errors import FormarketError
    from formarket.market.repository import open_repository
    from formarket.settings import REPO

    signed_in = credentials_path().exists()
    if REPO.given():
        return "In force here: operator mode (FORMARKET_REPO names a clone)."
    try:
        open_repository(Path(".")).close()
    except FormarketError:
        pass
    else:
        return "In force here: operator mode (this folder is in a clone)."
    if signed_in:
        try:
            where = Credentials.load(credentials_path()).control_url
        except FormarketError as exc:
            return f"In force here: client mode, but the saved sign-in cannot be read: {exc}"
        return f"In force here: client mode (signed in; the control plane at {where})."
    return (
        "In force here: neither: not signed in (`formarket login`) and not in a clone"
        " (--repo names one)."
    )


class ModalCommand(click.Command):
    """A command with a client and an operator mode: its help ends with the one in force."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        formatter.write_paragraph()
        formatter.write_text(mode_now())


def account_client(control_url: str) -> ControlClient:
    """A client with this machine's key (`formarket login`), to the control plane the key
    came from unless --control-url (or its variable) names another."""
    from formarket.control.client import ControlClient, Credentials, credentials_path

    credentials = Credentials.load(credentials_path())
    source = click.get_current_context().get_parameter_source("control_url")
    default = source is click.core.ParameterSource.DEFAULT
    return ControlClient(credentials.control_url if default else control_url, credentials.key)


def remote() -> ControlClient | None:
    """The control plane's client when the current command is in client mode, else None."""
    ctx = click.get_current_context()
    if ctx.get_parameter_source("repo") is not click.core.ParameterSource.DEFAULT:
        return None
    # Imported only now: the control plane's package brings its web framework, seconds of
    # imports that a command run on a clone (`usage show --repo`) never needs.
    from formarket.control.client import ControlClient, Credentials, credentials_path
    from formarket.errors import FormarketError
    from formarket.market.repository import open_repository

    path = credentials_path()
    if not path.exists():
        return None
    try:
        open_repository(Path(".")).close()
        return None  # in a clone: operator mode
    except FormarketError:
        pass
    credentials = Credentials.load(path)
    return ControlClient(credentials.control_url, credentials.key)


def remote_deployments(
    client: ControlClient,
    action: str,
    deployment_id: str | None,
    as_json: bool,
    show_all: bool,
    *,
    cascade: bool = False,
) -> None:
    with client:
        if action == "list":
            found = client.call("GET", "/v1/deployments")["deployments"]
            shown = [d for d in found if show_all or d["state"] == "running"]
            if as_json:
                click.echo(json.dumps({"deployments": shown}, indent=2))
                return
            for d in shown:
                click.echo(
                    f"{d['id']}  {d['kind']:5}  {d['listing']}@{d['version']}"
                    f"  {d['vcpus']} vCPU {d['memory_mib']} MiB  {d['state']}"
                )
            if not shown:
                click.echo("no deployments" + ("" if show_all else " running (--all shows all)"))
        elif action == "show":
            view = client.call("GET", f"/v1/deployments/{deployment_id}")
            if as_json:
                click.echo(json.dumps(view, indent=2))
                return
            for key in ("actual", "endpoint", "model"):
                click.echo(f"{key + ':':18} {view[key] or 'not routed yet'}")
            for key, value in view["desired"].items():
                if value not in (None, {}, [], ()):
                    text = json.dumps(value) if isinstance(value, dict | list) else str(value)
                    click.echo(f"{key + ':':18} {text}")
        else:
            query = "?cascade=true" if cascade else ""
            stopped = client.call("DELETE", f"/v1/deployments/{deployment_id}{query}")["stopped"]
            if stopped:
                click.echo(f"{', '.join(stopped)} stopped; the farm removes them")
            else:
                click.echo(f"{deployment_id} was stopped already")


def remote_usage(client: ControlClient, since: str | None, as_json: bool) -> None:
    with client:
        answer = client.call("GET", "/v1/usage" + (f"?since={since}" if since else ""))
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    rows = answer["rows"]
    if "pseudonym" in answer:  # a control plane from before pseudonyms has none
        click.echo(f"{answer['account']} is {answer['pseudonym']} in git's usage and deployments")
    if not rows:
        click.echo(f"no usage committed for {answer['account']}")
    for r in rows:
        click.echo(
            f"{r['day']}  {r['deployment']}  {r['calls']:,} calls ({r['failed']:,} failed)"
            f"  {r['input_tokens']:,} in  {r['output_tokens']:,} out tokens"
        )


def remote_deploy(
    client: ControlClient, body: dict[str, Any], *, as_json: bool, wait: float | None
) -> None:
    """POST /v1/deployments: the plan printed, committed unless a dry run; with `wait`, the
    seconds to follow the last deployment until the gateway routes it."""
    import time

    from formarket.errors import FormarketError

    with client:
        planned = client.call("POST", "/v1/deployments", body)
        if as_json:
            click.echo(json.dumps(planned, indent=2))
        else:
            for line in planned["plan"]:
                click.echo(line)
            if planned["committed"]:
                ids = ", ".join(d["id"] for d in planned["deployments"])
                click.echo(f"Committed {ids} for your account.")
            else:
                click.echo("Dry run: nothing was committed.")
        if wait is None or not planned["deployments"]:
            return
        last = planned["deployments"][-1]["id"]
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            view = client.call("GET", f"/v1/deployments/{last}")
            if view["endpoint"]:
                click.echo(f"{last} answers: {view['endpoint']} (model {view['model']})")
                return
            time.sleep(2.0)
        raise FormarketError(
            f"{last} did not answer within {wait:g}s",
            hint=f"`formarket deployments show {last}` says where it stands",
        )
