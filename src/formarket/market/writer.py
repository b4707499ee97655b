"""Writing to the marketplace repository: commits built from objects, refs moved by
compare-and-swap.

The one place that writes git. A writer builds its commit on the branch tip it read, then moves
the branch only if the tip is still what it read; when another writer got there first it
rebuilds on the new tip and tries again, so two writers never lose each other's work. When the
branch is the one checked out, the commit that won is brought into the index and the working
tree for the paths it wrote (`worktree`), and a path with local changes stops the writer before
it writes anything.
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
from typing import TYPE_CHECKING

from dulwich.file import FileLocked
from dulwich.object_store import commit_tree_changes
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.repo import BaseRepo, Repo

from formarket.errors import FormarketError
from formarket.market.refs import branch_ref, find_tip, first_parent_chain
from formarket.market.trees import changed_paths, commit_tree, find
from formarket.market.worktree import Checkout, LocalChangesError, checkout
from formarket.settings import BOT_KEY

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "ConflictError",
    "Identity",
    "LocalChangesError",
    "commit_changes",
    "fast_forward",
    "import_tree",
]


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    email: str

    def raw(self) -> bytes:
        return f"{self.name} <{self.email}>".encode()


class ConflictError(FormarketError):
    """The branch kept moving under us; nothing was written."""


Changes = Mapping[str, bytes | None]
_FILE_MODE = stat.S_IFREG | 0o644
_log = logging.getLogger("formarket.git")


def commit_changes(
    repo: BaseRepo,
    branch: str,
    changes: Changes | Callable[[ObjectID | None], Changes],
    message: str,
    author: Identity,
    *,
    attempts: int = 50,
    stale_lock_seconds: float = 60.0,
    sign: bool = True,
) -> ObjectID:
    """Commit `changes` (path -> new bytes, or None to delete) on top of `branch`.

    `changes` may be a function of the current tip's commit id, for writers whose change
    depends on what is there (it is called again after a conflict). Returns the new commit id.
    A lock on a ref or an object older than `stale_lock_seconds` was left by a writer that
    died holding it, and is removed (git holds those for milliseconds). LocalChangesError
    when `branch` is checked out and a path to write has local changes.

    With `sign` (the bot's commits) and FORMARKET_BOT_KEY set, the commit is signed with that
    key in git's SSH signature format; a maintainer's or publisher's commit passes False.
    """
    key_path = BOT_KEY.read() if sign else None
    key = None
    if key_path is not None:
        # cryptography costs every command that writes about 60 ms to import: only the bot's
        from formarket.market.sshsig import load_private_key  # start-up: cryptography

        key = load_private_key(key_path)
    index_lock = None
    for attempt in range(attempts):
        index_lock = None
        try:
            commit_id = _attempt(repo, branch, changes, message, author, key)
        except FileLocked as exc:
            # Another writer (or git) holds a `.lock` on the ref, the index or an object this
            # very moment: like a lost compare-and-swap, wait and try again.
            commit_id = None
            if _is_index(repo, exc.filename):
                # Never broken: `git commit` holds it while its author writes the message.
                index_lock = os.fsdecode(exc.lockfilename)
            else:
                _break_stale(exc.lockfilename, stale_lock_seconds)
        if commit_id is not None:
            return commit_id
        time.sleep(min(0.005 * 2**attempt, 0.2))
    if index_lock is not None:
        raise ConflictError(
            f"{branch} is checked out and its index stayed locked ({index_lock}):"
            " a git command is running there; nothing was written",
            hint=f"run the command again once it is done; if no git command is running,"
            f" one died holding the lock: remove {index_lock}",
        )
    raise ConflictError(
        f"{branch} kept moving; gave up after {attempts} attempts",
        hint="another writer is busy; run the command again (a stale .git/refs/heads/*.lock"
        " left by a killed writer is removed once it is stale)",
    )


def _is_index(repo: BaseRepo, locked: str | bytes) -> bool:
    return isinstance(repo, Repo) and os.fsdecode(locked) == repo.index_path()


def _attempt(
    repo: BaseRepo,
    branch: str,
    changes: Changes | Callable[[ObjectID | None], Changes],
    message: str,
    author: Identity,
    key: Ed25519PrivateKey | None,
) -> ObjectID | None:
    """One try: build the commit on the current tip and move the branch if it is still
    there; None when another writer moved it first."""
    with checkout(repo, branch) as here:
        tip = find_tip(repo, branch)
        wanted = changes(tip) if callable(changes) else changes
        parent_tree = commit_tree(repo, tip) if tip is not None else None
        if here is not None:
            here.refuse_local_changes(parent_tree, wanted)
        blobs = {p: None if data is None else Blob.from_string(data) for p, data in wanted.items()}
        commit = _commit(repo, parent_tree, tip, blobs, message, author, key)
        if not _move(repo, branch, tip, commit.id):
            return None
        if here is not None:
            here.bring_along(blobs)
    _report_failed(here, branch, commit.id)
    return commit.id


def fast_forward(repo: BaseRepo, branch: str, target: ObjectID) -> None:
    """Move `branch` to `target`, a commit on whose first-parent line its tip lies (a merged
    pull request), bringing a checkout along as the writer does."""
    with checkout(repo, branch) as here:
        tip = find_tip(repo, branch)
        if tip is not None and first_parent_chain(repo, target, stop={tip})[0] != tip:
            raise ConflictError(
                f"{branch} cannot fast-forward to {target.decode()[:12]}: its tip is not an"
                " ancestor",
                hint="merge or rebase first",
            )
        old = commit_tree(repo, tip) if tip is not None else None
        new = commit_tree(repo, target)
        paths = changed_paths(repo, old, new)
        if here is not None:
            here.refuse_local_changes(old, paths)
        if not _move(repo, branch, tip, target):
            raise ConflictError(f"{branch} moved meanwhile", hint="run it again")
        if here is not None:
            here.bring_along({path: _blob_at(repo, new, path) for path in paths})
    _report_failed(here, branch, target)


def _blob_at(repo: BaseRepo, tree_id: ObjectID, path: str) -> Blob | None:
    sha = find(repo, tree_id, path, folder=False)
    found = repo.object_store[sha] if sha is not None else None
    return found if isinstance(found, Blob) else None


def _commit(
    repo: BaseRepo,
    parent_tree: ObjectID | None,
    tip: ObjectID | None,
    blobs: Mapping[str, Blob | None],
    message: str,
    author: Identity,
    key: Ed25519PrivateKey | None = None,
) -> Commit:
    entries: list[tuple[bytes, int | None, ObjectID | None]] = []
    for path, blob in sorted(blobs.items()):
        if blob is None:
            entries.append((path.encode(), None, None))
            continue
        repo.object_store.add_object(blob)
        entries.append((path.encode(), _FILE_MODE, blob.id))
    base: ObjectID | Tree = parent_tree if parent_tree is not None else _empty_tree(repo)
    commit = Commit()
    commit.tree = commit_tree_changes(repo.object_store, base, entries)
    commit.parents = [tip] if tip is not None else []
    commit.author = commit.committer = author.raw()
    commit.author_time = commit.commit_time = int(time.time())
    commit.author_timezone = commit.commit_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = message.encode()
    if key is not None:
        from formarket.market.sshsig import sign_commit  # start-up: cryptography, as above

        sign_commit(commit, key)
    repo.object_store.add_object(commit)
    return commit


def _empty_tree(repo: BaseRepo) -> ObjectID:
    empty = Tree()
    repo.object_store.add_object(empty)
    return empty.id


def _move(repo: BaseRepo, branch: str, tip: ObjectID | None, new: ObjectID) -> bool:
    ref = branch_ref(branch)
    # dulwich treats an old value of None as "set unconditionally": creation needs its own
    # compare-and-swap.
    if tip is None:
        return bool(repo.refs.add_if_new(ref, new))
    return bool(repo.refs.set_if_equals(ref, tip, new))


def _report_failed(here: Checkout | None, branch: str, commit_id: ObjectID) -> None:
    if here is None or not here.failed:
        return
    paths = ", ".join(f"{path} ({why})" for path, why in here.failed)
    raise FormarketError(
        f"committed {commit_id.decode()[:12]} to {branch}, but could not write {paths} into"
        " the working tree",
        hint="`git status` shows what differs; `git checkout HEAD -- PATH` writes a file again",
    )


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
