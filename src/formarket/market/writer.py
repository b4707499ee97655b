"""Writing to the registry's git repository: commits built from objects, refs moved by
compare-and-swap.

The one place that writes git. A writer builds its commit on the branch tip it read, then moves
the branch only if the tip is still what it read; when another writer got there first it
rebuilds on the new tip and tries again, so two writers never lose each other's work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dulwich.file import FileLocked
from dulwich.object_store import commit_tree_changes
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo

from formarket.errors import FormarketError

__all__ = ["ConflictError", "Identity", "commit_changes", "import_tree"]


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    email: str

    def raw(self) -> bytes:
        return f"{self.name} <{self.email}>".encode()


class ConflictError(FormarketError):
    """The branch kept moving under us; nothing was written."""


Changes = Mapping[str, bytes | None]
_log = logging.getLogger("formarket.git")


def _store_changes(repo: Repo, parent_tree: ObjectID | None, changes: Changes) -> ObjectID:
    entries: list[tuple[bytes, int | None, ObjectID | None]] = []
    for path, content in sorted(changes.items()):
        if content is None:
            entries.append((path.encode(), None, None))
            continue
        blob = Blob.from_string(content)
        repo.object_store.add_object(blob)
        entries.append((path.encode(), stat.S_IFREG | 0o644, blob.id))
    base: ObjectID | Tree = parent_tree if parent_tree is not None else _empty_tree(repo)
    return commit_tree_changes(repo.object_store, base, entries)


def _empty_tree(repo: Repo) -> ObjectID:
    tree = Tree()
    repo.object_store.add_object(tree)
    return tree.id


def commit_changes(
    repo: Repo,
    branch: str,
    changes: Changes | Callable[[ObjectID | None], Changes],
    message: str,
    author: Identity,
    *,
    attempts: int = 50,
    stale_lock_seconds: float = 60.0,
) -> ObjectID:
    """Commit `changes` (path -> new bytes, or None to delete) on top of `branch`.

    `changes` may be a function of the current tip's commit id, for writers whose change
    depends on what is there (it is called again after a conflict). Returns the new commit id.
    A git lock older than `stale_lock_seconds` was left by a writer that died holding it, and
    is removed (git's own locks are held for milliseconds).
    """
    ref = Ref(f"refs/heads/{branch}".encode())
    for attempt in range(attempts):
        try:
            moved, commit_id = _attempt(repo, ref, changes, message, author)
        except FileLocked as exc:
            # Another writer holds git's `.lock` on the ref or an object this very moment:
            # like a lost compare-and-swap, wait and try again.
            _break_stale(exc.lockfilename, stale_lock_seconds)
            moved = False
        if moved:
            return commit_id
        time.sleep(min(0.005 * 2**attempt, 0.2))
    raise ConflictError(
        f"{branch} kept moving; gave up after {attempts} attempts",
        hint="another writer is busy; run the command again (a stale .git/refs/heads/*.lock"
        " left by a killed writer is removed once it is stale)",
    )


def _attempt(
    repo: Repo,
    ref: Ref,
    changes: Changes | Callable[[ObjectID | None], Changes],
    message: str,
    author: Identity,
) -> tuple[bool, ObjectID]:
    """One try: build the commit on the current tip and move the ref if it is still there."""
    try:
        tip: ObjectID | None = repo.refs[ref]
    except KeyError:
        tip = None
    wanted = changes(tip) if callable(changes) else changes
    parent_tree: ObjectID | None = None
    if tip is not None:
        parent = repo.object_store[tip]
        assert isinstance(parent, Commit)
        parent_tree = parent.tree
    commit = Commit()
    commit.tree = _store_changes(repo, parent_tree, wanted)
    commit.parents = [tip] if tip is not None else []
    commit.author = commit.committer = author.raw()
    commit.author_time = commit.commit_time = int(time.time())
    commit.author_timezone = commit.commit_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = message.encode()
    repo.object_store.add_object(commit)
    # dulwich treats an old value of None as "set unconditionally": creation needs its own
    # compare-and-swap.
    moved = (
        repo.refs.add_if_new(ref, commit.id)
        if tip is None
        else repo.refs.set_if_equals(ref, tip, commit.id)
    )
    return bool(moved), commit.id


def _break_stale(lock: str | bytes, stale_seconds: float) -> None:
    path = os.fsdecode(lock)
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return
    if age > stale_seconds:
        _log.warning("removing %s, a lock left %.0fs ago by a writer that died", path, age)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def import_tree(root: Path, prefixes: tuple[str, ...]) -> dict[str, bytes]:
    """The files below `root`/<prefix> for each prefix, by their path relative to `root`."""
    out: dict[str, bytes] = {}
    for prefix in prefixes:
        base = root / prefix
        if base.is_file():
            out[prefix] = base.read_bytes()
            continue
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.is_symlink():
                out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out
