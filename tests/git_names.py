"""Where a repository names someone: every object in its store (blobs, gzip usage files
opened, trees' file names, commits with their messages), searched for words without case, as
GitHub compares logins. The blobs at paths that name people by their role, in public (the
maintainers and deployers of governance.yaml, the owners of a publisher), can be left out."""

from __future__ import annotations

import gzip
import stat
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from dulwich.objects import Commit, ObjectID, Tree
from dulwich.repo import Repo

__all__ = ["places_naming"]

_GZIP = b"\x1f\x8b"


def _texts(raw: bytes) -> Iterable[bytes]:
    yield raw
    opened = b""
    if raw.startswith(_GZIP):
        try:
            opened = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            opened = b""  # not gzip after all: its bytes were searched as they are
    yield opened


def _blobs_at(repo: Repo, public: Callable[[str], bool]) -> set[bytes]:
    """The blobs at a `public` path in any commit of the store."""
    store = repo.object_store
    found: set[bytes] = set()
    walked: set[tuple[ObjectID, str]] = set()

    def walk(tree_id: ObjectID, prefix: str) -> None:
        if (tree_id, prefix) in walked:
            return
        walked.add((tree_id, prefix))
        tree = store[tree_id]
        assert isinstance(tree, Tree)
        for entry in tree.items():
            path = prefix + entry.path.decode()
            if stat.S_ISDIR(entry.mode):
                walk(entry.sha, path + "/")
            elif public(path):
                found.add(entry.sha)

    for sha in store:
        obj = store[sha]
        if isinstance(obj, Commit):
            walk(obj.tree, "")
    return found


def places_naming(
    repo_path: Path, words: Iterable[str], public: Callable[[str], bool] = lambda _path: False
) -> list[str]:
    """`<object kind> <sha>: <word>` for each object of the repository that holds a word,
    but for the blobs at a `public` path."""
    wanted = [word.lower().encode() for word in words]
    repo = Repo(str(repo_path))
    try:
        found = []
        store = repo.object_store
        skipped = _blobs_at(repo, public)
        for sha in store:
            if sha in skipped:
                continue
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
