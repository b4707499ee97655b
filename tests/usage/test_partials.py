"""The usage entries of the cache: kept under a reading's rules, trusted under this machine's
key only, trimmed by age and size with the entries used last kept."""

from __future__ import annotations

import os
import time
from pathlib import Path

from formarket.usage.partials import PartialStore, trim


def _store(folder: Path, fingerprint: str = "rules-a") -> PartialStore:
    return PartialStore(folder / "usage", b"k" * 32, fingerprint)


def test_an_entry_is_read_back_only_under_its_rules_and_key(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.save("blob-1", "scan", {"events": 3})
    assert store.load("blob-1", "scan") == {"events": 3}
    assert _store(tmp_path, "rules-b").load("blob-1", "scan") is None
    other_key = PartialStore(tmp_path / "usage", b"x" * 32, "rules-a")
    assert other_key.load("blob-1", "scan") is None


def test_trim_keeps_what_was_used_last_within_age_and_size(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for name in ("old", "unused", "used", "new"):
        store.save(name, "scan", b"x" * 1000)
    paths = {p.name: p for p in (tmp_path / "usage").glob("*/*")}
    assert len(paths) == 4
    now = time.time()
    ages = {"old": 90 * 86400, "unused": 3600, "used": 7200, "new": 0}
    for name, age in ages.items():
        path = store._path(name, "scan")
        os.utime(path, (now - age, now - age))
    store.load("used", "scan")  # used now: kept before "unused"
    trim(tmp_path, budget=2500)
    left = {name for name in ages if store._path(name, "scan").exists()}
    assert left == {"new", "used"}
    trim(tmp_path)
    assert {name for name in ages if store._path(name, "scan").exists()} == left
