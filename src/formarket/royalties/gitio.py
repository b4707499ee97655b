"""The royalties' one door to git: reading trees, blobs and history, from objects only.

Everything here is plumbing over dulwich: what is in a tree, the first-parent history of a
branch, which listing files each commit changed, which usage files a commit holds. The price
book built from that history is kept in the repository's formarket cache, by commit, so a
second run (a verify after a close) walks only the commits it has not seen.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from dulwich.objects import Blob, Commit, ObjectID
from dulwich.repo import BaseRepo, Repo

from formarket.atomicfile import writing_atomically
from formarket.errors import NotFoundError
from formarket.market.trees import DIR_MODE, entry, tree
from formarket.registry.cache import code_digest, default_cache_dir
from formarket.royalties.pricebook import PriceBook
from formarket.royalties.reader import USAGE_ROOT, UsageFile, parse_usage_path

__all__ = [
    "POLICY_PATH",
    "cache_dir_of",
    "commit_tree",
    "first_parent_chain",
    "list_dir",
    "price_book",
    "read_blob",
    "read_path",
    "usage_files",
]

POLICY_PATH = "royalties/policy.yaml"
_CACHE_FORMAT = "royalties-pricebook-1"
_CACHE_KEEP = 4


def commit_tree(repo: BaseRepo, commit_id: ObjectID) -> ObjectID:
    commit = repo.object_store[commit_id]
    if not isinstance(commit, Commit):
        raise NotFoundError(f"{commit_id.decode()} is not a commit")
    tree: ObjectID = commit.tree
    return tree


def _resolve(
    repo: BaseRepo, tree_id: ObjectID | None, path: str, *, folder: bool
) -> ObjectID | None:
    root = tree(repo, tree_id)
    found = entry(repo, root, path) if root is not None else None
    if found is None or (found[0] == DIR_MODE) != folder:
        return None
    return found[1]


def list_dir(repo: BaseRepo, tree_id: ObjectID, path: str) -> dict[str, tuple[bool, ObjectID]]:
    """name -> (is a folder, object id) of a folder; empty when there is no such folder."""
    folder = tree(repo, _resolve(repo, tree_id, path, folder=True))
    if folder is None:
        return {}
    return {
        item.path.decode("utf-8", "surrogateescape"): (item.mode == DIR_MODE, item.sha)
        for item in folder.iteritems()
    }


def read_path(repo: BaseRepo, tree_id: ObjectID, path: str) -> bytes | None:
    sha = _resolve(repo, tree_id, path, folder=False)
    return read_blob(repo, sha) if sha is not None else None


def read_blob(repo: BaseRepo, blob_id: ObjectID) -> bytes:
    obj = repo.object_store[blob_id]
    if not isinstance(obj, Blob):
        raise NotFoundError(f"{blob_id.decode()} is not a file")
    return obj.as_raw_string()


def first_parent_chain(
    repo: BaseRepo, tip: ObjectID, stop: set[ObjectID] | None = None
) -> list[ObjectID]:
    """The first-parent history of `tip`, oldest first; stops after a commit in `stop`."""
    chain = []
    current: ObjectID | None = tip
    while current is not None:
        chain.append(current)
        if stop and current in stop:
            break
        commit = repo.object_store[current]
        assert isinstance(commit, Commit)
        current = commit.parents[0] if commit.parents else None
    chain.reverse()
    return chain


def _listing_blobs(
    repo: BaseRepo, old: ObjectID | None, new: ObjectID
) -> Iterator[tuple[str, ObjectID]]:
    """Listing files added or changed from tree `old` to tree `new`, descending only into
    folders whose ids differ."""
    reg_old = _resolve(repo, old, "registry", folder=True)
    reg_new = _resolve(repo, new, "registry", folder=True)
    if reg_new is None or reg_old == reg_new:
        return
    for kind in ("models", "agents"):
        kind_old = _resolve(repo, reg_old, kind, folder=True)
        kind_new = _resolve(repo, reg_new, kind, folder=True)
        if kind_new is None or kind_old == kind_new:
            continue
        old_pubs = list_dir(repo, kind_old, "") if kind_old is not None else {}
        for pub, (pub_dir, pub_new) in sorted(list_dir(repo, kind_new, "").items()):
            if not pub_dir or old_pubs.get(pub) == (True, pub_new):
                continue
            pub_old = old_pubs.get(pub, (False, None))
            old_slugs = list_dir(repo, pub_old[1], "") if pub_old[0] and pub_old[1] else {}
            for slug, (slug_dir, slug_new) in sorted(list_dir(repo, pub_new, "").items()):
                if not slug_dir or old_slugs.get(slug) == (True, slug_new):
                    continue
                blob = _resolve(repo, slug_new, "listing.yaml", folder=False)
                before = old_slugs.get(slug, (False, None))
                old_blob = (
                    _resolve(repo, before[1], "listing.yaml", folder=False) if before[0] else None
                )
                if blob is not None and blob != old_blob:
                    yield f"registry/{kind}/{pub}/{slug}/listing.yaml", blob


def cache_dir_of(repo: BaseRepo) -> Path | None:
    """The formarket cache of an on-disk repository; None for an in-memory one."""
    if not isinstance(repo, Repo):
        return None
    return default_cache_dir(Path(repo.path))


def _load_cache(path: Path) -> dict[str, PriceBook]:
    try:
        with path.open("rb") as f:
            salt, books = pickle.load(f)  # noqa: S301 - our own file, salted
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError):
        return {}
    ok = salt == (_CACHE_FORMAT, code_digest()) and isinstance(books, dict)
    return books if ok else {}


def _save_cache(path: Path, books: dict[str, PriceBook]) -> None:
    try:
        with writing_atomically(path, durable=False) as f:
            pickle.dump(((_CACHE_FORMAT, code_digest()), books), f, pickle.HIGHEST_PROTOCOL)
    except OSError:
        return  # a cache that cannot be written only costs time next run


def price_book(repo: BaseRepo, tip: ObjectID, cache_dir: Path | None = None) -> PriceBook:
    """The price book of the first-parent history up to `tip`, from the cache where it
    already knows an ancestor."""
    cache_path = cache_dir / "royalties-pricebook.pickle" if cache_dir else None
    books = _load_cache(cache_path) if cache_path else {}
    known = {ObjectID(k.encode()) for k in books}
    chain = first_parent_chain(repo, tip, stop=known)
    start = chain[0]
    if start in known:
        book = books[start.decode()].copy()
        chain = chain[1:]
        previous: ObjectID | None = commit_tree(repo, start)
    else:
        book = PriceBook()
        previous = None
    seen: set[ObjectID] = set()
    for commit_id in chain:
        tree = commit_tree(repo, commit_id)
        changes = []
        for path, blob in _listing_blobs(repo, previous, tree):
            if blob not in seen:
                seen.add(blob)
                changes.append((path, read_blob(repo, blob)))
        policy = _resolve(repo, tree, POLICY_PATH, folder=False)
        book.apply(
            commit_id.decode(), changes, policy_blob=policy.decode() if policy is not None else ""
        )
        previous = tree
    if cache_path is not None and chain:
        books[tip.decode()] = book
        for stale in list(books)[:-_CACHE_KEEP]:
            del books[stale]
        _save_cache(cache_path, books)
    return book


def usage_files(
    repo: BaseRepo, tree_id: ObjectID, first_day: date
) -> tuple[dict[str, tuple[UsageFile, ObjectID]], dict[str, ObjectID]]:
    """Usage files of a commit written on or after `first_day`: (path -> (file, blob)), and
    the files under registry/usage/ whose path is not a usage file's (path -> blob)."""
    good: dict[str, tuple[UsageFile, ObjectID]] = {}
    bad: dict[str, ObjectID] = {}
    root = _resolve(repo, tree_id, USAGE_ROOT, folder=True)
    if root is None:
        return good, bad
    stack: list[tuple[str, ObjectID, int]] = [(USAGE_ROOT, root, 0)]
    while stack:
        path, tree, depth = stack.pop()
        for name, (is_dir, sha) in list_dir(repo, tree, "").items():
            child = f"{path}/{name}"
            if is_dir:
                # Skip whole years, months and days before the first day that matters.
                if depth < 3 and _before(child, depth, first_day):
                    continue
                stack.append((child, sha, depth + 1))
                continue
            parsed = parse_usage_path(child)
            if parsed is None:
                bad[child] = sha
            elif parsed.day >= first_day:
                good[child] = (parsed, sha)
    return good, bad


def _before(path: str, depth: int, first_day: date) -> bool:
    parts = path.split("/")[2:]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        return False
    bound = (first_day.year, first_day.month, first_day.day)[: depth + 1]
    return tuple(numbers) < bound
