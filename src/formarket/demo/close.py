"""The royalties step of `formarket demo`: simulated usage in, a closed period out, verified.

Usage is simulated until the gateway and the farm exist, and the narration says so.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from dulwich.refs import Ref
from dulwich.repo import Repo

from formarket.errors import FormarketError
from formarket.market.writer import Identity, commit_changes
from formarket.royalties import engine, gitio
from formarket.royalties.pricebook import PriceEntry
from formarket.schemas.pricing import PerRequestPricing, PerTokenPricing
from formarket.standins.usage_simulator import Plan, commit_usage, simulate
from formarket.usage.files import month_index, month_text, usage_path
from formarket.yamldoc import load_yaml

__all__ = ["demo_royalties"]

Echo = Callable[[str], None]
_CALLS = 4000


def _starter_policy() -> bytes:
    for candidate in (Path.cwd(), *Path(__file__).resolve().parents):
        path = candidate / "royalties" / "policy.yaml"
        if path.is_file():
            return path.read_bytes()
    raise FormarketError(
        "no royalties/policy.yaml to start from", hint="run the demo in a formarket checkout"
    )


def demo_royalties(repo: Repo, echo: Echo, *, today: date | None = None) -> None:
    """On a repository whose `main` holds the starter registry: commit a month of simulated
    usage as the bot, close the month, show the statements, verify them, and show that a late
    event becomes an adjustment and that an edited statement fails verification."""
    today = today or datetime.now(UTC).date()
    current = today.year * 12 + today.month - 1
    period = month_text(current - 1)
    tip = engine.branch_tip(repo, "main")
    tree = gitio.commit_tree(repo, tip)
    if gitio.read_path(repo, tree, gitio.POLICY_PATH) is None:
        governance = load_yaml(
            gitio.read_path(repo, tree, "registry/governance.yaml") or b"",
            "registry/governance.yaml",
        ).data
        maintainer = governance["maintainers"][0]
        commit_changes(
            repo,
            "main",
            {gitio.POLICY_PATH: _starter_policy()},
            "Royalty terms, version 1",
            Identity(maintainer, f"{maintainer}@users.noreply.github.com"),
        )
        echo(f"{maintainer} (a maintainer) commits the platform's terms: {gitio.POLICY_PATH}")
    tip = engine.branch_tip(repo, "main")
    bot = engine.bot_identity(repo, gitio.commit_tree(repo, tip))
    book = gitio.price_book(repo, tip, gitio.cache_dir_of(repo))

    echo(f"\n-- usage of {period} (SIMULATED: the gateway and the farm do not meter yet)")
    plan = Plan(period=period, calls=_CALLS, seed=2026, flush_events=25, resend_per_mille=5)
    files = simulate(book.latest(), plan)
    commit_usage(repo, "main", files, bot, f"Simulated usage for {period} (demo; not real)")
    echo(
        f"{bot.name} commits {len(files)} usage files under registry/usage/: {_CALLS:,} simulated"
        " calls through two gateways, and the farm's hourly metering of the deployments priced"
        " per instance-hour; a few calls fail, a few events are sent twice"
    )

    echo(f"\n-- formarket royalties close --period {period} --commit")
    computed, new = engine.close(repo, period, commit=True, now=datetime.now(UTC))
    assert new is not None
    echo(computed.files["README.md"].decode().rstrip())
    statements = sorted(p for p in computed.files if p.startswith("statements/"))
    echo(
        f"\n{bot.name} commits royalties/{period}/ ({len(computed.files)} files):"
        f" {', '.join(statements)}"
    )
    charged = [s for s in computed.closing.statements if s.currencies]
    if charged:
        # The publisher with the most lines shows the most of what a statement says.
        sample = max(charged, key=lambda s: sum(len(b.lines) for b in s.currencies)).publisher
        echo(f"\n-- royalties/{period}/statements/{sample}.md")
        echo(computed.files[f"statements/{sample}.md"].decode().rstrip())

    echo(f"\n-- formarket royalties verify --period {period}")
    differences = engine.verify(repo, period)
    if differences:
        raise FormarketError(f"the close of {period} does not verify: {differences[0].problem}")
    echo(f"royalties/{period}/ agrees with its recomputation from git, byte for byte")

    echo(f"\n-- a late flush: usage of {period} that arrives after it closed")
    late_day = max(today, _first_of(current))
    late = _late_file(book.latest(), period, late_day)
    if late is not None:
        commit_usage(repo, "main", late, bot, f"Late usage for {period} (demo; simulated)")
        following = month_text(current)
        preview = engine.preview(repo, following)
        counts = preview.closing.summary.counts
        again = engine.verify(repo, period)
        echo(
            f"{period} stays as it was closed (verify: {'agrees' if not again else 'DIFFERS'});"
            f" `formarket royalties preview --period {following}` counts the late event as"
            f" {counts.adjustments} adjustment(s) of {period}"
        )

    echo("\n-- someone edits a committed statement")
    target = (
        f"royalties/{period}/{statements[0]}" if statements else f"royalties/{period}/payouts.json"
    )
    original = gitio.read_path(
        repo, gitio.commit_tree(repo, engine.branch_tip(repo, "main")), target
    )
    assert original is not None
    repo.refs[Ref(b"refs/heads/tampered")] = engine.branch_tip(repo, "main")
    edited = original.replace(b'"creator": "', b'"creator": "1', 1)
    commit_changes(repo, "tampered", {target: edited}, "Raise a creator's share", bot)
    found = engine.verify(repo, period, branch="tampered")
    echo(
        f"on branch tampered, the first creator share in {target} gains a leading 1: verify"
        f" finds {len(found)} difference(s) ({', '.join(d.path for d in found)}) and exits 1"
    )


def _first_of(month: int) -> date:
    return date(month // 12, month % 12 + 1, 1)


def _late_file(offers: list[PriceEntry], period: str, day: date) -> dict[str, bytes] | None:
    """One call of the closed period that a gateway flushes late."""
    priced = [
        o
        for o in offers
        if o.kind == "model" and isinstance(o.pricing, PerTokenPricing | PerRequestPricing)
    ]
    if not priced:
        return None
    model = priced[0]
    end = _first_of(month_index(period) + 1) - timedelta(days=1)
    event = (
        '{"specversion":"1.0","id":"gw-1-late-000001","source":"gateway/gw-1",'
        '"type":"dev.formarket.usage.call",'
        f'"time":"{end:%Y-%m-%d}T23:59:00Z","subject":"dep-late-00001",'
        '"datacontenttype":"application/json","data":{"account":"acct-00001","agent":null,'
        f'"model":{{"id":"{model.listing}","version":"{model.version}"}},'
        '"input_tokens":1200,"output_tokens":300,"requests":1,"duration_ms":900,'
        '"outcome":"ok","tokens_source":"upstream","instance_seconds":0}}'
    )
    path = usage_path(day, "gateway/gw-1", 999_000_001)
    return {path: gzip.compress(event.encode() + b"\n", mtime=0)}


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
