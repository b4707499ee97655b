"""Every published version of a listing, where it is read from, and what its owners say of it.

A published version never changes, so a version no longer at the branch tip is read, built and
deployed as it was in the commit that first published it (the branch's first-parent history,
`registry.history`). That commit is the only source used, for the tip's version as well: its
build id is the same whether it is the newest version or an old one, so it is built once.

The owners' marks (deprecated, yanked, with a message) are read from the listing at the tip,
where they write them; a listing gone from the tip has no marks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dulwich.objects import ObjectID
from dulwich.repo import BaseRepo, Repo
from pydantic import ValidationError

from formarket.errors import FormarketError
from formarket.market.layout import AGENTS, MODELS
from formarket.market.refs import resolve_rev
from formarket.market.trees import commit_tree, read_path
from formarket.registry.cache import ResultCache, code_digest, default_cache_dir
from formarket.registry.history import VersionHistory, version_history
from formarket.schemas.listing import VersionMark
from formarket.yamldoc import load_yaml

__all__ = ["Versions", "semver_key", "versions_at"]

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)


def semver_key(version: str) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
    """A sort key in semver's order: a pre-release sorts before its release."""
    found = _SEMVER.match(version)
    if found is None:
        return (-1, -1, -1, -1, ())
    major, minor, patch, pre = found.groups()
    if pre is None:
        return (int(major), int(minor), int(patch), 1, ())
    parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return (int(major), int(minor), int(patch), 0, parts)


@dataclass
class Versions:
    """The versions a branch tip knows of; the history walk happens once, when first needed."""

    repo: BaseRepo
    tip: ObjectID
    cache: ResultCache
    _history: VersionHistory | None = field(default=None, repr=False)

    def history(self) -> VersionHistory:
        if self._history is None:
            self._history = version_history(self.repo, self.tip, self.cache)
        return self._history

    def commit_of(self, listing_id: str, version: str) -> ObjectID | None:
        """The commit that first published `listing_id` at `version`; None if none did."""
        found = self.history().first(listing_id, version)
        return ObjectID(found.commit.encode()) if found is not None else None

    def published(self, listing_id: str) -> list[str]:
        """Every version of the listing the branch has published, oldest first."""
        prefix = f"{listing_id}@"
        found = [key[len(prefix) :] for key in self.history().versions if key.startswith(prefix)]
        return sorted(found, key=semver_key)

    def listing_file(self, listing_id: str, version: str) -> tuple[str, bytes] | None:
        """The path and bytes of the listing file as `version` was published."""
        commit = self.commit_of(listing_id, version)
        if commit is None:
            return None
        tree = commit_tree(self.repo, commit)
        for kind in (MODELS, AGENTS):
            path = f"{kind}/{listing_id}/listing.yaml"
            raw = read_path(self.repo, tree, path)
            if raw is not None:
                return path, raw
        return None

    def reader(self, listing_id: str, version: str) -> Callable[[str], bytes | None]:
        """Read files as the commit that published the version has them (nothing when none
        did)."""
        commit = self.commit_of(listing_id, version)
        if commit is None:
            return lambda _path: None
        tree = commit_tree(self.repo, commit)
        return lambda path: read_path(self.repo, tree, path)

    def marks(self, listing_id: str) -> dict[str, VersionMark]:
        """The owners' marks on the listing's versions, as the tip says them."""
        tree = commit_tree(self.repo, self.tip)
        for kind in (MODELS, AGENTS):
            path = f"{kind}/{listing_id}/listing.yaml"
            raw = read_path(self.repo, tree, path)
            if raw is not None:
                return _marks(raw, path)
        return {}


def _marks(raw: bytes, path: str) -> dict[str, VersionMark]:
    try:
        data = load_yaml(raw, path).data
    except FormarketError:
        return {}
    found = data.get("version_marks") if isinstance(data, dict) else None
    marks: dict[str, VersionMark] = {}
    for version, mark in found.items() if isinstance(found, dict) else ():
        try:
            marks[str(version)] = VersionMark.model_validate(mark)
        except ValidationError:
            continue  # the registry's check reports it; an unreadable mark marks nothing
    return marks


def versions_at(repo: BaseRepo, rev: str) -> Versions:
    """The versions known at `rev` (a branch or commit), the history walk kept in the
    repository's formarket cache (none for a repository in memory)."""
    path: Path | None = None
    if isinstance(repo, Repo):
        path = default_cache_dir(Path(repo.path)) / "farm.cache"
    return Versions(repo, resolve_rev(repo, rev), ResultCache(path, code_digest()))
