"""Which image a listing version builds to, without planning the build again.

A build id is a hash of the Formfile, its context and the base's digest, so knowing it means
exporting the listing and hashing its files. The reconciler asks "is this listing's image in the
store?" every cycle for every deployment, so builds record their answer under a key made of
git's own content hashes (the listing folder's and the bases folder's tree ids) and the
builder's format version. The
same key means the same inputs, so the same build id; any change to either makes a new key,
which has no record until it is built.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from dulwich.objects import ObjectID
from dulwich.repo import Repo

from formarket.atomicfile import write_atomically
from formarket.builder.plan import FORMAT_VERSION
from formarket.builder.store import DirectoryStore
from formarket.market.layout import AGENTS, MODELS
from formarket.market.trees import commit_tree, subtree, tree

__all__ = ["image_key", "lookup", "record"]

_BUILD_ID = re.compile(r"^[0-9a-f]{64}$")


def image_key(repo: Repo, commit_id: ObjectID, listing_id: str) -> str | None:
    """The key of a listing's image inputs at a commit; None when there is no such listing."""
    root = tree(repo, commit_tree(repo, commit_id))
    assert root is not None
    for kind in (MODELS, AGENTS):
        folder = subtree(repo, root, f"{kind}/{listing_id}")
        if folder is not None:
            bases = subtree(repo, root, "builder/bases")
            ids = (FORMAT_VERSION.encode(), folder.id, bases.id if bases else b"-")
            inputs = b"\0".join(ids)
            return hashlib.sha256(inputs).hexdigest()
    return None


def _path(store: DirectoryStore, key: str) -> Path:
    return store.root / "listings" / key


def record(store: DirectoryStore, key: str, build_id: str) -> None:
    write_atomically(_path(store, key), (build_id + "\n").encode())


def lookup(store: DirectoryStore, key: str) -> str | None:
    """The build id recorded for `key` when its image is published in the store."""
    try:
        build_id = _path(store, key).read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    if not _BUILD_ID.match(build_id) or store.manifest_bytes(build_id) is None:
        return None
    return build_id
