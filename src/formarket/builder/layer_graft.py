"""Bringing a mounted filesystem from one stack of layers to another, path by path.

A build's disk holds the merged view of a stack of overlayfs layers. When the next build shares
the lower part of that stack (only its last steps changed), its disk is the old one with the old
top layers taken back and the new ones put on: `rewind` restores every path the old top layers
touched from the merged view of the shared layers, `apply` writes a layer as overlayfs would
show it (a whiteout removes, an opaque folder hides what was below it). The cost is what the
changed layers hold, not what the whole image holds.

Standard library only: it runs inside the build sandbox (`sandbox_init.py`, `python -I -S`).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat

__all__ = ["GraftRefused", "apply", "rewind"]

_OVERLAY_XATTRS = "trusted.overlay."
_SECOND = 1_000_000_000
# Layers written with these features hold paths that only overlayfs can resolve.
_UNSUPPORTED = ("trusted.overlay.redirect", "trusted.overlay.metacopy")


class GraftRefused(Exception):
    """A layer this module cannot reproduce: the caller makes the disk whole instead."""


def _xattrs(path: str) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return []
        raise


def _kind(path: str, info: os.stat_result) -> str:
    """`whiteout`, `opaque` (a folder hiding what is below it), `dir` or `node`."""
    if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
        return "whiteout"
    names = _xattrs(path)
    for name in _UNSUPPORTED:
        if name in names:
            raise GraftRefused(f"{path}: the layer uses overlayfs's {name.rsplit('.', 1)[1]}")
    if not stat.S_ISDIR(info.st_mode):
        return "node"
    opaque = "trusted.overlay.opaque" in names
    if opaque and os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y":
        return "opaque"
    return "dir"


def _remove(path: str) -> None:
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _set_metadata(src: str, dst: str, info: os.stat_result) -> None:
    # Owner first: chown clears set-id bits and file capabilities, which come after it.
    os.chown(dst, info.st_uid, info.st_gid, follow_symlinks=False)
    wanted = [name for name in _xattrs(src) if not name.startswith(_OVERLAY_XATTRS)]
    for name in _xattrs(dst):
        if name not in wanted:  # a folder kept on the disk may carry what a later step set
            os.removexattr(dst, name, follow_symlinks=False)
    for name in wanted:
        os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):
        os.chmod(dst, stat.S_IMODE(info.st_mode))
    # Whole seconds, as `mke2fs -d` writes them: a disk is the same whichever way it was made.
    times = (info.st_atime_ns // _SECOND * _SECOND, info.st_mtime_ns // _SECOND * _SECOND)
    os.utime(dst, ns=times, follow_symlinks=False)


class _Copier:
    """Copies nodes and trees, keeping hard links together and folder times for the end."""

    def __init__(self) -> None:
        # Each hard-linked source's copies, and how many names the source has.
        self.links: dict[tuple[int, int], list[str]] = {}
        self.names: dict[tuple[int, int], int] = {}
        self.folders: list[tuple[str, str, os.stat_result]] = []

    def node(self, src: str, dst: str, info: os.stat_result) -> None:
        """Create `dst` (which does not exist) as a copy of the non-folder `src`."""
        mode = info.st_mode
        if stat.S_ISREG(mode) and info.st_nlink > 1:
            key = (info.st_dev, info.st_ino)
            copies = self.links.setdefault(key, [])
            copies.append(dst)
            self.names[key] = info.st_nlink
            if len(copies) > 1:
                os.link(copies[0], dst)
                return
        if stat.S_ISREG(mode):
            shutil.copyfile(src, dst, follow_symlinks=False)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(dst, stat.S_IMODE(mode))
        else:
            os.mknod(dst, mode, info.st_rdev)
        _set_metadata(src, dst, info)

    def tree(self, src: str, dst: str) -> None:
        """Create `dst` (which does not exist) as a copy of `src`, a folder or not."""
        info = os.lstat(src)
        if not stat.S_ISDIR(info.st_mode):
            self.node(src, dst, info)
            return
        os.mkdir(dst)
        with os.scandir(src) as entries:
            for entry in entries:
                self.tree(entry.path, os.path.join(dst, entry.name))
        self.folders.append((src, dst, info))

    def folder(self, src: str, dst: str, info: os.stat_result) -> None:
        """Make `dst` a folder (keeping what it holds if it already is one); its metadata at
        the end, after its entries have changed its times."""
        if not _is_dir(dst):
            _remove(dst)
            os.mkdir(dst)
        self.folders.append((src, dst, info))

    def finish(self) -> None:
        # Deepest first, so that setting a folder's times is the last change inside its parent.
        for src, dst, info in sorted(self.folders, key=lambda f: f[1].count("/"), reverse=True):
            _set_metadata(src, dst, info)
        self.folders.clear()


def apply(target: str, layer: str) -> None:
    """Write `layer` (an overlayfs upper folder) onto the filesystem mounted at `target`."""
    copier = _Copier()

    def visit(src_dir: str, dst_dir: str) -> None:
        with os.scandir(src_dir) as entries:
            for entry in entries:
                src, dst = entry.path, os.path.join(dst_dir, entry.name)
                info = entry.stat(follow_symlinks=False)
                kind = _kind(src, info)
                if kind == "whiteout":
                    _remove(dst)
                elif kind == "node":
                    _remove(dst)
                    copier.node(src, dst, info)
                else:
                    if kind == "opaque":
                        _remove(dst)
                    copier.folder(src, dst, info)
                    visit(src, dst)

    visit(layer, target)
    copier.finish()


def _touched(layers: list[str]) -> dict[str, bool]:
    """Every path the layers changed, relative: True where the whole subtree must be restored
    (a file, a whiteout, an opaque folder), False for a folder whose entries say what changed."""
    touched: dict[str, bool] = {}

    def visit(folder: str, rel: str) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                path, name = entry.path, f"{rel}/{entry.name}" if rel else entry.name
                kind = _kind(path, entry.stat(follow_symlinks=False))
                if kind == "dir":
                    touched.setdefault(name, False)
                    visit(path, name)
                else:
                    touched[name] = True

    for layer in layers:
        visit(layer, "")
    return touched


def rewind(target: str, prefix: str, layers: list[str]) -> None:
    """Make every path that `layers` touched on the filesystem at `target` what it is in
    `prefix`, the merged view of the layers below them."""
    touched = _touched(layers)
    whole: set[str] = set()
    copier = _Copier()
    for rel in sorted(touched, key=lambda r: r.split("/")):
        parts = rel.split("/")
        if any("/".join(parts[:n]) in whole for n in range(1, len(parts))):
            continue  # restored with its ancestor
        src, dst = os.path.join(prefix, rel), os.path.join(target, rel)
        try:
            info: os.stat_result | None = os.lstat(src)
        except (FileNotFoundError, NotADirectoryError):
            info = None
        if not touched[rel] and info is not None and stat.S_ISDIR(info.st_mode):
            copier.folder(src, dst, info)
            continue
        whole.add(rel)
        _remove(dst)
        if info is not None:
            copier.tree(src, dst)
    _relink(target, prefix, copier)
    copier.finish()


def _relink(target: str, prefix: str, copier: _Copier) -> None:
    """Give the restored copy of a hard-linked file its other names back: those the layers
    did not touch still name the old copy on the disk."""
    missing = {key for key, copies in copier.links.items() if len(copies) < copier.names[key]}
    if not missing:
        return
    for folder, _dirs, files in os.walk(prefix):
        for name in files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            key = (info.st_dev, info.st_ino)
            if key not in missing:
                continue
            dst = os.path.join(target, os.path.relpath(path, prefix))
            copies = copier.links[key]
            if dst not in copies and _is_dir(os.path.dirname(dst)):
                _remove(dst)
                os.link(copies[0], dst)
                copies.append(dst)
