"""Placement of many requests on many hosts: the farm's `Placer` against a plain scan.

    python -m benchmarks.farm_placement [--quick]

The fleet and the requests are seeded and shaped like a real farm: most hosts CPU-only of a
few sizes, about one in seven with GPUs (several models and counts); nine requests in ten
CPU-only of a few common sizes, one in ten asking for GPUs. The fleet is sized so that it ends
nearly full, which is when best fit has the most hosts to skip over.

The baseline is the straightforward best fit: for every request, look at every host, keep the
tightest one that fits (the same rules as `Placer`: GPU work by fewest GPUs of its model left,
then least memory left; CPU work on hosts without GPUs first, by least memory left; ties to the
name that sorts first). Both must make the same decision for every request, or the benchmark
stops: a faster placer that places differently would not be the same placer.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from formarket.farm.hosts import Host
from formarket.farm.placement import Need, Placed, Placer

__all__ = ["TARGET_SECONDS", "fleet", "naive_best_fit", "placement", "requests"]

TARGET_SECONDS = 2.0

# (vCPUs, memory MiB, GPUs, weight): what a fleet bought over a few years looks like.
_HOSTS: tuple[tuple[int, int, dict[str, int], int], ...] = (
    (32, 131072, {}, 20),
    (64, 262144, {}, 25),
    (96, 393216, {}, 18),
    (128, 524288, {}, 12),
    (64, 524288, {"H100": 8}, 7),
    (96, 1048576, {"H200": 8}, 3),
    (32, 262144, {"L4": 4}, 5),
    (48, 393216, {"L40S": 4}, 3),
    (64, 524288, {"A100": 8}, 5),
    (32, 131072, {"RTX5090": 2}, 2),
)
# (vCPUs, memory MiB, weight) of CPU-only work.
_CPU_SIZES = ((1, 512, 20), (1, 1024, 20), (2, 2048, 25), (2, 4096, 15), (4, 8192, 12))
_CPU_LARGE = ((8, 16384, 5), (16, 65536, 3))
# (model, counts, vCPUs per GPU, memory MiB per GPU, weight) of GPU work.
_GPU_WORK = (
    ("H100", (1, 1, 1, 2, 2, 4, 8), 6, 49152, 30),
    ("H200", (1, 1, 2, 4), 8, 98304, 10),
    ("L4", (1, 1, 1, 2), 4, 16384, 20),
    ("L40S", (1, 1, 2), 6, 32768, 12),
    ("A100", (1, 1, 2, 4), 6, 49152, 22),
    ("RTX5090", (1, 1, 2), 8, 32768, 6),
)


def fleet(count: int = 500, seed: int = 42) -> list[Host]:
    """`count` hosts of the sizes above, in a seeded mix."""
    rng = random.Random(seed)
    weights = [w for *_, w in _HOSTS]
    hosts = []
    for n in range(count):
        vcpus, memory, gpus, _ = rng.choices(_HOSTS, weights)[0]
        hosts.append(
            Host(
                name=f"host-{n:04d}",
                uri=f"test:///bench/host-{n:04d}.xml",
                vcpus=vcpus,
                memory_mib=memory,
                gpus=dict(gpus),
            )
        )
    return hosts


def requests(count: int = 10_000, seed: int = 7) -> list[Need]:
    """`count` seeded requests: about 10% GPU work, the rest CPU-only."""
    rng = random.Random(seed)
    cpu = _CPU_SIZES + _CPU_LARGE
    cpu_weights = [w for *_, w in cpu]
    gpu_weights = [w for *_, w in _GPU_WORK]
    needs = []
    for _ in range(count):
        if rng.random() < 0.10:
            model, counts, per_vcpus, per_memory, _ = rng.choices(_GPU_WORK, gpu_weights)[0]
            gpus = rng.choice(counts)
            needs.append(Need(per_vcpus * gpus, per_memory * gpus, model, gpus))
        else:
            vcpus, memory, _ = rng.choices(cpu, cpu_weights)[0]
            needs.append(Need(vcpus, memory))
    return needs


@dataclass(slots=True)
class _Free:
    name: str
    vcpus: int
    memory_mib: int
    gpus: dict[str, int]
    has_gpus: bool


def naive_best_fit(hosts: Sequence[Host], needs: Sequence[Need]) -> list[str | None]:
    """The baseline: every host looked at for every request. The host of each, or None."""
    frees = [
        _Free(
            h.name,
            h.vcpus,
            h.memory_mib,
            {str(m): n for m, n in h.gpus.items()},
            any(n > 0 for n in h.gpus.values()),
        )
        for h in hosts
    ]
    chosen: list[str | None] = []
    for need in needs:
        best: _Free | None = None
        best_key: tuple[Any, ...] = ()
        if need.gpu_model:
            for free in frees:
                left = free.gpus.get(need.gpu_model)
                if (
                    left is not None
                    and left >= need.gpu_count
                    and free.vcpus >= need.vcpus
                    and free.memory_mib >= need.memory_mib
                ):
                    gpu_key = (left, free.memory_mib, free.name)
                    if best is None or gpu_key < best_key:
                        best, best_key = free, gpu_key
        else:
            for gpu_hosts in (False, True):
                for free in frees:
                    if (
                        free.has_gpus is gpu_hosts
                        and free.vcpus >= need.vcpus
                        and free.memory_mib >= need.memory_mib
                    ):
                        key = (free.memory_mib, free.name)
                        if best is None or key < best_key:
                            best, best_key = free, key
                if best is not None:
                    break
        if best is None:
            chosen.append(None)
            continue
        best.vcpus -= need.vcpus
        best.memory_mib -= need.memory_mib
        if need.gpu_model:
            best.gpus[need.gpu_model] -= need.gpu_count
        chosen.append(best.name)
    return chosen


def ours(hosts: Sequence[Host], needs: Sequence[Need]) -> list[str | None]:
    """`Placer` from an empty fleet, every request in turn. The host of each, or None."""
    placer = Placer(hosts)
    chosen: list[str | None] = []
    for need in needs:
        placed = placer.place(need)
        chosen.append(placed.host if isinstance(placed, Placed) else None)
    return chosen


def _best_of(runs: int, fn: Any, *args: Any) -> tuple[float, list[float], Any]:
    seconds = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn(*args)
        seconds.append(time.perf_counter() - started)
    return min(seconds), seconds, result


def placement(quick: bool, hosts: int = 500, count: int = 10_000) -> dict[str, Any]:
    """Seconds (best of a few runs) to place `count` requests on `hosts` hosts, ours and the
    baseline's, alternating; whether they agree, and the target."""
    fleet_ = fleet(hosts)
    needs = requests(count)
    runs = 2 if quick else 5
    ours_s: list[float] = []
    base_s: list[float] = []
    ours_r: list[str | None] = []
    base_r: list[str | None] = []
    for _ in range(runs):  # alternating, so that noise from other work falls on both
        best, _, ours_r = _best_of(1, ours, fleet_, needs)
        ours_s.append(best)
        best, _, base_r = _best_of(1, naive_best_fit, fleet_, needs)
        base_s.append(best)
    differ = [i for i, (a, b) in enumerate(zip(ours_r, base_r, strict=True)) if a != b]
    if differ:
        i = differ[0]
        raise RuntimeError(
            f"placement and the baseline disagree on {len(differ)} of {count} requests; the"
            f" first is request {i} ({needs[i].describe()}): {ours_r[i]} vs {base_r[i]}"
        )
    gpu_hosts = sum(1 for h in fleet_ if any(h.gpus.values()))
    return {
        "hosts": hosts,
        "gpu_hosts": gpu_hosts,
        "requests": count,
        "gpu_requests": sum(1 for n in needs if n.gpu_model),
        "placed": sum(1 for h in ours_r if h is not None),
        "refused": sum(1 for h in ours_r if h is None),
        "runs": runs,
        "ours_seconds": min(ours_s),
        "ours_all": ours_s,
        "baseline_seconds": min(base_s),
        "baseline_all": base_s,
        "same_decisions": True,
        "own_time": _own_time(fleet_, needs),
        "target_seconds": TARGET_SECONDS,
        "meets_target": min(ours_s) < TARGET_SECONDS,
    }


def _own_time(hosts: Sequence[Host], needs: Sequence[Need]) -> list[tuple[str, float]]:
    """The functions of one profiled run of ours that took the most time of their own, with
    their share of the run."""
    profile = cProfile.Profile()
    profile.enable()
    ours(hosts, needs)
    profile.disable()
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in stats.values()) or 1.0
    ranked = sorted(stats.items(), key=lambda item: -item[1][2])[:3]
    return [
        (name.removeprefix("<built-in method ").rstrip(">") if line == 0
         else f"{Path(file).name}:{name}", row[2] / total)
        for (file, line, name), row in ranked
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.farm_placement", description=__doc__
    )
    parser.add_argument("--quick", action="store_true", help="two runs each instead of five")
    args = parser.parse_args(argv)
    figures = placement(args.quick)
    print(
        f"Placer: {figures['ours_seconds']:.3f} s; full scan: {figures['baseline_seconds']:.3f} s"
        f" ({figures['baseline_seconds'] / figures['ours_seconds']:.1f}x);"
        f" {figures['placed']} placed, {figures['refused']} refused, the same decisions"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
