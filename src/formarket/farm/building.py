"""Building a listing's image for the farm: from the marketplace branch to the store.

    find the commit that published the version -> export the listing's folder as it was
      there, with that commit's bases -> plan (the build id)
      -> [published? done] -> lock the build id -> execute that plan
         ([published meanwhile? done] -> fetch a model's weights, build, publish)

The listing is read from git objects, never from a working tree, so what is built is what was
merged; every published version stays buildable, and builds to the same id it always had
(`farm.versions`). Exactly once per build id: a lock file per id in the store keeps two
workers on one store from building the same image at the same time, and the store publishes
with one rename, so a build killed half-way leaves only a staging folder that no reader looks
at.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo
from pydantic import TypeAdapter, ValidationError

from formarket.builder.bases import BASES_DIR, find_bases_dir
from formarket.builder.build import Builder, BuildSettings, PlannedBuild
from formarket.builder.manifest import BuildManifest
from formarket.builder.store import DirectoryStore
from formarket.errors import InputError, NotFoundError, UsageError
from formarket.farm import image_index
from formarket.farm.errors import BuildBusy
from formarket.farm.settings import FarmSettings, open_market
from formarket.farm.versions import Versions, versions_at
from formarket.market.trees import DIR_MODE, subtree
from formarket.schemas.listing import WeightFile
from formarket.yamldoc import load_yaml

__all__ = ["Progress", "build_listing", "build_lock", "plan_listing"]

# Called with a step's name (`parse`, `base`, `02-run`, `disk`...) and what it does.
Progress = Callable[[str, str], None]

_LISTING_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}/[a-z0-9][a-z0-9._-]{0,99}$")
_KINDS = ("models", "agents")
_MODE_LINK = 0o120000
_WEIGHTS = TypeAdapter(tuple[WeightFile, ...])


def _export(repo: Repo, tree: Tree, target: Path) -> None:
    """Write a git tree as files, with git's modes (executable or not) and links as links."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in tree.iteritems():
        name = entry.path.decode("utf-8", "surrogateescape")
        if name in ("", ".", "..") or "/" in name:
            raise InputError(f"git tree entry {name!r} is not a file name")
        path = target / name
        obj = repo.object_store[entry.sha]
        if entry.mode == DIR_MODE and isinstance(obj, Tree):
            _export(repo, obj, path)
        elif entry.mode == _MODE_LINK and isinstance(obj, Blob):
            # The build context refuses links that leave it; they are kept as links here.
            path.symlink_to(os.fsdecode(obj.as_raw_string()))
        elif isinstance(obj, Blob):
            path.write_bytes(obj.as_raw_string())
            path.chmod(0o755 if entry.mode & 0o100 else 0o644)


def _weights(folder: str, data: dict[object, object]) -> tuple[WeightFile, ...]:
    """A model's weight files as its listing names them (the registry's check has validated
    the whole listing before it was merged; only this part matters to the build)."""
    if not folder.startswith("registry/models/"):
        return ()
    try:
        return _WEIGHTS.validate_python(data.get("weights") or ())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InputError(
            f"{folder}/listing.yaml: weights.{where}: {first['msg']}",
            hint="`formarket validate` checks the whole listing",
        ) from None


def _listing_tree(
    repo: Repo, root: Tree, listing_id: str, version: str
) -> tuple[Tree, str, tuple[WeightFile, ...]]:
    """The listing's folder in the commit that published `version`, its Formfile's name and
    its weight files."""
    for kind in _KINDS:
        folder = f"registry/{kind}/{listing_id}"
        tree = subtree(repo, root, folder)
        if tree is None or b"listing.yaml" not in tree:
            continue
        raw = repo.object_store[tree[b"listing.yaml"][1]]
        assert isinstance(raw, Blob)
        data = load_yaml(raw.as_raw_string(), f"{folder}/listing.yaml").data
        if not isinstance(data, dict):
            raise InputError(f"{folder}/listing.yaml is not a mapping")
        formfile = data.get("formfile", "Formfile")
        if not isinstance(formfile, str) or formfile.startswith("/") or ".." in formfile:
            raise InputError(f"{folder}/listing.yaml: formfile must lie inside the folder")
        return tree, formfile, _weights(folder, data)
    raise NotFoundError(f"no listing {listing_id} in the commit that published {version}")


