"""Reading a registry from any git commit, without a checkout (see `snapshot` for the
interface both sources share)."""

from __future__ import annotations

from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.repo import Repo

from formarket.errors import NotFoundError
from formarket.market.refs import resolve_rev
from formarket.registry.snapshot import Item

__all__ = ["GitSnapshot", "open_git_snapshot"]


_MODE_DIR = 0o040000
_MODE_LINK = 0o120000
_MODE_SUBMODULE = 0o160000


class GitSnapshot:
    """Files as they are in one commit, read from git objects."""

    def __init__(self, repo: Repo, commit_id: ObjectID, label: str) -> None:
        self.repo = repo
        self.commit_id = commit_id
        self.label = label
        commit = repo[commit_id]
        if not isinstance(commit, Commit):
            raise NotFoundError(f"{label} is not a commit")
        self.root_tree: ObjectID = commit.tree
        self._trees: dict[str, Tree | None] = {}

    def _tree(self, path: str) -> Tree | None:
        if path in self._trees:
            return self._trees[path]
        tree: Tree | None
        if path in ("", "."):
            obj = self.repo.object_store[self.root_tree]
            tree = obj if isinstance(obj, Tree) else None
        else:
            parent_path, _, name = path.rpartition("/")
            parent = self._tree(parent_path)
            tree = None
            if parent is not None:
                try:
                    mode, sha = parent[name.encode()]
                except KeyError:
                    mode, sha = 0, ObjectID(b"")
                if mode == _MODE_DIR:
                    obj = self.repo.object_store[sha]
                    tree = obj if isinstance(obj, Tree) else None
        self._trees[path] = tree
        return tree

    def listdir(self, path: str) -> list[Item]:
        tree = self._tree(path)
        if tree is None:
            return []
        items: list[Item] = []
        for entry in tree.iteritems():
            name = entry.path.decode("utf-8", "surrogateescape")
            mode = entry.mode
            key = entry.sha.decode()
            if mode == _MODE_DIR:
                items.append(Item(name, "dir", 0, key))
            elif mode == _MODE_LINK:
                items.append(Item(name, "link", 0, key))
            elif mode == _MODE_SUBMODULE:
                items.append(Item(name, "other", 0, key))
            else:
                items.append(Item(name, "file", 0, key))
        items.sort(key=lambda i: i.name)
        return items

    def blob_id(self, path: str) -> ObjectID | None:
        parent_path, _, name = path.rpartition("/")
        tree = self._tree(parent_path)
        if tree is None:
            return None
        try:
            mode, sha = tree[name.encode()]
        except KeyError:
            return None
        return sha if mode not in (_MODE_DIR, _MODE_LINK, _MODE_SUBMODULE) else None

    def read(self, path: str) -> bytes | None:
        sha = self.blob_id(path)
        if sha is None:
            return None
        obj = self.repo.object_store[sha]
        return obj.as_raw_string() if isinstance(obj, Blob) else None

    def folder_key(self, path: str, item: Item) -> str:
        return "git:" + item.key

    def files_under(self, path: str) -> dict[str, int]:
        out: dict[str, int] = {}
        stack = [""]
        while stack:
            rel = stack.pop()
            tree = self._tree(f"{path}/{rel}".rstrip("/"))
            if tree is None:
                continue
            for entry in tree.iteritems():
                name = rel + entry.path.decode("utf-8", "surrogateescape")
                if entry.mode == _MODE_DIR:
                    stack.append(name + "/")
                elif entry.mode in (_MODE_LINK, _MODE_SUBMODULE):
                    out[name] = -1
                else:
                    out[name] = self._blob_size(entry.sha)
        return out

    def _blob_size(self, sha: ObjectID) -> int:
        _, raw = self.repo.object_store.get_raw(sha)
        return len(raw)


def open_git_snapshot(repo: Repo, rev: str) -> GitSnapshot:
    """The snapshot at `rev`: a branch, tag, full or abbreviated commit id, or HEAD."""
    commit_id = resolve_rev(repo, rev)
    return GitSnapshot(repo, commit_id, rev)
