"""Writing a build to its folder: only what changed, stale files removed, and a manifest.

The manifest (`.formarket/manifest.json` in the output) maps every file the build made to its
key (see `render`); the next build reads it to skip outputs whose key did not change. A folder
that has files but no manifest was not made by `formarket site build` and is never written to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from formarket.atomicfile import write_atomically
from formarket.errors import UsageError
from formarket.site.render import Rendered

__all__ = ["STATE", "WriteStats", "previous_keys", "write_outputs"]

STATE = ".formarket"
_MANIFEST = f"{STATE}/manifest.json"
_FORMAT = 1
_WRITERS = 4


@dataclass(frozen=True, slots=True)
class WriteStats:
    written: int
    unchanged: int
    removed: int


def _load(out: Path) -> dict[str, str]:
    try:
        data = json.loads((out / _MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        return {}
    files = data.get("files")
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def check_output(out: Path) -> None:
    """Refuse a folder with files in it that no build of ours made."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"{out} is not a folder", hint="pass another --out")
    if (out / _MANIFEST).is_file():
        return
    if any(out.iterdir()):
        raise UsageError(
            f"{out} has files that `formarket site build` did not write; refusing to write into it",
            hint="pass an empty or new folder as --out",
        )


def previous_keys(out: Path) -> dict[str, str]:
    """The keys of the last build's outputs that are still on disk."""
    return {path: key for path, key in _load(out).items() if (out / path).is_file()}


def _safe(out: Path, rel: str) -> Path:
    target = out / rel
    if rel.startswith("/") or ".." in rel.split("/"):
        raise ValueError(f"output path {rel!r} leaves the output folder")
    return target


def write_outputs(out: Path, rendered: Rendered, previous: Mapping[str, str]) -> WriteStats:
    """Write what was rendered and differs from disk, remove what the build no longer makes,
    then the manifest (last, so an interrupted build is redone rather than trusted)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / _MANIFEST).unlink(missing_ok=True)
    changed = [
        (rel, content)
        for rel, content in rendered.files.items()
        if previous.get(rel) != rendered.keys[rel]
    ]
    for folder in sorted({_safe(out, rel).parent for rel, _ in changed}):
        folder.mkdir(parents=True, exist_ok=True)
    # Writing is waiting on the file system, not computing: threads overlap the waits.
    with ThreadPoolExecutor(_WRITERS) as pool:
        list(pool.map(lambda item: _safe(out, item[0]).write_bytes(item[1]), changed))
    written = len(changed)
    unchanged = len(rendered.files) - written
    removed = 0
    unchanged += len(rendered.keys) - len(rendered.files)
    for rel in sorted(set(previous) - set(rendered.keys)):
        target = _safe(out, rel)
        target.unlink(missing_ok=True)
        removed += 1
        parent = target.parent
        while parent != out and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    manifest = {"format": _FORMAT, "files": dict(sorted(rendered.keys.items()))}
    # Readable by whoever serves or builds the site next, as every page is.
    data = json.dumps(manifest, separators=(",", ":")).encode()
    write_atomically(out / _MANIFEST, data, durable=False, mode=0o644)
    return WriteStats(written, unchanged, removed)
