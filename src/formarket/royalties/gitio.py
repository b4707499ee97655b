"""What the royalties read from git, through `formarket.market`: the price book, and the
history index (`formarket.market.history`: which commit brought each usage file and whether it
was the bot's, which commit closed each period). The usage files of a commit are
`formarket.usage.committed`'s.

The price book is built from which listing files each first-parent commit changed; both are
kept in the repository's formarket cache, by commit, so a second run (a verify after a close)
walks only the commits it has not seen.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dulwich.objects import ObjectID
from dulwich.repo import BaseRepo, Repo

from formarket.atomicfile import writing_atomically
from formarket.market.history import History, extend
from formarket.market.layout import AGENTS, MODELS, POLICY, REGISTRY
from formarket.market.refs import first_parent_chain
from formarket.market.trees import commit_tree, find, list_dir, read_blob
from formarket.registry.cache import code_digest, default_cache_dir
from formarket.royalties.pricebook import PriceBook

__all__ = ["cache_dir_of", "history", "price_book"]

_CACHE_FORMAT = "royalties-pricebook-1"
_HISTORY_FORMAT = "royalties-history-1"
_CACHE_KEEP = 4


def _listing_blobs(
    repo: BaseRepo, old: ObjectID | None, new: ObjectID
) -> Iterator[tuple[str, ObjectID]]:
    """Listing files added or changed from tree `old` to tree `new`, descending only into
    folders whose ids differ."""
    reg_old = find(repo, old, REGISTRY, folder=True)
    reg_new = find(repo, new, REGISTRY, folder=True)
    if reg_new is None or reg_old == reg_new:
        return
    for kind in (MODELS, AGENTS):
        kind_old = find(repo, old, kind, folder=True)
        kind_new = find(repo, new, kind, folder=True)
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
                blob = find(repo, slug_new, "listing.yaml", folder=False)
                before = old_slugs.get(slug, (False, None))
                old_blob = (
                    find(repo, before[1], "listing.yaml", folder=False) if before[0] else None
                )
                if blob is not None and blob != old_blob:
                    yield f"{kind}/{pub}/{slug}/listing.yaml", blob


def cache_dir_of(repo: BaseRepo) -> Path | None:
    """The formarket cache of an on-disk repository; None for an in-memory one."""
    if not isinstance(repo, Repo):
        return None
    return default_cache_dir(Path(repo.path))


def _load_cache(path: Path, kind: str = _CACHE_FORMAT) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            salt, books = pickle.load(f)  # noqa: S301 - our own file, salted
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError):
        return {}
    ok = salt == (kind, code_digest()) and isinstance(books, dict)
    return books if ok else {}


def _save_cache(path: Path, books: dict[str, Any], kind: str = _CACHE_FORMAT) -> None:
    try:
        with writing_atomically(path, durable=False) as f:
            pickle.dump(((kind, code_digest()), books), f, pickle.HIGHEST_PROTOCOL)
    except OSError:
        return  # a cache that cannot be written only costs time next run


def history(repo: BaseRepo, tip: ObjectID, cache_dir: Path | None = None) -> History:
    """The history index of `tip`'s first-parent history, from the cache where it already
    knows an ancestor (the latest one it knows on the way)."""
    cache_path = cache_dir / "royalties-history.pickle" if cache_dir else None
    known: dict[str, History] = _load_cache(cache_path, _HISTORY_FORMAT) if cache_path else {}
    if tip.decode() in known:
        return known[tip.decode()]
    stops = {ObjectID(k.encode()) for k in known}
    start = first_parent_chain(repo, tip, stop=stops)[0]
    base = known.get(start.decode())
    index = extend(repo, base, tip)
    if cache_path is not None:
        known.pop(tip.decode(), None)
        known[tip.decode()] = index
        for stale in list(known)[:-_CACHE_KEEP]:
            del known[stale]
        _save_cache(cache_path, known, _HISTORY_FORMAT)
    return index


def price_book(repo: BaseRepo, tip: ObjectID, cache_dir: Path | None = None) -> PriceBook:
    """The price book of the first-parent history up to `tip`, from the cache where it
    already knows an ancestor."""
    cache_path = cache_dir / "royalties-pricebook.pickle" if cache_dir else None
    books: dict[str, PriceBook] = _load_cache(cache_path) if cache_path else {}
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
        policy = find(repo, tree, POLICY, folder=False)
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
