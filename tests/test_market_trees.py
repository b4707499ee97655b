"""Reading git trees by path: folders, files, and what is not there."""

from __future__ import annotations

from dulwich.objects import Blob, Tree
from dulwich.repo import MemoryRepo

from formarket.market.trees import DIR_MODE, entry, subtree, tree


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
