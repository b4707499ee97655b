"""The hook `formarket demo` calls: one request through an issue, one through the CLI path."""

from __future__ import annotations

from pathlib import Path

from formarket.demo.requests import demo_requests
from formarket.farm.settings import FarmSettings
from tests.deploy.conftest import deployments


def test_demo_requests_commit_two_pairs_and_a_rerun_changes_the_issue_pair_not(
    market: FarmSettings,
) -> None:
    said: list[str] = []

    ids = demo_requests(Path(market.repo), said.append)

    found = deployments(market)
    assert sorted(ids) == sorted(found)
    assert len(ids) == 4
    assert {d.origin.kind for d in found.values()} == {"issue", "cli"}
    assert {d.listing.id for d in found.values()} == {"tinyforge/faq-bot", "tinyforge/echo-chat"}
    assert any("deployed" in line for line in said)

    again = demo_requests(Path(market.repo), said.append)
    assert again[:2] == ids[:2]  # the issue's pair, found again
    assert any("unchanged" in line for line in said)
