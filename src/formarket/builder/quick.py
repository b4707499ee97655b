"""A whole-build cache hit without parsing anything: git's index trick applied to builds.

After each build the builder records, per (Formfile, context) pair, the build id and the
`lstat` signature (mode, size, mtime, ctime, inode) of every file that went into that id: the
Formfile, the base's YAML and its cached record, the bases folder and every contributing context
entry and folder. When none of them changed since, the id is still the same and the published
manifest can be printed straight away; anything else falls back to the full path, which
parses, hashes and plans (and records again). Standard library only, so that a cached
`formarket build` costs little more than starting Python.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["lookup", "remember"]

_FORMAT = "formarket-quick-1"


def _signature(path: Path) -> list[object]:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return [str(path)]
    return [str(path), info.st_mode, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def _record_path(cache: Path, formfile: Path, context: Path) -> Path:
    key = f"{_FORMAT}\0{formfile.resolve()}\0{context.resolve()}"
    return cache / "recipes" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def lookup(cache: Path, store: Path, formfile: Path, context: Path) -> tuple[str, bytes] | None:
    """The build id and published manifest of an unchanged recipe, or None."""
    try:
        record = json.loads(_record_path(cache, formfile, context).read_text())
    except (OSError, ValueError):
        return None
    watched = record.get("watched", [])
    if not watched or any(_signature(Path(entry[0])) != entry for entry in watched):
        return None
    build_id = record["build_id"]
    try:
        manifest = (store / "images" / build_id / "manifest.json").read_bytes()
    except OSError:
        return None
    return build_id, manifest


def remember(
    cache: Path, formfile: Path, context: Path, build_id: str, watched: Iterable[Path]
) -> None:
    """Record what a build id was computed from (written atomically)."""
    from formarket.atomicfile import write_atomically  # start-up: a cache hit never writes

    data = {"build_id": build_id, "watched": [_signature(p) for p in dict.fromkeys(watched)]}
    # Readable by anyone: a cached build needs no root, though the build that wrote it did.
    record = json.dumps(data).encode()
    write_atomically(_record_path(cache, formfile, context), record, durable=False, mode=0o644)
