"""What a branch's first-parent history has published: every listing version's first content,
and every publisher's last valid owners.

A published version never changes, so the pull-request check compares a version with its first
publication, not only with the base commit: a listing withdrawn and added again, or a version
that went away and came back, is still the version first published. A version's content is
what its build id covers (the listing file, the Formfile and every file of the build context)
plus its terms: the listing folder's files by git blob id, leaving out only a README that no
COPY of the Formfile reads. The listing file counts by its data without `version_marks`: an
owner marks published versions deprecated or yanked in the current version's file, and that
changes nothing a version builds or sells.

The index is kept beside the check's results, signed like them, by commit: a second run walks
only the commits it has not seen.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dulwich.objects import ObjectID
from dulwich.repo import BaseRepo

from formarket.market.refs import first_parent_chain
from formarket.market.trees import DIR_MODE, commit_tree, find, list_dir, read_blob, tree
from formarket.registry.cache import ResultCache

__all__ = ["Published", "VersionHistory", "folder_digest", "version_history"]

# The digest's format: a cache written under another one is not read (2: listing files by their
# data without version_marks, rather than by blob id).
_FORMAT = b"formarket-history-2"
_KEEP = 4
_KINDS = ("models", "agents")
_LINK_MODE = 0o120000


@dataclass(frozen=True, slots=True)
class Published:
    """A version's first publication: a digest of its content and the commit that made it."""

    digest: str
    commit: str


@dataclass(slots=True)
class VersionHistory:
    """`id@version` -> (digest, commit) of listings and solutions; publisher -> owners."""

    versions: dict[str, tuple[str, str]] = field(default_factory=dict)
    owners: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def first(self, ident: str, version: str) -> Published | None:
        found = self.versions.get(f"{ident}@{version}")
        return Published(*found) if found is not None else None

    def published(self, ident: str) -> dict[str, Published]:
        """Every version of `ident` the history has published, by version."""
        prefix = f"{ident}@"
        return {
            key[len(prefix) :]: Published(*found)
            for key, found in self.versions.items()
            if key.startswith(prefix)
        }

    def last_owners(self, publisher: str) -> frozenset[str] | None:
        """The owners in the last valid version of the publisher's file; None if it never
        had one."""
        found = self.owners.get(publisher)
        return frozenset(found) if found is not None else None

    def copy(self) -> VersionHistory:
        return VersionHistory(dict(self.versions), dict(self.owners))


def _files(repo: BaseRepo, folder: ObjectID) -> dict[str, tuple[int, bytes]]:
    """Every entry below a folder tree: relative path -> (mode, object id)."""
    out: dict[str, tuple[int, bytes]] = {}
    stack: list[tuple[str, ObjectID]] = [("", folder)]
    while stack:
        prefix, tree_id = stack.pop()
        found = tree(repo, tree_id)
        if found is None:
            continue
        for item in found.iteritems():
            name = prefix + item.path.decode("utf-8", "surrogateescape")
            if item.mode == DIR_MODE:
                stack.append((name + "/", item.sha))
            else:
                out[name] = (item.mode, bytes(item.sha))
    return out


