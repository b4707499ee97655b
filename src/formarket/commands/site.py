"""`formarket site build` and `formarket site serve`: the static catalog and its JSON API."""

from __future__ import annotations

import time
from pathlib import Path

import click

from formarket.commands._options import REPO_OPTION, deprecated_alias
from formarket.errors import NotFoundError

__all__ = ["command"]


@click.group("site")
def command() -> None:
    """The static catalog site and JSON API, built from the registry.

    \b
    formarket site build                  build into build/site/ (only what changed)
    formarket site serve                  look at it on http://127.0.0.1:8000/
    """


@command.command("build")
@REPO_OPTION
@deprecated_alias("--registry")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("build/site"),
    show_default=True,
    help="Where the site is written; a later build rewrites only what changed.",
)
@click.option(
    "--site-project",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The mkdocs project (default: site/ of the repository, else of this checkout).",
)
@click.option(
    "--repository",
    default=None,
    metavar="OWNER/NAME",
    help="The GitHub repository that deployment issues and commits link to (default:"
    " $GITHUB_REPOSITORY, else a github.com origin remote).",
)
def build(repo: Path, out: Path, site_project: Path | None, repository: str | None) -> None:
    """Build the catalog: a page per listing and publisher, catalogs with search and
    filters, the compatibility explorer, and the JSON API under api/v1/.

    Listings with errors are left out (`formarket validate` says why). Version dates come from
    the git history of the repository's current branch.
    """
    from formarket.site.build import build_site

    report = build_site(repo, out, project=site_project, repository=repository, echo=click.echo)
    steps = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in report.steps.items())
    click.echo(
        f"built {report.listings} listings into {report.out}: {report.written} files written,"
        f" {report.unchanged} unchanged, {report.removed} removed ({report.reused} pages not"
        f" rendered again: unchanged) in {report.seconds:.2f}s"
        f" ({steps})"
    )


@command.command("serve")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("build/site"),
    show_default=True,
    help="A folder written by `formarket site build`.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--bind", default="127.0.0.1", show_default=True, help="The address to listen on.")
def serve(directory: Path, port: int, bind: str) -> None:
    """Serve a built site over HTTP until interrupted (Ctrl-C)."""
    from formarket.site.serve import start_server

    if not (directory / "index.html").is_file():
        raise NotFoundError(
            f"{directory} holds no built site", hint="run `formarket site build` first"
        )
    server = start_server(directory, bind, port, log=lambda line: click.echo(line, err=True))
    click.echo(f"serving {directory} at {server.url} (Ctrl-C stops)")
    try:
        while True:
            time.sleep(3600)
    finally:
        server.close()
