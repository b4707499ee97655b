"""Usage per listing and month, and earnings per publisher and period, for the charts.

Usage files (`registry/usage/YYYY/MM/DD/<source>-<seq>.jsonl.gz`, CloudEvents as defined by
`formarket.schemas.usage.UsageEvent`) are append-only: a file, once committed, never changes.
So each file is read once and its monthly totals kept in the build's state; a later build reads
only new files. A call counts for the agent and for the model that served it; only calls whose
outcome is `ok` count, as only those are charged. These are the figures as metered: the royalty
close removes duplicate events, so statements, not these charts, are the figures that are paid.

Earnings come from the statements of closed periods (`royalties/YYYY-MM/`, documents of format
`formarket.royalty-statement/1`): the creator's share per currency.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from formarket.site.catalog import Earning, MonthUsage

__all__ = [
    "STATEMENT_FORMAT",
    "UsageTotals",
    "earnings_from_statements",
    "file_totals",
    "merge_totals",
]

STATEMENT_FORMAT = "formarket.royalty-statement/1"
_MONTH = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])")
_MAX_BYTES = 512 << 20

# listing id -> month -> [requests, input tokens, output tokens, instance seconds]
UsageTotals = dict[str, dict[str, list[int]]]


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def file_totals(raw: bytes) -> UsageTotals:
    """The monthly totals of one usage file; lines that are not usage events are skipped
    (the royalty close reports them; the charts only leave them out)."""
    try:
        text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error):
        return {}
    if len(text) > _MAX_BYTES:
        return {}
    totals: UsageTotals = {}
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        data = event.get("data")
        moment = event.get("time")
        if not isinstance(data, dict) or not isinstance(moment, str) or not _MONTH.match(moment):
            continue
        if data.get("outcome") != "ok":
            continue
        month = moment[:7]
        counts = (
            _count(data.get("requests")),
            _count(data.get("input_tokens")),
            _count(data.get("output_tokens")),
            _count(data.get("instance_seconds")),
        )
        for role in ("agent", "model"):
            ref = data.get(role)
            if isinstance(ref, dict) and isinstance(ref.get("id"), str):
                row = totals.setdefault(ref["id"], {}).setdefault(month, [0, 0, 0, 0])
                for i, value in enumerate(counts):
                    row[i] += value
    return totals


def merge_totals(
    parts: Iterable[Mapping[str, Mapping[str, list[int]]]],
) -> dict[str, tuple[MonthUsage, ...]]:
    """Totals of many files as each listing's months, oldest first."""
    merged: UsageTotals = {}
    for part in parts:
        for listing, months in part.items():
            mine = merged.setdefault(listing, {})
            for month, counts in months.items():
                row = mine.setdefault(month, [0, 0, 0, 0])
                for i, value in enumerate(counts[:4]):
                    row[i] += int(value)
    return {
        listing: tuple(
            MonthUsage(
                month,
                requests=row[0],
                input_tokens=row[1],
                output_tokens=row[2],
                instance_hours=Decimal(row[3]) / 3600,
            )
            for month, row in sorted(months.items())
        )
        for listing, months in merged.items()
    }


def _amount(value: Any) -> Decimal | None:
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def earnings_from_statements(documents: Iterable[bytes]) -> dict[str, tuple[Earning, ...]]:
    """Each publisher's creator share per period and currency, from statement documents;
    other documents are ignored."""
    found: dict[tuple[str, str, str], Decimal] = {}
    for raw in documents:
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(doc, dict) or doc.get("format") != STATEMENT_FORMAT:
            continue
        publisher, period = doc.get("publisher"), doc.get("period")
        if not isinstance(publisher, str) or not isinstance(period, str):
            continue
        for block in doc.get("currencies") or ():
            if not isinstance(block, dict) or not isinstance(block.get("currency"), str):
                continue
            amount = _amount(block.get("creator"))
            if amount is not None:
                key = (publisher, period, block["currency"])
                found[key] = found.get(key, Decimal(0)) + amount
    out: dict[str, list[Earning]] = {}
    for (publisher, period, currency), amount in sorted(found.items()):
        out.setdefault(publisher, []).append(Earning(period, currency, amount))
    return {publisher: tuple(e) for publisher, e in out.items()}
