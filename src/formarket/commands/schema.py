"""`formarket schema`: the JSON Schemas that are the registry's public contract."""

from __future__ import annotations

import json
from pathlib import Path

import click

from formarket.schemas.export import render_schemas

__all__ = ["command"]


@click.group("schema")
def command() -> None:
    """The JSON Schemas of every registry document, generated from formarket's models."""


@command.command("export")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
    help="The folder to write <kind>.schema.json files into.",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if any file differs.")
def export(out: Path, check: bool) -> None:
    """Write schemas/<kind>.schema.json for every document: the registry's (model, agent,
    publisher, solution, governance) and the ones formarket writes (usage-event,
    royalty-policy, royalty-statement).

    Editors use them for completion (yaml-language-server); `formarket validate` checks every
    document against them. Run it after changing a model in formarket.schemas.
    """
    stale = []
    for name, content in render_schemas().items():
        target = out / name
        current = target.read_bytes() if target.exists() else None
        if current == content:
            continue
        stale.append(name)
        if not check:
            out.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            click.echo(f"wrote {target}")
    if check and stale:
        click.echo(f"out of date: {', '.join(stale)}; run `formarket schema export`", err=True)
        raise SystemExit(1)
    if not stale:
        click.echo(f"{out}/ is up to date")


@command.command("show")
@click.argument(
    "kind", type=click.Choice(["model", "agent", "publisher", "solution", "governance"])
)
def show(kind: str) -> None:
    """Print one schema."""
    click.echo(json.dumps(json.loads(render_schemas()[f"{kind}.schema.json"]), indent=2))
