"""`formarket build`: a Formfile (or a listing) to a bootable VM image in the artifact store.

Imports are lazy: an unchanged recipe is answered from `formarket.builder.quick` (standard
library only) before the builder, pydantic and the parser are imported at all.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from formarket.commands._options import CACHE_OPTION, REPO_OPTION, STORE_OPTION
from formarket.errors import NotFoundError

if TYPE_CHECKING:
    from formarket.builder.build import Builder, PlannedBuild
    from formarket.schemas.listing import WeightFile

__all__ = ["command"]

_LISTING_ID = re.compile(r"^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9._-]*$")


def default_store() -> Path:
    """Where `formarket build` keeps images when neither --store nor FORMARKET_STORE says."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "formarket" / "store"


def resolve_target(target: str, repo: Path) -> Path:
    """The Formfile a LISTING-ID or a path names."""
    path = Path(target)
    if path.is_file():
        return path
    if path.is_dir() and (path / "Formfile").is_file():
        return path / "Formfile"
    if _LISTING_ID.match(target):
        for kind in ("models", "agents"):
            folder = repo / "registry" / kind / target
            if (folder / "listing.yaml").is_file():
                return folder / _listing_formfile(folder / "listing.yaml")
        raise NotFoundError(
            f"no listing {target} under {repo / 'registry'}",
            hint="pass --repo with the marketplace repository, or the path of a Formfile",
        )
    raise NotFoundError(
        f"{target}: no such Formfile or listing",
        hint="give a Formfile's path, its folder, or a listing id such as tinyforge/echo-chat",
    )


def _listing_formfile(listing: Path) -> str:
    import yaml

    data = yaml.load(listing.read_bytes(), Loader=yaml.CSafeLoader)
    name = data.get("formfile", "Formfile") if isinstance(data, dict) else "Formfile"
    if not isinstance(name, str) or name.startswith("/") or ".." in name.split("/"):
        raise NotFoundError(f"{listing}: formfile must be a path inside the listing's folder")
    return name


def _listing_weights(folder: Path) -> tuple[WeightFile, ...]:
    """The weight files of the model listing in `folder`, if it is one that names any."""
    path = folder / "listing.yaml"
    if not path.is_file():
        return ()
    from formarket.schemas.listing import ModelListing
    from formarket.yamldoc import load_yaml

    doc = load_yaml(path.read_bytes(), str(path))
    if not isinstance(doc.data, dict) or doc.data.get("kind") != "model":
        return ()
    if not doc.data.get("weights"):
        return ()
    return doc.validated(
        ModelListing, "listing", hint="`formarket validate` checks the whole listing"
    ).weights


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def _summary(manifest: dict[str, object], image_dir: Path, cached: bool, seconds: float) -> str:
    steps = manifest["steps"]
    assert isinstance(steps, list)
    planned = [s for s in steps if s.get("key")]
    artifacts = {a["role"]: a for a in manifest["artifacts"]}  # type: ignore[attr-defined]
    disk = artifacts["disk"]
    lines = [
        f"{'cached' if cached else 'built'} {manifest['name']}: {manifest['build_id']}",
        f"  base        {manifest['base']} ({str(manifest['base_digest'])[:16]})",
        f"  cache hits  {'the whole build' if cached else ''}"
        + ("" if cached else f"{manifest['cache_hits']} of {len(planned)} steps"),
        f"  disk        {_size(disk['size'])} qcow2, {disk['virtual_size'] // 1024**3} GiB ext4",
        f"  kernel      {_size(artifacts['kernel']['size'])}, initrd"
        f" {_size(artifacts['initrd']['size'])}",
        f"  expose      {' '.join(str(p) for p in manifest['expose']) or 'none'}",  # type: ignore[attr-defined]
        f"  time        {seconds:.2f}s" + ("" if cached else f" (build {manifest['seconds']}s)"),
        f"  image       {image_dir}",
    ]
    weights = manifest.get("data_disk")
    if isinstance(weights, dict):
        lines.append(
            f"  weights     {len(weights['files'])} file(s) on data disk {weights['id'][:16]}"
            f" ({_size(weights['size'])})"
        )
    return "\n".join(lines)


