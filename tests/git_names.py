"""Where a repository names someone: every object in its store (blobs, gzip usage files
opened, trees' file names, commits with their messages), searched for words without case, as
GitHub compares logins."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable
from pathlib import Path

from dulwich.repo import Repo

__all__ = ["places_naming"]

_GZIP = b"\x1f\x8b"


def _texts(raw: bytes) -> Iterable[bytes]:
    yield raw
    if raw.startswith(_GZIP):
        try:
            yield gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            pass  # not gzip after all: its bytes were searched as they are


def places_naming(repo_path: Path, words: Iterable[str]) -> list[str]:
    """`<object kind> <sha>: <word>` for each object of the repository that holds a word."""
    wanted = [word.lower().encode() for word in words]
    repo = Repo(str(repo_path))
    try:
        found = []
        store = repo.object_store
        for sha in store:
            obj = store[sha]
            for text in _texts(obj.as_raw_string()):
                lowered = text.lower()
                found += [
                    f"{obj.type_name.decode()} {sha.decode()}: {word.decode()}"
                    for word in wanted
                    if word in lowered
                ]
        return sorted(set(found))
    finally:
        repo.close()
