"""`formarket demo`: the marketplace's journey on a scratch repository, narrated."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click

from formarket.demo import run_demo, starter_source

__all__ = ["command"]


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to make the scratch repository (default: a new temporary folder,"
    " removed afterwards unless --keep).",
)
@click.option(
    "--source",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="A folder holding the starter registry/, schemas/ and builder/"
    " (default: this formarket checkout).",
)
@click.option("--keep", is_flag=True, help="Keep the scratch repository to look at.")
def command(workdir: Path | None, source: Path | None, keep: bool) -> None:
    """Run the marketplace end to end on a scratch git repository.

    \b
    1. copies the starter registry into a new git repository and validates it;
    2. a publisher opens a good pull request (a new listing): the check passes, it is merged;
    3. the same publisher opens a bad one (touches another publisher's listing and rewrites
       a published version): the check refuses it and says why.
    """
    src = source or starter_source()
    if workdir is None:
        scratch = Path(tempfile.mkdtemp(prefix="formarket-demo-"))
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        scratch = workdir
    try:
        run_demo(src, scratch, click.echo)
    finally:
        if keep or workdir is not None:
            click.echo(f"\nthe scratch repository is kept at {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
