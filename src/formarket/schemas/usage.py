"""Usage and what it earns: the metered usage event, the platform's royalty terms and the
documents a closed royalty period is made of (statements, ledger, payouts, summary).

The usage event is a CloudEvents 1.0 JSON document; the gateway emits it for every call and the
farm for the running time of every deployment. The bot commits events as gzip JSON lines under
`registry/usage/YYYY/MM/DD/<source>-<seq>.jsonl.gz`.

Money here is `Decimal`, written as a plain decimal string ("12.30", "-0.05"), never a float
and never in exponent notation.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from formarket.schemas._base import Document
from formarket.schemas._types import (
    Amount,
    CurrencyCode,
    ListingId,
    Percent,
    PublisherName,
    SemVer,
)

__all__ = [
    "ACCOUNT_PATTERN",
    "CALL",
    "DEPLOYMENT_PATTERN",
    "EVENT_ID_PATTERN",
    "INSTANCE_HOURS",
    "MAX_COUNT",
    "PERIOD_PATTERN",
    "SOURCE_PATTERN",
    "CurrencyStatement",
    "CurrencyTerms",
    "CurrencyTotals",
    "EventTime",
    "HeldAmount",
    "LedgerEntry",
    "LedgerTransaction",
    "ListingVersion",
    "Money",
    "PayoutLine",
    "Payouts",
    "Period",
    "PolicyRef",
    "PreviousClose",
    "RoyaltyPolicy",
    "SetAside",
    "Statement",
    "StatementLine",
    "Summary",
    "SummaryCounts",
    "UnratedUsage",
    "UsageCeilings",
    "UsageConflict",
    "UsageData",
    "UsageEvent",
    "money_text",
]

CALL = "dev.formarket.usage.call"
INSTANCE_HOURS = "dev.formarket.usage.instance-hours"
EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
TOKENS_SOURCE_PATTERN = r"^(upstream|measured|estimate|sha256:[0-9a-f]{64})$"
# `<kind>/<name>`: the collector that wrote the event; it names the collector's usage files.
SOURCE_PATTERN = r"^[a-z][a-z0-9-]{0,30}/[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
DEPLOYMENT_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
ACCOUNT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$"
# A bound on every count in one event: far above any real call, far below what could overflow
# a 64-bit sum of a month of events.
MAX_COUNT = 10**12
PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
_MONEY_PATTERN = r"^-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,8})?$"
_MONEY_RE = re.compile(_MONEY_PATTERN)


def _utc_time(value: object) -> object:
    """RFC 3339 with a UTC offset, read by msgspec's parser: the fast usage reader uses the
    same one, so that the contract and the reader can never disagree about a timestamp."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = msgspec.convert(value, datetime)
        except msgspec.ValidationError as exc:
            raise ValueError(f"not an RFC 3339 date-time: {value!r}") from exc
    else:
        raise ValueError("must be an RFC 3339 date-time string such as 2026-01-31T23:59:59Z")
    offset = parsed.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise ValueError("must be in UTC (end in Z or +00:00)")
    return parsed.astimezone(UTC)


def _rfc3339(value: datetime) -> str:
    text: str = msgspec.json.decode(msgspec.json.encode(value))
    return text


EventTime = Annotated[
    datetime,
    BeforeValidator(_utc_time),
    PlainSerializer(_rfc3339, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "When it happened: RFC 3339 in UTC, such as 2026-01-31T23:59:59Z.",
        }
    ),
]
Period = Annotated[
    str,
    StringConstraints(pattern=PERIOD_PATTERN),
    Field(description="A royalty period: a calendar month in UTC, YYYY-MM."),
]
CommitId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{40}$"),
    Field(description="A git commit id."),
]


def _money(value: object) -> object:
    if isinstance(value, (bool, float)):
        raise ValueError("money is written as a decimal string such as '12.30', never a float")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("money must be a finite number")
        return value
    if isinstance(value, str):
        if not _MONEY_RE.match(value):
            raise ValueError(f"not an amount of money: {value!r}")
        return Decimal(value)
    raise ValueError("money is written as a decimal string such as '12.30'")


def money_text(value: Decimal) -> str:
    """A plain decimal string: no exponent, no negative zero."""
    if value == 0:
        value = abs(value)
    return format(value, "f")


Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    PlainSerializer(money_text, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _MONEY_PATTERN,
            "description": "An amount of money in major units, signed, as a decimal string.",
        }
    ),
]


