"""Builders for the royalties tests: listings, markets, usage, and the close over them.

`close` runs the engine's own close (`engine.preview`: the price book read from git history,
the usage files listed and set aside by their paths, the scan, the tally, the rating) over a
repository in memory holding the terms, the publishers, the listings and the usage: the tests
go through the same pipeline as `formarket royalties close`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dulwich.index import commit_tree
from dulwich.objects import Blob, Commit
from dulwich.refs import Ref
from dulwich.repo import MemoryRepo, Repo

from formarket.market.layout import POLICY as POLICY_PATH
from formarket.market.refs import branch_tip
from formarket.market.writer import Identity, commit_changes, import_tree
from formarket.royalties import engine, gitio
from formarket.royalties.close import Closing
from formarket.schemas.usage import RoyaltyPolicy
from formarket.standins.usage_simulator import Plan, commit_usage, simulate
from formarket.yamldoc import load_yaml
from tests.usage.helpers import call, gz, hours, line, usage_file

__all__ = [
    "BOT",
    "MAINTAINER",
    "PERIOD",
    "POLICY",
    "POLICY_FILE",
    "ROOT",
    "USAGE_COMMIT",
    "Offer",
    "call",
    "close",
    "gz",
    "hours",
    "line",
    "listed",
    "market_of",
    "memory_market",
    "money_files",
    "simulate_month",
    "starter",
    "usage_file",
]

ROOT = Path(__file__).resolve().parents[2]
POLICY_FILE = (ROOT / "royalties" / "policy.yaml").read_bytes()
POLICY = RoyaltyPolicy.model_validate(load_yaml(POLICY_FILE, "policy.yaml").data)
# Stands for the usage commit in a close's files, so that closes of different usage over the
# same listings compare by what they say, not by the commit they read.
USAGE_COMMIT = "a" * 40
PERIOD = "2026-03"


@dataclass(frozen=True)
class Offer:
    """A listing version to publish."""

    kind: str  # model or agent
    ident: str
    version: str
    pricing: Mapping[str, Any]
    royalty: str = "70"

    @property
    def path(self) -> str:
        return f"registry/{self.kind}s/{self.ident}/listing.yaml"

    @property
    def publisher(self) -> str:
        return self.ident.split("/")[0]


Listings = tuple[tuple[Offer, ...], ...]


def listing_yaml(offer: Offer) -> bytes:
    document = {
        "id": offer.ident,
        "name": offer.ident.split("/")[1],
        "version": offer.version,
        "pricing": dict(offer.pricing),
        "monetization": {"royalty_percent": offer.royalty},
    }
    return json.dumps(document).encode()  # JSON is YAML


def listed(*commits: Sequence[Offer]) -> Listings:
    """The listings' history: one commit per argument, each publishing those offers."""
    return tuple(tuple(offers) for offers in commits)


def publisher_yaml(publisher: str) -> bytes:
    document = {
        "id": publisher,
        "name": publisher.title(),
        "owners": [f"{publisher}-owner"],
        "payout": {"method": "bank-transfer", "reference": f"ref-{publisher}"},
    }
    return json.dumps(document).encode()


class _Commits:
    """Commits on main at fixed times, so that the same files always make the same commits
    (the commit of the terms is named in every statement)."""

    def __init__(self, repo: MemoryRepo) -> None:
        self.repo = repo
        self.files: dict[str, bytes] = {}
        self.count = 0

    def commit(
        self, changes: Mapping[str, bytes], message: str, author: bytes = b"Mara <mara@example.org>"
    ) -> None:
        self.files.update(changes)
        entries = []
        for path, data in sorted(self.files.items()):
            blob = Blob.from_string(data)
            self.repo.object_store.add_object(blob)
            entries.append((path.encode(), blob.id, 0o100644))
        commit = Commit()
        commit.tree = commit_tree(self.repo.object_store, entries)
        tip = self.repo.refs[Ref(b"refs/heads/main")] if self.count else None
        commit.parents = [tip] if tip is not None else []
        commit.author = commit.committer = author
        self.count += 1
        commit.author_time = commit.commit_time = 1_767_225_600 + self.count
        commit.author_timezone = commit.commit_timezone = 0
        commit.message = message.encode()
        self.repo.object_store.add_object(commit)
        self.repo.refs[Ref(b"refs/heads/main")] = commit.id


def market_of(
    listings: Listings, usage: Mapping[str, bytes], later: Mapping[str, bytes] | None = None
) -> MemoryRepo:
    """A marketplace in memory: the terms and the publishers, the listings commit by commit,
    then the usage files (path -> bytes), then, in a bot commit of their own, `later` ones."""
    repo = MemoryRepo()
    repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/main"))
    commits = _Commits(repo)
    publishers = sorted({offer.publisher for offers in listings for offer in offers})
    start = {f"registry/publishers/{p}.yaml": publisher_yaml(p) for p in publishers}
    commits.commit({POLICY_PATH: POLICY_FILE, **start}, "Terms and publishers")
    for offers in listings:
        commits.commit({offer.path: listing_yaml(offer) for offer in offers}, "Listings")
    # Usage counts only in the bot's commits, as the governance before them names it.
    commits.commit({"registry/governance.yaml": GOVERNANCE_FILE}, "Governance")
    commits.commit(dict(usage), "Usage", BOT.raw())
    if later:
        commits.commit(dict(later), "Later usage", BOT.raw())
    return repo


def close(
    files: Mapping[str, bytes],
    listings: Listings,
    *,
    period: str = PERIOD,
    later: Mapping[str, bytes] | None = None,
) -> tuple[Closing, dict[str, bytes]]:
    """Close `period` over usage files (path -> bytes) priced by `listings`, and `later` ones
    committed after them: what the closing says, and its files (the usage commit written as
    USAGE_COMMIT)."""
    computed = engine.preview(market_of(listings, files, later), period)
    commit = computed.usage_commit
    rendered = {
        path: data.replace(commit, USAGE_COMMIT.encode()).replace(
            commit[:12], USAGE_COMMIT[:12].encode()
        )
        for path, data in computed.files.items()
    }
    return computed.closing, rendered


def money_files(rendered: Mapping[str, bytes]) -> dict[str, bytes]:
    """Statements, ledger and payouts: what says who is owed what (not the usage counts)."""
    return {
        path: data
        for path, data in rendered.items()
        if path.startswith("statements/") or path in ("ledger.jsonl", "payouts.json")
    }


# --- repositories -------------------------------------------------------------------------

BOT = Identity("formarket-bot", "formarket-bot@users.noreply.github.com")
GOVERNANCE_FILE = b"maintainers: [mara-maintainer]\nbot: formarket-bot\n"
MAINTAINER = Identity("mara-maintainer", "mara@example.org")


def starter(repo: Repo) -> None:
    files = import_tree(ROOT, ("registry", "royalties/policy.yaml"))
    files = {p: d for p, d in files.items() if not p.startswith("registry/usage/")}
    commit_changes(repo, "main", files, "Start", MAINTAINER)


def memory_market() -> MemoryRepo:
    repo = MemoryRepo()
    repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/main"))
    starter(repo)  # type: ignore[arg-type]
    return repo


def simulate_month(repo: Repo, period: str, calls: int = 400) -> None:
    tip = branch_tip(repo, "main")
    book = gitio.price_book(repo, tip)
    files = simulate(book.latest(), Plan(period=period, calls=calls, flush_events=40, seed=5))
    commit_usage(repo, "main", files, BOT, f"usage {period}")
