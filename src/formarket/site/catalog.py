"""What the site shows, as plain data: every listing with its files, versions and usage.

`Catalog` is built once per build at the edge (files, git, usage logs) and is all the pure
rendering functions see. Listing documents are kept as the dictionaries the registry index
validated; the helpers here read them the way every page and data file must agree on (prices,
labels, popularity).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from formarket.site.history import Change, History, Version, no_history

__all__ = [
    "KINDS",
    "Catalog",
    "Earning",
    "Entry",
    "MonthUsage",
    "Settings",
    "price_label",
    "price_value",
]

KINDS = ("model", "agent", "solution")
SECTIONS = {"model": "models", "agent": "agents", "solution": "solutions"}


@dataclass(frozen=True, slots=True)
class MonthUsage:
    """What the gateway metered for one listing in one calendar month."""

    month: str  # YYYY-MM
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    instance_hours: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Earning:
    """What a publisher earned in one closed royalty period, in one currency."""

    period: str  # YYYY-MM
    currency: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Entry:
    """One model, agent or solution as the site shows it."""

    kind: str
    id: str
    data: Mapping[str, Any]
    path: str  # the listing document in the repository
    readme: str = ""
    formfile: str = ""
    versions: tuple[Version, ...] = ()
    usage: tuple[MonthUsage, ...] = ()

    @property
    def publisher(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def name(self) -> str:
        return str(self.data.get("name") or self.id)

    @property
    def url(self) -> str:
        return f"/{SECTIONS[self.kind]}/{self.id}/"

    @property
    def folder(self) -> str:
        return self.path.rsplit("/", 1)[0]

    @property
    def popularity(self) -> int:
        """Requests over the last three months that have any usage."""
        return sum(m.requests for m in self.usage[-3:])

    @property
    def published(self) -> str:
        """When the current version appeared, or "" when the history is unknown."""
        version = self.data.get("version")
        for v in self.versions:
            if v.version == version:
                return v.date
        return ""


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the site's repository lives, for links back to it; none when it is unknown."""

    repository: str | None = None  # owner/name on GitHub
    branch: str = "main"

    @property
    def source_url(self) -> str | None:
        if self.repository is None:
            return None
        return f"https://github.com/{self.repository}/blob/{self.branch}"


@dataclass(frozen=True, slots=True)
class Catalog:
    """Everything a build renders. Each mapping is ordered by name, as catalogs list it."""

    models: Mapping[str, Entry] = field(default_factory=dict)
    agents: Mapping[str, Entry] = field(default_factory=dict)
    solutions: Mapping[str, Entry] = field(default_factory=dict)
    publishers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    earnings: Mapping[str, tuple[Earning, ...]] = field(default_factory=dict)
    history: History = field(default_factory=lambda: no_history("no history was read"))
    usage_recorded: bool = False  # whether the registry holds any usage log at all
    periods_closed: tuple[str, ...] = ()  # royalty periods with statements
    settings: Settings = field(default_factory=Settings)
    skipped: tuple[str, ...] = ()  # documents left out because they are not valid

    def of_kind(self, kind: str) -> Mapping[str, Entry]:
        return {"model": self.models, "agent": self.agents, "solution": self.solutions}[kind]

    def entry(self, kind: str, ident: str) -> Entry | None:
        return self.of_kind(kind).get(ident)

    def all_entries(self) -> list[Entry]:
        return [*self.models.values(), *self.agents.values(), *self.solutions.values()]

    def changes(self) -> list[Change]:
        """The change feed, newest first."""
        return list(reversed(self.history.changes))


def _amount(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return Decimal(0)


def _num(value: Any) -> str:
    text = f"{_amount(value):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def price_label(pricing: Mapping[str, Any]) -> str:
    """A price in a few words, such as `0.20 / 0.60 USD per M tokens`."""
    model = pricing.get("model")
    currency = pricing.get("currency", "")
    if model == "per_request":
        return f"{_num(pricing.get('per_request'))} {currency} per request"
    if model == "per_token":
        return (
            f"{_num(pricing.get('input_per_million'))} / "
            f"{_num(pricing.get('output_per_million'))} {currency} per M tokens"
        )
    if model == "per_instance_hour":
        return f"{_num(pricing.get('per_hour'))} {currency} per hour"
    if model == "subscription":
        tiers = pricing.get("tiers") or ()
        lowest = min((_amount(t.get("monthly")) for t in tiers), default=Decimal(0))
        return f"from {_num(lowest)} {currency} per month"
    return "Free"


def price_value(pricing: Mapping[str, Any]) -> Decimal:
    """The number a price range and a price sort compare, within one pricing model (the
    input price for tokens, the lowest tier for subscriptions): currencies are not converted."""
    model = pricing.get("model")
    if model == "per_request":
        return _amount(pricing.get("per_request"))
    if model == "per_token":
        return _amount(pricing.get("input_per_million"))
    if model == "per_instance_hour":
        return _amount(pricing.get("per_hour"))
    if model == "subscription":
        tiers = pricing.get("tiers") or ()
        return min((_amount(t.get("monthly")) for t in tiers), default=Decimal(0))
    return Decimal(0)