class _Strict(Document):
    """Usage comes from machines: no coercion ("5" is not 5), as in the fast reader."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class ListingVersion(_Strict):
    """The listing version that served a call."""

    id: ListingId
    version: SemVer


class UsageData(_Strict):
    """What was used, by whom, through which listing versions."""

    account: str = Field(
        pattern=ACCOUNT_PATTERN,
        description="The paying account, by its pseudonym (`acct_` and a keyed hash of its"
        " login, whose key the operator holds); a login in events from before pseudonyms.",
    )
    agent: ListingVersion | None = Field(description="The agent that served it, if any.")
    model: ListingVersion | None = Field(description="The model that served it, if any.")
    input_tokens: int = Field(ge=0, le=MAX_COUNT)
    output_tokens: int = Field(ge=0, le=MAX_COUNT)
    requests: int = Field(ge=0, le=MAX_COUNT)
    duration_ms: int = Field(ge=0, le=MAX_COUNT)
    outcome: Literal["ok", "error", "rejected"] = Field(
        description="Only `ok` is charged: a failed or rejected call costs the user nothing."
    )
    tokens_source: str = Field(
        pattern=TOKENS_SOURCE_PATTERN,
        description="How the tokens were counted: `sha256:<hex>` by the listing's tokenizer"
        " (that file's SHA-256), `estimate` by the gateway's byte-based estimate, `upstream`"
        " as the deployment reported them (believed only when possible). `measured`, the"
        " gateway's estimate, is how events written before tokenizers say it.",
    )
    instance_seconds: int = Field(
        default=0,
        ge=0,
        le=MAX_COUNT,
        description="Seconds the deployment ran (instance-hours events only; 0 for calls).",
    )
    cut: Literal["max_tokens", "choices", "budget", "size", "duration", "idle"] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Why the gateway cut the call short, if it did: it is billed for what was"
        " delivered.",
    )
    parent: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        pattern=EVENT_ID_PATTERN,
        description="The event id of the call that made this one (an agent calling its model"
        " with a key scoped to its deployment).",
    )


class UsageEvent(_Strict):
    """One metered fact, as a CloudEvents 1.0 JSON document."""

    specversion: Literal["1.0"]
    id: str = Field(
        pattern=EVENT_ID_PATTERN,
        description="Unique per source: the idempotency key (the same id twice is one event).",
    )
    source: str = Field(
        pattern=SOURCE_PATTERN,
        description="The collector, `<kind>/<name>`, such as gateway/gw-1 or farm/meter-1.",
    )
    type: Literal["dev.formarket.usage.call", "dev.formarket.usage.instance-hours"]
    time: EventTime
    subject: str = Field(pattern=DEPLOYMENT_PATTERN, description="The deployment id.")
    datacontenttype: Literal["application/json"]
    data: UsageData

    @model_validator(mode="after")
    def _consistent(self) -> UsageEvent:
        problem = event_problem(self.type, self.data)
        if problem:
            raise ValueError(problem)
        return self


_PLAIN_SOURCES = frozenset({"upstream", "measured", "estimate"})
_TOKENS_SOURCE = re.compile(TOKENS_SOURCE_PATTERN)
_EVENT_ID = re.compile(EVENT_ID_PATTERN)


def event_problem(kind: str, data: Any) -> str:
    """What makes an event's data inconsistent with its type ("" when nothing); shared with
    the fast reader."""
    if data.agent is None and data.model is None:
        return "names neither an agent nor a model"
    source = data.tokens_source
    if source not in _PLAIN_SOURCES and not _TOKENS_SOURCE.fullmatch(source):
        return f"tokens_source {source!r} does not match {TOKENS_SOURCE_PATTERN}"
    parent = getattr(data, "parent", None)
    if isinstance(parent, str) and not _EVENT_ID.fullmatch(parent):
        return f"parent {parent!r} does not match {EVENT_ID_PATTERN}"
    if kind == CALL:
        if data.instance_seconds:
            return "a call carries no instance_seconds"
    elif data.instance_seconds <= 0:
        return "an instance-hours event needs instance_seconds above 0"
    elif data.requests or data.input_tokens or data.output_tokens:
        return "an instance-hours event counts no requests or tokens"
    return ""


# --- the platform's terms: royalties/policy.yaml ---------------------------------------------


class CurrencyTerms(Document):
    """How balances in one currency are paid out."""

    payout_threshold: Amount = Field(
        description="A balance is paid once what is due reaches this; below, it is carried."
    )
    payout_fee: Amount = Field(
        description="Taken from each payout to cover the transfer; the platform keeps it."
    )

    @model_validator(mode="after")
    def _fee_below_threshold(self) -> CurrencyTerms:
        if self.payout_fee >= self.payout_threshold:
            raise ValueError("payout_fee must be below payout_threshold")
        return self


class UsageCeilings(Document):
    """The most one event can hold that a gateway or a meter can produce: an event above any
    of these is set aside (USG018), never paid. Calls carry one request each, bounded by the
    largest context window and the largest `max_tokens` a listing may allow; an instance-hours
    event counts at most the hour it stands for."""

    requests: int = Field(default=128, ge=1, le=MAX_COUNT, description="Requests per event.")
    input_tokens: int = Field(
        default=10_000_000, ge=1, le=MAX_COUNT, description="Input tokens per call."
    )
    output_tokens: int = Field(
        default=1_000_000, ge=1, le=MAX_COUNT, description="Output tokens per call."
    )
    instance_seconds: int = Field(
        default=3600, ge=1, le=MAX_COUNT, description="Instance seconds per hour-event."
    )


class RoyaltyPolicy(Document):
    """`royalties/policy.yaml`: the platform's terms, versioned like everything else."""

    version: int = Field(ge=1, description="Raised with every change of the terms.")
    rounding: Literal["half-even", "half-up"] = Field(
        description="How each statement line's amount is rounded to the currency's minor unit."
    )
    hold_periods: int = Field(
        ge=0,
        le=24,
        description="Earnings are held this many periods before they may be paid (refunds and"
        " disputes come in meanwhile); 0 pays them at the close of the period they were earned.",
    )
    late_usage_months: int = Field(
        ge=0,
        le=24,
        description="Usage that arrives late is posted as an adjustment if it is at most this"
        " many months older than the period being closed; older usage is set aside, reported.",
    )
    clock_skew_minutes: int = Field(
        ge=0,
        le=1440,
        description="How far an event's time may be past the end of the day its file was"
        " written; beyond is a timestamp from the future, set aside.",
    )
    currencies: dict[CurrencyCode, CurrencyTerms] = Field(
        min_length=1, description="The currencies the platform pays out in, with their terms."
    )
    ceilings: UsageCeilings = Field(
        default_factory=UsageCeilings,
        description="Per-event quantities above what a gateway can produce: set aside, not paid.",
    )
    grace_after_zero_hours: int = Field(
        default=24,
        ge=0,
        le=720,
        description="How long an account whose prepaid balance is at or below zero keeps its"
        " deployments running (told meanwhile) before the farm stops them; a top-up that lifts"
        " the balance above zero ends it.",
    )


