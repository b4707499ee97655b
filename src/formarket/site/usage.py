"""Usage per listing and month, and earnings per publisher and period, for the charts.

Usage files (`registry/usage/YYYY/MM/DD/<source>-<seq>.jsonl.gz`) are read through the one
reader of usage (`formarket.usage.reader`), with the checks of a royalty close: a line a close
would set aside, or a file it would not read, is not charted. Files are append-only: a file,
once committed, never changes. So each file is read once and its monthly totals kept in the
build's state; a later build reads only new files. A call counts as a royalty close credits
it: an agent's call for the agent alone, since the agent's own calls to its model are metered
as events of their own, the model's (an agent that answers without its model credits the model
nothing); only calls whose outcome is `ok` count, as only those are charged. These
are the figures as metered: the royalty close removes duplicate events, so statements, not
these charts, are the figures that are paid.

Earnings come from the statements of closed periods (`royalties/YYYY-MM/`, documents of format
`formarket.royalty-statement/1`): the creator's share per currency.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from formarket.site.catalog import Earning, MonthUsage
from formarket.usage.files import month_text, parse_usage_path
from formarket.usage.reader import FileScan, ScanSpec, scan_file

__all__ = [
    "STATEMENT_FORMAT",
    "UsageTotals",
    "earnings_from_statements",
    "file_scan",
    "file_totals",
    "merge_totals",
]

STATEMENT_FORMAT = "formarket.royalty-statement/1"

# listing id -> month -> [requests, input tokens, output tokens, instance seconds]
UsageTotals = dict[str, dict[str, list[int]]]


def file_scan(path: str, raw: bytes, spec: ScanSpec) -> FileScan | None:
    """One usage file read as a royalty close reads it, with `spec`'s rules; None when its
    path is not a usage file's (a close sets such a file aside whole)."""
    file = parse_usage_path(path)
    if file is None:
        return None
    return scan_file(0, file, raw, False, spec)


def file_totals(path: str, raw: bytes, spec: ScanSpec) -> UsageTotals:
    """The monthly totals of one usage file; what a close sets aside counts for nothing
    (the close reports it; the charts only leave it out)."""
    scan = file_scan(path, raw, spec)
    totals: UsageTotals = {}
    if scan is None:
        return totals
    for (_, month, _, agent, model, ok, _), sums in scan.totals.named().items():
        if not ok:
            continue
        text = month_text(month)
        ref = agent if agent is not None else model
        if ref is not None:
            row = totals.setdefault(ref[0], {}).setdefault(text, [0, 0, 0, 0])
            for i in range(4):
                row[i] += sums[i + 1]
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
