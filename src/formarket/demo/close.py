"""The royalties step of `formarket demo`: the month's metered usage in, a closed period
out, verified."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from dulwich.repo import Repo

from formarket.errors import FormarketError
from formarket.market.refs import branch_tip
from formarket.market.repository import open_repository
from formarket.market.trees import commit_tree, read_path
from formarket.royalties import engine
from formarket.usage.files import month_text

__all__ = ["credited_requests", "demo_close"]

Echo = Callable[[str], None]


def demo_close(repo: Repo, echo: Echo, *, now: datetime) -> str:
    """Close the month before `now` from the usage metered into git, show a statement and
    verify the close; returns the period."""
    month = now.year * 12 + now.month - 1
    period = month_text(month - 1)
    echo(f"-- formarket royalties close --period {period} --commit  (as on {now:%Y-%m-%d})")
    computed, new = engine.close(repo, period, commit=True, now=now)
    if new is None:
        raise FormarketError(f"royalties/{period}/ was not committed")
    echo(computed.files["README.md"].decode().rstrip())
    charged = [s for s in computed.closing.statements if s.currencies]
    for statement in charged:
        echo(f"\n-- royalties/{period}/statements/{statement.publisher}.md")
        echo(computed.files[f"statements/{statement.publisher}.md"].decode().rstrip())
    payouts = computed.files.get("payouts.json", b"").decode()
    echo(f"\n-- royalties/{period}/payouts.json\n{payouts.rstrip()}")
    echo(f"\n-- formarket royalties verify --period {period}")
    differences = engine.verify(repo, period)
    if differences:
        raise FormarketError(f"the close of {period} does not verify: {differences[0].problem}")
    echo(f"royalties/{period}/ agrees with its recomputation from git, byte for byte")
    return period


def credited_requests(repo_path: Path, period: str, listing: str) -> int:
    """How many requests of `listing` its publisher's statement for `period` credits."""
    repo = open_repository(repo_path, search_up=False)
    publisher = listing.split("/", 1)[0]
    data = read_path(
        repo,
        commit_tree(repo, branch_tip(repo, "main")),
        f"royalties/{period}/statements/{publisher}.json",
    )
    if data is None:
        return 0
    statement = json.loads(data)
    return sum(
        line["quantity"]
        for currency in statement["currencies"]
        for line in currency["lines"]
        if line["listing"] == listing and line["metric"] == "requests"
    )
