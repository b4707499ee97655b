"""Bringing a checked-out branch's index and working tree along when the writer moves it.

When the branch the writer moves is the one HEAD names in a repository with a working tree,
the paths its commit writes appear in the working tree and the index, and the paths it deletes
disappear from both, as `git merge --ff-only` would do; every other path is left as it is. So
`git status` stays clean, and the next `git commit -a` does not undo what the bot committed.

A path with local changes (the working tree differs from the index, or the index from the
tip, an untracked file in the way) is never overwritten: the writer asks `refuse_local_changes`
before it writes anything. The index is held under git's own `index.lock` from that check
until the update is written, so a git command run meanwhile fails as it would beside another;
and a git command that holds it (`git commit` holds it while its message is written) is waited
for, never broken.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from dulwich.index import (
    ConflictedIndexEntry,
    Index,
    IndexEntry,
    blob_from_path_and_stat,
    build_file_from_blob,
    cleanup_mode,
    index_entry_from_stat,
    locked_index,
)
from dulwich.objects import Blob, ObjectID, Tree
from dulwich.repo import BaseRepo, Repo

from formarket.errors import FormarketError, InputError
from formarket.market.refs import checked_out_branch, find_tip
from formarket.market.trees import entry, tree

__all__ = ["Checkout", "LocalChangesError", "checkout"]

FILE_MODE = stat.S_IFREG | 0o644
_SHOWN = 10


class LocalChangesError(FormarketError):
    """Paths the writer must write have local changes; nothing was written."""

    def __init__(self, branch: str, paths: list[str]) -> None:
        more = len(paths) - _SHOWN
        shown = ", ".join(paths[:_SHOWN]) + (f" and {more} more" if more > 0 else "")
        super().__init__(
            f"not committing to {branch}, which is checked out here: local changes to {shown}",
            hint="commit them or stash them (`git stash -u`), then run the command again;"
            " nothing was written",
        )
        self.paths = tuple(paths)


@dataclass
class Checkout:
    """The index (locked) and working tree of a repository whose HEAD names the branch."""

    repo: Repo
    branch: str
    index: Index
    root: bytes
    filemode: bool
    failed: list[tuple[str, str]] = field(default_factory=list)

    def local_changes(self, tree_id: ObjectID | None, paths: Iterable[str]) -> list[str]:
        """Which of `paths` have local changes, against the tip's tree `tree_id`."""
        root = tree(self.repo, tree_id)
        return [path for path in sorted(set(paths)) if self._changed(root, path)]

    def refuse_local_changes(self, tree_id: ObjectID | None, paths: Collection[str]) -> None:
        for path in paths:
            _check_path(path)
        changed = self.local_changes(tree_id, paths)
        if changed:
            raise LocalChangesError(self.branch, changed)

    def bring_along(self, files: Mapping[str, Blob | None]) -> None:
        """Write `files` (None: delete) into the working tree and the index. A path that
        cannot be written is noted in `failed` and the others are still written: the commit
        is in already, and the index must say what the working tree holds."""
        for path, blob in sorted(files.items()):
            try:
                self._bring(path, blob)
            except OSError as exc:
                self.failed.append((path, exc.strerror or str(exc)))

    def _full(self, path: str) -> bytes:
        return os.path.join(self.root, path.encode())

    def _bring(self, path: str, blob: Blob | None) -> None:
        key, full = path.encode(), self._full(path)
        if blob is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(full)
            self._prune(os.path.dirname(full))
            if key in self.index:
                del self.index[key]
            return
        os.makedirs(os.path.dirname(full), exist_ok=True)
        written = build_file_from_blob(blob, FILE_MODE, full, honor_filemode=self.filemode)
        self.index[key] = index_entry_from_stat(written, blob.id, FILE_MODE)

    def _prune(self, folder: bytes) -> None:
        """Remove the folders a deletion left empty, as git does."""
        while len(folder) > len(self.root):
            try:
                os.rmdir(folder)
            except OSError:
                return
            folder = os.path.dirname(folder)

    def _changed(self, root: Tree | None, path: str) -> bool:
        key = path.encode()
        committed = entry(self.repo, root, path) if root is not None else None
        try:
            staged: IndexEntry | ConflictedIndexEntry | None = self.index[key]
        except KeyError:
            staged = None
        if isinstance(staged, ConflictedIndexEntry):
            return True
        if ((staged.mode, staged.sha) if staged is not None else None) != committed:
            return True
        return self._differs_on_disk(key, staged)

    def _differs_on_disk(self, key: bytes, staged: IndexEntry | None) -> bool:
        folder = self.root
        for part in key.split(b"/")[:-1]:
            folder = os.path.join(folder, part)
            try:
                st = os.lstat(folder)
            except FileNotFoundError:
                break
            if not stat.S_ISDIR(st.st_mode):
                return True  # a file or a link where a folder must be
        full = os.path.join(self.root, key)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return staged is not None
        if staged is None or stat.S_ISDIR(st.st_mode):
            return True  # an untracked file or folder in the way
        mode = cleanup_mode(st.st_mode)
        if self.filemode:
            other_kind = mode != staged.mode
        else:
            # git ignores the executable bit then: only a link against a file counts.
            other_kind = stat.S_ISLNK(mode) != stat.S_ISLNK(staged.mode)
        if other_kind:
            return True
        found: ObjectID = blob_from_path_and_stat(full, st).id
        return found != staged.sha


def _check_path(path: str) -> None:
    parts = path.split("/")
    if any(part in ("", ".", "..") or part.lower() == ".git" for part in parts):
        raise InputError(f"{path!r} is not a path the writer may write")


def _checked_out(repo: BaseRepo, branch: str) -> bool:
    """Whether `branch` is what the working tree of `repo` holds. A repository made by
    formarket without a checkout has no index while its branch has commits: nobody works in
    it, so there is nothing to keep in step."""
    if not isinstance(repo, Repo) or repo.bare or checked_out_branch(repo) != branch:
        return False
    return os.path.exists(repo.index_path()) or find_tip(repo, branch) is None


@contextlib.contextmanager
def checkout(repo: BaseRepo, branch: str) -> Iterator[Checkout | None]:
    """The checkout of `branch` with its index locked; None when `branch` is not checked out
    (a bare repository, another branch, an in-memory one). The index is written when the
    block ends without an exception, and left as it was when one is raised."""
    if not _checked_out(repo, branch):
        yield None
        return
    assert isinstance(repo, Repo)
    filemode = repo.get_config().get_boolean((b"core",), b"filemode", True)
    with locked_index(repo.index_path(), object_format=repo.object_format) as index:
        yield Checkout(repo, branch, index, os.fsencode(repo.path), filemode)
