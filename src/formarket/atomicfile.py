"""Replacing a small state file all at once: readers see the old file or the new, never half.

The data goes to a temporary file beside the target (`.<name>-*`, so a crash leaves at most
such a stray, never a half-written target), then one rename puts it in place. `durable` syncs
the data to disk before the rename, for state that must survive a power cut as well as a crash;
a cache, which costs only time when it is lost, does without. The file is made readable by its
owner only unless `mode` says otherwise (keys live in such files).

`write_atomically` writes bytes already in hand; `writing_atomically` hands out the open file,
for writers that stream into one (pickle, marshal).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["write_atomically", "writing_atomically"]


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
