"""Reading many files: the lines a collector's next file shares with its previous one are taken
while both files are at hand, and the second look then gives exactly what reading every wanted
line from git again gives, with workers or without."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from dulwich.objects import Blob, ObjectID
from dulwich.repo import Repo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formarket.market.repository import create_repository
from formarket.market.trees import read_blob
from formarket.usage import scanner
from formarket.usage.files import pack_lines, parse_usage_path, usage_path
from formarket.usage.reader import fetch_lines
from formarket.usage.scan import Rules, ScanFile, ScanSpec
from formarket.usage.scanner import Scanner, repeated_lines
from formarket.usage.wire import WireEvent
from tests.usage.helpers import call, line

SPEC = ScanSpec(Rules(-1, -1, frozenset(), timedelta(minutes=10)), None, 5, by_day=True)
CHAT = ("acme/chat", "1.0.0")
DAY = date(2026, 3, 10)


def _month(flushes: list[list[int]], resent: list[list[int]], sources: int) -> list[bytes]:
    """Each collector's files: flush k holds its own events, then again those of `resent[k]`
    (positions in the previous flush), as a retried flush does."""
    files = []
    for source in range(sources):
        previous: list[bytes] = []
        for k, (events, again) in enumerate(zip(flushes, resent, strict=True)):
            own = [
                line(
                    call(
                        f"e-{source}-{k}-{i}",
                        model=CHAT,
                        source=f"gateway/gw-{source}",
                        time=f"2026-03-10T0{k % 10}:00:{i % 60:02d}Z",
                        input_tokens=n,
                    )
                )
                for i, n in enumerate(events)
            ]
            # Each line once: a line a file holds twice is read again (the royalties' tests
            # cover that), not taken early.
            body = list(dict.fromkeys(previous[p % len(previous)] for p in again if previous))
            files.append(pack_lines([*body, *own]))
            previous = own
    return files


def _committed(
    folder: Path, raws: list[bytes], per_source: int
) -> tuple[Repo, list[ObjectID], list[ScanFile]]:
    """The files as loose blobs of a new repository, `per_source` files a collector."""
    repo = create_repository(folder, bare=True)
    blobs, items = [], []
    for number, raw in enumerate(raws):
        blob = Blob.from_string(raw)
        repo.object_store.add_object(blob)
        source, seq = divmod(number, per_source)
        parsed = parse_usage_path(usage_path(DAY, f"gateway/gw-{source}", seq))
        assert parsed is not None
        blobs.append(blob.id)
        items.append(ScanFile(parsed, False))
    return repo, blobs, items


def _from_git(
    repo: Repo, blobs: list[ObjectID], wanted: dict[int, set[int]]
) -> list[tuple[int, int, WireEvent]]:
    """The wanted lines, each file read whole from git again."""
    found = (
        item
        for index, lines in wanted.items()
        for item in fetch_lines(index, read_blob(repo, blobs[index]), lines)
    )
    return sorted(found, key=lambda c: (c[0], c[1]))


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.lists(st.integers(1, 500), min_size=1, max_size=30), min_size=2, max_size=5),
    st.data(),
    st.integers(1, 3),
)
def test_the_second_look_gives_what_git_gives(
    tmp_path: Path, flushes: list[list[int]], data: st.DataObject, sources: int
) -> None:
    resent = [data.draw(st.lists(st.integers(0, 40), max_size=6)) for _ in flushes]
    folder = tmp_path / f"repo-{len(list(tmp_path.iterdir()))}"
    repo, blobs, items = _committed(folder, _month(flushes, resent, sources), len(flushes))
    outcomes = []
    for jobs in (1, 2):
        with Scanner(repo, items, blobs, SPEC, jobs=jobs) as scanner:
            scans = scanner.scan()
            wanted, _ = repeated_lines(scans)
            found = sorted(scanner.fetch(wanted), key=lambda c: (c[0], c[1]))
            shared = sum(len(lines) for lines in scanner.early.values())
        assert found == _from_git(repo, blobs, wanted)
        assert bool(found) == any(again for again in resent[1:])
        if jobs == 1:
            # Every resent line shares its key with the line it repeats, in the collector's
            # previous file: both are taken early, and no file is read twice.
            assert shared == sum(len(lines) for lines in wanted.values())
        outcomes.append((found, [s.totals.named() for s in scans[:1]]))
    assert outcomes[0] == outcomes[1]
    repo.close()


def test_a_collector_that_sends_everything_twice_is_read_again_not_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines taken early are bounded per batch; past the bound, the second look reads them
    from git, to the same result."""
    monkeypatch.setattr(scanner, "_EARLY_BYTES", 2_000)
    flushes = [list(range(1, 41))] * 4
    raws = _month(flushes, [list(range(40))] * 4, 1)
    repo, blobs, items = _committed(tmp_path / "repo", raws, len(flushes))
    with Scanner(repo, items, blobs, SPEC, jobs=1) as reading:
        scans = reading.scan()
        wanted, _ = repeated_lines(scans)
        found = sorted(reading.fetch(wanted), key=lambda c: (c[0], c[1]))
        early = sum(len(line) for lines in reading.early.values() for line in lines.values())
    assert sum(len(lines) for lines in wanted.values()) == 2 * 3 * 40
    assert 0 < early < 2_000 + 2 * 40 * 600  # stopped after the pair that passed the bound
    assert found == _from_git(repo, blobs, wanted)
    repo.close()
