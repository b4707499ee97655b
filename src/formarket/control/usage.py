"""An account's own usage by day and by deployment, read from the committed usage files
through formarket.usage's one reading pipeline (what a royalty close would count)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time

from dulwich.repo import BaseRepo

from formarket.market.layout import POLICY
from formarket.market.refs import find_tip
from formarket.market.trees import commit_tree, read_blob, read_path
from formarket.usage.committed import usage_files
from formarket.usage.reader import reading_spec, scan_file
from formarket.usage.wire import WireEvent

__all__ = ["account_usage", "summarize_account"]


def summarize_account(
    events: Iterable[WireEvent], account: str, seen: set[tuple[str, str]], since: datetime | None
) -> dict[tuple[str, str], dict[str, int]]:
    """(day, deployment) -> counts of `account`'s events (pure; `seen` is (source, id))."""
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"calls": 0, "failed": 0, "input_tokens": 0, "output_tokens": 0, "seconds": 0}
    )
    for event in events:
        data = event.data
        if data.account != account or (since is not None and event.time < since):
            continue
        key = (event.source, event.id)
        if key in seen:
            continue
        seen.add(key)
        row = rows[(event.time.astimezone(UTC).date().isoformat(), event.subject)]
        if data.outcome == "ok":
            row["calls"] += data.requests
            row["input_tokens"] += data.input_tokens
            row["output_tokens"] += data.output_tokens
            row["seconds"] += data.instance_seconds
        else:
            row["failed"] += data.requests
    return rows


def account_usage(
    repo: BaseRepo, branch: str, account: str, since: date | None
) -> list[dict[str, object]]:
    tip = find_tip(repo, branch)
    if tip is None:
        return []
    tree = commit_tree(repo, tip)
    files, _bad = usage_files(repo, tree, since or date(1, 1, 1))
    spec = reading_spec(read_path(repo, tree, POLICY))
    moment = datetime.combine(since, time(), UTC) if since else None
    seen: set[tuple[str, str]] = set()
    total: dict[tuple[str, str], dict[str, int]] = {}
    for index, path in enumerate(sorted(files)):
        file, blob = files[path]
        scan = scan_file(index, file, read_blob(repo, blob), False, spec, keep=True)
        for key, row in summarize_account(scan.accepted, account, seen, moment).items():
            into = total.setdefault(key, dict.fromkeys(row, 0))
            for name, value in row.items():
                into[name] += value
    return [
        {"day": day, "deployment": deployment, **total[(day, deployment)]}
        for day, deployment in sorted(total)
    ]