# --- the documents of a closed period: royalties/YYYY-MM/ ------------------------------------


class PolicyRef(Document):
    """The terms a document was computed with."""

    version: int
    commit: CommitId = Field(description="The last commit that changed royalties/policy.yaml.")


Metric = Literal["requests", "input_tokens", "output_tokens", "instance_seconds"]
LineKind = Literal["usage", "adjustment"]


class StatementLine(Document):
    """Usage of one listing version and one metric, priced once and rounded once."""

    kind: LineKind = Field(description="usage of this period, or late usage of an earlier one.")
    usage_period: Period
    listing: ListingId
    version: SemVer
    metric: Metric
    quantity: int = Field(ge=0)
    unit_price: Amount
    price_unit: Literal["request", "million tokens", "hour"]
    royalty_percent: Percent
    gross: Money = Field(description="quantity × unit price, rounded once to the minor unit.")
    creator: Money = Field(description="The creator's share (largest remainder).")
    platform: Money = Field(description="The platform's share: gross - creator.")


class CurrencyStatement(Document):
    currency: CurrencyCode
    lines: tuple[StatementLine, ...]
    gross: Money
    creator: Money
    platform: Money


class UnratedUsage(Document):
    """Usage that is not charged by usage: free listings, subscriptions (billed by the
    subscription, which usage statements do not model) and listings priced in a currency
    without a known minor unit."""

    kind: LineKind
    usage_period: Period
    listing: ListingId
    version: SemVer
    pricing: Literal["free", "subscription", "unsupported-currency"]
    events: int = Field(ge=0)
    requests: int = Field(ge=0)
    instance_seconds: int = Field(ge=0)


