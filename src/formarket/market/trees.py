"""Reading folders and files out of git trees by path, from objects only (no checkout).

The read side of the registry's repository for every part that walks a commit's tree: the
registry's snapshots, the farm's image index and builds, the royalties' history.
"""

from __future__ import annotations

from dulwich.objects import ObjectID, Tree
from dulwich.repo import BaseRepo

__all__ = ["DIR_MODE", "entry", "subtree", "tree"]

DIR_MODE = 0o040000


def tree(repo: BaseRepo, tree_id: ObjectID | None) -> Tree | None:
    """The tree object `tree_id`; None when there is none or it is not a tree."""
    if tree_id is None:
        return None
    found = repo.object_store[tree_id]
    return found if isinstance(found, Tree) else None


def entry(repo: BaseRepo, root: Tree, path: str) -> tuple[int, ObjectID] | None:
    """(mode, object id) of what `path` names below `root`; None when nothing does. Every
    part but the last must be a folder."""
    parts = [part for part in path.split("/") if part]
    if not parts:
        return (DIR_MODE, root.id)
    current: Tree | None = root
    for n, part in enumerate(parts):
        if current is None:
            return None
        try:
            mode, sha = current[part.encode()]
        except KeyError:
            return None
        if n == len(parts) - 1:
            return mode, sha
        current = tree(repo, sha) if mode == DIR_MODE else None
    return None


def subtree(repo: BaseRepo, root: Tree, path: str) -> Tree | None:
    """The folder at `path` below `root`; None when there is no such folder."""
    found = entry(repo, root, path)
    if found is None or found[0] != DIR_MODE:
        return None
    return tree(repo, found[1])
