"""Instance-hours: the farm meters how long each deployment runs, as usage events of its own.

Every reconcile cycle, each deployment libvirt reports running is metered from where the
last cycle left it to now, cut at UTC hours (`usage.events.instance_hours`). The events go
to the usage spool that `formarket usage flush` commits. The clock of each deployment is
saved only after its events are in the spool: a crash in between reports that interval again,
with the same event ids (they are a function of the interval), which royalties count once.
A deployment is metered from the first cycle that sees it running, or from when it was woken
(scale to zero) when that is on record; one stopped for idleness is metered up to its stop and
not after, until it is woken.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from formarket.atomicfile import write_atomically
from formarket.farm.statefile import load_mapping
from formarket.usage.events import Served, instance_hours
from formarket.usage.spool import write_events

__all__ = ["meter_running"]


def _save(path: Path, clocks: Mapping[str, int]) -> None:
    write_atomically(path, json.dumps(dict(sorted(clocks.items()))).encode())


def meter_running(
    clock_file: Path,
    spool: Path,
    source: str,
    running: Mapping[str, Served],
    now: datetime | None = None,
    *,
    started: Mapping[str, datetime] | None = None,
    ended: Mapping[str, tuple[Served, datetime]] | None = None,
    bill: Callable[[list[bytes]], None] | None = None,
) -> int:
    """Meter every running deployment up to `now`; how many events went to the spool.
    `started`: when deployments were woken, where a deployment without a clock starts from;
    `ended`: deployments stopped for idleness since the last cycle, metered up to their stop
    and then forgotten; `bill`: given the events once they are in the spool, before the
    clocks move on (formarket.farm.billing records them as charges)."""
    at = int((now or datetime.now(UTC)).timestamp())
    clocks = load_mapping(clock_file, int)
    woken = {k: int(v.timestamp()) for k, v in (started or {}).items()}
    spans: list[tuple[str, Served, int]] = [(d, s, at) for d, s in running.items()]
    spans += [(d, s, int(t.timestamp())) for d, (s, t) in (ended or {}).items()]
    events: list[bytes] = []
    kept: dict[str, int] = {}
    for dep_id, served, end in sorted(spans, key=lambda span: span[0]):
        since = clocks.get(dep_id, woken.get(dep_id))
        if since is not None and since < end:
            events += instance_hours(
                source=source,
                served=served,
                start=datetime.fromtimestamp(since, UTC),
                end=datetime.fromtimestamp(end, UTC),
            )
        if dep_id in running:
            kept[dep_id] = max(end, since or end)
    if events:
        write_events(spool, events)
        if bill is not None:
            bill(events)
    _save(clock_file, kept)
    return len(events)
