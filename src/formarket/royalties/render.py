"""The readable side of a closed period: Markdown for a statement and for the summary.

The JSON documents are the record; these pages say the same for people, and how to check it.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal

from pydantic import BaseModel

from formarket.schemas.usage import PayoutLine, Payouts, Statement, Summary, money_text

__all__ = ["dump_json", "render_statement", "render_summary"]


def dump_json(model: BaseModel) -> bytes:
    """A document's bytes: indented JSON in the models' field order, UTF-8, final newline."""
    return (json.dumps(model.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n").encode()


_METRICS = {
    "requests": "requests",
    "input_tokens": "input tokens",
    "output_tokens": "output tokens",
    "instance_seconds": "instance hours",
}
_STATUS = {
    "paid": "paid",
    "below-threshold": "carried: below the payout threshold",
    "nothing-due": "nothing due yet (held)",
    "negative-balance": "carried: negative balance",
    "no-payout-method": "carried: no payout method on file",
    "no-terms-for-currency": "carried: the policy has no terms for this currency",
}
_SHOWN = 50


def _n(value: int) -> str:
    return f"{value:,}"


def _money(value: Decimal) -> str:
    return money_text(value)


def _quantity(metric: str, quantity: int) -> str:
    if metric == "instance_seconds":
        hours, seconds = divmod(quantity, 3600)
        return f"{_n(hours)} h {seconds // 60:02d} min" if seconds else f"{_n(hours)} h"
    return _n(quantity)


def _percent(value: Decimal) -> str:
    return f"{money_text(value)}%"


def _balances(lines: tuple[PayoutLine, ...], with_publisher: bool) -> list[str]:
    head = "| publisher " if with_publisher else ""
    out = [
        f"{head}| currency | opening | earned | held | due | paid | fee | carried forward"
        " | status |",
        ("|---" if with_publisher else "") + "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in lines:
        held = sum((h.amount for h in p.held), Decimal(0))
        cell = f"| {p.publisher} " if with_publisher else ""
        out.append(
            f"{cell}| {p.currency} | {_money(p.opening_balance)} | {_money(p.earned)}"
            f" | {_money(held)} | {_money(p.due)} | {_money(p.paid)} | {_money(p.fee)}"
            f" | {_money(p.closing_balance)} | {_STATUS[p.status]} |"
        )
    return out


def render_statement(statement: Statement) -> str:
    s = statement
    out = [
        f"# Royalty statement: {s.publisher}, {s.period}",
        "",
        f"Usage committed up to `{s.usage_commit[:12]}`, priced with each listing version's"
        f" terms; platform terms version {s.policy.version} (`royalties/policy.yaml` at"
        f" `{s.policy.commit[:12]}`). Adjustments are usage of earlier periods that arrived"
        " after they closed.",
    ]
    for block in s.currencies:
        out += [
            "",
            f"## {block.currency}",
            "",
            "| | period | listing | version | metric | quantity | unit price | gross | your share"
            " | you get | platform |",
            "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for line in block.lines:
            out.append(
                f"| {line.kind} | {line.usage_period} | {line.listing} | {line.version}"
                f" | {_METRICS[line.metric]} | {_quantity(line.metric, line.quantity)}"
                f" | {money_text(line.unit_price)} / {line.price_unit} | {_money(line.gross)}"
                f" | {_percent(line.royalty_percent)} | {_money(line.creator)}"
                f" | {_money(line.platform)} |"
            )
        out.append(
            f"| **total** | | | | | | | **{_money(block.gross)}** | | **{_money(block.creator)}**"
            f" | **{_money(block.platform)}** |"
        )
    if s.payouts:
        out += ["", "## Balance and payout", "", *_balances(s.payouts, False)]
    if s.unrated:
        out += [
            "",
            "## Usage not charged by usage",
            "",
            "Free listings; subscriptions, which are billed by the subscription and not from"
            " usage; listings priced in a currency formarket cannot round.",
            "",
            "| | period | listing | version | pricing | events | requests | instance hours |",
            "|---|---|---|---|---|---:|---:|---:|",
        ]
        for u in s.unrated:
            out.append(
                f"| {u.kind} | {u.usage_period} | {u.listing} | {u.version} | {u.pricing}"
                f" | {_n(u.events)} | {_n(u.requests)}"
                f" | {_quantity('instance_seconds', u.instance_seconds)} |"
            )
    out += [
        "",
        "Check it yourself: `formarket royalties verify --period"
        f" {s.period}` recomputes this statement from the repository and compares it byte for"
        " byte.",
        "",
    ]
    return "\n".join(out)


def render_summary(summary: Summary, payouts: Payouts) -> str:
    s = summary
    c = s.counts
    previous = (
        f"the previous close is {s.previous_close.period} (usage up to"
        f" `{s.previous_close.usage_commit[:12]}`)"
        if s.previous_close
        else "there is no earlier close"
    )
    out = [
        f"# Royalties {s.period}",
        "",
        f"Closed from the usage and listings committed up to `{s.usage_commit[:12]}`; {previous};"
        f" platform terms version {s.policy.version} (`royalties/policy.yaml` at"
        f" `{s.policy.commit[:12]}`).",
        "",
        "## Totals",
        "",
        "| currency | gross | to creators | platform | of which late usage | paid out"
        " | payout fees |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in s.totals:
        out.append(
            f"| {t.currency} | {_money(t.gross)} | {_money(t.creator)} | {_money(t.platform)}"
            f" | {_money(t.adjustments)} | {_money(t.paid)} | {_money(t.fees)} |"
        )
    if payouts.lines:
        out += ["", "## Publishers", "", *_balances(payouts.lines, True)]
    out += [
        "",
        "## Usage read",
        "",
        f"- {_n(c.files)} usage files, {_n(c.lines)} lines, {_n(c.events)} valid events",
        f"- {_n(c.counted)} events of {s.period} counted ({_n(c.not_charged)} of them failed or"
        " rejected calls, not charged)",
        f"- {_n(c.adjustments)} late events of earlier periods counted as adjustments",
        f"- {_n(c.duplicates)} duplicate copies ignored, {_n(c.conflicts)} of the ids with"
        " conflicting contents",
        f"- {_n(c.set_aside)} lines or files set aside",
        f"- {_n(c.counted_before)} events already counted by earlier closes,"
        f" {_n(c.later)} events of later periods left for their close",
    ]
    if s.conflicts:
        out += [
            "",
            "## Conflicting duplicates",
            "",
            "The same event id with different contents: the first committed copy counts"
            " (first-parent commit order, then path, then line); summary.json holds the"
            " contents of every copy.",
            "",
        ]
        for conflict in s.conflicts[:_SHOWN]:
            out.append(
                f"- `{conflict.source}` `{conflict.id}`: counted {conflict.counted}; ignored"
                f" {', '.join(conflict.ignored)}"
            )
        if len(s.conflicts) > _SHOWN:
            out.append(f"- ... {len(s.conflicts) - _SHOWN} more in summary.json")
    if s.set_aside:
        codes = Counter(item.code for item in s.set_aside)
        out += [
            "",
            "## Set aside",
            "",
            "Not counted, and still in git as they were: "
            + ", ".join(f"{code} × {count}" for code, count in sorted(codes.items()))
            + ".",
            "",
        ]
        for item in s.set_aside[:_SHOWN]:
            where = f"{item.file}:{item.line}" if item.line else item.file
            out.append(f"- {where}: {item.code} {item.message}")
        if len(s.set_aside) > _SHOWN:
            out.append(f"- ... {len(s.set_aside) - _SHOWN} more in summary.json")
    out += [
        "",
        "## Check it",
        "",
        f"`formarket royalties verify --period {s.period}` recomputes every file of this"
        " folder from the repository and compares them byte for byte. summary.json holds the"
        " SHA-256 of each.",
        "",
    ]
    return "\n".join(out)
