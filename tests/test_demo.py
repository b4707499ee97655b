"""The demo runs end to end on the starter registry, and the starter registry is clean."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from formarket.cli import main
from formarket.demo.requests import DEMO_CLI_ACCOUNT, DEMO_DEPLOYER
from formarket.demo.user import DEMO_USER
from formarket.registry.cache import ResultCache
from formarket.registry.snapshot import WorkTreeSnapshot
from formarket.registry.validate import validate_snapshot
from tests.git_names import places_naming

ROOT = Path(__file__).parent.parent


def test_the_starter_registry_has_no_findings() -> None:
    report = validate_snapshot(WorkTreeSnapshot(ROOT), ResultCache(None, "t"))
    assert report.findings == []
    index = report.index
    assert len(index.publishers) >= 4
    assert len(index.models) >= 8
    assert len(index.agents) >= 6
    assert len(index.solutions) >= 3
    busybox = [
        s
        for s in (*index.models.values(), *index.agents.values())
        if b"FROM busybox" in (ROOT / s.path).with_name("Formfile").read_bytes()
    ]
    assert len(busybox) >= 3


@pytest.mark.slow
@pytest.mark.xdist_group("vm-journeys")  # the journeys boot four VMs each: one at a time
@pytest.mark.skipif(os.geteuid() != 0, reason="image builds need root")
def test_the_demo_runs_the_whole_journey(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path), "--source", str(ROOT)])
    assert result.exit_code == 0, result.output
    summary = result.output.rsplit("== Summary", 1)[1]
    assert "pr-1 by tf-sam: passed, merged (tinyforge/echo-chat-mini is listed)" in summary
    assert "refused with REG011, REG016" in summary
    assert "the farm: 5 VMs built, booted, answered, stopped" in summary
    # The user's side: the device flow, a key, a deployment through the API, its calls through
    # the gateway with that key, and the dashboard showing them.
    assert "formarket login" in result.output
    assert "signed in as ada-lovelace" in result.output
    mine = re.search(r"committed by the bot for ada-lovelace: (dep-[0-9a-f]{12})", result.output)
    assert mine is not None
    shows = rf"shows {mine.group(1)} and its (\d+) calls in the usage chart"
    shown = re.search(shows, result.output)
    assert shown is not None
    assert shown.group(1) == "10"
    assert "the next is refused, 429 insufficient_quota" in result.output
    assert "called it until her credit ran out and was refused" in summary
    assert "deployed tinyforge/echo-chat-mini through the API" in summary
    assert "You said: Do you sell purple giraffes?" in result.output  # the agent reached its model
    # Through the gateway: each model call an event under its parent, and the model credited
    # for those alone, not for the calls the FAQ answered.
    hop = re.search(r"they asked their models (\d+) times, each model call an event", result.output)
    assert hop is not None
    credited = re.search(r"echo-chat-mini is credited for (\d+) requests", result.output)
    assert credited is not None
    assert int(credited.group(1)) == int(hop.group(1)) + 10  # and the user's 10 direct calls
    assert "calls the FAQ answered credit it nothing" in result.output
    assert "agrees with its recomputation from git, byte for byte" in result.output
    # The month's invoices: hers shows her 10 calls and her top-ups, all of them add up to the
    # statements' gross, and she recomputes hers from the public usage.
    assert "requests: 10 x 0.002 USD per request = 0.02" in result.output
    assert "balance (USD): opening 0 + top-ups 0.06 - usage 0.02 - charges 0 = closing 0.04" in (
        result.output
    )
    assert re.search(
        r"they agree: [0-9.]+ USD invoiced to \d+ accounts = the statements' gross", (result.output)
    )
    assert "invoice of" in summary
    assert "verified against the close's hash" in summary
    assert (tmp_path / "site" / "agents" / "tinyforge" / "faq-bot" / "index.html").is_file()
    # Nothing of the farm is left running.
    committed = result.output.split("committed by the bot:")[1].split("\n", 1)[0]
    ids = re.findall(r"dep-[0-9a-f]{12}", committed)
    assert len(ids) == 4
    ids.append(mine.group(1))
    running = [_read(p) for p in Path("/proc").glob("*/cmdline")]
    assert not [c for c in running if any(f"guest=formarket-{d}".encode() in c for d in ids)]
    # git names the demo's accounts only by their pseudonyms: the author, the CLI's
    # account and the user who deployed through the API appear in no deployment, usage event,
    # commit message or file name. Only where a login is public by its role is it named:
    # governance.yaml's deployers (dana-deployer may deploy by issue because it is listed
    # there), and publishers' owners.
    accounts = (DEMO_DEPLOYER, DEMO_CLI_ACCOUNT, DEMO_USER)
    market = tmp_path / "marketplace"
    assert places_naming(market, accounts, public=_public_by_role) == []
    assert places_naming(market, [DEMO_DEPLOYER])  # in governance.yaml: the search finds it
    assert f"accounts in git: by pseudonym only ({DEMO_DEPLOYER} as acct_" in summary


def _public_by_role(path: str) -> bool:
    return path == "registry/governance.yaml" or path.startswith("registry/publishers/")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
