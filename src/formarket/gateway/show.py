"""`formarket usage show`: the usage committed to git, summed per listing version.

Read from git objects at a branch's tip (nothing is checked out), through the one reading
pipeline of usage (`formarket.usage.scanner`), so what this shows is what a royalty close
would read: a line a close would set aside is counted as set aside. Each event counts once per
(source, id), its first copy in path and line order; the other copies are counted and shown,
so that exactly-once can be seen. Each file is read once and kept in the cache with the
figures of the whole list of files, so showing the same usage again reads no usage file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from dulwich.repo import BaseRepo, Repo

from formarket.market.layout import POLICY
from formarket.market.refs import branch_tip
from formarket.market.trees import commit_tree, read_path
from formarket.registry.cache import default_cache_dir
from formarket.registry.cachekey import cache_key
from formarket.usage.committed import usage_files
from formarket.usage.partials import digest_seed, store_for, trim
from formarket.usage.reader import reading_spec, totals_of
from formarket.usage.scan import FileScan, ScanFile, ScanSpec, TotalsKey
from formarket.usage.scanner import Scanner, repeated_lines
from formarket.usage.totals import Totals, merge
from formarket.usage.wire import WireEvent

Fetch = Callable[[Mapping[int, set[int]]], Iterable[tuple[int, int, WireEvent]]]

__all__ = ["UsageRow", "UsageSummary", "render_text", "shown_usage", "usage_summary"]


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


# (day as a date's ordinal, agent, model, outcome is ok) -> events, requests, input tokens,
# output tokens, instance seconds, calls on the gateway's own counts, duplicate copies
Shown = dict[tuple[int, tuple[str, str] | None, tuple[str, str] | None, bool], list[int]]


def shown_usage(
    files: Sequence[ScanFile],
    scans: Sequence[FileScan],
    fetch: Fetch,
    spec: ScanSpec,
) -> Shown:
    """The usage of `scans` per day and listing versions, each event counted once: its
    first copy (in path order, then line order) counts, the others are counted as duplicate
    copies of it. Only the events whose key digest repeats are read again (`fetch`)."""
    parts = [scan.totals for scan in scans]
    wanted, _ = repeated_lines(scans)
    groups: dict[tuple[str, str], list[tuple[int, int, WireEvent]]] = {}
    for index, number, event in fetch(wanted):
        groups.setdefault((event.source, event.id), []).append((index, number, event))
    # By file, at once: the copies that do not count (taken back), and the copy that does,
    # once for each other copy of it (the events it sums to are its duplicate copies).
    taken_back: dict[int, list[tuple[int, WireEvent]]] = defaultdict(list)
    repeats: dict[int, list[tuple[int, WireEvent]]] = defaultdict(list)
    for group in groups.values():
        if len(group) < 2:
            continue  # another key with the same digest
        group.sort(key=lambda c: (c[0], c[1]))
        (index, number, event), *others = group
        repeats[index].extend([(number, event)] * len(others))
        for other_index, other_number, other in others:
            taken_back[other_index].append((other_number, other))
    for index, copies_here in sorted(taken_back.items()):
        parts.append(_totals(files, index, copies_here, spec).negated())
    copies: dict[TotalsKey, int] = {}
    for index, kept in sorted(repeats.items()):
        for key, sums in _totals(files, index, kept, spec).named().items():
            copies[key] = copies.get(key, 0) + sums[0]
    out: Shown = {}
    for key, sums in merge(parts).named().items():
        _, _, day, agent, model, ok, _ = key
        if not sums[0] and key not in copies:
            continue
        out[(day, agent, model, ok)] = [*sums, copies.get(key, 0)]
    return out


def _totals(
    files: Sequence[ScanFile], index: int, events: list[tuple[int, WireEvent]], spec: ScanSpec
) -> Totals:
    numbers = [number for number, _ in events]
    return totals_of(index, files[index].file, [e for _, e in events], numbers, False, spec)


def _add_shown(summary: UsageSummary, shown: Shown, since: date | None) -> None:
    first = since.toordinal() if since is not None else 0
    listing = summary.listing
    for (day, agent, model, ok), sums in shown.items():
        if day < first:
            continue
        refs = (("agent", agent), ("model", model))
        if listing is not None and not any(r is not None and r[0] == listing for _, r in refs):
            continue
        events, requests, input_tokens, output_tokens, seconds, measured, copies = sums
        summary.events += events
        summary.duplicates += copies
        summary.measured += measured
        for role, ref in refs:
            if ref is None or (listing is not None and ref[0] != listing):
                continue
            row = summary.rows.get((ref[0], ref[1], role))
            if row is None:
                row = summary.rows[(ref[0], ref[1], role)] = UsageRow(ref[0], ref[1], role)
            if ok:
                row.calls += requests
                row.input_tokens += input_tokens
                row.output_tokens += output_tokens
                row.instance_seconds += seconds
            else:
                row.failed += requests


def usage_summary(
    repo: BaseRepo,
    *,
    branch: str = "main",
    since: date | None = None,
    listing: str | None = None,
    jobs: int | None = None,
    cache_dir: Path | None = None,
) -> UsageSummary:
    """The usage committed at the tip of `branch`, read through the one pipeline: each file
    read once per set of rules and kept in the cache (the repository's, or `cache_dir`),
    and the figures of the whole list of files kept there too."""
    tip = branch_tip(repo, branch)
    tree = commit_tree(repo, tip)
    summary = UsageSummary(tip.decode(), since.isoformat() if since else None, listing)
    # A file is written on or after the days of its events: older folders hold nothing newer.
    found, bad = usage_files(repo, tree, since or date(1, 1, 1))
    summary.set_aside += len(bad)
    if cache_dir is None and isinstance(repo, Repo):
        cache_dir = default_cache_dir(Path(repo.path))
    key = cache_key() if cache_dir is not None else None
    spec = reading_spec(read_path(repo, tree, POLICY), digest_seed(key))
    store = store_for(cache_dir, key, spec)
    paths = sorted(found)
    files = [ScanFile(found[path][0], False) for path in paths]
    blobs = [found[path][1] for path in paths]
    name = repr([(path, blob) for path, blob in zip(paths, blobs, strict=True)])
    # What was shown for these files and these --since and --listing: a second show of the
    # same usage reads one small entry.
    asked = f"{name}\0{tip.decode()}\0{since}\0{listing}"
    done = store.load(asked, "summary") if store is not None else None
    if isinstance(done, UsageSummary):
        return done
    kept = store.load(name, "shown") if store is not None else None
    if not (isinstance(kept, tuple) and len(kept) == 2):
        with Scanner(repo, files, blobs, spec, jobs=jobs, store=store) as scanner:
            scans = scanner.scan()
            kept = (
                sum(len(s.set_aside) for s in scans),
                shown_usage(files, scans, scanner.fetch, spec),
            )
        if store is not None:
            store.save(name, "shown", kept)
            trim(cache_dir)
    set_aside, shown = kept
    summary.files = len(paths)
    summary.set_aside += set_aside
    _add_shown(summary, shown, since)
    if store is not None:
        store.save(asked, "summary", summary)
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
