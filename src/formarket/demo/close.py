"""The royalties step of `formarket demo`: the month's metered usage in, a closed period
out, verified."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from dulwich.repo import Repo

from formarket.errors import FormarketError
from formarket.royalties import engine
from formarket.royalties.reader import month_text

__all__ = ["demo_close"]

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
