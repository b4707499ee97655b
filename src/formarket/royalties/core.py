"""The pure pipeline in one call: usage files (or events) and terms in, a closed period out.

    close_files(files, context)      usage files by path -> Closing
    close_events(events, context)    UsageEvent models -> Closing (written as files first)

The git driver (`engine`) reads the same inputs from a commit and scans on every core; these
run in this process, on bytes, and are what the tests and anyone auditing a close can call.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping
from datetime import timedelta

from formarket.royalties.close import CloseContext, Closing, close_period
from formarket.royalties.pricebook import PriceBook
from formarket.usage.reader import (
    Rules,
    ScanSpec,
    month_index,
    parse_usage_path,
    scan_file,
    usage_path,
)
from formarket.royalties.tally import ScanFile, fetch_serially, tally
from formarket.schemas.usage import RoyaltyPolicy, SetAside, UsageEvent

__all__ = ["close_events", "close_files", "rules_for", "usage_files_of"]


def rules_for(period: str, policy: RoyaltyPolicy, book: PriceBook, at: str | None = None) -> Rules:
    """What the close of `period` accepts, under `policy`, with the versions published as of
    commit `at` of the book's history (default: its tip)."""
    known = book.known(at)
    return Rules(
        month_index(period),
        month_index(period) - policy.late_usage_months,
        known,
        timedelta(minutes=policy.clock_skew_minutes),
        frozenset(listing for listing, _ in known),
    )


def close_files(
    files: Mapping[str, bytes],
    context: CloseContext,
    *,
    old: Mapping[str, bytes] | None = None,
    old_rules: Rules | None = None,
) -> Closing:
    """Close `context.period` over usage files (path -> gzip bytes). `old` are the files the
    previous close read, judged by `old_rules` (its rules)."""
    spec = ScanSpec(rules_for(context.period, context.policy, context.book), old_rules)
    items: list[tuple[ScanFile, bytes]] = []
    extra: list[SetAside] = []
    for is_old, group in ((True, old or {}), (False, files)):
        for path, data in sorted(group.items()):
            parsed = parse_usage_path(path)
            if parsed is None:
                if not is_old:
                    extra.append(
                        SetAside(code="USG014", file=path, line=0, message="not a usage file")
                    )
                continue
            if not is_old and old and path in old:
                if old[path] == data:
                    continue
                extra.append(
                    SetAside(
                        code="USG015",
                        file=path,
                        line=0,
                        message="rewritten after the previous close",
                    )
                )
            items.append((ScanFile(parsed, is_old), data))
    scans = [scan_file(i, f.file, data, f.old, spec) for i, (f, data) in enumerate(items)]
    fetch = fetch_serially(lambda i: items[i][1])
    result = tally([f for f, _ in items], scans, fetch, spec, extra)
    return close_period(result, context)


def usage_files_of(events: Iterable[UsageEvent]) -> dict[str, bytes]:
    """Events as the collectors write them: one file per source and day, in the given order."""
    grouped: dict[str, list[bytes]] = {}
    for event in events:
        path = usage_path(event.time.date(), event.source, 1)
        grouped.setdefault(path, []).append(event.model_dump_json().encode())
    return {
        path: gzip.compress(b"\n".join(lines) + b"\n", mtime=0) for path, lines in grouped.items()
    }


def close_events(events: Iterable[UsageEvent], context: CloseContext) -> Closing:
    """`close_period` over usage events: the pure function of (events, price book, policy)."""
    return close_files(usage_files_of(events), context)
