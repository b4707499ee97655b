"""`formarket royalties` as a user runs it, the simulated usage and the demo step."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from dulwich.refs import Ref
from dulwich.repo import Repo

from formarket.cli import main
from formarket.market.refs import branch_tip
from formarket.market.trees import commit_tree, files_under, read_blob, read_path
from formarket.market.writer import commit_changes
from formarket.royalties import engine, gitio
from formarket.schemas.usage import UsageEvent
from formarket.standins.usage_simulator import Plan, simulate
from formarket.usage.committed import usage_files
from tests.gitcli import clone, head, status
from tests.royalties.helpers import BOT, MAINTAINER, simulate_month, starter


@pytest.fixture
def market(tmp_path: Path) -> Path:
    path = tmp_path / "market"
    repo = Repo.init(str(path), mkdir=True)
    repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/main"))
    starter(repo)
    simulate_month(repo, "2026-03", calls=300)
    repo.close()
    return path


def run(*args: str) -> tuple[int, str]:
    """Exit code and everything printed (progress goes to stderr, results to stdout)."""
    result = CliRunner().invoke(main, ["royalties", *args])
    return result.exit_code, result.output


def stdout(*args: str) -> str:
    result = CliRunner().invoke(main, ["royalties", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_help_says_what_each_command_does() -> None:
    code, out = run("--help")
    assert code == 0
    for word in ("close", "preview", "verify", "policy.yaml"):
        assert word in out
    code, out = run("close", "--help")
    assert code == 0
    assert "--commit" in out
    assert "adjustment" in out


def test_close_commit_and_verify(market: Path) -> None:
    code, out = run("close", "--period", "2026-03", "--repo", str(market))
    assert code == 0, out
    assert "not committed (dry run)" in out
    assert "# Royalties 2026-03" in out
    code, out = run("close", "--period", "2026-03", "--repo", str(market), "--commit")
    assert code == 0, out
    assert "committed royalties/2026-03/" in out
    code, out = run("verify", "--period", "2026-03", "--repo", str(market))
    assert code == 0, out
    assert "byte for byte" in out
    code, out = run("close", "--period", "2026-03", "--repo", str(market), "--commit")
    assert code == 2
    assert "closed already" in out
    assert "hint:" in out

    repo = Repo(str(market))
    tree = commit_tree(repo, branch_tip(repo, "main"))
    path = "royalties/2026-03/statements/northwind-ai.json"
    data = read_path(repo, tree, path) or b""
    commit_changes(
        repo, "main", {path: data.replace(b'"gross": "', b'"gross": "9', 1)}, "edit", BOT
    )
    repo.close()
    code, out = run("verify", "--period", "2026-03", "--repo", str(market))
    assert code == 1
    assert path in out
    assert "(recomputed)" in out


def test_verify_all_checks_every_close_in_history(market: Path) -> None:
    code, out = run("verify", "--all", "--repo", str(market))
    assert code == 0, out
    assert "no period is closed" in out
    code, out = run("close", "--period", "2026-03", "--repo", str(market), "--commit")
    assert code == 0, out
    code, out = run("verify", "--all", "--repo", str(market))
    assert code == 0, out
    assert "royalties/2026-03/ agrees" in out

    repo = Repo(str(market))
    tree = commit_tree(repo, branch_tip(repo, "main"))
    folder = files_under(repo, tree, "royalties/2026-03")
    removed = commit_changes(
        repo, "main", {f"royalties/2026-03/{rel}": None for rel in folder}, "clean up", BOT
    )
    repo.close()
    code, out = run("verify", "--all", "--repo", str(market))
    assert code == 1
    assert "USG019" in out
    assert removed.decode() in out
    assert "royalties/2026-03/ does not verify" in out
    code, out = run("verify", "--repo", str(market))
    assert code == 2
    assert "--all" in out


def test_preview_shows_a_statement_and_names_the_publishers(market: Path) -> None:
    out = stdout(
        "preview", "--period", "2026-03", "--repo", str(market), "--publisher", "tinyforge"
    )
    assert out.startswith("# Royalty statement: tinyforge, 2026-03")
    code, out = run(
        "preview", "--period", "2026-03", "--repo", str(market), "--publisher", "nobody"
    )
    assert code == 2
    assert "tinyforge" in out


@pytest.mark.parametrize(
    ("args", "exit_code", "words"),
    [
        (("close", "--period", "2026-13"), 2, "YYYY-MM"),
        (("close", "--period", "2099-01"), 2, "preview"),
        (("verify", "--period", "2026-02"), 1, "not closed"),
        (("preview", "--period", "2026-03", "--branch", "nope"), 1, "no branch"),
    ],
)
def test_mistakes_are_explained(
    market: Path, args: tuple[str, ...], exit_code: int, words: str
) -> None:
    code, out = run(*args, "--repo", str(market))
    assert code == exit_code, out
    assert words in out
    assert "Traceback" not in out


def test_no_policy_is_an_error_with_a_hint(market: Path) -> None:
    repo = Repo(str(market))
    commit_changes(repo, "main", {"royalties/policy.yaml": None}, "drop the terms", MAINTAINER)
    repo.close()
    code, out = run("close", "--period", "2026-03", "--repo", str(market))
    assert code == 1
    assert "policy.yaml" in out
    assert "hint:" in out


def test_simulated_usage_is_deterministic_and_valid() -> None:
    from tests.royalties.helpers import memory_market

    market = memory_market()
    book = gitio.price_book(market, branch_tip(market, "main"))
    plan = Plan(period="2026-02", calls=500, flush_events=30, seed=3, days=(1, 2, 28))
    first = simulate(book.latest(), plan)
    assert first == simulate(book.latest(), plan)
    assert first != simulate(
        book.latest(), Plan(period="2026-02", calls=500, seed=4, days=(1, 2, 28))
    )
    days = set()
    for path, data in first.items():
        for raw in gzip.decompress(data).splitlines():
            event = UsageEvent.model_validate_json(raw)
            days.add(event.time.date())
        assert path.startswith("registry/usage/2026/0")
    assert days == {date(2026, 2, 1), date(2026, 2, 2), date(2026, 2, 28)}


def test_reading_on_several_cores_gives_the_same_bytes(market: Path) -> None:
    repo = Repo(str(market))
    before = engine.preview(repo, "2026-03", jobs=1).closing.summary.counts.duplicates
    tree = commit_tree(repo, branch_tip(repo, "main"))
    # Copies of a few calls in a later file, so that settling duplicates runs in the workers.
    found, _ = usage_files(repo, tree, date(2026, 3, 1))
    path = sorted(p for p in found if "/gw-2-" in p)[0]
    lines = gzip.decompress(read_blob(repo, found[path][1])).splitlines()[:5]
    later = "registry/usage/2026/03/30/gateway/gw-2-999999.jsonl.gz"
    commit_changes(repo, "main", {later: gzip.compress(b"\n".join(lines) + b"\n")}, "again", BOT)
    serial = engine.preview(repo, "2026-03", jobs=1)
    parallel = engine.preview(repo, "2026-03", jobs=2)
    repo.close()
    assert parallel.files == serial.files
    assert serial.closing.summary.counts.duplicates == before + 5


def test_close_in_a_working_clone_leaves_git_status_clean(market: Path, tmp_path: Path) -> None:
    work = clone(market, tmp_path / "work")
    (work / "registry/governance.yaml").write_bytes(b"# a draft\n")

    code, out = run("close", "--period", "2026-03", "--repo", str(work), "--commit")

    assert code == 0, out
    assert (work / "royalties/2026-03/summary.json").is_file()
    assert (work / "royalties/2026-03/payouts.json").is_file()
    assert status(work) == [" M registry/governance.yaml"]


def test_close_over_a_local_file_is_refused(market: Path, tmp_path: Path) -> None:
    work = clone(market, tmp_path / "work")
    (work / "royalties/2026-03").mkdir(parents=True)
    (work / "royalties/2026-03/README.md").write_bytes(b"my own notes\n")
    before = head(work)

    code, out = run("close", "--period", "2026-03", "--repo", str(work), "--commit")

    assert code == 1
    assert "royalties/2026-03/README.md" in out
    assert "hint:" in out
    assert head(work) == before
    assert status(work) == ["?? royalties/2026-03/README.md"]
    assert (work / "royalties/2026-03/README.md").read_bytes() == b"my own notes\n"