def _copied(formfile: bytes | None) -> tuple[str, ...]:
    """The context paths a Formfile's COPY lines read; `.` (everything) when there are none
    or the Formfile cannot be read, so that nothing is left out of the digest by mistake."""
    from formarket.formfile.parser import check_formfile  # start-up: changed listings only

    if formfile is None:
        return (".",)
    try:
        result = check_formfile(formfile.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return (".",)
    if result.formfile is None or result.formfile.copies_whole_context:
        return (".",)
    sources = [getattr(step, "src", None) for step in result.formfile.steps]
    return tuple(posixpath.normpath(s) for s in sources if isinstance(s, str)) or (".",)


def _is_read(path: str, sources: tuple[str, ...]) -> bool:
    return any(s == "." or path == s or path.startswith(s + "/") for s in sources)


def _terms(data: Mapping[str, Any]) -> bytes:
    """The listing file's data as it counts for a version: all of it but `version_marks`."""
    kept = {k: v for k, v in data.items() if k != "version_marks"}
    text = json.dumps(kept, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=20).digest()


def folder_digest(repo: BaseRepo, folder: ObjectID, data: Mapping[str, Any]) -> str:
    """The digest of a listing version's content: every file of its folder by blob id and
    mode, but the README when no COPY reads it (it changes nothing built, deployed or sold),
    and the listing file by its data without `version_marks`."""
    files = _files(repo, folder)
    if "listing.yaml" in files:
        files["listing.yaml"] = (files["listing.yaml"][0], _terms(data))
    readme = data.get("readme", "README.md")
    formfile = data.get("formfile", "Formfile")
    if isinstance(readme, str) and readme in files:
        entry = files.get(formfile) if isinstance(formfile, str) else None
        raw = read_blob(repo, ObjectID(entry[1])) if entry and entry[0] != _LINK_MODE else None
        if not _is_read(posixpath.normpath(readme), _copied(raw)):
            del files[readme]
    digest = hashlib.blake2b(_FORMAT, digest_size=16)
    for name in sorted(files):
        mode, sha = files[name]
        digest.update(f"{name}\0{mode:o}\0".encode() + sha + b"\n")
    return digest.hexdigest()


def _listing_data(raw: bytes | None, path: str) -> dict[str, Any] | None:
    # start-up: a check whose history is all in the index reads no YAML.
    from formarket.yamldoc import YamlError, load_yaml  # start-up

    if raw is None:
        return None
    try:
        data = load_yaml(raw, path).data
    except YamlError:
        return None
    return data if isinstance(data, dict) else None


def _record(
    history: VersionHistory, ident: str, data: Mapping[str, Any] | None, digest: str, commit: str
) -> None:
    # start-up: pydantic's import, which the pattern's module makes, only for a walk.
    from formarket.schemas._types import SEMVER_PATTERN  # start-up

    if data is None or data.get("id") != ident:
        return
    version = data.get("version")
    if isinstance(version, str) and re.match(SEMVER_PATTERN, version):
        history.versions.setdefault(f"{ident}@{version}", (digest, commit))


def _changed(
    repo: BaseRepo, old: ObjectID | None, new: ObjectID | None
) -> dict[str, tuple[bool, ObjectID]]:
    """Entries of folder `new` that are not the same in folder `old`."""
    if new is None or old == new:
        return {}
    before = list_dir(repo, old, "") if old is not None else {}
    return {k: v for k, v in list_dir(repo, new, "").items() if before.get(k) != v}


def _apply(
    repo: BaseRepo,
    history: VersionHistory,
    old_root: ObjectID | None,
    new_root: ObjectID,
    commit: str,
) -> None:
    """Add what one commit changed under registry/, descending only where tree ids differ."""
    old_reg = find(repo, old_root, "registry", folder=True)
    new_reg = find(repo, new_root, "registry", folder=True)
    if new_reg is None or old_reg == new_reg:
        return
    for kind in _KINDS:
        kind_old = find(repo, old_reg, kind, folder=True)
        kind_new = find(repo, new_reg, kind, folder=True)
        for pub, (is_dir, pub_new) in sorted(_changed(repo, kind_old, kind_new).items()):
            if not is_dir:
                continue
            pub_old = find(repo, kind_old, pub, folder=True)
            for slug, (slug_dir, folder) in sorted(_changed(repo, pub_old, pub_new).items()):
                if not slug_dir:
                    continue
                path = f"registry/{kind}/{pub}/{slug}/listing.yaml"
                blob = find(repo, folder, "listing.yaml", folder=False)
                data = _listing_data(read_blob(repo, blob) if blob else None, path)
                if data is not None:
                    digest = folder_digest(repo, folder, data)
                    _record(history, f"{pub}/{slug}", data, digest, commit)
    solutions_old = find(repo, old_reg, "solutions", folder=True)
    solutions_new = find(repo, new_reg, "solutions", folder=True)
    for pub, (is_dir, pub_new) in sorted(_changed(repo, solutions_old, solutions_new).items()):
        if not is_dir:
            continue
        pub_old = find(repo, solutions_old, pub, folder=True)
        for name, (name_dir, blob) in sorted(_changed(repo, pub_old, pub_new).items()):
            if name_dir or not name.endswith(".yaml"):
                continue
            slug = name.removesuffix(".yaml")
            path = f"registry/solutions/{pub}/{name}"
            data = _listing_data(read_blob(repo, blob), path)
            _record(history, f"{pub}/{slug}", data, blob.decode(), commit)
    pubs_old = find(repo, old_reg, "publishers", folder=True)
    pubs_new = find(repo, new_reg, "publishers", folder=True)
    for name, (is_dir, blob) in sorted(_changed(repo, pubs_old, pubs_new).items()):
        if is_dir or not name.endswith(".yaml"):
            continue
        owners = _valid_owners(read_blob(repo, blob), name.removesuffix(".yaml"))
        if owners is not None:
            history.owners[name.removesuffix(".yaml")] = owners


def _valid_owners(raw: bytes, publisher: str) -> tuple[str, ...] | None:
    from pydantic import ValidationError  # start-up: changed publishers only

    from formarket.schemas.publisher import Publisher  # start-up: changed publishers only

    data = _listing_data(raw, f"registry/publishers/{publisher}.yaml")
    if data is None:
        return None
    try:
        typed = Publisher.model_validate(data)
    except ValidationError:
        return None
    return tuple(typed.owners) if typed.id == publisher else None


def _load(cache: ResultCache) -> dict[str, VersionHistory]:
    raw = cache.read_signed("history", _FORMAT)
    if raw is None:
        return {}
    try:
        stored = marshal.loads(raw)  # noqa: S302 - our own file, signed
    except (EOFError, ValueError, TypeError):
        return {}
    if not isinstance(stored, dict):
        return {}
    return {tip: VersionHistory(versions, owners) for tip, (versions, owners) in stored.items()}


def _save(cache: ResultCache, states: dict[str, VersionHistory]) -> None:
    plain = {tip: (h.versions, h.owners) for tip, h in states.items()}
    cache.write_signed("history", _FORMAT, marshal.dumps(plain))


def version_history(repo: BaseRepo, tip: ObjectID, cache: ResultCache) -> VersionHistory:
    """The history of the first-parent chain up to `tip`, from the cache where it already
    knows an ancestor."""
    states = _load(cache)
    chain = first_parent_chain(repo, tip, stop={ObjectID(k.encode()) for k in states})
    start = chain[0]
    previous: ObjectID | None = None
    if start.decode() in states:
        history = states[start.decode()].copy()
        previous = commit_tree(repo, start)
        chain = chain[1:]
    else:
        history = VersionHistory()
    for commit_id in chain:
        root = commit_tree(repo, commit_id)
        _apply(repo, history, previous, root, commit_id.decode())
        previous = root
    if chain or tip.decode() not in states:
        states[tip.decode()] = history
        for stale in list(states)[:-_KEEP]:
            del states[stale]
        _save(cache, states)
    return history