class HeldAmount(Document):
    period: Period = Field(description="The period whose earnings these are.")
    amount: Money


class PayoutLine(Document):
    """A publisher's balance in one currency at the close of a period, and what is paid."""

    publisher: PublisherName
    currency: CurrencyCode
    opening_balance: Money = Field(description="Owed at the close of the previous period.")
    earned: Money = Field(description="The creator's share posted this period.")
    held: tuple[HeldAmount, ...] = Field(description="Earnings still in their hold period.")
    due: Money = Field(description="Balance less what is held.")
    paid: Money = Field(description="Sent to the publisher (due less the payout fee).")
    fee: Money
    closing_balance: Money = Field(description="Carried to the next period.")
    status: Literal[
        "paid",
        "below-threshold",
        "nothing-due",
        "negative-balance",
        "no-payout-method",
        "no-terms-for-currency",
    ]
    method: str | None = None
    reference: str | None = None


class Payouts(Document):
    format: Literal["formarket.royalty-payouts/1"] = "formarket.royalty-payouts/1"
    period: Period
    policy: PolicyRef
    lines: tuple[PayoutLine, ...]


class LedgerEntry(Document):
    """Debits are positive, credits negative; a transaction's entries sum to zero."""

    account: str = Field(pattern=r"^[a-z]+(:[a-z0-9._/@-]+)*$")
    amount: Money


class LedgerTransaction(Document):
    id: str
    period: Period
    kind: Literal["usage", "adjustment", "payout"]
    currency: CurrencyCode
    entries: tuple[LedgerEntry, ...] = Field(min_length=2)

    @model_validator(mode="after")
    def _balanced(self) -> LedgerTransaction:
        if sum((e.amount for e in self.entries), Decimal(0)) != 0:
            raise ValueError(f"transaction {self.id} does not balance")
        return self


class Statement(Document):
    """What one publisher earned in a period, line by line, and what it is paid."""

    format: Literal["formarket.royalty-statement/1"] = "formarket.royalty-statement/1"
    period: Period
    publisher: PublisherName
    usage_commit: CommitId
    policy: PolicyRef
    currencies: tuple[CurrencyStatement, ...]
    unrated: tuple[UnratedUsage, ...]
    payouts: tuple[PayoutLine, ...]


class SetAside(Document):
    """Usage that was not counted, and why: the line stays in git, untouched."""

    code: str = Field(pattern=r"^USG[0-9]{3}$")
    file: str
    line: int = Field(ge=0, description="1-based; 0 for the whole file.")
    message: str


class UsageConflict(Document):
    """One event id seen with different contents: the first committed copy counts (first-parent
    commit order, then path, then line), so a later copy never changes an earlier result."""

    source: str
    id: str
    counted: str = Field(description="`<file>:<line>` of the copy that counts.")
    ignored: tuple[str, ...]
    contents: dict[str, str] = Field(
        default_factory=dict,
        description="`<file>:<line>` -> the canonical JSON of that copy, for every copy named.",
    )


class PreviousClose(Document):
    period: Period
    usage_commit: CommitId


class CurrencyTotals(Document):
    currency: CurrencyCode
    gross: Money
    creator: Money
    platform: Money
    adjustments: Money = Field(description="Of the gross, what late usage added.")
    paid: Money
    fees: Money


class SummaryCounts(Document):
    files: int
    lines: int
    events: int = Field(description="Valid events read (every copy).")
    duplicates: int = Field(description="Copies of an event already counted.")
    conflicts: int = Field(description="Event ids seen with different contents.")
    set_aside: int
    not_charged: int = Field(description="Calls that failed or were rejected.")
    counted: int = Field(description="Events of this period counted now.")
    adjustments: int = Field(description="Late events of earlier periods counted now.")
    counted_before: int = Field(description="Events already counted by an earlier close.")
    later: int = Field(description="Events of later periods, left for their close.")


class Summary(Document):
    """The inputs, figures and integrity of a closed period."""

    format: Literal["formarket.royalty-summary/1"] = "formarket.royalty-summary/1"
    period: Period
    usage_commit: CommitId = Field(description="The commit whose usage and listings were read.")
    previous_close: PreviousClose | None
    policy: PolicyRef
    counts: SummaryCounts
    totals: tuple[CurrencyTotals, ...]
    conflicts: tuple[UsageConflict, ...]
    set_aside: tuple[SetAside, ...]
    files: dict[str, str] = Field(description="Every other file of the period: its SHA-256.")
