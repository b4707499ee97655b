"""The price of every listing version, as it stood in the commit that published it.

A published version is immutable (the pull-request check refuses a rewrite), so the terms a
version was sold on are those of the first commit, in the branch's first-parent history, whose
listing file carries that version. Usage is rated with the terms of the version that served it:
a new version with a new price never re-rates what the old one served. Should a version's terms
be rewritten anyway, its first publication still wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from pydantic import ConfigDict, ValidationError

from formarket.schemas._base import Document
from formarket.schemas._types import ListingId, SemVer
from formarket.schemas.pricing import Monetization, Pricing
from formarket.yamldoc import YamlError, load_yaml

__all__ = ["PriceBook", "PriceEntry", "listing_id_of", "parse_terms"]


@dataclass(frozen=True, slots=True)
class PriceEntry:
    listing: str
    version: str
    kind: str  # model or agent
    pricing: Pricing
    royalty_percent: Decimal
    commit: str = field(compare=False)
    position: int = field(compare=False)

    @property
    def publisher(self) -> str:
        return self.listing.split("/", 1)[0]


class _Terms(Document):
    """The part of a listing that prices it; the rest is the registry's business."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: ListingId
    version: SemVer
    pricing: Pricing
    monetization: Monetization


def listing_id_of(path: str) -> str | None:
    """`registry/models/<p>/<s>/listing.yaml` (or agents/) -> `<p>/<s>`."""
    parts = path.split("/")
    if (
        len(parts) == 5
        and parts[0] == "registry"
        and parts[1] in ("models", "agents")
        and parts[4] == "listing.yaml"
    ):
        return f"{parts[2]}/{parts[3]}"
    return None


def parse_terms(raw: bytes, path: str) -> tuple[str, str, Pricing, Decimal] | None:
    """(id, version, pricing, royalty percent) of a listing file, or None when it cannot be
    read or its id does not match its path (the registry check reports why)."""
    try:
        data = load_yaml(raw, path).data
        terms = _Terms.model_validate(data)
    except (YamlError, ValidationError):
        return None
    if terms.id != listing_id_of(path):
        return None
    return terms.id, terms.version, terms.pricing, terms.monetization.royalty_percent


@dataclass
class PriceBook:
    """Listing versions by (id, version), and where each commit of the history stands."""

    entries: dict[tuple[str, str], PriceEntry] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)
    tip: str = ""
    policy_commit: str = ""
    policy_blob: str = ""

    def get(self, listing: str, version: str) -> PriceEntry | None:
        return self.entries.get((listing, version))

    def apply(
        self,
        commit: str,
        changes: Iterable[tuple[str, bytes]],
        *,
        policy_blob: str | None = None,
    ) -> None:
        """Add the next commit of the first-parent history: the listing files it added or
        changed (path, content), and the blob id of royalties/policy.yaml if it changed."""
        position = len(self.positions)
        self.positions[commit] = position
        self.tip = commit
        for path, raw in changes:
            terms = parse_terms(raw, path)
            if terms is None:
                continue
            ident, version, pricing, royalty = terms
            if (ident, version) not in self.entries:
                kind = "model" if path.startswith("registry/models/") else "agent"
                self.entries[(ident, version)] = PriceEntry(
                    ident, version, kind, pricing, royalty, commit, position
                )
        if policy_blob is not None and policy_blob != self.policy_blob:
            self.policy_blob = policy_blob
            self.policy_commit = commit if policy_blob else ""

    def known(self, at: str | None = None) -> frozenset[tuple[str, str]]:
        """The versions published at or before commit `at` (default: the tip)."""
        limit = self.positions[at] if at is not None else len(self.positions)
        return frozenset(key for key, entry in self.entries.items() if entry.position <= limit)

    def latest(self) -> list[PriceEntry]:
        """The newest published version of each listing, by listing id."""
        newest: dict[str, PriceEntry] = {}
        for entry in self.entries.values():
            current = newest.get(entry.listing)
            if current is None or entry.position >= current.position:
                newest[entry.listing] = entry
        return [newest[k] for k in sorted(newest)]

    def copy(self) -> PriceBook:
        return PriceBook(
            dict(self.entries),
            dict(self.positions),
            self.tip,
            self.policy_commit,
            self.policy_blob,
        )
