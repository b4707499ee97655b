"""`formarket new model|agent PUBLISHER/SLUG --template NAME`: scaffold a listing."""

from __future__ import annotations

from pathlib import Path

import click

from formarket.commands._options import REPO_OPTION
from formarket.errors import NotFoundError

__all__ = ["command"]


@click.command("new", short_help="Scaffold a listing (model or agent) from a template.")
@click.argument("kind", type=click.Choice(["model", "agent"]))
@click.argument("listing_id", metavar="PUBLISHER/SLUG")
@click.option("--template", "-t", "template", required=True, help="The template's name.")
@REPO_OPTION
def command(kind: str, listing_id: str, template: str, repo: Path) -> None:
    """Scaffold a new listing folder (listing.yaml, Formfile, README.md and context files)
    from a template in builder/templates/. The result passes `formarket validate` as it is.

    \b
    Templates:
      openai-model   model   OpenAI-compatible chat server (a tiny deterministic echo model)
      embeddings     model   OpenAI-compatible /v1/embeddings server
      agent          agent   Python agent calling its model through MODEL_ENDPOINT
    Example:
      formarket new model tinyforge/my-chat --template openai-model
    """
    from formarket.builder.templates import find_templates_dir, load_templates, scaffold

    registry = repo / "registry"
    if not registry.is_dir():
        raise NotFoundError(
            f"{repo} has no registry/ folder", hint="run it in the marketplace repository"
        )
    templates = load_templates(find_templates_dir(repo))
    target = scaffold(templates, template, kind, listing_id, registry)
    click.echo(f"created {target}/")
    for path in sorted(target.rglob("*")):
        if path.is_file():
            click.echo(f"  {path.relative_to(target)}")
    click.echo(f"next: edit it, then `formarket validate` and `formarket build {listing_id}`")
