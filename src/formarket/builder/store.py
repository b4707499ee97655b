"""The artifact store: finished images by build id, published atomically.

A build fills a private staging folder and publishes it with one rename, so `images/<id>/`
exists only once everything in it is written; a crashed build leaves a staging folder that no
reader ever looks at (and `sweep` removes). This is a directory today; the same small interface
can sit on a shared filesystem or an object store (publish the files, then the manifest last).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Protocol

from formarket.atomicfile import write_atomically
from formarket.builder.manifest import DataDisk

__all__ = ["ArtifactStore", "DirectoryStore"]


class ArtifactStore(Protocol):
    def manifest_bytes(self, build_id: str) -> bytes | None:
        """The published manifest of a build, or None when there is no such image."""
        ...

    def staging(self, build_id: str) -> Path:
        """A new, private folder to build into."""
        ...

    def publish(self, build_id: str, staging: Path) -> Path:
        """Make a staged build visible under its id, all at once; its final folder."""
        ...

    def discard(self, staging: Path) -> None:
        """Forget a staged build that failed."""
        ...


class DirectoryStore:
    """`<root>/images/<build-id>/` for finished images, `<root>/disks/<id>.img` for the
    weights' data disks they share (with `<id>.json`, its record), `<root>/staging/` for the
    rest."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def image_dir(self, build_id: str) -> Path:
        return self.root / "images" / build_id

    def manifest_bytes(self, build_id: str) -> bytes | None:
        try:
            return (self.image_dir(build_id) / "manifest.json").read_bytes()
        except FileNotFoundError:
            return None

    def staging(self, build_id: str) -> Path:
        folder = self.root / "staging" / f"{build_id}.{uuid.uuid4().hex[:12]}"
        folder.mkdir(parents=True)
        return folder

    def publish(self, build_id: str, staging: Path) -> Path:
        final = self.image_dir(build_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(final)
        except OSError:
            if not (final / "manifest.json").is_file():
                raise
            # Another builder published the same inputs first; identical by construction.
            shutil.rmtree(staging, ignore_errors=True)
        return final

    def data_disk(self, disk_id: str) -> Path:
        return self.root / "disks" / f"{disk_id}.img"

    def data_disk_record(self, disk_id: str) -> DataDisk | None:
        """The record of a data disk published whole, or None."""
        try:
            record = DataDisk.model_validate_json(
                (self.root / "disks" / f"{disk_id}.json").read_bytes()
            )
            whole = self.data_disk(disk_id).stat().st_size == record.size
        except (OSError, ValueError):
            return None
        return record if whole and record.id == disk_id else None

    def publish_data_disk(self, disk_id: str, source: Path, files: tuple[str, ...]) -> DataDisk:
        """Put the data disk made at `source` in the store, once: a hard link where they share
        a filesystem, hashed once here, and its record written last."""
        found = self.data_disk_record(disk_id)
        if found is not None:
            return found
        final = self.data_disk(disk_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.with_name(f".{disk_id}.{uuid.uuid4().hex[:12]}")
        try:
            os.link(source, staging)
        except OSError:
            shutil.copyfile(source, staging)
        try:
            with staging.open("rb") as handle:
                sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
            record = DataDisk(id=disk_id, size=staging.stat().st_size, sha256=sha256, files=files)
            os.replace(staging, final)
        finally:
            staging.unlink(missing_ok=True)
        write_atomically(
            self.root / "disks" / f"{disk_id}.json",
            record.model_dump_json().encode(),
            mode=0o644,
        )
        return record

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def sweep(self, older_than: float = 24 * 3600) -> int:
        """Remove staging folders left by crashed builds; how many were removed."""
        removed = 0
        now = time.time()
        for folder in (self.root / "staging").glob("*"):
            if now - folder.stat().st_mtime > older_than:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed
