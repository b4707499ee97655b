"""Reading git trees by path: folders, files, and what is not there."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from dulwich.object_store import DiskObjectStore
from dulwich.objects import Blob, Tree
from dulwich.repo import MemoryRepo

from formarket.errors import NotFoundError
from formarket.market.repository import create_repository
from formarket.market.trees import DIR_MODE, entry, read_blob, subtree, tree


def _repo() -> tuple[MemoryRepo, Tree]:
    repo = MemoryRepo()
    blob = Blob.from_string(b"hello\n")
    inner = Tree()
    inner.add(b"listing.yaml", 0o100644, blob.id)
    middle = Tree()
    middle.add(b"slug", DIR_MODE, inner.id)
    root = Tree()
    root.add(b"registry", DIR_MODE, middle.id)
    root.add(b"README.md", 0o100644, blob.id)
    for obj in (blob, inner, middle, root):
        repo.object_store.add_object(obj)
    return repo, root


def test_paths_name_folders_and_files() -> None:
    repo, root = _repo()
    found = subtree(repo, root, "registry/slug")
    assert found is not None
    assert b"listing.yaml" in found
    assert subtree(repo, root, "/registry//slug/") == found
    mode, sha = entry(repo, root, "registry/slug/listing.yaml") or (0, b"")
    assert mode == 0o100644
    assert repo.object_store[sha].as_raw_string() == b"hello\n"
    assert entry(repo, root, "") == (DIR_MODE, root.id)
    assert tree(repo, root.id) == root


def test_what_is_not_a_folder_or_not_there_is_none() -> None:
    repo, root = _repo()
    assert subtree(repo, root, "README.md") is None  # a file, not a folder
    assert entry(repo, root, "README.md/x") is None  # nothing below a file
    assert entry(repo, root, "registry/nope") is None
    assert subtree(repo, root, "registry/slug/listing.yaml") is None
    assert tree(repo, None) is None
    assert tree(repo, entry(repo, root, "README.md")[1]) is None  # type: ignore[index]


def test_a_blob_reads_the_same_loose_packed_or_damaged(tmp_path: Path) -> None:
    repo = create_repository(tmp_path / "repo", bare=True)
    data = bytes(range(256)) * 4096 + b"\0blob 7\0"  # a header look-alike inside the content
    blob = Blob.from_string(data)
    tree_ = Tree()  # not a blob: refused either way
    store = repo.object_store
    store.add_object(blob)
    store.add_object(tree_)
    assert isinstance(store, DiskObjectStore)
    assert read_blob(repo, blob.id) == data
    with pytest.raises(NotFoundError):
        read_blob(repo, tree_.id)
    # A loose object that does not inflate as a blob goes to dulwich, which judges it.
    loose = Path(store.path) / blob.id.decode()[:2] / blob.id.decode()[2:]
    stored = loose.read_bytes()
    loose.chmod(0o644)
    loose.write_bytes(zlib.compress(b"blob 3\0abcdef"))
    with pytest.raises(Exception):  # noqa: B017 - dulwich's own error, whichever it is
        read_blob(repo, blob.id)
    loose.write_bytes(stored)
    # Packed, and the loose copy gone: read from the pack.
    store.pack_loose_objects()
    assert not loose.exists()
    assert read_blob(repo, blob.id) == data
    repo.close()
