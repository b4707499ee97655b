"""Usage as the dashboard and `GET /v1/usage` show it: an account's own calls by day and by
deployment, and a creator's listings by day and by version. Both are read from the committed
usage files through formarket.usage's one reading pipeline, with a reading's rules: what a
royalty close would set aside is left out, and each (source, id) counts once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Set
from datetime import UTC, date, datetime, time

from dulwich.repo import BaseRepo

from formarket.market.layout import POLICY
from formarket.market.refs import find_tip
from formarket.market.trees import commit_tree, read_blob, read_path
from formarket.usage.committed import usage_files
from formarket.usage.reader import reading_spec, scan_file
from formarket.usage.wire import WireEvent

__all__ = ["account_usage", "committed_events", "listing_usage", "summarize_account"]

_COUNTS = ("calls", "failed", "input_tokens", "output_tokens", "seconds")
Row = dict[str, int]


def _row() -> Row:
    return dict.fromkeys(_COUNTS, 0)


def _add(row: Row, event: WireEvent) -> None:
    data = event.data
    if data.outcome == "ok":
        row["calls"] += data.requests
        row["input_tokens"] += data.input_tokens
        row["output_tokens"] += data.output_tokens
        row["seconds"] += data.instance_seconds
    else:
        row["failed"] += data.requests


def _day(event: WireEvent) -> str:
    return event.time.astimezone(UTC).date().isoformat()


def summarize_account(
    events: Iterable[WireEvent],
    names: Set[str],
    seen: set[tuple[str, str]],
    since: datetime | None,
) -> dict[tuple[str, str], Row]:
    """(day, deployment) -> counts of the events of the account git calls by one of `names`
    (its pseudonym, and its login in events committed before pseudonyms); pure, `seen` is
    (source, id)."""
    rows: dict[tuple[str, str], Row] = defaultdict(_row)
    for event in events:
        if event.data.account not in names or (since is not None and event.time < since):
            continue
        key = (event.source, event.id)
        if key in seen:
            continue
        seen.add(key)
        _add(rows[(_day(event), event.subject)], event)
    return rows


def committed_events(repo: BaseRepo, branch: str, since: date | None) -> Iterator[WireEvent]:
    """Every event of `branch`'s usage files from `since` on that a reading accepts, each
    (source, id) once (the copy in the first file by path)."""
    tip = find_tip(repo, branch)
    if tip is None:
        return
    tree = commit_tree(repo, tip)
    files, _bad = usage_files(repo, tree, since or date(1, 1, 1))
    spec = reading_spec(read_path(repo, tree, POLICY))
    moment = datetime.combine(since, time(), UTC) if since else None
    seen: set[tuple[str, str]] = set()
    for index, path in enumerate(sorted(files)):
        file, blob = files[path]
        scan = scan_file(index, file, read_blob(repo, blob), False, spec, keep=True)
        for event in scan.accepted:
            key = (event.source, event.id)
            if key in seen or (moment is not None and event.time < moment):
                continue
            seen.add(key)
            yield event


def account_usage(
    repo: BaseRepo, branch: str, names: Set[str], since: date | None
) -> list[dict[str, object]]:
    """The calls of the account git names by one of `names` (`Pseudonyms.names` of its
    login), by day and deployment, oldest first."""
    total = summarize_account(committed_events(repo, branch, since), names, set(), None)
    return [
        {"day": day, "deployment": deployment, **total[(day, deployment)]}
        for day, deployment in sorted(total)
    ]


def listing_usage(
    repo: BaseRepo, branch: str, publishers: frozenset[str], since: date | None
) -> list[dict[str, object]]:
    """The calls of the listings of `publishers` by day, listing and version, oldest first,
    credited as a royalty close credits them: an agent's event to the agent alone, since the
    agent's calls to its model are events of their own, the model's."""
    rows: dict[tuple[str, str, str], Row] = defaultdict(_row)
    for event in committed_events(repo, branch, since):
        ref = event.data.agent if event.data.agent is not None else event.data.model
        if ref is not None and ref.id.split("/", 1)[0] in publishers:
            _add(rows[(_day(event), ref.id, ref.version)], event)
    return [
        {"day": day, "listing": listing, "version": version, **rows[(day, listing, version)]}
        for day, listing, version in sorted(rows)
    ]
