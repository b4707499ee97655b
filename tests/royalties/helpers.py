"""Builders for the royalties tests: listings, price books, events, usage files, contexts."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from dulwich.refs import Ref
from dulwich.repo import MemoryRepo, Repo

from formarket.market.refs import branch_tip
from formarket.market.writer import Identity, commit_changes, import_tree
from formarket.royalties import gitio
from formarket.royalties.close import CloseContext, Closing, render_closing
from formarket.royalties.core import close_files
from formarket.royalties.payouts import Balance
from formarket.royalties.pricebook import PriceBook
from formarket.schemas.publisher import Payout
from formarket.schemas.usage import PolicyRef, PreviousClose, RoyaltyPolicy
from formarket.standins.usage_simulator import Plan, commit_usage, simulate
from formarket.yamldoc import load_yaml

ROOT = Path(__file__).resolve().parents[2]
POLICY = RoyaltyPolicy.model_validate(
    load_yaml((ROOT / "royalties" / "policy.yaml").read_bytes(), "policy.yaml").data
)
POLICY_REF = PolicyRef(version=POLICY.version, commit="c" * 40)
USAGE_COMMIT = "a" * 40
PERIOD = "2026-03"


@dataclass(frozen=True)
class Offer:
    """A listing version to put in a price book."""

    kind: str  # model or agent
    ident: str
    version: str
    pricing: Mapping[str, Any]
    royalty: str = "70"

    @property
    def path(self) -> str:
        return f"registry/{self.kind}s/{self.ident}/listing.yaml"


def listing_yaml(offer: Offer) -> bytes:
    document = {
        "id": offer.ident,
        "name": offer.ident.split("/")[1],
        "version": offer.version,
        "pricing": dict(offer.pricing),
        "monetization": {"royalty_percent": offer.royalty},
    }
    return json.dumps(document).encode()  # JSON is YAML


def book_of(*commits: Sequence[Offer]) -> PriceBook:
    """A price book whose history has one commit per argument, each adding those offers."""
    book = PriceBook()
    for i, offers in enumerate(commits):
        book.apply(f"{i + 1:040x}", [(o.path, listing_yaml(o)) for o in offers])
    return book


def call(
    ident: str,
    *,
    model: tuple[str, str] | None = None,
    agent: tuple[str, str] | None = None,
    time: str = "2026-03-10T12:00:00Z",
    source: str = "gateway/gw-1",
    input_tokens: int = 100,
    output_tokens: int = 50,
    requests: int = 1,
    outcome: str = "ok",
    **extra: Any,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": ident,
        "source": source,
        "type": "dev.formarket.usage.call",
        "time": time,
        "subject": "dep-1",
        "datacontenttype": "application/json",
        "data": {
            "account": "acct-1",
            "agent": {"id": agent[0], "version": agent[1]} if agent else None,
            "model": {"id": model[0], "version": model[1]} if model else None,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "requests": requests,
            "duration_ms": 120,
            "outcome": outcome,
            "tokens_source": "upstream",
            "instance_seconds": 0,
        },
    }
    event.update(extra)
    return event


def hours(ident: str, *, model: tuple[str, str], seconds: int, time: str) -> dict[str, Any]:
    event = call(ident, model=model, time=time, source="farm/meter-1")
    event["type"] = "dev.formarket.usage.instance-hours"
    event["data"].update(
        input_tokens=0, output_tokens=0, requests=0, duration_ms=0, instance_seconds=seconds
    )
    return event


def line(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def gz(lines: Iterable[bytes]) -> bytes:
    return gzip.compress(b"".join(item + b"\n" for item in lines), mtime=0)


def usage_file(day: str, source: str = "gateway/gw-1", seq: int = 1) -> str:
    return f"registry/usage/{day.replace('-', '/')}/{source}-{seq:06d}.jsonl.gz"


def context(
    book: PriceBook,
    *,
    period: str = PERIOD,
    policy: RoyaltyPolicy = POLICY,
    prior: Mapping[tuple[str, str], Balance] | None = None,
    previous: PreviousClose | None = None,
    methods: Mapping[str, Payout | None] | None = None,
) -> CloseContext:
    publishers = {entry.publisher for entry in book.entries.values()}
    return CloseContext(
        period=period,
        usage_commit=USAGE_COMMIT,
        previous=previous,
        policy=policy,
        policy_ref=POLICY_REF,
        book=book,
        methods=methods
        if methods is not None
        else {p: Payout(method="bank-transfer", reference=f"ref-{p}") for p in publishers},
        prior=prior or {},
    )


def close(files: Mapping[str, bytes], ctx: CloseContext) -> tuple[Closing, dict[str, bytes]]:
    closing = close_files(files, ctx)
    return closing, render_closing(closing)


def money_files(rendered: Mapping[str, bytes]) -> dict[str, bytes]:
    """Statements, ledger and payouts: what says who is owed what (not the usage counts)."""
    return {
        path: data
        for path, data in rendered.items()
        if path.startswith("statements/") or path in ("ledger.jsonl", "payouts.json")
    }


def decimal(text: str) -> Decimal:
    return Decimal(text)


# --- repositories -------------------------------------------------------------------------

BOT = Identity("formarket-bot", "bot@example.org")
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
