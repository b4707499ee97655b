"""The build context: the files a Formfile's COPY lines take, read once, hashed and checked.

Only what contributes is read: the sources of COPY lines, or the whole folder when there is no
COPY (Formation's rule). The Formfile itself is never part of its context: it is the recipe, and
its USER lines may hold passwords in clear, which must not reach an image.

The walk never follows a symbolic link; a link is kept as a link and must point inside the
context; special files are refused. Limits on the number of entries and their total size are
checked while walking, so a context of a million files fails in bounded time with a clear
message instead of hashing them all.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from formarket.errors import InputError, NotFoundError
from formarket.schemas._base import Document

__all__ = [
    "BuildContext",
    "ContextEntry",
    "ContextError",
    "ContextLimits",
    "normalise_source",
    "scan_context",
]


class ContextError(InputError):
    """A build context breaks a rule: escapes, special files, too many or too large files."""


@dataclass(frozen=True, slots=True)
class ContextLimits:
    """Bounds on what one build may take from its context."""

    max_entries: int = 20_000
    max_bytes: int = 16 * 1024**3


class ContextEntry(Document):
    """One file, folder or link of the context, by its path relative to the context."""

    path: str = Field(description="`/`-separated, relative; `.` is the context itself.")
    kind: Literal["file", "dir", "link"]
    mode: int = Field(description="0o755 or 0o644 for files (only the executable bit counts).")
    size: int = 0
    digest: str = Field("", description="sha256 of a file's bytes; a link's target.")


class BuildContext(Document):
    """The contributing entries of a context, sorted by path (the root is not part of it)."""

    entries: tuple[ContextEntry, ...]

    def under(self, source: str) -> tuple[ContextEntry, ...]:
        """`source` and everything below it."""
        if source == ".":
            return self.entries
        prefix = source + "/"
        return tuple(e for e in self.entries if e.path == source or e.path.startswith(prefix))

    def get(self, path: str) -> ContextEntry | None:
        return next((e for e in self.entries if e.path == path), None)


def normalise_source(src: str) -> str:
    """A COPY source as a clean relative path: `./www/` -> `www`, `./` -> `.`."""
    clean = posixpath.normpath(src)
    if clean.startswith(("../", "/")) or clean == "..":
        raise ContextError(f"COPY source {src!r} leaves the build context")
    return clean


class _Walk:
    def __init__(self, root: Path, limits: ContextLimits, exclude: frozenset[str]) -> None:
        self.root = root
        self.exclude = exclude
        self.real_root = root.resolve()
        self.limits = limits
        self.entries: dict[str, ContextEntry] = {}
        self.total = 0

    def add(self, entry: ContextEntry) -> None:
        if entry.path in self.entries:
            return
        if len(self.entries) >= self.limits.max_entries:
            raise ContextError(
                f"the build context has more than {self.limits.max_entries} files and folders",
                hint="COPY only what the image needs, or pack many small files into one archive",
            )
        self.total += entry.size
        if self.total > self.limits.max_bytes:
            raise ContextError(
                f"the build context is larger than {self.limits.max_bytes} bytes",
                hint="large weights belong in the listing's `weights:`, fetched at deploy time",
            )
        self.entries[entry.path] = entry

    def visit(self, rel: str, *, named: bool = False) -> None:
        if rel in self.exclude:
            if named:
                raise ContextError(
                    f"COPY {rel}: the Formfile is not part of its build context",
                    hint="it may hold passwords; copy the files the image needs instead",
                )
            return
        path = self.root / rel
        try:
            info = os.lstat(path)
        except FileNotFoundError as exc:
            raise NotFoundError(
                f"COPY source {rel!r} does not exist in the build context {self.root}"
            ) from exc
        mode = info.st_mode
        if stat.S_ISLNK(mode):
            self.add(self._link(rel, path))
        elif stat.S_ISREG(mode):
            exe = 0o755 if mode & 0o111 else 0o644
            self.add(ContextEntry(path=rel, kind="file", mode=exe, size=info.st_size))
        elif stat.S_ISDIR(mode):
            if rel != ".":
                self.add(ContextEntry(path=rel, kind="dir", mode=0o755))
            with os.scandir(path) as it:
                names = sorted(entry.name for entry in it)
            for name in names:
                self.visit(name if rel == "." else f"{rel}/{name}")
        else:
            raise ContextError(
                f"{rel} in the build context is not a file, folder or link",
                hint="devices, sockets and pipes cannot be copied into an image",
            )

    def _link(self, rel: str, path: Path) -> ContextEntry:
        target = os.readlink(path)
        lexical = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        resolved = path.resolve()
        escapes = (
            target.startswith("/")
            or lexical == ".."
            or lexical.startswith("../")
            or not resolved.is_relative_to(self.real_root)
        )
        if escapes:
            raise ContextError(
                f"{rel} in the build context is a link to {target!r}, outside the context",
                hint="copy the file itself into the listing's folder",
            )
        return ContextEntry(path=rel, kind="link", mode=0o777, digest=target)

    def check_parents(self, rel: str) -> None:
        # `COPY link/sub /x` must not reach through a linked folder.
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            try:
                info = os.lstat(self.root / parent)
            except FileNotFoundError:
                return
            if stat.S_ISLNK(info.st_mode):
                raise ContextError(
                    f"COPY source {rel!r} goes through the link {parent!r}",
                    hint="name the real folder in COPY",
                )


def scan_context(
    root: Path,
    sources: Iterable[str],
    limits: ContextLimits | None = None,
    exclude: Iterable[str] = (),
) -> BuildContext:
    """Walk and hash the entries below each COPY source (`.` for the whole context), leaving
    out `exclude` (the Formfile, when it lies in its context)."""
    if not root.is_dir():
        raise NotFoundError(f"the build context {root} is not a folder")
    walk = _Walk(root, limits or ContextLimits(), frozenset(exclude))
    for source in sources:
        rel = normalise_source(source)
        if rel != ".":
            walk.check_parents(rel)
        walk.visit(rel, named=True)
    hashed = []
    for path in sorted(walk.entries):
        entry = walk.entries[path]
        if entry.kind == "file":
            with open(root / path, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
            entry = entry.model_copy(update={"digest": digest})
        hashed.append(entry)
    return BuildContext(entries=tuple(hashed))
