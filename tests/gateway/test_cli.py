"""The `formarket gateway` and `formarket usage` commands, and the demo's gateway step."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from formarket.cli import main
from formarket.usage.files import usage_path
from tests.gateway.helpers import make_market
from tests.gateway.test_flush import spool_events
from tests.gitcli import clone, head, status


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_keys_and_routes(tmp_path: Path) -> None:
    where = ["--repo", str(tmp_path), "--gateway-dir", str(tmp_path / "state")]
    key = run("gateway", "keys", "create", "acme", "--rate", "5", *where).splitlines()[0]
    assert key.startswith("fmk_")
    listed = run("gateway", "keys", "list", *where)
    assert "acme" in listed
    assert key not in listed
    key_id = key.split("_")[1]
    assert "revoked" in run("gateway", "keys", "revoke", key_id, *where)
    assert "REVOKED" in run("gateway", "keys", "list", *where)
    run(
        "gateway", "routes", "add", "dep-1", "--endpoint", "http://127.0.0.1:9",
        "--account", "acme", "--model", "acme/llama-8b@1.2.0", *where,
    )  # fmt: skip
    assert "acme/llama-8b@1.2.0" in run("gateway", "routes", "list", *where)
    run("gateway", "routes", "remove", "dep-1", *where)
    assert run("gateway", "routes", "list", *where) == ""
    bad = CliRunner().invoke(
        main, ["gateway", "routes", "add", "x", "--endpoint", "ftp://h", "--account", "a",
               "--model", "a/b@1.0.0", *where],
    )  # fmt: skip
    assert bad.exit_code == 2
    assert "http" in bad.output


def test_a_key_with_a_spending_cap_and_a_scope(tmp_path: Path) -> None:
    from decimal import Decimal

    from formarket.gateway.keys import load_keys

    where = ["--repo", str(tmp_path), "--gateway-dir", str(tmp_path / "state")]
    run(
        "gateway", "keys", "create", "acme", "--usd-per-day", "5.00",
        "--scope", "dep-1", "--scope", "dep-2", *where,
    )  # fmt: skip
    (record,) = load_keys(tmp_path / "state" / "keys.json").by_id.values()
    assert record.usd_per_day == Decimal("5.00")
    assert record.scope == ("dep-1", "dep-2")
    listed = run("gateway", "keys", "list", *where)
    assert "5.00 per day" in listed
    assert "scope dep-1,dep-2" in listed
    for amount in ("five", "0", "-1", "NaN"):
        bad = CliRunner().invoke(
            main, ["gateway", "keys", "create", "acme", "--usd-per-day", amount, *where]
        )
        assert bad.exit_code != 0, amount


def test_flush_and_show(tmp_path: Path) -> None:
    make_market(tmp_path / "market")
    state = tmp_path / "state"
    spool_events(state / "spool", 12)
    where = ["--repo", str(tmp_path / "market")]
    out = run("usage", "flush", *where, "--gateway-dir", str(state))
    assert "committed 12 events to registry/usage/" in out
    assert run("usage", "flush", *where, "--gateway-dir", str(state)).strip() == "nothing to flush"
    shown = json.loads(run("usage", "show", *where, "--json"))
    assert shown["events"] == 12
    assert shown["duplicates"] == 0
    assert shown["set_aside"] == 0
    (row,) = shown["rows"]
    assert (row["listing"], row["calls"], row["input_tokens"]) == ("acme/llama-8b", 12, 66)
    assert json.loads(run("usage", "show", *where, "--json", "--listing", "x/y"))["events"] == 0
    later = json.loads(run("usage", "show", *where, "--json", "--since", "2026-04-01"))
    assert later["events"] == 0
    assert "acme/llama-8b" in run("usage", "show", *where)


def test_the_openapi_document_is_printed() -> None:
    assert "/v1/chat/completions" in json.loads(run("gateway", "openapi"))["paths"]


def test_a_flush_in_a_working_clone_leaves_git_status_clean(tmp_path: Path) -> None:
    make_market(tmp_path / "market")
    work = clone(tmp_path / "market", tmp_path / "work")
    (work / "notes.txt").write_bytes(b"mine\n")
    state = tmp_path / "state"
    spool_events(state / "spool", 12)

    out = run("usage", "flush", "--repo", str(work), "--gateway-dir", str(state))

    (path,) = (line.split(" to ", 1)[1] for line in out.splitlines() if " events to " in line)
    assert (work / path).is_file()
    assert status(work) == ["?? notes.txt"]


def test_a_flush_over_a_local_file_is_refused_and_loses_nothing(tmp_path: Path) -> None:
    make_market(tmp_path / "market")
    work = clone(tmp_path / "market", tmp_path / "work")
    state = tmp_path / "state"
    spool_events(state / "spool", 12)
    segments = sorted((state / "spool").glob("*.seg"))
    # The flush writes today's first file of its source (tomorrow's, past midnight UTC).
    today = datetime.now(UTC).date()
    mine = [usage_path(day, "gateway/t", 1) for day in (today, today + timedelta(days=1))]
    for path in mine:
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_bytes(b"a local file\n")
    before = head(work)

    where = ["--repo", str(work), "--gateway-dir", str(state)]
    refused = CliRunner().invoke(main, ["usage", "flush", *where])

    assert refused.exit_code == 1
    assert any(path in refused.output for path in mine)
    assert head(work) == before
    assert sorted((state / "spool").glob("*.seg")) == segments
    assert sorted(status(work)) == sorted(f"?? {path}" for path in mine)

    for path in mine:
        (work / path).unlink()
    out = run("usage", "flush", *where)
    assert "committed 12 events" in out
    assert status(work) == []
