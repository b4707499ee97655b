"""Money that cannot be forged, rewritten or paid twice: each attack, refused with its rule id
and where it happened.

- usage committed by someone who is not the bot (USG017), or by the bot's identity without
  the bot's signature once governance.yaml names its key (USG017);
- an event holding more than a gateway can produce (USG018);
- a closed period removed or changed by a later commit (USG019): named, never paid again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from dulwich.objects import Commit
from dulwich.repo import MemoryRepo, Repo

from formarket.errors import FormarketError
from formarket.market.refs import branch_tip, set_branch
from formarket.market.sshsig import new_key
from formarket.market.trees import commit_tree, files_under, read_path
from formarket.market.writer import Identity, commit_changes
from formarket.royalties import engine
from formarket.settings import BOT_KEY
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
MALLORY = Identity("mallory", "mallory@example.org")
MODEL = ("northwind-ai/northwind-chat-8b", "1.2.0")


def _one_call(name: str, **data: int) -> bytes:
    return gz([line(call(name, model=MODEL, time="2026-03-10T10:00:00Z", **data))])  # type: ignore[arg-type]


def _gross(computed: engine.Computed) -> str:
    return ",".join(f"{t.currency} {t.gross}" for t in computed.closing.summary.totals)


def _set_aside(computed: engine.Computed, code: str) -> list[tuple[str, int, str]]:
    return [
        (s.file, s.line, s.message) for s in computed.closing.summary.set_aside if s.code == code
    ]


def test_usage_committed_by_anyone_but_the_bot_is_set_aside() -> None:
    repo = memory_market()
    path = usage_file("2026-03-10", "gateway/gw-1", 1)
    commit_changes(
        repo,
        "main",
        {path: _one_call("m-1", input_tokens=10**6, output_tokens=10**6)},
        "usage",
        MALLORY,
    )
    computed = engine.preview(repo, "2026-03")
    [(file, number, message)] = _set_aside(computed, "USG017")
    assert (file, number) == (path, 0)
    assert "mallory" in message
    assert computed.closing.summary.counts.counted == 0
    assert computed.closing.summary.totals == ()

    # The same file committed by the bot counts.
    honest = memory_market()
    commit_changes(
        honest,
        "main",
        {path: _one_call("m-1", input_tokens=10**6, output_tokens=10**6)},
        "usage",
        BOT,
    )
    counted = engine.preview(honest, "2026-03")
    assert counted.closing.summary.counts.counted == 1
    assert _set_aside(counted, "USG017") == []


def test_a_commit_that_names_itself_the_bot_does_not_vouch_for_its_own_usage() -> None:
    repo = memory_market()
    tree = commit_tree(repo, branch_tip(repo, "main"))
    governance = read_path(repo, tree, "registry/governance.yaml") or b""
    path = usage_file("2026-03-10", "gateway/gw-1", 1)
    commit_changes(
        repo,
        "main",
        {
            "registry/governance.yaml": governance.replace(b"bot: formarket-bot", b"bot: mallory"),
            path: _one_call("m-1", input_tokens=10**6),
        },
        "usage",
        Identity("mallory", "mallory@users.noreply.github.com"),
    )
    computed = engine.preview(repo, "2026-03")
    assert [f for f, _, _ in _set_aside(computed, "USG017")] == [path]
    assert computed.closing.summary.counts.counted == 0


@pytest.fixture
def keyed(tmp_path: Path) -> tuple[MemoryRepo, Path]:
    """A marketplace whose governance.yaml names the bot's key; the key's file."""
    repo = memory_market()
    key = tmp_path / "bot" / "id_ed25519"
    public = new_key(key)
    tree = commit_tree(repo, branch_tip(repo, "main"))
    governance = read_path(repo, tree, "registry/governance.yaml") or b""
    commit_changes(
        repo,
        "main",
        {"registry/governance.yaml": governance + f"bot_key: {public}\n".encode()},
        "Name the bot's key",
        MAINTAINER,
    )
    return repo, key


def test_with_a_key_named_only_usage_signed_with_it_counts(
    keyed: tuple[MemoryRepo, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, key = keyed
    unsigned = usage_file("2026-03-10", "gateway/gw-1", 1)
    forged = usage_file("2026-03-10", "gateway/gw-1", 2)
    signed = usage_file("2026-03-10", "gateway/gw-1", 3)
    # The bot's name and email, but no signature: anyone can write those.
    commit_changes(repo, "main", {unsigned: _one_call("u-1", input_tokens=10**6)}, "u", BOT)
    # Signed, with another key.
    other = tmp_path / "other" / "id_ed25519"
    new_key(other)
    monkeypatch.setenv(BOT_KEY.variable, str(other))
    commit_changes(repo, "main", {forged: _one_call("f-1", input_tokens=10**6)}, "f", BOT)
    # Signed with the bot's key, by the writer.
    monkeypatch.setenv(BOT_KEY.variable, str(key))
    commit_changes(repo, "main", {signed: _one_call("s-1", input_tokens=10**6)}, "s", BOT)

    computed = engine.preview(repo, "2026-03")
    aside = {file: message for file, _, message in _set_aside(computed, "USG017")}
    assert set(aside) == {unsigned, forged}
    assert "not signed" in aside[unsigned]
    assert "not signed by the bot's key" in aside[forged]
    assert computed.closing.summary.counts.counted == 1


def test_a_signed_commit_altered_afterwards_no_longer_counts(
    keyed: tuple[MemoryRepo, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, key = keyed
    monkeypatch.setenv(BOT_KEY.variable, str(key))
    path = usage_file("2026-03-10", "gateway/gw-1", 1)
    tip = commit_changes(repo, "main", {path: _one_call("s-1", input_tokens=10)}, "s", BOT)
    # The same commit with its signature kept and its tree swapped for a bigger bill.
    original = repo.object_store[tip]
    assert isinstance(original, Commit)
    forged = original.copy()
    assert isinstance(forged, Commit)
    monkeypatch.delenv(BOT_KEY.variable)
    set_branch(repo, "scratch", original.parents[0])
    other = commit_changes(
        repo,
        "scratch",
        {path: _one_call("s-1", input_tokens=10**7)},
        "t",
        BOT,
    )
    other_commit = repo.object_store[other]
    assert isinstance(other_commit, Commit)
    forged.tree = other_commit.tree
    assert forged.gpgsig == original.gpgsig
    repo.object_store.add_object(forged)
    set_branch(repo, "main", forged.id)
    computed = engine.preview(repo, "2026-03")
    assert [f for f, _, _ in _set_aside(computed, "USG017")] == [path]
    assert computed.closing.summary.counts.counted == 0


def test_an_event_above_what_a_gateway_can_produce_is_set_aside_not_paid() -> None:
    repo = memory_market()
    path = usage_file("2026-03-10", "gateway/gw-1", 1)
    events = [
        call("big-1", model=MODEL, time="2026-03-10T10:00:00Z", output_tokens=10**12),
        call("big-2", model=MODEL, time="2026-03-10T10:00:00Z", input_tokens=10**8),
        call("ok-1", model=MODEL, time="2026-03-10T10:00:00Z", output_tokens=1000),
    ]
    commit_changes(repo, "main", {path: gz(line(e) for e in events)}, "usage", BOT)
    computed = engine.preview(repo, "2026-03")
    aside = _set_aside(computed, "USG018")
    assert [(f, n) for f, n, _ in aside] == [(path, 1), (path, 2)]
    assert "output_tokens 1000000000000 above 1000000" in aside[0][2]
    assert computed.closing.summary.counts.counted == 1
    for statement in computed.closing.statements:
        for currency in statement.currencies:
            for item in currency.lines:
                assert item.quantity <= 1000


def _remove_close(repo: Repo | MemoryRepo) -> bytes:
    tree = commit_tree(repo, branch_tip(repo, "main"))
    gone = {
        f"royalties/2026-03/{rel}": None for rel in files_under(repo, tree, "royalties/2026-03")
    }
    return commit_changes(repo, "main", gone, "clean up", BOT)


def test_a_removed_close_is_named_and_never_paid_again() -> None:
    repo = memory_market()
    simulate_month(repo, "2026-03")  # type: ignore[arg-type]
    march, closed = engine.close(repo, "2026-03", commit=True, now=APRIL)
    assert closed is not None
    culprit = _remove_close(repo)

    # verify finds the close in history and names the commit that removed it.
    differences = engine.verify(repo, "2026-03")
    assert differences
    assert all("USG019" in d.problem and culprit.decode() in d.problem for d in differences)
    assert {d.path for d in differences} == {f"royalties/2026-03/{rel}" for rel in march.files}
    assert engine.verify_all(repo)["2026-03"] == differences

    # The next close refuses, naming the commit; closing March again is refused too.
    with pytest.raises(FormarketError, match=f"USG019.*{culprit.decode()[:12]}"):
        engine.close(repo, "2026-04", commit=True, now=datetime(2026, 5, 2, tzinfo=UTC))
    with pytest.raises(FormarketError, match="USG019"):
        engine.close(repo, "2026-03", commit=True, now=APRIL)

    # Restored as it was closed, the next close counts nothing of March again.
    commit_changes(
        repo,
        "main",
        {f"royalties/2026-03/{rel}": data for rel, data in march.files.items()},
        "restore",
        MAINTAINER,
    )
    assert engine.verify_all(repo) == {"2026-03": []}
    april, _ = engine.close(repo, "2026-04", now=datetime(2026, 5, 2, tzinfo=UTC))
    counts = april.closing.summary.counts
    assert counts.adjustments == 0
    assert counts.counted_before == march.closing.summary.counts.counted
    assert april.closing.summary.previous_close is not None
    assert april.closing.summary.previous_close.period == "2026-03"


def test_a_changed_close_is_named_and_stops_the_next_close() -> None:
    repo = memory_market()
    simulate_month(repo, "2026-03")  # type: ignore[arg-type]
    engine.close(repo, "2026-03", commit=True, now=APRIL)
    tree = commit_tree(repo, branch_tip(repo, "main"))
    payouts = read_path(repo, tree, "royalties/2026-03/payouts.json") or b""
    culprit = commit_changes(
        repo,
        "main",
        {
            "royalties/2026-03/payouts.json": payouts.replace(
                b'"closing_balance": "', b'"closing_balance": "0', 1
            )
        },
        "rewrite",
        BOT,
    )
    [difference] = engine.verify(repo, "2026-03")
    assert difference.path == "royalties/2026-03/payouts.json"
    assert "USG019" in difference.problem
    assert culprit.decode() in difference.problem
    # The next period waits until March is restored as it was closed.
    with pytest.raises(FormarketError, match="USG019"):
        engine.preview(repo, "2026-04")


def test_a_closed_file_rewritten_by_someone_else_stays_as_the_close_read_it() -> None:
    repo = memory_market()
    path = usage_file("2026-03-10", "gateway/gw-1", 1)
    commit_changes(repo, "main", {path: _one_call("c-1", input_tokens=10)}, "usage", BOT)
    march, _ = engine.close(repo, "2026-03", commit=True, now=APRIL)
    assert march.closing.summary.counts.counted == 1
    bigger = gz(
        [
            line(call("c-1", model=MODEL, time="2026-03-10T10:00:00Z", input_tokens=10**6)),
            line(call("c-2", model=MODEL, time="2026-03-10T10:00:01Z", input_tokens=10**6)),
        ]
    )
    commit_changes(repo, "main", {path: bigger}, "fix usage", MALLORY)
    april = engine.preview(repo, "2026-04")
    summary = april.closing.summary
    assert [(s.code, s.file) for s in summary.set_aside] == [("USG017", path)]
    assert summary.counts.adjustments == 0
    assert summary.counts.conflicts == 0
    assert summary.totals == ()
