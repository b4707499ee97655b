"""Writing a large synthetic repository quickly: every object built in memory, one pack.

Adding tens of thousands of files through porcelain (or as loose objects) takes minutes; trees
built bottom-up and written as a single pack take seconds. Commit times are fixed, so the same
files always give the same commit ids.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dulwich.object_store import commit_tree_changes
from dulwich.objects import Blob, Commit, ObjectID, ShaFile, Tree
from dulwich.repo import Repo

from formarket.market.refs import branch_tip, set_branch
from formarket.market.repository import create_repository

__all__ = ["Author", "commit_files", "write_repository"]

# 2024-01-01T00:00:00Z: a fixed time makes the commit ids reproducible.
_TIME = 1_704_067_200
_FILE_MODE = stat.S_IFREG | 0o644
_DIR_MODE = stat.S_IFDIR


@dataclass(frozen=True, slots=True)
class Author:
    login: str
    email: str

    def raw(self) -> bytes:
        return f"{self.login} <{self.email}>".encode()


def _trees(files: Mapping[str, bytes], objects: list[ShaFile]) -> ObjectID:
    """The root tree of `files`; every blob and tree is appended to `objects`."""
    blobs: dict[str, dict[str, ObjectID]] = {"": {}}
    subdirs: dict[str, set[str]] = {"": set()}
    for path, content in files.items():
        blob = Blob.from_string(content)
        objects.append(blob)
        parent, _, name = path.rpartition("/")
        blobs.setdefault(parent, {})[name] = blob.id
        child = parent
        while child:
            above, _, _ = child.rpartition("/")
            subdirs.setdefault(child, set())
            blobs.setdefault(child, {})
            if child in subdirs.setdefault(above, set()):
                break
            subdirs[above].add(child)
            child = above
    tree_ids: dict[str, ObjectID] = {}
    # Deepest folders first, so that every subtree exists before its parent is built.
    for folder in sorted(subdirs, key=lambda f: -(f.count("/") + 1) if f else 0):
        tree = Tree()
        for name, sha in blobs[folder].items():
            tree.add(name.encode(), _FILE_MODE, sha)
        for sub in subdirs[folder]:
            tree.add(sub.rpartition("/")[2].encode(), _DIR_MODE, tree_ids[sub])
        objects.append(tree)
        tree_ids[folder] = tree.id
    return tree_ids[""]


def _commit(tree: ObjectID, parents: list[ObjectID], message: str, author: Author) -> Commit:
    commit = Commit()
    commit.tree = tree
    commit.parents = parents
    commit.author = commit.committer = author.raw()
    commit.author_time = commit.commit_time = _TIME
    commit.author_timezone = commit.commit_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = message.encode()
    return commit


def write_repository(root: Path, files: Mapping[str, bytes], message: str, author: Author) -> Repo:
    """A new repository at `root` whose `main` holds `files` in one commit (the working tree
    is written by the caller)."""
    repo = create_repository(root, branch="main")
    objects: list[ShaFile] = []
    commit = _commit(_trees(files, objects), [], message, author)
    objects.append(commit)
    repo.object_store.add_objects([(obj, None) for obj in objects])
    set_branch(repo, "main", commit.id)
    return repo


def commit_files(
    repo: Repo,
    base: str,
    branch: str,
    changes: Mapping[str, bytes],
    message: str,
    author: Author,
) -> ObjectID:
    """A commit on top of `base` that replaces the files in `changes`, as branch `branch`."""
    tip = branch_tip(repo, base)
    parent = repo.object_store[tip]
    assert isinstance(parent, Commit)
    entries: list[tuple[bytes, int | None, ObjectID | None]] = []
    for path, content in sorted(changes.items()):
        blob = Blob.from_string(content)
        repo.object_store.add_object(blob)
        entries.append((path.encode(), _FILE_MODE, blob.id))
    tree = commit_tree_changes(repo.object_store, parent.tree, entries)
    commit = _commit(tree, [tip], message, author)
    repo.object_store.add_object(commit)
    set_branch(repo, branch, commit.id)
    return commit.id
