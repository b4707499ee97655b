"""Reading a registry's files from a working tree or from any git commit, without a checkout.

Both sources answer the same three questions: what is in a folder, what a file holds, and a
key for a folder that changes whenever anything inside it changes (a git tree id; for a working
tree, a digest of names, sizes and modification times, as git's own index does it). The key lets
results be reused for folders that did not change.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

# The git side is `git_snapshot`, which imports this module and not the other way round, so
# that reading a working tree never imports dulwich.
__all__ = ["Item", "Snapshot", "WorkTreeSnapshot"]


ItemKind = Literal["dir", "file", "link", "other"]


@dataclass(frozen=True, slots=True)
class Item:
    """A folder entry. `key` changes whenever the entry's content may have changed: a git
    object id, or for a working tree a file's size, mtime and inode ("" for folders there)."""

    name: str
    kind: ItemKind
    size: int = 0
    key: str = ""


class Snapshot(Protocol):
    """A read-only view of a tree of files; paths are `/`-separated and relative."""

    label: str

    def listdir(self, path: str) -> list[Item]:
        """The entries of a folder, sorted by name; empty when it does not exist."""
        ...

    def read(self, path: str) -> bytes | None:
        """A regular file's bytes, or None when there is no such file."""
        ...

    def folder_key(self, path: str, item: Item) -> str:
        """A key that changes whenever anything below the folder `path` changes; `item` is
        its entry in the parent folder."""
        ...

    def files_under(self, path: str) -> dict[str, int]:
        """Every entry below a folder, by path relative to it, with its size; links and
        special files are given as -1."""
        ...


class WorkTreeSnapshot:
    """Files as they are on disk.

    Paths are joined as strings, not pathlib objects: a registry of ten thousand listings is
    walked on every run, and pathlib's parsing was a tenth of the whole validation.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)
        self._base = os.fspath(root)
        # What `folder_key` saw of each listing folder, so that `files_under` need not look again
        # (worker processes are forked after the walk and inherit it).
        self._seen: dict[str, dict[str, int]] = {}

    def _full(self, path: str) -> str:
        return f"{self._base}/{path}" if path else self._base

    def listdir(self, path: str) -> list[Item]:
        items: list[Item] = []
        try:
            with os.scandir(self._full(path)) as it:
                for entry in it:
                    if entry.is_symlink():
                        items.append(Item(entry.name, "link"))
                    elif entry.is_dir(follow_symlinks=False):
                        items.append(Item(entry.name, "dir"))
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        key = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
                        items.append(Item(entry.name, "file", st.st_size, key))
                    else:
                        items.append(Item(entry.name, "other"))
        except (FileNotFoundError, NotADirectoryError):
            return []
        items.sort(key=lambda i: i.name)
        return items

    def read(self, path: str) -> bytes | None:
        full = self._full(path)
        try:
            # O_NOFOLLOW: a link is not a file of the registry, wherever it points.
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, OSError):
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            # Plain reads of the size fstat gave: a buffered file object cost half the time of
            # reading a listing. Reading on to the end covers a file that changes meanwhile.
            data = os.read(fd, st.st_size + 1)
            if len(data) == st.st_size:
                return data
            chunks = [data]
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def folder_key(self, path: str, item: Item) -> str:
        # `listdir` and `lstat` rather than `scandir`: the same system calls without an object
        # per entry, a tenth of a re-validation that walks every listing folder.
        seen: list[tuple[str, int, int, int, int]] = []
        files: dict[str, int] = {}
        stack = [""]
        lstat, is_dir, is_reg = os.lstat, stat.S_ISDIR, stat.S_ISREG
        while stack:
            rel = stack.pop()
            folder = f"{self._base}/{path}/{rel}"
            for entry in os.listdir(folder):
                st = lstat(folder + entry)
                name = rel + entry
                mode = st.st_mode
                if is_dir(mode):
                    stack.append(name + "/")
                else:
                    files[name] = st.st_size if is_reg(mode) else -1
                seen.append((name, mode, st.st_size, st.st_mtime_ns, st.st_ino))
        seen.sort()
        self._seen[path] = files
        return "wt:" + hashlib.blake2b(repr(seen).encode(), digest_size=16).hexdigest()

    def files_under(self, path: str) -> dict[str, int]:
        seen = self._seen.get(path)
        if seen is not None:
            return seen
        out: dict[str, int] = {}
        stack = [""]
        while stack:
            rel = stack.pop()
            for item in self.listdir(f"{path}/{rel}".rstrip("/")):
                name = f"{rel}{item.name}"
                if item.kind == "dir":
                    stack.append(name + "/")
                else:
                    out[name] = item.size if item.kind == "file" else -1
        return out
