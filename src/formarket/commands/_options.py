"""The options several commands share, built from formarket.settings' table.

An option made here reads the table's variable when it is not given, has the table's default
and says the same thing in every command: `--repo` is the marketplace repository everywhere,
`--state` the farm's state folder, `--gateway-dir` the gateway's. Values are checked by the
table's own parsers, so a bad `--branch` and a bad FORMARKET_BRANCH are refused alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from formarket import settings as table

if TYPE_CHECKING:
    from formarket.farm.settings import FarmSettings

__all__ = [
    "BRANCH_OPTION",
    "CACHE_OPTION",
    "CONTROL_URL_OPTION",
    "DEPRECATED",
    "GATEWAY_DIR_OPTION",
    "REPO_OPTION",
    "SHARED",
    "STATE_OPTION",
    "STORE_OPTION",
    "SettingType",
    "deprecated_alias",
    "farm_settings",
    "gateway_options",
    "option_help",
]

F = TypeVar("F", bound=Callable[..., Any])


class SettingType(click.ParamType[Any, Any]):
    """A click type that reads a value as the table does, and names the variable when the
    value came from it."""

    def __init__(self, setting: table.Setting[Any]) -> None:
        self.setting = setting
        self.name = setting.kind.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value  # a default, already of the kind
        try:
            return self.setting.kind.parse(value.strip())
        except ValueError:
            source = ctx.get_parameter_source(param.name) if ctx and param and param.name else None
            given = (
                f"{self.setting.variable}={value!r}"
                if source is click.core.ParameterSource.ENVIRONMENT
                else repr(value)
            )
            kind = self.setting.kind
            example = f", such as {kind.example}" if kind.example else ""
            self.fail(f"{given} is not {kind.expected}{example}", param, ctx)


def option_help(setting: table.Setting[Any]) -> str:
    return f"{setting.help} Default: ${setting.variable}, else {setting.shown_default}."


def _option(setting: table.Setting[Any]) -> Callable[[F], F]:
    assert setting.flag is not None
    return click.option(
        setting.flag,
        setting.name,
        type=SettingType(setting),
        envvar=setting.variable,
        default=setting.default,
        metavar={table.BRANCH_NAME: "BRANCH", table.URL: "URL"}.get(setting.kind, "DIR"),
        help=option_help(setting),
    )


REPO_OPTION = _option(table.REPO)
BRANCH_OPTION = _option(table.BRANCH)
STATE_OPTION = _option(table.STATE)
GATEWAY_DIR_OPTION = _option(table.GATEWAY_DIR)
STORE_OPTION = _option(table.STORE)
CACHE_OPTION = _option(table.CACHE)
CONTROL_URL_OPTION = _option(table.CONTROL_URL)

# Every flag made from the table, by flag.
SHARED: dict[str, table.Setting[Any]] = {s.flag: s for s in table.TABLE if s.flag}

# Old flags that still work in the commands that had them: flag -> the setting it sets now,
# and what the notice adds.
DEPRECATED: dict[str, tuple[table.Setting[Any], str]] = {
    "--registry": (table.REPO, ""),  # formarket site build
    # formarket gateway ... and formarket usage flush
    "--state": (table.GATEWAY_DIR, " (--state is the farm's state folder)"),
}


def deprecated_alias(flag: str) -> Callable[[F], F]:
    """A hidden old flag that still sets its setting, and says on stderr what replaces it.

    Given, it fills the parameter of the setting's own option as the command line would, so
    it wins over the variable and the default; left out, it changes nothing."""
    setting, meaning = DEPRECATED[flag]

    def notice(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None:
            return
        click.echo(
            f"warning: {flag} is deprecated here: use {setting.flag}{meaning}; {flag} will"
            " stop working in a later release",
            err=True,
        )
        ctx.params[setting.name] = value
        ctx.set_parameter_source(setting.name, click.core.ParameterSource.COMMANDLINE)

    return click.option(
        flag,
        f"deprecated_{flag.lstrip('-').replace('-', '_')}",
        type=SettingType(setting),
        hidden=True,
        expose_value=False,
        callback=notice,
        help=f"Deprecated: {setting.flag}.",
    )


def gateway_options(function: F) -> F:
    """`--repo` and `--gateway-dir`, and `--state`, the gateway's old name for `--gateway-dir`."""
    return REPO_OPTION(GATEWAY_DIR_OPTION(deprecated_alias("--state")(function)))


def farm_settings(repo: Path, branch: str, state: Path | None = None) -> FarmSettings:
    """The farm's settings from the environment, with the shared options' values (which click
    read from the same variables when they were not given) in their place."""
    # Imported here: the farm's modules are not loaded for the commands that do not use them.
    from formarket.farm.settings import FarmSettings

    given = {table.REPO.variable: str(repo), table.BRANCH.variable: branch}
    if state is not None:
        given[table.STATE.variable] = str(state)
    return FarmSettings.from_env(environ={**os.environ, **given})