@click.command("build", short_help="Build a Formfile into a bootable VM image, cached by content.")
@click.argument("target")
@STORE_OPTION
@CACHE_OPTION
@REPO_OPTION
@click.option(
    "--context",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The build context (default: the Formfile's folder).",
)
@click.option(
    "--no-step-cache",
    is_flag=True,
    help="Run every step again and make the disk whole (bases stay cached).",
)
@click.option(
    "--plan",
    "--dry-run",
    "plan_only",
    is_flag=True,
    help="Show the build id and the steps, without building (a missing base is still made).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the build manifest (or the plan) as JSON."
)
@click.option(
    "--allow-private-weights",
    is_flag=True,
    help="Fetch a model's weight files from addresses on this host's private networks too"
    " (a local mirror).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def command(
    target: str,
    store: Path | None,
    cache: Path | None,
    repo: Path,
    context: Path | None,
    no_step_cache: bool,
    plan_only: bool,
    as_json: bool,
    allow_private_weights: bool,
    quiet: bool,
) -> None:
    """Build the VM image of a Formfile: a listing id (`tinyforge/echo-chat`), a Formfile or
    its folder. The image (qcow2 disk, kernel, initrd, manifest, build log) is published in the
    store under its build id, a hash of everything it is made from: building the same inputs
    again is a cache hit, and changing only the last RUN re-runs only that step. A model
    listing's weight files (its `weights:`) are fetched into the cache once, by SHA-256, and
    laid on a read-only data disk in the store beside the image (mounted at /weights).

    \b
    Examples:
      formarket build tinyforge/echo-chat
      formarket build ./my-agent --plan
      formarket build ./my-agent --store /srv/images --json | jq .build_id
    """
    started = time.perf_counter()
    formfile = resolve_target(target, repo)
    context_dir = context or formfile.parent
    store = store or default_store()
    cache = cache or store / "cache"
    from formarket.builder import quick

    weights = _listing_weights(formfile.parent)
    # The quick answer watches the recipe's files, not listing.yaml: with weights, plan.
    hit = None if plan_only or weights else quick.lookup(cache, store, formfile, context_dir)
    if hit is not None:
        build_id, raw = hit
        _finish(json.loads(raw), store / "images" / build_id, True, started, as_json, raw)
        return
    from formarket.builder.bases import find_bases_dir
    from formarket.builder.build import Builder, BuildSettings

    bases_dir = (
        repo / "builder" / "bases"
        if (repo / "builder" / "bases").is_dir()
        else find_bases_dir(formfile.parent)
    )
    settings = BuildSettings(
        store=store,
        cache=cache,
        bases_dir=bases_dir,
        step_cache=not no_step_cache,
        weights_allow_private=allow_private_weights,
    )

    def progress(line: str) -> None:
        if not quiet:
            click.echo(line, err=True)

    builder = Builder(settings, progress)
    planned = builder.plan(formfile, context_dir, weights)
    if plan_only:
        _show_plan(builder, planned, as_json)
        return
    result = builder.execute(planned)
    if not weights:
        quick.remember(cache, formfile, context_dir, result.manifest.build_id, result.watched)
    data = result.manifest.model_dump(mode="json")
    raw = (result.image_dir / "manifest.json").read_bytes()
    _finish(data, result.image_dir, result.whole_build_cached, started, as_json, raw)


def _show_plan(builder: Builder, planned: PlannedBuild, as_json: bool) -> None:
    """The planned build id and steps, and what the caches hold of them now."""
    published = builder.published(planned)
    steps = builder.steps(planned)
    if as_json:
        data = {
            "build_id": planned.build_id,
            "name": planned.formfile.name,
            "base": planned.plan.base.name,
            "base_digest": planned.plan.base.digest,
            "published": published,
            "steps": [dataclasses.asdict(step) for step in steps],
        }
        click.echo(json.dumps(data, indent=2))
        return
    base = planned.plan.base
    image = "published: building it is a whole-build cache hit" if published else "not built"
    lines = [
        f"plan {planned.formfile.name}: {planned.build_id}",
        f"  base        {base.name} ({base.digest[:16]})",
        f"  image       {image}",
        *(f"  {s.name:<12}{s.title}{'  (cached)' if s.cached else ''}" for s in steps),
    ]
    click.echo("\n".join(lines))


def _finish(
    manifest: dict[str, object],
    image_dir: Path,
    cached: bool,
    started: float,
    as_json: bool,
    raw: bytes,
) -> None:
    if as_json:
        sys.stdout.write(raw.decode())
        return
    click.echo(_summary(manifest, image_dir, cached, time.perf_counter() - started))