def _unpublished(versions: Versions, listing_id: str, version: str) -> NotFoundError:
    known = versions.published(listing_id)
    if not known:
        return NotFoundError(
            f"no listing {listing_id} on the branch",
            hint="a listing is built once its pull request is merged into the farm's branch",
        )
    return NotFoundError(
        f"listing {listing_id} never published version {version}; its published versions:"
        f" {', '.join(known)}",
        hint="a version is built once the pull request that adds it is merged",
    )


@contextmanager
def build_lock(store: Path, build_id: str, *, wait: bool = True) -> Iterator[None]:
    """Hold the lock of `build_id` in the store; without `wait`, BuildBusy when it is taken.

    flock is released by the kernel when its holder dies, so a killed worker never leaves the
    lock behind. (It holds between processes of one host, and on shared filesystems that
    implement flock.)
    """
    folder = store / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{build_id}.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as exc:
            raise BuildBusy(
                f"build {build_id[:16]} is being built by another worker",
                hint="it is retried; the image appears once that build publishes it",
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _bases_dir(repo: Repo, root: Tree, settings: FarmSettings, scratch: Path) -> Path:
    bases = subtree(repo, root, BASES_DIR.as_posix())
    if bases is None:
        return find_bases_dir(settings.repo)
    _export(repo, bases, scratch / "bases")
    return scratch / "bases"


def plan_listing(
    settings: FarmSettings, listing_id: str, version: str, scratch: Path
) -> tuple[Builder, PlannedBuild, str | None]:
    """Export the listing into `scratch` and plan its build: the builder, the planned build
    (its build id included) and the image index key of the commit it was read from (see
    `image_index`). Builds the base image when it is not cached yet (once, under its own
    lock)."""
    if not _LISTING_ID.match(listing_id):
        raise UsageError(f"{listing_id!r} is not a listing id", hint="e.g. tinyforge/echo-chat")
    repo = open_market(settings)
    try:
        versions = versions_at(repo, settings.branch)
        published = versions.commit_of(listing_id, version)
        if published is None:
            raise _unpublished(versions, listing_id, version)
        commit = repo[published]
        assert isinstance(commit, Commit)
        root = repo[commit.tree]
        assert isinstance(root, Tree)
        tree, formfile_name, weights = _listing_tree(repo, root, listing_id, version)
        key = image_index.image_key(repo, commit.id, listing_id)
        context = scratch / "listing"
        _export(repo, tree, context)
        bases_dir = _bases_dir(repo, root, settings, scratch)
    finally:
        repo.close()
    builder = Builder(
        BuildSettings(
            store=settings.store,
            cache=settings.cache,
            bases_dir=bases_dir,
            base_cache=settings.base_cache,
            weights_allow_private=settings.weights_allow_private,
        )
    )
    return builder, builder.plan(context / formfile_name, context, weights), key


def build_listing(
    settings: FarmSettings,
    listing_id: str,
    version: str,
    progress: Progress | None = None,
    *,
    wait: bool = True,
) -> BuildManifest:
    """Build `listing_id` at `version` as the farm's branch published it; its manifest.

    Idempotent: a published image is returned at once. `wait=False` raises BuildBusy rather
    than waiting while another worker builds the same id (a task retries later instead of
    holding a worker slot).
    """
    report: Progress = progress or (lambda _step, _detail: None)
    store = DirectoryStore(settings.store.absolute())
    settings.state.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=settings.state) as scratch:
        report("export", f"{listing_id} {version} from {settings.branch}")
        builder, planned, key = plan_listing(settings, listing_id, version, Path(scratch))
        published = store.manifest_bytes(planned.build_id)
        if published is not None:
            report("cached", planned.build_id)
            if key:
                image_index.record(store, key, planned.build_id)
            return BuildManifest.model_validate_json(published)
        with build_lock(store.root, planned.build_id, wait=wait):
            # Planning is told only now: an image already published is told as `cached`.
            for step in planned.planning.steps:
                report(step.name, step.title)

            def forward(line: str) -> None:
                name, _, detail = line.strip().partition(" ")
                report(name, detail.strip())

            builder.progress = forward
            manifest = builder.execute(planned).manifest
        if key:
            # Tells the reconciler the image exists, without planning the build again.
            image_index.record(store, key, manifest.build_id)
        return manifest
