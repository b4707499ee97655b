"""`formarket weights`: fetch a model's weights into this host's cache and make its data disk."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from formarket.commands._options import CACHE_OPTION, REPO_OPTION, STORE_OPTION
from formarket.errors import NotFoundError

if TYPE_CHECKING:
    from formarket.schemas.listing import ModelListing, WeightFile

__all__ = ["command"]


@click.group("weights")
def command() -> None:
    """A model's weight files: fetched once per host by their SHA-256, checked, and laid on a
    read-only data disk that versions with the same weights share.

    \b
    A model listing names its files under `weights:` (url, sha256, size_bytes, and optionally
    mirrors and a path on the disk). They are kept in <cache>/weights:
      files/<sha256>      each verified file, fetched once however many versions use it
      partial/            downloads under way: a broken one resumes where it stopped
      disks/<id>.img      one ext4 data disk per set of files (mounted at /weights in the VM)
    """


@command.command("fetch")
@click.argument("listing")
@REPO_OPTION
@STORE_OPTION
@CACHE_OPTION
@click.option(
    "--max-bytes",
    type=click.IntRange(1),
    default=None,
    help="The largest file this host fetches, in bytes (default: 256 GiB).",
)
@click.option(
    "--allow-private",
    is_flag=True,
    help="Fetch from addresses on this host's private networks too (a local mirror).",
)
@click.option("--no-disk", is_flag=True, help="Fetch and check the files only.")
def fetch(
    listing: str,
    repo: Path,
    store: Path | None,
    cache: Path | None,
    max_bytes: int | None,
    allow_private: bool,
    no_disk: bool,
) -> None:
    """Fetch the weights of model LISTING (such as northwind-ai/northwind-chat-8b) as its
    listing.yaml in the repository names them, check each file's size and SHA-256, and make
    the data disk. What is in the cache already is not fetched again.

    \b
    Examples:
      formarket weights fetch northwind-ai/northwind-chat-8b
      formarket weights fetch acme/tiny --cache /srv/formarket/cache --no-disk
    """
    from formarket.builder.weights import DEFAULT_MAX_BYTES, Fetched, WeightCache, data_disk
    from formarket.builder.weights import fetch as fetch_file
    from formarket.commands.build import default_store
    from formarket.process import Runner

    path = repo / "registry" / "models" / listing / "listing.yaml"
    if not path.is_file():
        raise NotFoundError(
            f"no model listing {listing} under {repo / 'registry' / 'models'}",
            hint="weights belong to model listings; pass --repo with the marketplace repository",
        )
    model = _model(path)
    if not model.weights:
        click.echo(f"{listing} {model.version} lists no weights: nothing to fetch")
        return
    root = (cache or (store or default_store()) / "cache") / "weights"
    weights = WeightCache(root)
    limit = max_bytes or DEFAULT_MAX_BYTES

    def say(line: str) -> None:
        click.echo(line, err=True)

    def one(weight: WeightFile) -> Fetched:
        got = fetch_file(
            weight, weights, max_bytes=limit, allow_private=allow_private, progress=say
        )
        where = f"fetched {got.downloaded:,} bytes from {got.url}" if got.url else "in the cache"
        click.echo(f"  {weight.disk_path}  {weight.sha256[:12]}  {where}")
        return got

    click.echo(f"{listing} {model.version}: {len(model.weights)} weight file(s)")
    if no_disk:
        for weight in model.weights:
            one(weight)
        return
    disk = data_disk(model.weights, weights, Runner(), fetch_one=one)
    click.echo(f"data disk: {disk}")


def _model(path: Path) -> ModelListing:
    """The model listing at `path`; a malformed one is an error at its line."""
    from formarket.schemas.listing import ModelListing
    from formarket.yamldoc import load_yaml

    return load_yaml(path.read_bytes(), str(path)).validated(
        ModelListing, "listing", hint="`formarket validate` checks the whole listing"
    )
