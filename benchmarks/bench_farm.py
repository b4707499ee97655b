"""Farm benchmark: a task's round trip, placement at scale, one reconcile cycle at scale.

`python -m benchmarks.bench_farm [--quick]` prints a Markdown section; `section(quick)` returns
it for the benchmark report. Each figure is measured side by side with its baseline in the same
process, alternating, so that other work on the machine falls on both:

1. `benchmarks.farm_queue`: `formarket.ping` through the farm's Celery app and a real worker on a
   private Redis, against a bare LPUSH/BRPOP echo through the same Redis.
2. `benchmarks.farm_placement`: `Placer` placing 10,000 requests on 500 hosts, against the
   best fit that scans every host for every request; both must decide the same.
3. `benchmarks.farm_reconcile`: `operations.reconcile_once` for 1,000 deployments on 50
   test-driver hosts, against the same cycle asking every host for every deployment by name.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

from benchmarks.farm_placement import placement
from benchmarks.farm_queue import round_trip
from benchmarks.farm_reconcile import reconcile_cycle

__all__ = ["section"]


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"


def _faster(ours: float, baseline: float) -> str:
    if ours <= 0:
        return "—"
    ratio = baseline / ours
    return f"{ratio:.1f}× faster" if ratio >= 1 else f"{1 / ratio:.1f}× slower"


def _cycle_row(cycle: dict[str, Any], how: str, *, target: bool) -> tuple[str, ...]:
    return (
        f"one reconcile cycle, {cycle['deployments']:,} deployments on {cycle['hosts']}"
        f" hosts, {how} (best of {cycle['runs']})",
        f"{cycle['ours_seconds']:.3f} s",
        f"{cycle['baseline_seconds']:.3f} s (look up every name on every host)",
        _faster(cycle["ours_seconds"], cycle["baseline_seconds"]),
        f"under {cycle['target_seconds']:g} s" if target else "",
        _yes(cycle["meets_target"]) if target else "",
    )


def _rows(
    queue: dict[str, Any], placed: dict[str, Any], cycle: dict[str, Any], local: dict[str, Any]
) -> list[tuple[str, ...]]:
    farm, bare = queue["farm_ping"], queue["redis_echo_baseline"]
    return [
        (
            f"round trip of `formarket.ping`, median ({queue['tasks']:,} tasks)",
            f"{farm['median_ms']:.2f} ms",
            f"{bare['median_ms']:.2f} ms (bare Redis echo)",
            f"+{farm['median_ms'] - bare['median_ms']:.2f} ms",
            f"median under {queue['target_median_ms']:g} ms",
            _yes(queue["meets_target"]),
        ),
        (
            "round trip of `formarket.ping`, p95",
            f"{farm['p95_ms']:.2f} ms",
            f"{bare['p95_ms']:.2f} ms",
            f"+{farm['p95_ms'] - bare['p95_ms']:.2f} ms",
            "",
            "",
        ),
        (
            f"place {placed['requests']:,} requests on {placed['hosts']} hosts"
            f" (best of {placed['runs']})",
            f"{placed['ours_seconds']:.3f} s",
            f"{placed['baseline_seconds']:.3f} s (scan every host)",
            _faster(placed["ours_seconds"], placed["baseline_seconds"]),
            f"under {placed['target_seconds']:g} s",
            _yes(placed["meets_target"]),
        ),
        _cycle_row(cycle, "hosts behind a libvirtd: every call an RPC", target=True),
        _cycle_row(local, "the test driver inside this process", target=False),
    ]


def _all(seconds: list[float]) -> str:
    return ", ".join(f"{s:.3f}" for s in seconds) + f" (median {statistics.median(seconds):.3f})"


def section(quick: bool) -> str:
    print("farm: 1. round trip of a trivial task through Redis", flush=True)
    queue = round_trip(quick)
    print("farm: 2. placement of 10,000 requests on 500 hosts", flush=True)
    placed = placement(quick)
    print("farm: 3. one reconcile cycle, 1,000 deployments on 50 hosts behind a libvirtd")
    cycle = reconcile_cycle(quick, libvirtd=True)
    print("farm: 3b. the same with the test driver inside this process", flush=True)
    local = reconcile_cycle(quick, libvirtd=False)
    rows = _rows(queue, placed, cycle, local)
    for row in rows:
        print(f"  {row[0]}: {row[1]} vs {row[2]}; {row[3]}; {row[4]} {row[5]}".rstrip())
    steps = cycle["steps"]
    profiled = cycle["profiled_seconds"]
    where = "; ".join(
        f"{label} {seconds:.3f} s ({seconds / profiled:.0%})"
        for label, seconds in sorted(steps.items(), key=lambda item: -item[1])
    )
    own = ", ".join(f"`{name}` {share:.0%}" for name, share in placed["own_time"])
    load = os.getloadavg()[0]
    lines = [
        "## Farm: queue, placement, reconcile",
        "",
        f"The machine's load average was {load:.1f} on {len(os.sched_getaffinity(0))} cores at"
        " the end: other work on it stretches these wall-clock times, so each figure alternates"
        " with its baseline and counts the best run (the round trip counts the median of all).",
        "",
        "| figure | ours | baseline | ratio | target | met |",
        "|---|---:|---:|---:|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
        "- **Round trip** (`benchmarks/farm_queue.py`): `formarket.ping` sent with the farm's"
        " own Celery app (late acknowledgement, prefetch 1, the Redis result backend) to a real"
        " `formarket farm worker` process on a private redis-server, and its answer read back."
        " The baseline is the least a cross-process round trip through that Redis costs: a"
        " second process that BRPOPs a request and LPUSHes the reply. Rounds alternate.",
        f"- **Placement** (`benchmarks/farm_placement.py`): {placed['hosts']} seeded hosts of"
        f" ten sizes ({placed['gpu_hosts']} with GPUs of six models),"
        f" {placed['requests']:,} seeded requests ({placed['gpu_requests']:,} asking for 1 to 8"
        " GPUs, the rest CPU-only of seven sizes), placed one after another from an empty"
        f" fleet until it is nearly full: {placed['placed']:,} placed, {placed['refused']:,}"
        " refused (mostly GPU work once its model's GPUs are taken; each refusal is explained"
        " in a sentence, which ours pays for and the baseline does not). Ours is `Placer`"
        " (best fit on sorted indexes); the baseline scans every host for every request with"
        " the same rules. **Both made the same decision for every request** (checked, or the"
        f" benchmark stops). Runs, s: ours {_all(placed['ours_all'])}; baseline"
        f" {_all(placed['baseline_all'])}. Own time in a profiled run of ours: {own}. (CPU work"
        " walks the hosts in order of free memory; once vCPUs run out before memory, as here,"
        " it steps past hosts with memory left and no vCPU to spare.)",
        f"- **Reconcile** (`benchmarks/farm_reconcile.py`): {cycle['hosts']} libvirt"
        " test-driver hosts (node files of five sizes, some with GPUs) kept by a private"
        " libvirtd on this machine (`farm.libvirtd`), reached over its unix socket, so that"
        " every libvirt call is an RPC as with real hosts (a network would add to each);"
        " the last row has the test driver answer inside this process instead."
        f" {cycle['deployments']:,} Deployment documents are committed with"
        " `farm.desired.submit` to a scratch marketplace made from the starter registry (one"
        f" commit, {cycle['submit_seconds']:.1f} s): echo-chat models, some on GPUs, and"
        " faq-bot agents on them; both images are built for real into a scratch store first."
        f" {cycle['defined']} are defined beforehand as running domains, placed within"
        " capacity (the steady state), so each cycle finds"
        f" {cycle['running']} running and plans {cycle['deploys']} deploys,"
        f" {cycle['stops']} stops and {cycle['builds']} builds ({cycle['waiting']} agents"
        f" wait for their model, {cycle['refused']} refused). Ours is"
        " `operations.reconcile_once` whole: git read, images looked up, each host's domains"
        f" listed once, planned, a lease taken per action ({cycle['handed_out']} handed to an"
        " enqueue that only records; SQLite leases, fresh each run, in a scratch folder on"
        " disk), routes published, and running time metered (`meter=True`, as the reconcile"
        " task runs it). The baseline is the very same cycle except that each host is asked"
        f" for each desired deployment's domain by name ({cycle['lookups']:,} lookups a"
        " cycle) instead of listing its domains once. **Both planned the same in every run**"
        f" (checked). Runs, s: ours {_all(cycle['ours_all'])}; baseline"
        f" {_all(cycle['baseline_all'])}; in-process ours {_all(local['ours_all'])},"
        f" baseline {_all(local['baseline_all'])}.",
        f"- Where a cycle's time goes (one more cycle of ours through the libvirtd, under"
        f" cProfile: {profiled:.3f} s with the profiler's overhead): {where}. A lease is one"
        " SQLite transaction (with its fsync) per action handed out, so that step grows with"
        " the work handed out and with the disk's load. git is read every cycle, but a deployment"
        " document is parsed only when its content is new to the process (the first, untimed"
        " cycle of each run parses all 1,000), as in a reconcile worker that runs for days.",
        "- In-process, a lookup by name is a hash-table lookup and a miss costs microseconds,"
        " so the two ways differ little there; through a daemon each lookup is a round trip"
        " and the baseline grows with deployments × hosts, while listing stays one call per"
        " host and one description per domain.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_farm")
    parser.add_argument("--quick", action="store_true", help="fewer tasks and runs")
    args = parser.parse_args(argv)
    print(section(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
