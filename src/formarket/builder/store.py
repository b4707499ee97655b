"""The artifact store: finished images by build id, published atomically.

A build fills a private staging folder and publishes it with one rename, so `images/<id>/`
exists only once everything in it is written; a crashed build leaves a staging folder that no
reader ever looks at (and `sweep` removes). This is a directory today; the same small interface
can sit on a shared filesystem or an object store (publish the files, then the manifest last).
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Protocol

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
    """`<root>/images/<build-id>/` for finished images, `<root>/staging/` for the rest."""

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
