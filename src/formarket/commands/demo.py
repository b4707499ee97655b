"""`formarket demo`: the marketplace's journey on a scratch repository, narrated."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click

from formarket.demo.journey import run_demo, starter_source

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
    """Run the marketplace end to end on a scratch git repository, on embedded defaults
    (sqlite files for the queue, a private libvirtd running qemu; no server to install).

    \b
    1. copies the starter registry into a new git repository and validates it;
    2. a publisher's pull request adds a listing: the check passes, it is merged;
    3. the same publisher's next pull request breaks two rules: it is refused, with why;
    4. users ask for an agent with the new model: once by a GitHub issue (against a local
       stand-in of GitHub's API), once by `formarket deploy`;
    5. the farm builds the images and runs all four as VMs (a local worker, reconcile cycles);
    6. calls go through the gateway; their usage and the VMs' running time are committed;
    7. the deployments are stopped in git and the farm removes the VMs;
    8. the month is closed: statements and payouts are committed and verified;
    9. the catalog site is built: the listing, its usage and its creator's earnings.

    Needs root (image builds run in namespaces) and takes about a minute.
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
