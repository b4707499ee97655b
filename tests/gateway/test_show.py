"""`formarket usage show` against the slow, obvious reading: every accepted event of every
file in path order, the first copy of each (source, id) counted, the others duplicates of it
(shown with it, when it passes --since and --listing); the same figures from a cold cache, a
warm one, and none."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.gateway.show import UsageSummary, usage_summary
from formarket.market.refs import branch_tip
from formarket.market.trees import commit_tree
from formarket.usage.committed import usage_files
from formarket.usage.files import parse_usage_path
from formarket.usage.reader import reading_spec, scan_file
from tests.royalties.helpers import POLICY_FILE, listed, market_of
from tests.royalties.test_reference import OFFERS, months
from tests.usage.helpers import call, gz, line, usage_file


def _reference(
    first: dict[str, bytes], later: dict[str, bytes], since: date | None, listing: str | None
) -> dict[str, Any]:
    files = {**first, **later}
    spec = reading_spec(POLICY_FILE)
    events = duplicates = measured = set_aside = 0
    rows: dict[tuple[str, str, str], list[int]] = {}
    counted: dict[tuple[str, str], Any] = {}  # the first copy of each event
    copies: dict[tuple[str, str], int] = {}
    shown = 0
    for index, path in enumerate(sorted(files)):
        parsed = parse_usage_path(path)
        if parsed is None or (since is not None and parsed.day < since):
            continue
        shown += 1
        scan = scan_file(index, parsed, files[path], False, spec, keep=True)
        set_aside += len(scan.set_aside)
        for event in scan.accepted:
            key = (event.source, event.id)
            if key in counted:
                copies[key] = copies.get(key, 0) + 1
            else:
                counted[key] = event
    for key, event in counted.items():
        refs = [("agent", event.data.agent), ("model", event.data.model)]
        if since is not None and event.time.date() < since:
            continue
        if listing is not None and not any(r is not None and r.id == listing for _, r in refs):
            continue
        events += 1
        duplicates += copies.get(key, 0)
        data = event.data
        measured += data.tokens_source != "upstream" and data.requests > 0
        for role, ref in refs:
            if ref is None or (listing is not None and ref.id != listing):
                continue
            row = rows.setdefault((ref.id, ref.version, role), [0] * 5)
            if data.outcome == "ok":
                row[0] += data.requests
                row[2] += data.input_tokens
                row[3] += data.output_tokens
                row[4] += data.instance_seconds
            else:
                row[1] += data.requests
    return {
        "files": shown,
        "events": events,
        "duplicates": duplicates,
        "set_aside": set_aside,
        "measured_calls": measured,
        "rows": [
            {
                "listing": k[0],
                "version": k[1],
                "role": k[2],
                "calls": v[0],
                "failed_calls": v[1],
                "input_tokens": v[2],
                "output_tokens": v[3],
                "instance_seconds": v[4],
            }
            for k, v in sorted(rows.items())
        ],
    }


def _figures(summary: UsageSummary) -> dict[str, Any]:
    found = summary.as_json()
    return {k: v for k, v in found.items() if k not in ("commit", "since", "listing")}


@settings(max_examples=25)
@given(
    months(),
    st.sampled_from((None, date(2026, 1, 1), date(2026, 3, 10))),
    st.sampled_from((None, "acme/model-a", "nova/agent-c")),
)
def test_show_counts_each_event_once_as_the_reference_does(
    month: tuple[dict[str, bytes], dict[str, bytes]], since: date | None, listing: str | None
) -> None:
    first, later = month
    if not first:
        return
    repo = market_of(listed(OFFERS), first, later or None)
    expected = _reference(first, later, since, listing)
    assert _figures(usage_summary(repo, since=since, listing=listing)) == expected
    with tempfile.TemporaryDirectory() as folder:
        cold = usage_summary(repo, since=since, listing=listing, cache_dir=Path(folder))
        assert list(Path(folder).rglob("*.shown"))
        warm = usage_summary(repo, since=since, listing=listing, cache_dir=Path(folder))
    assert _figures(cold) == expected
    assert _figures(warm) == expected


def test_a_copy_in_another_file_is_a_duplicate() -> None:
    """Not vacuous: the reference and the show both see the copy."""
    event = line(call("e-1", model=("acme/model-a", "1.0.0")))
    first = {
        usage_file("2026-03-10", seq=1): gz([event]),
        usage_file("2026-03-10", seq=2): gz([event]),
    }
    repo = market_of(listed(OFFERS), first)
    expected = _reference(first, {}, None, None)
    assert expected["duplicates"] == 1
    assert expected["events"] == 1
    assert _figures(usage_summary(repo)) == expected
    tip = branch_tip(repo, "main")
    assert len(usage_files(repo, commit_tree(repo, tip), date(2026, 1, 1))[0]) == 2
