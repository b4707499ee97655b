"""Closing against a real repository: closed periods never change, late usage becomes an
adjustment, payouts follow the hold period, and verify recomputes byte for byte."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache

import pytest
from dulwich.objects import ObjectID
from dulwich.refs import Ref
from dulwich.repo import MemoryRepo, Repo
from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.errors import UsageError
from formarket.market.refs import branch_tip
from formarket.market.trees import commit_tree, list_dir, read_path
from formarket.market.writer import commit_changes
from formarket.royalties import engine
from formarket.usage.committed import usage_files
from tests.royalties.helpers import (
    BOT,
    MAINTAINER,
    call,
    gz,
    line,
    memory_market,
    simulate_month,
    usage_file,
)

APRIL = datetime(2026, 4, 5, tzinfo=UTC)
MAY = datetime(2026, 5, 2, tzinfo=UTC)


def tree_of(repo: Repo, path: str) -> ObjectID | None:
    tree = commit_tree(repo, branch_tip(repo, "main"))
    listing = list_dir(repo, tree, path.rsplit("/", 1)[0])
    entry = listing.get(path.rsplit("/", 1)[1])
    return entry[1] if entry else None


def test_a_closed_period_never_changes_and_late_usage_is_an_adjustment() -> None:
    repo = memory_market()
    simulate_month(repo, "2026-03")
    march, new = engine.close(repo, "2026-03", commit=True, now=APRIL)  # type: ignore[arg-type]
    assert new is not None
    closed = tree_of(repo, "royalties/2026-03")  # type: ignore[arg-type]
    counted = march.closing.summary.counts.counted
    assert counted > 0

    # A late flush in April: one new March call, and a copy of a call March already counted.
    late = call(
        "gw-1-late-1",
        model=("northwind-ai/northwind-chat-8b", "1.2.0"),
        time="2026-03-31T23:59:30Z",
        input_tokens=2_000_000,
        output_tokens=1_000_000,
    )
    counted_file = next(
        p
        for p in usage_files(
            repo,
            commit_tree(repo, branch_tip(repo, "main")),
            datetime(2026, 3, 1).date(),
        )[0]
        if "/gw-1-" in p
    )
    tree = commit_tree(repo, branch_tip(repo, "main"))
    import gzip

    first_line = gzip.decompress(read_path(repo, tree, counted_file) or b"").split(b"\n")[0]
    commit_changes(
        repo,  # type: ignore[arg-type]
        "main",
        {usage_file("2026-04-02", "gateway/gw-1", 7): gz([line(late), first_line])},
        "late flush",
        BOT,
    )
    assert engine.verify(repo, "2026-03") == []  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        engine.close(repo, "2026-03", commit=True, now=APRIL)  # type: ignore[arg-type]

    april, _ = engine.close(repo, "2026-04", commit=True, now=MAY)  # type: ignore[arg-type]
    assert tree_of(repo, "royalties/2026-03") == closed  # type: ignore[arg-type]
    counts = april.closing.summary.counts
    assert counts.adjustments == 1
    assert counts.duplicates == 1
    before = march.closing.summary.counts
    assert counts.counted_before == before.counted + before.adjustments
    statement = next(s for s in april.closing.statements if s.publisher == "northwind-ai")
    adjustments = [ln for b in statement.currencies for ln in b.lines if ln.kind == "adjustment"]
    assert {(ln.usage_period, ln.metric) for ln in adjustments} == {
        ("2026-03", "input_tokens"),
        ("2026-03", "output_tokens"),
    }
    assert april.closing.summary.previous_close is not None
    assert april.closing.summary.previous_close.period == "2026-03"

    # March earnings were held one period: the April close pays them.
    march_lines = {(p.publisher, p.currency): p for p in march.closing.payouts.lines}
    for line_ in april.closing.payouts.lines:
        before = march_lines.get((line_.publisher, line_.currency))
        if before is not None:
            assert line_.opening_balance == before.closing_balance
    paid = [p for p in april.closing.payouts.lines if p.status == "paid"]
    assert any(p.publisher == "northwind-ai" for p in paid)
    assert any(t.kind == "payout" for t in april.closing.ledger)

    assert engine.verify(repo, "2026-03") == []  # type: ignore[arg-type]
    assert engine.verify(repo, "2026-04") == []  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        engine.close(repo, "2026-02", now=MAY)  # type: ignore[arg-type]


@cache
def _closed_market() -> tuple[MemoryRepo, tuple[str, ...]]:
    repo = memory_market()
    simulate_month(repo, "2026-03", calls=200)  # type: ignore[arg-type]
    computed, _ = engine.close(repo, "2026-03", commit=True, now=APRIL)  # type: ignore[arg-type]
    return repo, tuple(sorted(computed.files))


def test_verify_passes_on_an_untouched_repository() -> None:
    repo, _ = _closed_market()
    assert engine.verify(repo, "2026-03") == []  # type: ignore[arg-type]


# 10. verify fails on any edited statement
@settings(max_examples=12, deadline=None)
@given(st.data())
def test_verify_fails_on_any_edited_file(data: st.DataObject) -> None:
    repo, files = _closed_market()
    rel = data.draw(st.sampled_from(files))
    path = f"royalties/2026-03/{rel}"
    tree = commit_tree(repo, branch_tip(repo, "main"))  # type: ignore[arg-type]
    original = read_path(repo, tree, path)  # type: ignore[arg-type]
    assert original is not None
    at = data.draw(st.integers(0, len(original) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[at]))
    edited = original[:at] + bytes([byte]) + original[at + 1 :]
    repo.refs[Ref(b"refs/heads/edit")] = branch_tip(repo, "main")  # type: ignore[arg-type]
    commit_changes(repo, "edit", {path: edited}, "edit", BOT)  # type: ignore[arg-type]
    found = engine.verify(repo, "2026-03", branch="edit")  # type: ignore[arg-type]
    assert found, "an edited file must not verify"
    if rel != "summary.json":
        assert path in {d.path for d in found}


def test_closing_needs_a_finished_period_and_a_policy() -> None:
    repo = memory_market()
    with pytest.raises(UsageError):
        engine.close(repo, "2026-04", now=APRIL)  # type: ignore[arg-type]
    commit_changes(repo, "main", {"royalties/policy.yaml": None}, "drop", MAINTAINER)  # type: ignore[arg-type]
    from formarket.errors import NotFoundError

    with pytest.raises(NotFoundError) as caught:
        engine.close(repo, "2026-03", now=APRIL)  # type: ignore[arg-type]
    assert caught.value.hint


def test_the_statement_json_is_what_the_markdown_says() -> None:
    repo, _ = _closed_market()
    tree = commit_tree(repo, branch_tip(repo, "main"))  # type: ignore[arg-type]
    statement = json.loads(
        read_path(repo, tree, "royalties/2026-03/statements/northwind-ai.json") or b""
    )  # type: ignore[arg-type]
    page = (read_path(repo, tree, "royalties/2026-03/statements/northwind-ai.md") or b"").decode()  # type: ignore[arg-type]
    for block in statement["currencies"]:
        assert f"**{block['gross']}**" in page


def test_rewritten_or_deleted_usage_is_reported_and_nothing_is_counted_twice() -> None:
    repo = memory_market()
    simulate_month(repo, "2026-03", calls=200)  # type: ignore[arg-type]
    engine.close(repo, "2026-03", commit=True, now=APRIL)  # type: ignore[arg-type]
    tree = commit_tree(repo, branch_tip(repo, "main"))  # type: ignore[arg-type]
    found, _ = usage_files(repo, tree, datetime(2026, 3, 1).date())  # type: ignore[arg-type]
    rewritten, deleted = sorted(p for p in found if "/gw-1-" in p)[:2]
    import gzip

    data = gzip.decompress(read_path(repo, tree, rewritten) or b"")  # type: ignore[arg-type]
    changes: dict[str, bytes | None] = {rewritten: gzip.compress(data + data), deleted: None}
    commit_changes(repo, "main", changes, "rewrite history", BOT)  # type: ignore[arg-type]
    april, _ = engine.close(repo, "2026-04", commit=True, now=MAY)  # type: ignore[arg-type]
    codes = {(a.code, a.file) for a in april.closing.summary.set_aside}
    assert codes == {("USG015", rewritten), ("USG016", deleted)}
    assert april.closing.summary.counts.adjustments == 0  # the rewritten copy's events counted once
    assert engine.verify(repo, "2026-03") == []  # type: ignore[arg-type]
