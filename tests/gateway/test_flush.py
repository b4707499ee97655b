"""Flushing the spool into git: exactly once, bad lines set aside, racing flushers."""

from __future__ import annotations

import collections
import shutil
import time
from datetime import UTC, date, datetime
from pathlib import Path

from dulwich.refs import Ref
from hypothesis import given
from hypothesis import strategies as st

from formarket.gateway.flush import _trailer_names, flush, segment_trailer
from formarket.process import Runner
from formarket.schemas.usage import UsageEvent
from formarket.usage.events import Served, call_event
from formarket.usage.files import parse_usage_path
from formarket.usage.spool import SpoolWriter
from tests.gateway.helpers import committed_events, make_market
from tests.gateway.processes import PYTHON

SERVED = Served("dep-1", "acme", None, ("acme/llama-8b", "1.2.0"))
MOMENT = datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)


def spool_events(
    spool: Path, count: int, source: str = "gateway/t", per_segment: int = 0
) -> list[str]:
    """Write `count` call events to new segments of `spool`; their ids."""
    ids = []
    writer = SpoolWriter(spool)
    for n in range(count):
        if per_segment and n and n % per_segment == 0:
            writer.close()
        event_id = writer.ids()
        writer.append(
            call_event(
                event_id=event_id,
                source=source,
                moment=MOMENT,
                served=SERVED,
                input_tokens=n,
                output_tokens=2 * n,
                duration_ms=5,
                outcome="ok",
                tokens_source="upstream",
            )
        )
        ids.append(event_id)
    writer.close()
    return ids


def test_events_are_committed_once_as_the_bot(tmp_path: Path) -> None:
    repo = make_market(tmp_path / "market")
    spool = tmp_path / "spool"
    ids = spool_events(spool, 250, per_segment=100)
    result = flush(repo, spool, now=datetime(2026, 4, 2, tzinfo=UTC))
    assert result.events == 250
    assert len(result.segments) == 3
    assert not result.set_aside
    ((path, count),) = result.files
    assert count == 250
    parsed = parse_usage_path(path)
    assert parsed is not None
    # Written on April 2nd, holding an event of March 31st: late, never from the future.
    assert (parsed.day, parsed.source, parsed.seq) == (date(2026, 4, 2), "gateway/t", 1)
    commit = repo[repo.refs[Ref(b"refs/heads/main")]]
    assert commit.author.startswith(b"formarket-bot")  # type: ignore[attr-defined]
    events = [event for _, event in committed_events(repo)]
    assert [e["id"] for e in events] == ids
    for event in events:
        UsageEvent.model_validate(event)
    assert not list(spool.glob("*.seg"))
    assert flush(repo, spool).commit is None


def test_a_crash_between_the_commit_and_the_state_file_commits_nothing_twice(
    tmp_path: Path,
) -> None:
    repo = make_market(tmp_path / "market")
    spool = tmp_path / "spool"
    spool_events(spool, 30, per_segment=10)
    kept = tmp_path / "kept"
    shutil.copytree(spool, kept)
    first = flush(repo, spool)
    # As if the flusher died right after moving the branch: segments back, state file lost.
    shutil.rmtree(spool)
    shutil.copytree(kept, spool)
    again = flush(repo, spool)
    assert again.commit is None
    assert sorted(again.reconciled) == sorted(first.segments)
    ids = collections.Counter(event["id"] for _, event in committed_events(repo))
    assert len(ids) == 30
    assert set(ids.values()) == {1}
    # Other writers' commits in between do not hide ours.
    spool_events(spool, 5)
    assert flush(repo, spool).events == 5
    assert next(iter(flush(repo, spool).segments), None) is None


def test_a_corrupt_line_is_set_aside_and_the_rest_committed(tmp_path: Path) -> None:
    repo = make_market(tmp_path / "market")
    spool = tmp_path / "spool"
    ids = spool_events(spool, 10)
    (segment,) = spool.glob("*.seg")
    lines = segment.read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b'"input_tokens":4', b'"input_tokens":9')  # a flipped digit
    segment.write_bytes(b"\n".join(lines) + b'0badc0de {"torn')  # and a torn last line
    result = flush(repo, spool)
    assert [(s.line, s.reason.split(":")[0]) for s in result.set_aside] == [
        (5, "checksum mismatch"),
        (11, "torn"),
    ]
    committed = [event["id"] for _, event in committed_events(repo)]
    assert committed == ids[:4] + ids[5:]
    (rejected,) = (spool / "rejected").iterdir()
    assert rejected.read_text().count("\n") == 2


def test_a_segment_still_being_written_is_left_alone(tmp_path: Path) -> None:
    repo = make_market(tmp_path / "market")
    spool = tmp_path / "spool"
    writer = SpoolWriter(spool)
    writer.append(
        call_event(
            event_id=writer.ids(),
            source="gateway/t",
            moment=MOMENT,
            served=SERVED,
            input_tokens=1,
            output_tokens=1,
            duration_ms=1,
            outcome="ok",
            tokens_source="measured",
        )
    )
    assert flush(repo, spool).segments == ()
    writer.close()
    assert flush(repo, spool).events == 1


def test_flushers_racing_on_one_repository_lose_nothing(tmp_path: Path) -> None:
    """Four flushers at once: two per spool, two spools (two gateways) on one branch."""
    repo = make_market(tmp_path / "market")
    expected: list[str] = []
    for name in ("a", "b"):
        expected += spool_events(tmp_path / name / "spool", 2000, f"gateway/{name}", 50)
    runner = Runner()
    procs = []
    for name in ("a", "b", "a", "b"):
        log = (tmp_path / f"flush-{name}-{len(procs)}.log").open("wb")
        procs.append(
            (
                runner.start(
                    [
                        *PYTHON,
                        "usage",
                        "flush",
                        "--repo",
                        str(tmp_path / "market"),
                        "--gateway-dir",
                        str(tmp_path / name),
                    ],
                    output=log,
                ),
                log,
            )
        )
    for proc, log in procs:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        log.close()
        assert proc.poll() == 0, Path(log.name).read_text()
    ids = collections.Counter(event["id"] for _, event in committed_events(repo))
    assert sorted(ids) == sorted(expected)
    assert set(ids.values()) == {1}


def test_files_of_one_source_and_day_take_the_next_sequence_number(tmp_path: Path) -> None:
    repo = make_market(tmp_path / "market")
    spool = tmp_path / "spool"
    paths = []
    for _ in range(3):
        spool_events(spool, 3)
        paths += [p for p, _ in flush(repo, spool).files]
    assert [p.rsplit("-", 1)[1] for p in paths] == [
        "000001.jsonl.gz",
        "000002.jsonl.gz",
        "000003.jsonl.gz",
    ]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["1a213b8d0f916b04a", "1a213b9e68a31011b"]),
            st.integers(min_value=1, max_value=300),
        ),
        min_size=1,
        max_size=50,
        unique=True,
    )
)
def test_the_segments_trailer_names_exactly_its_segments(segments: list[tuple[str, int]]) -> None:
    names = sorted(f"{boot}-{n:06d}" for boot, n in segments)
    message = f"Usage\n\nFormarket-Usage-Segments: {segment_trailer(names)}\n"
    assert sorted(_trailer_names(message)) == names
