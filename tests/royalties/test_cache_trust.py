"""The royalties' caches (price book, history index) are trusted only when this machine's own
earlier run wrote them: a cache folder that someone else can write never changes what is paid,
and never runs their pickle."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from dulwich.refs import Ref
from dulwich.repo import Repo

from formarket.market.refs import branch_tip
from formarket.registry.cache import code_digest
from formarket.registry.cachekey import seal
from formarket.royalties import engine, gitio
from formarket.royalties.pricebook import PriceBook
from tests.royalties.helpers import call, gz, line, listed, market_of, starter, usage_file
from tests.royalties.test_reference import OFFERS, PERIOD

PICKLE_RAN = "CACHE_TRUST_PICKLE_RAN"


def mark(name: str, value: str) -> None:
    os.environ[name] = value


class _Runs:
    """A pickle that sets an environment variable when it is loaded."""

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (mark, (PICKLE_RAN, "yes"))


@pytest.fixture
def market(tmp_path: Path) -> Repo:
    repo = Repo.init(str(tmp_path / "market"), mkdir=True)
    repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/main"))
    starter(repo)
    return repo


def _book_file(cache: Path) -> Path:
    (found,) = (p for p in cache.iterdir() if "pricebook" in p.name)
    return found


def test_a_price_book_cache_from_another_key_is_ignored(market: Repo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    tip = branch_tip(market, "main")
    honest = gitio.price_book(market, tip, cache)
    assert honest.latest()
    forged = seal(
        b"k" * 32,
        f"royalties-pricebook-1\0{code_digest()}".encode(),
        pickle.dumps({tip.decode(): PriceBook()}),
    )
    _book_file(cache).write_bytes(forged)

    again = gitio.price_book(market, tip, cache)

    assert [e.listing for e in again.latest()] == [e.listing for e in honest.latest()]


@pytest.mark.parametrize("form", ["salted, as before", "sealed with another key"])
def test_a_hostile_pickle_in_the_cache_is_never_loaded(
    market: Repo, tmp_path: Path, form: str
) -> None:
    cache = tmp_path / "cache"
    tip = branch_tip(market, "main")
    gitio.price_book(market, tip, cache)
    payload = pickle.dumps({tip.decode(): _Runs()})
    if form == "salted, as before":
        raw = pickle.dumps((("royalties-pricebook-1", code_digest()), {tip.decode(): _Runs()}))
    else:
        raw = seal(b"x" * 32, f"royalties-pricebook-1\0{code_digest()}".encode(), payload)
    _book_file(cache).write_bytes(raw)
    os.environ.pop(PICKLE_RAN, None)

    book = gitio.price_book(market, tip, cache)

    assert PICKLE_RAN not in os.environ
    assert book.latest()


def test_usage_partials_from_another_key_are_never_loaded(tmp_path: Path) -> None:
    """Every usage entry of the cache (each file's partial, the close's tally) replaced by a
    hostile pickle sealed with another key: the close reads the usage files again, gets the
    same bytes, and runs no pickle."""
    model = ("acme/model-a", "1.0.0")
    files = {
        usage_file("2026-03-10"): gz([line(call("e-1", model=model))]),
        usage_file("2026-03-11"): gz([line(call("e-2", model=model))]),
    }
    repo = market_of(listed(OFFERS), files)
    cache = tmp_path / "cache"
    honest = engine.preview(repo, PERIOD, cache_dir=cache)
    entries = [p for p in (cache / "usage").rglob("*") if p.is_file()]
    assert len(entries) == 3  # two files' partials and the tally
    for entry in entries:
        label = entry.suffix[1:].encode()
        entry.write_bytes(seal(b"x" * 32, label, pickle.dumps(_Runs())))
    os.environ.pop(PICKLE_RAN, None)

    again = engine.preview(repo, PERIOD, cache_dir=cache)

    assert PICKLE_RAN not in os.environ
    assert again.files == honest.files
    assert again.tally == honest.tally
