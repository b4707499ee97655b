"""Replacing a small state file all at once: readers see the old file or the new, never half.

The data goes to a temporary file beside the target (`.<name>-*`, so a crash leaves at most
such a stray, never a half-written target), then one rename puts it in place. `durable` syncs
the data to disk before the rename, for state that must survive a power cut as well as a crash;
a cache, which costs only time when it is lost, does without. The file is made readable by its
owner only unless `mode` says otherwise (keys live in such files).

`write_atomically` writes bytes already in hand; `writing_atomically` hands out the open file,
for writers that stream into one (pickle, marshal). `create_once` makes a file that must never
be replaced, such as a key: the first of several processes racing to make it wins.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["create_once", "write_atomically", "writing_atomically"]


@contextlib.contextmanager
def writing_atomically(
    path: Path, *, durable: bool = True, mode: int = 0o600
) -> Iterator[BinaryIO]:
    """A new file to write, which replaces `path` when the block ends without an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as f:
            if mode != 0o600:  # mkstemp's own
                os.fchmod(f.fileno(), mode)
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_atomically(path: Path, data: bytes, *, durable: bool = True, mode: int = 0o600) -> None:
    with writing_atomically(path, durable=durable, mode=mode) as f:
        f.write(data)


def create_once(path: Path, data: bytes) -> bool:
    """Make `path` hold `data`, readable by its owner only, unless it exists: the data is
    written to a private file and linked into place, so that no process ever reads it half
    written. False when another process linked its own first (`path` is then theirs)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(scratch, path)
        except FileExistsError:
            return False
    finally:
        scratch.unlink(missing_ok=True)
    return True
