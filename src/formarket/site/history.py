"""Listing versions and the change feed, from the git history of the registry's branch.

A version's date is the date of the first commit on the branch (first parents only) whose
listing document carries it: when it became public on the catalog, whichever branch it was
written on. Only commits that touched `registry/models`, `registry/agents` or
`registry/solutions` are diffed (usage commits, the most frequent, are skipped by comparing tree
ids), and a build that kept the previous history only walks the commits added since.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dulwich.diff_tree import CHANGE_DELETE, tree_changes
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.repo import Repo

__all__ = ["Change", "History", "Version", "listing_key", "no_history", "read_history"]

_FORMAT = 1
_SECTIONS = (("models", "model", 3), ("agents", "agent", 3), ("solutions", "solution", 2))
# A listing's version is a top-level scalar; reading it with a pattern rather than parsing the
# whole document keeps a first build over 10,000 listings in the order of a second.
_VERSION = re.compile(rb"^version:[ \t]*['\"]?([0-9A-Za-z.+-]+)", re.MULTILINE)

ChangeKind = Literal["added", "updated", "changed", "removed"]


@dataclass(frozen=True, slots=True)
class Version:
    """A version of a listing and when it appeared on the branch."""

    version: str
    date: str  # ISO 8601, UTC
    commit: str
    blob: str  # the document's git blob, to read that version back


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the change feed."""

    date: str
    commit: str
    kind: str  # model, agent or solution
    id: str
    change: ChangeKind
    version: str | None


@dataclass(frozen=True, slots=True)
class History:
    """Versions by listing key (`kind:id`), oldest first, and every change, oldest first.
    `note` says why there is no history when there is none."""

    head: str | None
    versions: Mapping[str, tuple[Version, ...]]
    changes: tuple[Change, ...]
    current: Mapping[str, str]  # listing key -> blob id on the branch's tip
    note: str = ""

    @property
    def available(self) -> bool:
        return self.head is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "head": self.head,
            "versions": {
                key: [[v.version, v.date, v.commit, v.blob] for v in versions]
                for key, versions in self.versions.items()
            },
            "changes": [
                [c.date, c.commit, c.kind, c.id, c.change, c.version] for c in self.changes
            ],
            "current": dict(self.current),
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Any) -> History | None:
        """A history kept by an earlier build, or None when it is unreadable or of another
        format (it is then read again from git: a cache is never a source of truth)."""
        try:
            if data.get("format") != _FORMAT:
                return None
            return cls(
                data["head"],
                {
                    key: tuple(Version(*map(str, row)) for row in rows)
                    for key, rows in data["versions"].items()
                },
                tuple(
                    Change(row[0], row[1], row[2], row[3], row[4], row[5])
                    for row in data["changes"]
                ),
                dict(data["current"]),
                str(data.get("note", "")),
            )
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):
            return None


def no_history(note: str) -> History:
    return History(None, {}, (), {}, note)


def listing_key(kind: str, ident: str) -> str:
    return f"{kind}:{ident}"


def _iso(commit: Commit) -> str:
    moment = datetime.datetime.fromtimestamp(commit.commit_time, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _subtree(repo: Repo, tree: ObjectID | None, path: bytes) -> ObjectID | None:
    if tree is None:
        return None
    root = repo.object_store[tree]
    if not isinstance(root, Tree):
        return None
    try:
        mode, sha = root.lookup_path(repo.object_store.__getitem__, path)
    except KeyError:
        return None
    return sha if mode == 0o040000 else None


def _first_parents(repo: Repo, head: ObjectID, stop: str | None) -> tuple[list[Commit], bool]:
    """Commits from `head` back along first parents, newest first, up to `stop` (excluded);
    and whether `stop` was reached."""
    chain: list[Commit] = []
    sha: ObjectID | None = head
    while sha is not None:
        if stop is not None and sha.decode() == stop:
            return chain, True
        commit = repo[sha]
        if not isinstance(commit, Commit):
            break
        chain.append(commit)
        sha = commit.parents[0] if commit.parents else None
    return chain, False


def _key_of(section: str, kind: str, depth: int, path: bytes) -> str | None:
    parts = path.decode("utf-8", "surrogateescape").split("/")
    if len(parts) != depth:
        return None
    if depth == 3:
        if parts[2] != "listing.yaml":
            return None
        return listing_key(kind, f"{parts[0]}/{parts[1]}")
    if not parts[1].endswith(".yaml"):
        return None
    return listing_key(kind, f"{parts[0]}/{parts[1].removesuffix('.yaml')}")


def _version_of(repo: Repo, blob: ObjectID) -> str | None:
    obj = repo.object_store[blob]
    if not isinstance(obj, Blob):
        return None
    found = _VERSION.search(obj.as_raw_string())
    return found.group(1).decode() if found else None


def _changed(repo: Repo, parent: Commit | None, commit: Commit) -> Iterator[tuple[str, str | None]]:
    """(listing key, new blob id or None when deleted) for each listing document changed."""
    for section, kind, depth in _SECTIONS:
        path = f"registry/{section}".encode()
        old = _subtree(repo, parent.tree if parent else None, path)
        new = _subtree(repo, commit.tree, path)
        if old == new:
            continue
        for change in tree_changes(repo.object_store, old, new):
            side = change.old if change.type == CHANGE_DELETE else change.new
            if side is None or side.path is None:
                continue
            entry_path = side.path
            blob = None if change.type == CHANGE_DELETE else side.sha
            key = _key_of(section, kind, depth, entry_path)
            if key is not None:
                yield key, blob.decode() if blob is not None else None


def read_history(repo: Repo, previous: History | None = None) -> History:
    """The history of the branch HEAD points at; `previous`, kept by an earlier build, is
    continued when its head is still on the branch, else the whole history is read again."""
    try:
        head = repo.head()
    except KeyError:
        return no_history("the registry's repository has no commits yet")
    stop = previous.head if previous is not None and previous.available else None
    chain, reached = _first_parents(repo, head, stop)
    if stop is not None and not reached:  # the branch was rewritten: start over
        previous = None
        chain, _ = _first_parents(repo, head, None)
    versions: dict[str, list[Version]] = {}
    changes: list[Change] = []
    current: dict[str, str] = {}
    if previous is not None:
        versions = {key: list(v) for key, v in previous.versions.items()}
        changes = list(previous.changes)
        current = dict(previous.current)
    for commit in reversed(chain):
        parent = repo[commit.parents[0]] if commit.parents else None
        parent_commit = parent if isinstance(parent, Commit) else None
        date, sha = _iso(commit), commit.id.decode()
        for key, blob in _changed(repo, parent_commit, commit):
            kind, ident = key.split(":", 1)
            if blob is None:
                current.pop(key, None)
                changes.append(Change(date, sha, kind, ident, "removed", None))
                continue
            version = _version_of(repo, ObjectID(blob.encode())) or "0.0.0"
            known = versions.setdefault(key, [])
            existed = key in current
            current[key] = blob
            if not known or known[-1].version != version:
                if not any(v.version == version for v in known):
                    known.append(Version(version, date, sha, blob))
                change: ChangeKind = "updated" if existed else "added"
            else:
                change = "changed"
            changes.append(Change(date, sha, kind, ident, change, version))
    return History(
        head.decode(),
        {key: tuple(v) for key, v in versions.items()},
        tuple(changes),
        current,
    )


def read_blob(repo: Repo, blob: str) -> bytes | None:
    """A document as it was at some version, by its blob id."""
    try:
        obj = repo.object_store[ObjectID(blob.encode())]
    except KeyError:
        return None
    return obj.as_raw_string() if isinstance(obj, Blob) else None
