"""The `formarket` command: one entry point over every part of the marketplace.

Each command group lives in ``formarket.commands``; this module only assembles them and turns
errors into readable messages and exit codes, once, at the top.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from formarket import __version__
from formarket.errors import FormarketError

__all__ = ["main"]


class _Root(click.Group):
    """The root group: loads commands on demand, catches formarket's errors once and exits
    with their code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from formarket.commands import COMMANDS

        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        from formarket.commands import COMMANDS

        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"formarket.commands.{module_name}")
        command: click.Command = module.command
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FormarketError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(0)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            # A bug, not the user's mistake: say so plainly; FORMARKET_DEBUG=1 shows where.
            # Imported here: only an unexpected error needs the table, not every start-up.
            from formarket.settings import DEBUG

            if DEBUG.get():
                raise
            click.echo(
                f"internal error: {type(exc).__name__}: {exc}\n"
                "  hint: this is a bug in formarket; run again with FORMARKET_DEBUG=1 for the"
                " traceback and report it",
                err=True,
            )
            sys.exit(70)


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="formarket")
def main() -> None:
    """formarket: a marketplace for AI models and agents whose catalog is a git repository.

    \b
    Publish:   formarket new model|agent P/SLUG -t TEMPLATE   scaffold a listing
               formarket build P/SLUG                        its VM image, cached by content
               formarket weights fetch P/SLUG                a model's weights and data disk
               formarket validate                            check a registry working tree
               formarket check --base --head --author LOGIN  the pull-request check
               formarket rules [ID]                          what a REG, FF or USG code means
    Use:       formarket site build && formarket site serve  the catalog and JSON API
               formarket gateway serve                       the metered OpenAI-compatible API
               formarket deploy AGENT --model MODEL --wait   run an agent with its model
               formarket deployments list|show|stop          what runs, and where
               formarket usage flush|show                    usage committed to git
    Operate:   formarket farm worker|beat|reconcile          build and run deployments
               formarket issue-deploy --event PATH           a deployment issue's request
               formarket royalties close|verify --period YYYY-MM
               formarket schema export                       the JSON Schemas in schemas/
               formarket settings                            every FORMARKET_* variable
    Try it:    formarket demo                                the whole journey, narrated
    """
