"""`formarket usage`: commit the spooled usage to git; show what git holds."""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

import click

from formarket.commands._common import open_repo
from formarket.commands._options import BRANCH_OPTION, REPO_OPTION, gateway_options
from formarket.commands._remote import ModalCommand
from formarket.commands.gateway import state_paths
from formarket.errors import UsageError

__all__ = ["command"]


@click.group("usage")
def command() -> None:
    """Metered usage: from the gateway's spool to registry/usage/ in git, and back out.

    \b
      formarket usage flush                    commit what the gateway spooled, as the bot
      formarket usage flush --every 60         ... every minute, until interrupted
      formarket usage show --since 2026-01-01 --listing acme/llama-8b
    """


@command.command("flush")
@gateway_options
@BRANCH_OPTION
@click.option(
    "--every",
    type=click.FloatRange(min=0.01),
    default=None,
    help="Keep flushing, every this many seconds, until interrupted.",
)
def flush(repo: Path, gateway_dir: Path | None, branch: str, every: float | None) -> None:
    """Commit the events of sealed spool segments to registry/usage/YYYY/MM/DD/, each once."""
    from formarket.gateway.flush import flush_all

    git = open_repo(repo)
    spool = state_paths(Path(git.path), gateway_dir).spool
    while True:
        results = flush_all(git, spool, branch=branch)
        for result in results:
            for segment, line, reason in ((s.segment, s.line, s.reason) for s in result.set_aside):
                click.echo(
                    f"set aside: {segment} line {line}: {reason} (kept in {spool}/rejected/)",
                    err=True,
                )
            if result.reconciled:
                click.echo(
                    f"{len(result.reconciled)} segments were already committed; removed them"
                )
            if result.commit:
                for path, events in result.files:
                    click.echo(f"committed {events:,} events to {path}")
                click.echo(f"  commit {result.commit} ({len(result.segments)} segments)")
        if every is None:
            if not results:
                click.echo("nothing to flush")
            return
        time.sleep(every)


@command.command("show", cls=ModalCommand)
@REPO_OPTION
@BRANCH_OPTION
@click.option("--listing", default=None, help="Only this listing (`publisher/slug`).")
@click.option("--since", default=None, metavar="YYYY-MM-DD", help="Only usage from this day on.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
def show(repo: Path, branch: str, listing: str | None, since: str | None, as_json: bool) -> None:
    """The committed usage, per listing version: calls, tokens, instance-hours.

    Signed in (`formarket login`) and outside a marketplace clone, it shows your account's
    own usage by day and deployment, from the control plane (client mode); in a clone, or
    with --repo, everyone's by listing version (operator mode).
    """
    from formarket.commands._remote import remote, remote_usage

    client = remote()
    if client is not None:
        if listing is not None:
            raise UsageError("--listing reads a clone: run it in the marketplace's clone")
        remote_usage(client, since, as_json)
        return
    from formarket.gateway.show import render_text, usage_summary

    day = None
    if since is not None:
        try:
            day = date.fromisoformat(since)
        except ValueError as exc:
            raise UsageError(f"--since {since!r} is not a date", hint="YYYY-MM-DD") from exc
    summary = usage_summary(open_repo(repo), branch=branch, since=day, listing=listing)
    if as_json:
        click.echo(json.dumps(summary.as_json(), indent=2))
    else:
        click.echo(render_text(summary))
