"""Reading folders and files out of git trees by path, from objects only (no checkout).

The read side of the marketplace repository for every part that walks a commit's tree: the
registry's snapshots, the farm's image index and builds, the gateway's flush, the royalties'
history.
"""

from __future__ import annotations

from pathlib import Path

from dulwich.diff_tree import tree_changes
from dulwich.object_store import DiskObjectStore
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.repo import BaseRepo
from isal import isal_zlib

from formarket.errors import InputError, NotFoundError
from formarket.inflate import INFLATE_ERROR, MOST_EXPANSION

__all__ = [
    "DIR_MODE",
    "changed_paths",
    "commit_tree",
    "entry",
    "export_folder",
    "files_under",
    "find",
    "list_dir",
    "read_blob",
    "read_path",
    "subtree",
    "tree",
]

DIR_MODE = 0o040000
# A loose object's header, "blob <size>" and a NUL, fits in this many bytes.
_HEADER_BYTES = 32


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


def commit_tree(repo: BaseRepo, commit_id: ObjectID) -> ObjectID:
    """The root tree of a commit."""
    commit = repo.object_store[commit_id]
    if not isinstance(commit, Commit):
        raise NotFoundError(f"{commit_id.decode()} is not a commit")
    root: ObjectID = commit.tree
    return root


def find(repo: BaseRepo, tree_id: ObjectID | None, path: str, *, folder: bool) -> ObjectID | None:
    """The id of the folder (or, without `folder`, the file) at `path` below a tree; None
    when there is none of that kind there."""
    root = tree(repo, tree_id)
    found = entry(repo, root, path) if root is not None else None
    if found is None or (found[0] == DIR_MODE) != folder:
        return None
    return found[1]


def list_dir(repo: BaseRepo, tree_id: ObjectID, path: str) -> dict[str, tuple[bool, ObjectID]]:
    """name -> (is a folder, object id) of a folder; empty when there is no such folder."""
    folder = tree(repo, find(repo, tree_id, path, folder=True))
    if folder is None:
        return {}
    return {
        item.path.decode("utf-8", "surrogateescape"): (item.mode == DIR_MODE, item.sha)
        for item in folder.iteritems()
    }


def read_path(repo: BaseRepo, tree_id: ObjectID, path: str) -> bytes | None:
    """The bytes of the file at `path` below a tree; None when there is no such file."""
    sha = find(repo, tree_id, path, folder=False)
    return read_blob(repo, sha) if sha is not None else None


def read_blob(repo: BaseRepo, blob_id: ObjectID) -> bytes:
    loose = _loose_blob(repo, blob_id)
    if loose is not None:
        return loose
    obj = repo.object_store[blob_id]
    if not isinstance(obj, Blob):
        raise NotFoundError(f"{blob_id.decode()} is not a file")
    return obj.as_raw_string()


def _loose_blob(repo: BaseRepo, blob_id: ObjectID) -> bytes | None:
    """A loose blob's bytes, inflated by ISA-L (three times zlib's speed: a month's usage
    files are megabytes each, read twice by a close); None for any other object, or a
    loose one that does not read as a blob, which dulwich then reads and judges."""
    store = repo.object_store
    if not isinstance(store, DiskObjectStore) or len(blob_id) != 40:
        return None
    name = blob_id.decode("ascii")
    try:
        stored = (Path(store.path) / name[:2] / name[2:]).read_bytes()
    except OSError:
        return None
    try:
        # The header first ("blob <size>"), then the content into one buffer of that size:
        # growing one as it filled cost as long as the inflating.
        engine = isal_zlib.decompressobj()
        head = engine.decompress(stored, _HEADER_BYTES)
        kind, nul, rest = head.partition(b"\0")
        if not nul or not kind.startswith(b"blob ") or not kind[5:].isdigit():
            return None
        size = int(kind[5:])
        if size > len(stored) * MOST_EXPANSION:
            return None  # a lie: dulwich reads it and says so
        body = rest + engine.decompress(engine.unconsumed_tail, size - len(rest) + 1)
    except INFLATE_ERROR:
        return None
    if len(body) != size or not engine.eof or engine.unused_data:
        return None
    return body


def files_under(repo: BaseRepo, tree_id: ObjectID, path: str) -> dict[str, bytes]:
    """Every file below the folder `path`, by its path relative to that folder."""
    out: dict[str, bytes] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        for name, (is_dir, sha) in list_dir(repo, tree_id, f"{path}/{rel}".rstrip("/")).items():
            if is_dir:
                stack.append(f"{rel}{name}/")
            else:
                out[f"{rel}{name}"] = read_blob(repo, sha)
    return out


def changed_paths(repo: BaseRepo, old: ObjectID | None, new: ObjectID | None) -> list[str]:
    """Every file path added, removed or modified from tree `old` to tree `new`, sorted."""
    paths: set[str] = set()
    for change in tree_changes(repo.object_store, old, new):
        for side in (change.old, change.new):
            if side is not None and side.path is not None:
                paths.add(side.path.decode("utf-8", "surrogateescape"))
    return sorted(paths)


def export_folder(repo: BaseRepo, tree_id: ObjectID, path: str, target: Path) -> int:
    """Write the folder at `path` below a tree as files under `target`, executable where git
    says so; the number of files. A link is refused rather than written: the folder may come
    from a pull request, and a link could point the reader at this machine's own files."""
    folder = tree(repo, find(repo, tree_id, path, folder=True))
    if folder is None:
        raise NotFoundError(f"no folder {path} in tree {tree_id.decode()}")
    count = 0
    stack: list[tuple[Tree, Path]] = [(folder, target)]
    while stack:
        here, out = stack.pop()
        out.mkdir(parents=True, exist_ok=True)
        for item in here.iteritems():
            name = item.path.decode("utf-8", "surrogateescape")
            if name in ("", ".", "..") or "/" in name:
                raise InputError(f"{path}: git tree entry {name!r} is not a file name")
            if item.mode == DIR_MODE:
                sub = tree(repo, item.sha)
                if sub is not None:
                    stack.append((sub, out / name))
            elif item.mode & 0o170000 != 0o100000:
                raise InputError(f"{path}: {name} is a link or a submodule, not a file")
            else:
                (out / name).write_bytes(read_blob(repo, item.sha))
                (out / name).chmod(0o755 if item.mode & 0o100 else 0o644)
                count += 1
    return count
