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

    The publisher must exist (registry/publishers/PUBLISHER.yaml) and the id must be free
    among models, agents and solutions; otherwise nothing is written.
    """
    from formarket.builder.templates import find_templates_dir, load_templates, scaffold

    registry = repo / "registry"
    if not registry.is_dir():
        raise NotFoundError(
            f"{repo} has no registry/ folder", hint="run it in the marketplace repository"
        )
    _check_free(registry, listing_id)
    templates = load_templates(find_templates_dir(repo))
    target = scaffold(templates, template, kind, listing_id, registry)
    click.echo(f"created {target}/")
    for path in sorted(target.rglob("*")):
        if path.is_file():
            click.echo(f"  {path.relative_to(target)}")
    click.echo(f"next: edit it, then `formarket validate` and `formarket build {listing_id}`")


def _check_free(registry: Path, listing_id: str) -> None:
    """Refuse, before anything is written, what validation would refuse afterwards: a
    publisher without its file (REG005) and an id that a model, agent or solution has (REG004)."""
    import difflib
    import re

    from formarket.errors import UsageError
    from formarket.schemas._types import LISTING_ID_PATTERN

    if re.fullmatch(LISTING_ID_PATTERN, listing_id) is None:
        return  # the scaffold says what a listing id is
    publisher, slug = listing_id.split("/")
    publishers = registry / "publishers"
    if not (publishers / f"{publisher}.yaml").is_file():
        known = sorted(p.stem for p in publishers.glob("*.yaml")) if publishers.is_dir() else []
        close = difflib.get_close_matches(publisher, known, n=1)
        raise UsageError(
            f"publisher {publisher!r} does not exist: registry/publishers/{publisher}.yaml is"
            " missing",
            hint=(f"did you mean {close[0]}/{slug}? " if close else "")
            + f"to add the publisher, write registry/publishers/{publisher}.yaml with"
            f" `id: {publisher}`, `name:` and `owners: [YOUR-GITHUB-LOGIN]` (see"
            " registry/publishers/ for examples) and send it in the pull request of the"
            " listing; then run this command again",
        )
    taken = (
        ("model", registry / "models" / publisher / slug),
        ("agent", registry / "agents" / publisher / slug),
        ("solution", registry / "solutions" / publisher / f"{slug}.yaml"),
    )
    for what, path in taken:
        if path.exists():
            raise UsageError(
                f"{listing_id} is taken: there is a {what} with that id"
                f" ({path.relative_to(registry.parent)})",
                hint="models, agents and solutions share ids; choose another slug",
            )
