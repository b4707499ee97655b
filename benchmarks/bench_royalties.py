"""Royalties benchmark: closing a month of 10,000,000 usage events over 10,000 listings.

`python -m benchmarks.bench_royalties [--quick]` prints a Markdown section; `section(quick)`
returns it for the benchmark report. The usage is generated once (seeded, by
`formarket.standins.usage_simulator`) into a git repository under build/bench/ and reused.

Ours: `formarket royalties close --period 2026-01` (a dry run: everything computed and rendered,
nothing committed) in a new process, with an empty cache, so the listings' history is walked
too. Baseline: a straightforward pandas group-by over the same rows (each line parsed with
json.loads into the columns that matter, `drop_duplicates` on (source, id), the period's
successful calls summed per listing version), which neither validates, rates, splits nor writes
anything.
Peak memory is the largest sum of the resident memory of the command and its workers.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import subprocess  # noqa: TID251 - the benchmarks time whole commands
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from formarket.market.refs import branch_tip
from formarket.market.repository import create_repository, open_repository
from formarket.market.trees import commit_tree, read_blob
from formarket.market.writer import Identity, commit_changes
from formarket.royalties.pricebook import PriceEntry, parse_terms
from formarket.standins.usage_simulator import Deployment, Plan, deployments, simulate_day
from formarket.usage.committed import usage_files

__all__ = ["section"]

SOURCE = Path(__file__).resolve().parent.parent
PERIOD = "2026-01"
BOT = Identity("formarket-bot", "formarket-bot@users.noreply.github.com")
MAINTAINER = Identity("market-steward", "market-steward@users.noreply.github.com")
FULL = (10_000, 10_000_000)
QUICK = (1_000, 500_000)
_FORMAT = 3  # bump when the generated repository changes


@dataclass(frozen=True, slots=True)
class BenchRepo:
    path: Path
    listings: int
    events: int
    files: int
    generated_seconds: float


def _listing(ident: str, kind: str, rng: random.Random) -> bytes:
    roll = rng.randrange(100)
    currency = "USD" if roll < 70 else "EUR" if roll < 90 else "GBP" if roll < 97 else "JPY"
    scale = 100 if currency == "JPY" else 1
    kind_roll = rng.randrange(100)
    if kind_roll < 45:
        pricing = (
            f"  model: per_token\n  currency: {currency}\n"
            f'  input_per_million: "{rng.randrange(1, 300) * scale / 100:.2f}"\n'
            f'  output_per_million: "{rng.randrange(1, 900) * scale / 100:.2f}"\n'
        )
        metered = "[requests, input_tokens, output_tokens]"
    elif kind_roll < 72:
        pricing = (
            f"  model: per_request\n  currency: {currency}\n"
            f'  per_request: "{rng.randrange(1, 500) * scale / 10000:.4f}"\n'
        )
        metered = "[requests]"
    elif kind_roll < 75:
        pricing = (
            f"  model: per_instance_hour\n  currency: {currency}\n"
            f'  per_hour: "{rng.randrange(10, 600) * scale / 100:.2f}"\n'
        )
        metered = "[instance_hours]"
    elif kind_roll < 90:
        pricing = "  model: free\n"
        metered = "[requests]"
    else:
        pricing = (
            f"  model: subscription\n  currency: {currency}\n  tiers:\n"
            f'    - name: Basic\n      monthly: "{rng.randrange(5, 50) * scale}"\n'
            "      included_requests: 1000\n"
        )
        metered = "[requests]"
    royalty = 0 if "free" in pricing else rng.choice((50, 60, 70, 75, 80, 85, 90))
    extra = (
        "task: chat\ncapabilities: [chat, streaming]\ncontext_length: 8192\n"
        if kind == "model"
        else "agent_type: assistant\nframework: custom\nruntime: python\n"
    )
    return (
        f"id: {ident}\nname: {ident.split('/')[1]}\nversion: 1.{rng.randrange(10)}.0\n"
        f"description: A synthetic {kind} listing for the royalties benchmark.\n"
        f"license: Apache-2.0\ntags: [synthetic, bench]\n{extra}"
        "resources:\n  minimum: {vcpu: 1, memory_mb: 512, disk_gb: 1}\n"
        "  recommended: {vcpu: 2, memory_mb: 2048, disk_gb: 4}\n"
        f"pricing:\n{pricing}monetization:\n  metered: {metered}\n"
        f'  royalty_percent: "{royalty}"\n'
    ).encode()


def _registry(listings: int, seed: int) -> tuple[dict[str, bytes], list[PriceEntry]]:
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    offers: list[PriceEntry] = []
    publishers = max(1, listings // 50)
    for p in range(publishers):
        name = f"pub-{p:04d}"
        files[f"registry/publishers/{name}.yaml"] = (
            f"id: {name}\nname: Publisher {p}\nowners: [owner-{p:04d}]\n"
            f"payout:\n  method: bank-transfer\n  reference: PAYEE-{p:04d}\n"
        ).encode()
    for i in range(listings):
        kind = "model" if i % 100 < 85 else "agent"
        ident = f"pub-{i % publishers:04d}/{kind}-{i:05d}"
        path = f"registry/{kind}s/{ident}/listing.yaml"
        raw = _listing(ident, kind, rng)
        files[path] = raw
        terms = parse_terms(raw, path)
        assert terms is not None, path
        offers.append(PriceEntry(terms[0], terms[1], kind, terms[2], terms[3], "", 0))
    files["registry/governance.yaml"] = (
        f"maintainers: [{MAINTAINER.name}]\nbot: {BOT.name}\n"
    ).encode()
    files["royalties/policy.yaml"] = (SOURCE / "royalties" / "policy.yaml").read_bytes()
    return files, offers


def _day(args: tuple[list[Deployment], Plan, date, int]) -> dict[str, bytes]:
    fleet, plan, day, calls = args
    return simulate_day(fleet, plan, day, calls)


def generate(root: Path, listings: int, events: int, seed: int = 11) -> BenchRepo:
    """The benchmark repository, generated once and reused while its stamp matches."""
    stamp = root / "bench-stamp.json"
    wanted = {"format": _FORMAT, "listings": listings, "events": events, "seed": seed}
    if stamp.exists():
        recorded = json.loads(stamp.read_text())
        if {k: recorded.get(k) for k in wanted} == wanted:
            return BenchRepo(
                root, listings, recorded["total_events"], recorded["files"], recorded["seconds"]
            )
    started = time.perf_counter()
    if root.exists():
        import shutil

        shutil.rmtree(root)
    # Bare: a close reads git only, and a working tree of the month's usage would only cost
    # the time and the disk of writing it out.
    repo = create_repository(root, bare=True)
    files, offers = _registry(listings, seed)
    commit_changes(repo, "main", files, "A synthetic registry", MAINTAINER)
    fleet = deployments(offers, listings + listings // 5, seed)
    hourly = sum(d.hourly for d in fleet)
    days = [date(2026, 1, d) for d in range(1, 32)]
    calls = events - hourly * 24 * len(days)
    plan = Plan(
        period=PERIOD,
        calls=calls,
        seed=seed,
        gateways=("gateway/gw-1", "gateway/gw-2", "gateway/gw-3"),
        deployments=len(fleet),
        accounts=50_000,
        flush_events=25_000,
    )
    shares = [calls // len(days) + (1 if i < calls % len(days) else 0) for i in range(len(days))]
    written = 0
    with ProcessPoolExecutor(max_workers=2) as pool:
        jobs = [(fleet, plan, day, share) for day, share in zip(days, shares, strict=True)]
        for day, usage in zip(days, pool.map(_day, jobs), strict=True):
            commit_changes(repo, "main", usage, f"Usage of {day} (simulated)", BOT)
            written += len(usage)
            print(f"  generated usage of {day}: {len(usage)} files", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    total = calls + hourly * 24 * len(days)
    stamp.write_text(
        json.dumps({**wanted, "total_events": total, "files": written, "seconds": seconds})
    )
    return BenchRepo(root, listings, total, written, seconds)


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (OSError, ValueError):
            continue
    return total


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    peak_bytes: int
    output: str
    cpu_seconds: float  # user + system, of the command and every process it started


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(command: Sequence[str], env: dict[str, str] | None = None) -> Run:
    cpu = _cpu()
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(process.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{output[-4000:]}")
    return Run(seconds, peak, output, _cpu() - cpu)


def measure_ours(bench: BenchRepo, scratch: Path) -> Run:
    cache = scratch / "cache"
    if cache.exists():
        import shutil

        shutil.rmtree(cache)
    env = {**os.environ, "FORMARKET_CACHE_DIR": str(cache)}
    command = [
        sys.executable,
        "-m",
        "formarket",
        "royalties",
        "close",
        "--period",
        PERIOD,
        "--repo",
        str(bench.path),
    ]
    return _measure(command, env)


def measure_baseline(bench: BenchRepo) -> Run:
    command = [sys.executable, "-m", "benchmarks.bench_royalties", "--baseline", str(bench.path)]
    return _measure(command)


def baseline(path: Path) -> str:
    """The straightforward pandas version: parse every line, keep the columns that matter,
    drop duplicate (source, id), keep the period's successful calls, group by listing
    version and sum."""
    import pandas as pd

    repo = open_repository(path, search_up=False)
    tip = branch_tip(repo, "main")
    found, _ = usage_files(repo, commit_tree(repo, tip), date(2025, 12, 31))
    frames = []
    for _, (_, blob) in sorted(found.items()):
        raw = gzip.decompress(read_blob(repo, blob))
        rows = [json.loads(line) for line in raw.splitlines() if line.strip()]
        frames.append(
            pd.DataFrame(
                {
                    "source": [r["source"] for r in rows],
                    "id": [r["id"] for r in rows],
                    "time": [r["time"] for r in rows],
                    "outcome": [r["data"]["outcome"] for r in rows],
                    "agent": [_ref(r["data"]["agent"]) for r in rows],
                    "model": [_ref(r["data"]["model"]) for r in rows],
                    "requests": [r["data"]["requests"] for r in rows],
                    "input_tokens": [r["data"]["input_tokens"] for r in rows],
                    "output_tokens": [r["data"]["output_tokens"] for r in rows],
                    "instance_seconds": [r["data"]["instance_seconds"] for r in rows],
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    del frames
    df = df.drop_duplicates(subset=["source", "id"])
    df = df[(df["time"].str[:7] == PERIOD) & (df["outcome"] == "ok")]
    sums = ["requests", "input_tokens", "output_tokens", "instance_seconds"]
    parts = [
        df.dropna(subset=[role]).groupby(role)[sums].sum().rename_axis("listing")
        for role in ("agent", "model")
    ]
    result = pd.concat(parts).groupby(level=0).sum()
    return f"{len(df)} events, {len(result)} listing versions"


def _ref(ref: dict[str, str] | None) -> str | None:
    return None if ref is None else f"{ref['id']}@{ref['version']}"


def _gib(value: int) -> str:
    return f"{value / (1 << 30):.2f} GiB"


def section(quick: bool) -> str:
    listings, events = QUICK if quick else FULL
    root = SOURCE / "build" / "bench" / f"royalties-{listings}-{events}"
    print(f"royalties: a repository of {listings:,} listings and {events:,} events", flush=True)
    bench = generate(root, listings, events)
    scratch = SOURCE / "build" / "bench" / "royalties-scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    print("royalties: formarket royalties close", flush=True)
    load = os.getloadavg()[0]
    ours = measure_ours(bench, scratch)
    print("royalties: the pandas baseline", flush=True)
    base = measure_baseline(bench)
    time_target, memory_target = 60.0, 2 << 30
    rows = [
        (
            f"close a period: {bench.events:,} events, {listings:,} listings",
            f"{ours.seconds:.1f} s",
            f"{base.seconds:.1f} s",
            f"{base.seconds / ours.seconds:.1f}× faster",
            "under 60 s" if not quick else "(quick: 60 s at full size)",
            "yes" if ours.seconds < time_target else "**no**",
        ),
        (
            "peak memory of that close",
            _gib(ours.peak_bytes),
            _gib(base.peak_bytes),
            f"{base.peak_bytes / max(ours.peak_bytes, 1):.1f}× less",
            "under 2 GiB",
            "yes" if ours.peak_bytes < memory_target else "**no**",
        ),
        (
            "CPU time, all processes (what a busy machine cannot inflate)",
            f"{ours.cpu_seconds:.1f} s",
            f"{base.cpu_seconds:.1f} s",
            f"{base.cpu_seconds / ours.cpu_seconds:.1f}× less",
            "",
            "",
        ),
        (
            "events per second",
            f"{bench.events / ours.seconds:,.0f}",
            f"{bench.events / base.seconds:,.0f}",
            f"{base.seconds / ours.seconds:.1f}×",
            "",
            "",
        ),
    ]
    lines = [
        "## Royalties: closing a period",
        "",
        f"A synthetic registry of {listings:,} listings and a month of {bench.events:,} usage"
        f" events in {bench.files:,} gzip JSON-lines files, committed to git (generated in"
        f" {bench.generated_seconds:.0f} s by `benchmarks/bench_royalties.py`, reused after).",
        "Ours is `formarket royalties close --period 2026-01` in a new process with an empty"
        " cache: the listings' history is walked, every event decoded and validated, duplicates"
        " settled, usage rated, split, posted to the ledger, statements and payouts rendered"
        " (nothing committed). The baseline is a straightforward pandas group-by over the same"
        " rows (json.loads into columns, drop_duplicates on (source, id), group by listing"
        " version and sum), which validates, rates and writes nothing. Peak memory sums the"
        " command and its workers.",
        f"The machine's load average was {load:.1f} on {len(os.sched_getaffinity(0))} cores when"
        " the close started: other work on it stretches wall-clock times, not CPU times.",
        "",
        "| figure | ours | baseline | ratio | target | met |",
        "|---|---:|---:|---:|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_royalties")
    parser.add_argument("--quick", action="store_true", help="500,000 events, 1,000 listings")
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline:
        print(baseline(args.baseline))
        return 0
    print(section(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
