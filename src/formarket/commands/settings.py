"""`formarket settings`: every FORMARKET_* variable, its default and its value here."""

from __future__ import annotations

import json
from typing import Any

import click

from formarket import settings as table
from formarket.errors import FormarketError

__all__ = ["command"]


def _now(setting: table.Setting[Any]) -> tuple[str, str]:
    """The variable's value in this environment as it may be shown, and what is wrong with
    it ("" when nothing is)."""
    raw = setting.given()
    if not raw:
        return "", ""
    problem = ""
    if setting.role == "read":
        try:
            setting.parse(raw)
        except FormarketError as exc:
            problem = exc.message
    return table.shown_value(setting, raw), problem


def _as_json() -> list[dict[str, Any]]:
    rows = []
    for s in table.TABLE:
        value, problem = _now(s)
        rows.append(
            {
                "variable": s.variable,
                "role": s.role,
                "option": s.flag,
                "type": s.kind.name,
                "default": s.shown_default if s.role == "read" else None,
                "commands": list(s.commands),
                "help": s.help,
                "value": value or None,
                "problem": problem or None,
            }
        )
    return rows


@click.command("settings")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
@click.option(
    "--markdown",
    is_flag=True,
    help="Print docs/settings.md: `formarket settings --markdown > docs/settings.md`.",
)
def command(as_json: bool, markdown: bool) -> None:
    """Every FORMARKET_* variable: what it is, its option, its default, which commands read
    it, and its value in this environment (a URL's password is left out).

    An unset or empty variable means its default. A setting with an option (--repo,
    --branch, --state, --gateway-dir, ...) can be given on the command line too, where it
    wins; the same option means the same thing in every command.

    \b
    Examples:
      formarket settings
      formarket settings --json | jq '.[] | select(.value)'
    """
    if markdown:
        click.echo(table.render_markdown(), nl=False)
        return
    if as_json:
        click.echo(json.dumps(_as_json(), indent=2))
        return
    for s in table.TABLE:
        value, problem = _now(s)
        option = f", {s.flag}" if s.flag else ""
        click.echo(f"{s.variable} ({s.kind.name}{option})" if s.role == "read" else s.variable)
        click.echo(click.wrap_text(s.help, initial_indent="    ", subsequent_indent="    "))
        if s.role == "read":
            used = (
                "every command" if s.commands == (table.EVERY_COMMAND,) else ", ".join(s.commands)
            )
            click.echo(f"    default: {s.shown_default}")
            click.echo(f"    read by: {used}")
            click.echo(f"    here:    {value or 'unset'}")
        else:
            click.echo(f"    {'set for a deployment VM' if s.role == 'vm' else 'only named'}")
        if problem:
            click.echo(f"    error:   {problem}")
