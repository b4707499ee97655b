"""`formarket usage show`: the usage committed to git, summed per listing version.

Read from git objects at a branch's tip (nothing is checked out), through the one reader of
usage (`formarket.usage.reader`), so what this shows is what a royalty close would read: a
line a close would set aside is counted as set aside. Each event counts once per
(source, id), as in a close; copies are counted and shown, so that exactly-once can be seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

from dulwich.repo import BaseRepo

from formarket.market.layout import POLICY
from formarket.market.refs import branch_tip
from formarket.market.trees import commit_tree, read_blob, read_path
from formarket.usage.committed import usage_files
from formarket.usage.reader import reading_spec, scan_file
from formarket.usage.wire import WireEvent

__all__ = ["UsageRow", "UsageSummary", "render_text", "summarize", "usage_summary"]


@dataclass(slots=True)
class UsageRow:
    """One listing version's usage; `calls` and the token counts are of calls that were
    served (outcome ok), `failed` those that were not."""

    listing: str
    version: str
    role: str  # "agent" or "model"
    calls: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    instance_seconds: int = 0


@dataclass(slots=True)
class UsageSummary:
    commit: str
    since: str | None
    listing: str | None
    files: int = 0
    events: int = 0
    duplicates: int = 0
    set_aside: int = 0
    measured: int = 0  # calls billed on the gateway's own token counts
    rows: dict[tuple[str, str, str], UsageRow] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "commit": self.commit,
            "since": self.since,
            "listing": self.listing,
            "files": self.files,
            "events": self.events,
            "duplicates": self.duplicates,
            "set_aside": self.set_aside,
            "measured_calls": self.measured,
            "rows": [
                {
                    "listing": r.listing,
                    "version": r.version,
                    "role": r.role,
                    "calls": r.calls,
                    "failed_calls": r.failed,
                    "input_tokens": r.input_tokens,
                    "output_tokens": r.output_tokens,
                    "instance_seconds": r.instance_seconds,
                }
                for r in self.sorted_rows()
            ],
        }

    def sorted_rows(self) -> list[UsageRow]:
        return [self.rows[k] for k in sorted(self.rows)]


def summarize(
    summary: UsageSummary,
    events: Iterable[WireEvent],
    seen: set[tuple[str, str]],
    since: datetime | None,
) -> None:
    """Add events to the summary (pure: `seen` holds the (source, id) already counted)."""
    for event in events:
        if since is not None and event.time < since:
            continue
        refs = [("agent", event.data.agent), ("model", event.data.model)]
        if summary.listing is not None and not any(
            ref is not None and ref.id == summary.listing for _, ref in refs
        ):
            continue
        key = (event.source, event.id)
        if key in seen:
            summary.duplicates += 1
            continue
        seen.add(key)
        summary.events += 1
        data = event.data
        # Counted by the gateway: its estimate (`measured` in older events) or a tokenizer.
        if data.tokens_source != "upstream" and data.requests:
            summary.measured += 1
        for role, ref in refs:
            if ref is None or (summary.listing is not None and ref.id != summary.listing):
                continue
            row = summary.rows.get((ref.id, ref.version, role))
            if row is None:
                row = summary.rows[(ref.id, ref.version, role)] = UsageRow(
                    ref.id, ref.version, role
                )
            if data.outcome == "ok":
                row.calls += data.requests
                row.input_tokens += data.input_tokens
                row.output_tokens += data.output_tokens
                row.instance_seconds += data.instance_seconds
            else:
                row.failed += data.requests


def usage_summary(
    repo: BaseRepo,
    *,
    branch: str = "main",
    since: date | None = None,
    listing: str | None = None,
) -> UsageSummary:
    tip = branch_tip(repo, branch)
    tree = commit_tree(repo, tip)
    summary = UsageSummary(tip.decode(), since.isoformat() if since else None, listing)
    # A file is written on or after the days of its events: older folders hold nothing newer.
    files, bad = usage_files(repo, tree, since or date(1, 1, 1))
    summary.set_aside += len(bad)
    moment = datetime.combine(since, time(), UTC) if since else None
    spec = reading_spec(read_path(repo, tree, POLICY))
    seen: set[tuple[str, str]] = set()
    for index, path in enumerate(sorted(files)):
        file, blob = files[path]
        scan = scan_file(index, file, read_blob(repo, blob), False, spec, keep=True)
        summary.files += 1
        summary.set_aside += len(scan.set_aside)
        summarize(summary, scan.accepted, seen, moment)
    return summary


def render_text(summary: UsageSummary) -> str:
    head = (
        f"usage at {summary.commit[:12]}"
        + (f" since {summary.since}" if summary.since else "")
        + (f" of {summary.listing}" if summary.listing else "")
        + f": {summary.events:,} events in {summary.files:,} files"
        + f" ({summary.duplicates:,} duplicate copies, {summary.set_aside:,} lines set aside,"
        + f" {summary.measured:,} calls on measured token counts)"
    )
    rows = summary.sorted_rows()
    if not rows:
        return head + "\nno usage"
    table = [("listing", "version", "as", "calls", "failed", "input tok", "output tok", "hours")]
    for r in rows:
        table.append(
            (
                r.listing,
                r.version,
                r.role,
                f"{r.calls:,}",
                f"{r.failed:,}",
                f"{r.input_tokens:,}",
                f"{r.output_tokens:,}",
                f"{r.instance_seconds / 3600:,.2f}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(
            cell.ljust(widths[i]) if i < 3 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in table
    ]
    return head + "\n" + "\n".join(lines)
