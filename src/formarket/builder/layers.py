"""The step cache: one overlayfs layer folder per step key.

A layer is the upper folder of the step's overlay mount: exactly what the step changed
(deletions are overlayfs whiteouts). It is made in a scratch folder and renamed into
`layers/<key>/` when the step succeeds, so a layer under its key is always complete. With the
cache off, layers live in the build's scratch folder and are removed with it.

`disks/<key>` names the published image whose disk holds exactly a given stack of layers, so
that a build which changes nothing below the disk (its VCPU or MEMORY, say) links that disk.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from formarket.atomicfile import write_atomically

__all__ = ["LayerCache", "NewLayer"]

# Short names keep the overlay mount options (at most a page) able to hold many layers.
_NAME = 32


class NewLayer:
    """A layer being made: `tree` is the overlay upper folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.tree = folder / "t"
        self.tree.mkdir(parents=True)


class LayerCache:
    def __init__(self, root: Path, *, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled
        self.scratch = root / "tmp" / f"build-{uuid.uuid4().hex[:16]}"

    def folder(self, key: str) -> Path:
        return self.root / "layers" / key[:_NAME]

    def lookup(self, key: str) -> Path | None:
        """The tree of a finished layer, or None."""
        if not self.enabled:
            return None
        folder = self.folder(key)
        return folder / "t" if (folder / "meta.json").is_file() else None

    def new(self) -> NewLayer:
        return NewLayer(self.scratch / uuid.uuid4().hex[:_NAME])

    def keep(self, layer: NewLayer, key: str, meta: dict[str, object]) -> Path:
        """Finish a layer: clean its scratch, record it, rename it under its key."""
        for leftover in layer.folder.iterdir():
            if leftover != layer.tree:
                shutil.rmtree(leftover, ignore_errors=True)
        (layer.folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if not self.enabled:
            return layer.tree
        final = self.folder(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            layer.folder.rename(final)
        except OSError:
            if not (final / "meta.json").is_file():
                raise
            # A concurrent build made the same layer; the inputs are equal, keep theirs.
            shutil.rmtree(layer.folder, ignore_errors=True)
        return final / "t"

    def cleanup(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def disk_owner(self, disk_key: str) -> str | None:
        """The build id of a published image whose disk was made from these same layers."""
        if not self.enabled:
            return None
        try:
            key, build_id = (self.root / "disks" / disk_key[:_NAME]).read_text().split()
        except (OSError, ValueError):
            return None
        return build_id if key == disk_key else None

    def remember_disk(self, disk_key: str, build_id: str) -> None:
        """Record that `build_id` published the disk of `disk_key` (a cache: no fsync)."""
        record = f"{disk_key} {build_id}\n".encode()
        write_atomically(self.root / "disks" / disk_key[:_NAME], record, durable=False, mode=0o644)
