"""Royalties benchmark: closing a month of usage events over 10,000 listings, side by side
with a plain DuckDB query over the same files.

`python -m benchmarks.bench_royalties [--quick]` prints a Markdown section; `section(quick)`
returns it for the benchmark report. The usage is generated once (seeded, by
`formarket.standins.usage_simulator`) into a git repository under build/bench/ and reused; its
usage files are also written out once as plain .jsonl.gz files for DuckDB.

Ours: `formarket royalties close --period 2026-01` (a dry run: everything computed and rendered,
nothing committed) in a new process: cold (an empty cache: the listings' history walked, every
file read) and warm (the same close again), and `formarket usage show`, cold and warm.
Baseline: DuckDB over the exported files (`read_json` of every file, `DISTINCT ON (source, id)`,
the period's successful calls summed per listing version), which neither validates, rates,
splits nor writes anything. Each of ours and the baseline run alternately, one after the other.
Peak memory is the largest sum of the resident memory of the command and its workers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
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
PAYERS = 50_000  # the accounts that call, each call's chosen at random


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
        accounts=PAYERS,
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


def _export(bench: BenchRepo, folder: Path) -> Path:
    """The usage files of the benchmark month as plain files, for DuckDB (written once)."""
    stamp = folder / "export-stamp.json"
    wanted = {"repo": str(bench.path), "events": bench.events, "files": bench.files}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    repo = open_repository(bench.path, search_up=False)
    tip = branch_tip(repo, "main")
    found, _ = usage_files(repo, commit_tree(repo, tip), date(2025, 12, 31))
    for path, (_, blob) in sorted(found.items()):
        (folder / path.replace("/", "_")).write_bytes(read_blob(repo, blob))
    stamp.write_text(json.dumps(wanted))
    return folder


def _ours(bench: BenchRepo, cache: Path, *args: str) -> Run:
    env = {**os.environ, "FORMARKET_CACHE_DIR": str(cache)}
    command = [sys.executable, "-m", "formarket", *args, "--repo", str(bench.path)]
    return _measure(command, env)


def close_cold(bench: BenchRepo, cache: Path, out: Path) -> Run:
    if cache.exists():
        shutil.rmtree(cache)
    return _ours(bench, cache, "royalties", "close", "--period", PERIOD, "--out", str(out))


def close_warm(bench: BenchRepo, cache: Path, out: Path) -> Run:
    return _ours(bench, cache, "royalties", "close", "--period", PERIOD, "--out", str(out))


def close_invoiced(bench: BenchRepo, cache: Path, out: Path, accounts: Path) -> Run:
    """A cold close that also computes every paying account's invoice, as the operator's
    close does (a fresh accounts database: no top-ups, so each invoice is its usage)."""
    for folder in (cache, accounts):
        if folder.exists():
            shutil.rmtree(folder)
    accounts.mkdir(parents=True)
    return _ours(
        bench,
        cache,
        "royalties",
        "close",
        "--period",
        PERIOD,
        "--out",
        str(out),
        "--invoices",
        "--gateway-dir",
        str(accounts),
    )


def show(bench: BenchRepo, cache: Path, *, cold: bool) -> Run:
    if cold and cache.exists():
        shutil.rmtree(cache)
    return _ours(bench, cache, "usage", "show", "--json")


def measure_duckdb(folder: Path) -> Run:
    command = [sys.executable, "-m", "benchmarks.bench_royalties", "--duckdb", str(folder)]
    return _measure(command)


DUCKDB_QUERY = """
WITH events AS (
  SELECT * FROM read_json('{folder}/*.jsonl.gz', format = 'newline_delimited',
    compression = 'gzip', columns = {{
      source: 'VARCHAR', id: 'VARCHAR', time: 'VARCHAR',
      data: 'STRUCT(agent STRUCT(id VARCHAR, version VARCHAR),
        model STRUCT(id VARCHAR, version VARCHAR), input_tokens BIGINT,
        output_tokens BIGINT, requests BIGINT, instance_seconds BIGINT, outcome VARCHAR)'
    }})
), once AS (
  SELECT DISTINCT ON (source, id) * FROM events
)
SELECT coalesce(data.agent.id, data.model.id) AS listing,
  coalesce(data.agent.version, data.model.version) AS version,
  count(*) AS events, sum(data.requests), sum(data.input_tokens),
  sum(data.output_tokens), sum(data.instance_seconds)
FROM once WHERE time LIKE '{period}-%' AND data.outcome = 'ok'
GROUP BY ALL ORDER BY ALL
"""


def duckdb_baseline(folder: Path) -> str:
    """The plain DuckDB query: every file read, each (source, id) once, the period's
    successful calls summed per listing version (the agent's when there is one, as a close
    credits them)."""
    import duckdb

    rows = duckdb.connect().execute(DUCKDB_QUERY.format(folder=folder, period=PERIOD)).fetchall()
    return f"{sum(int(r[2]) for r in rows)} events, {len(rows)} listing versions"


def _gib(value: int) -> str:
    return f"{value / (1 << 30):.2f} GiB"


def _best(runs: Sequence[Run]) -> Run:
    return min(runs, key=lambda r: r.seconds)


@dataclass(frozen=True, slots=True)
class Month:
    """One month measured: ours and DuckDB's, run alternately."""

    bench: BenchRepo
    cold: Run
    duck: Run
    colds: tuple[float, ...]  # every cold close's seconds, in the order run
    ducks: tuple[float, ...]
    warm: Run
    show_cold: Run
    show_warm: Run
    peak: int  # the largest of our cold closes' peaks
    identical: bool  # the cold and the warm close wrote the same bytes
    invoiced: Run | None = None  # a cold close with every account's invoice


def _same_files(one: Path, other: Path) -> bool:
    mine = {p.relative_to(one): p.read_bytes() for p in one.rglob("*") if p.is_file()}
    theirs = {p.relative_to(other): p.read_bytes() for p in other.rglob("*") if p.is_file()}
    return bool(mine) and mine == theirs


def measure_month(listings: int, events: int, rounds: int, *, invoices: bool = False) -> Month:
    root = SOURCE / "build" / "bench" / f"royalties-{listings}-{events}"
    print(f"royalties: a repository of {listings:,} listings and {events:,} events", flush=True)
    bench = generate(root, listings, events)
    scratch = SOURCE / "build" / "bench" / f"royalties-scratch-{events}"
    scratch.mkdir(parents=True, exist_ok=True)
    folder = _export(bench, scratch / "files")
    cache = scratch / "cache"
    colds, ducks = [], []
    for round_ in range(rounds):
        print(f"royalties: round {round_ + 1} of {rounds}: cold close, then DuckDB", flush=True)
        colds.append(close_cold(bench, cache, scratch / "out-cold"))
        ducks.append(measure_duckdb(folder))
    print("royalties: warm close, usage show cold and warm", flush=True)
    warm = close_warm(bench, cache, scratch / "out-warm")
    show_cold = show(bench, cache, cold=True)
    show_warm = show(bench, cache, cold=False)
    invoiced = None
    if invoices:
        print("royalties: a cold close with every account's invoice", flush=True)
        invoiced = close_invoiced(bench, cache, scratch / "out-invoiced", scratch / "accounts")
    return Month(
        bench,
        _best(colds),
        _best(ducks),
        tuple(r.seconds for r in colds),
        tuple(r.seconds for r in ducks),
        warm,
        show_cold,
        show_warm,
        max(r.peak_bytes for r in colds),
        _same_files(scratch / "out-cold", scratch / "out-warm"),
        invoiced,
    )


# Measured once, by hand (cProfile with a CPU clock, and timings of each step alone): what
# the figures above are made of, and why the target is or is not met.
PROFILE = [
    "**What changed in this version: each file's totals as columns, and no second reading of"
    " the files.** Measured side by side on this machine against the previous version"
    " (alternating, two rounds), the 10,000,000-event close took 15.6 and 16.0 s (CPU 25.8 s)"
    " where the previous one took 33.6 and 35.3 s (CPU 59.5 and 61.6 s), and the"
    " 1,000,000-event close 1.8 s (CPU 2.7 s) where it took 2.5 s (CPU 4.0 s); both wrote the"
    " same bytes (`diff -r`), as did `usage show` and a close with every account's invoice."
    " What changed:",
    "",
    "- A file's totals are `formarket.usage.totals.Totals`: rows of small integers (month,"
    " day, listing versions, outcome, paying account) pointing into the reading's tables of"
    " names, merged by one sort and `reduceat` per batch of files and per close, and named once"
    " at the end. A file of 25,000 events holds some 10,000 such rows: as Python tuples in"
    " dictionaries, added per file, per batch and per close and pickled between processes, they"
    " cost about 30 s of the 122 s single-process profile of the previous version.",
    "- A collector that retries a flush writes the events again into its next file. Each"
    " worker now reads a collector's files in order and takes the lines two consecutive files"
    " share (by key digest) while both files are in memory, so the second look at the events"
    " seen twice reads again 44 of the 589 files, for 2,226 lines, where it read 558 files"
    " whole (9 s of inflating).",
    "- A gzip file is inflated into one buffer of the size its trailer gives, and a loose git"
    " object into one of the size its header gives, by ISA-L: growing the buffer as it filled"
    " had cost as much as the inflating.",
    "- The C reader probes tables of 8-byte slots, compares literals word by word, and keeps"
    " deployments (always) and accounts (unless each account's invoice is wanted) as joined"
    " text for their pattern checks rather than as tables of distinct values: a file names"
    " tens of thousands of accounts, each a hash lookup and then a Python string.",
    "- Identifier patterns are checked with `bytes.translate`, published listing versions"
    " by an array lookup per day, and totals are merged only when as many rows have come as"
    " the last merge left: by day (`usage show`) or by account, a month holds millions of"
    " groups, and merging them file by file had made `usage show` with a cold cache take 41 s"
    " (now 15 s).",
    "",
    "**Where a cold close's time goes now.** Per file of 25,000 events, in one process: reading"
    " its blob from git 2.8 ms, inflating it 6.3 ms, the C reader 7.8 ms, the checks and sums"
    " over its columns 9.9 ms, keeping its partial in the cache 4.2 ms. With two workers the"
    " phases were: starting 0.4 s, the listings' history 1.2 s, reading the files 10.3 s,"
    " settling the repeated events 1.9 s (0.7 s of it sorting the month's 14 million key"
    " digests), rating and rendering 1.0 s. About 4.5 s run in one process while the other"
    " core waits; the next step is to read the listings' history while the workers read the"
    " files, whose reading needs the published versions only when partials are merged (the"
    " design for 100 million events below).",
]


def _runs(seconds: Sequence[float]) -> str:
    return ", ".join(f"{x:.1f}" for x in seconds)


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def section(quick: bool) -> str:
    listings, events = QUICK if quick else FULL
    load = os.getloadavg()[0]
    full = measure_month(listings, events, 1 if quick else 2)
    small = measure_month(listings // 10, events // 10, 1 if quick else 3, invoices=True)
    f, s = full, small
    n = f"{f.bench.events:,}"
    rows = [
        (
            f"close a month cold: {n} events, {listings:,} listings",
            f"{f.cold.seconds:.1f} s",
            f"{f.duck.seconds:.1f} s",
            f"{f.duck.seconds / f.cold.seconds:.2f}×",
            "at least as fast (≥ 1×)",
            _met(f.cold.seconds <= f.duck.seconds),
        ),
        (
            "CPU time of that, all processes",
            f"{f.cold.cpu_seconds:.1f} s",
            f"{f.duck.cpu_seconds:.1f} s",
            f"{f.duck.cpu_seconds / f.cold.cpu_seconds:.2f}×",
            "",
            "",
        ),
        (
            "peak memory, all processes",
            _gib(f.peak),
            _gib(f.duck.peak_bytes),
            f"{f.duck.peak_bytes / max(f.peak, 1):.1f}× less",
            "under 1 GiB",
            _met(f.peak < 1 << 30),
        ),
        (
            "the same close again (warm cache)",
            f"{f.warm.seconds:.2f} s (CPU {f.warm.cpu_seconds:.2f} s)",
            f"{f.duck.seconds:.1f} s (no cache)",
            f"{f.duck.seconds / f.warm.seconds:.0f}×",
            "under 5 s",
            _met(f.warm.seconds < 5),
        ),
        (
            "`formarket usage show` of the month (warm)",
            f"{f.show_warm.seconds:.2f} s (CPU {f.show_warm.cpu_seconds:.2f} s)",
            f"{f.duck.seconds:.1f} s",
            f"{f.duck.seconds / f.show_warm.seconds:.0f}×",
            "under 2 s",
            _met(f.show_warm.seconds < 2),
        ),
        (
            "`formarket usage show` of the month (cold cache)",
            f"{f.show_cold.seconds:.1f} s (CPU {f.show_cold.cpu_seconds:.1f} s)",
            f"{f.duck.seconds:.1f} s",
            f"{f.duck.seconds / f.show_cold.seconds:.2f}×",
            "",
            "",
        ),
        (
            f"close a month cold: {s.bench.events:,} events, {s.bench.listings:,} listings",
            f"{s.cold.seconds:.1f} s, {_gib(s.peak)}",
            f"{s.duck.seconds:.1f} s, {_gib(s.duck.peak_bytes)}",
            f"{s.duck.seconds / s.cold.seconds:.2f}×",
            "",
            "",
        ),
    ]
    if s.invoiced is not None:
        i = s.invoiced
        rows.append(
            (
                f"the same with every account's invoice ({PAYERS:,} accounts)",
                f"{i.seconds:.1f} s (CPU {i.cpu_seconds:.1f} s), {_gib(i.peak_bytes)}",
                f"{s.duck.seconds:.1f} s",
                f"{s.duck.seconds / i.seconds:.2f}× ({i.seconds / s.cold.seconds:.1f}× our"
                " close without)",
                "",
                "",
            )
        )
    growth = f.cold.seconds / s.cold.seconds
    lines = [
        "## Royalties: closing a period",
        "",
        f"A synthetic registry of {listings:,} listings and a month of {f.bench.events:,} usage"
        f" events in {f.bench.files:,} gzip JSON-lines files, committed to git (generated in"
        f" {f.bench.generated_seconds:.0f} s by `benchmarks/bench_royalties.py`, reused after);"
        f" a month of {s.bench.events:,} events over {s.bench.listings:,} listings in"
        f" {s.bench.files:,} files beside it for growth.",
        "Ours is `formarket royalties close --period 2026-01` in a new process: cold with an"
        " empty cache (the listings' history walked, every event decoded and validated,"
        " duplicates settled exactly, usage rated, split, posted to the ledger, statements and"
        " payouts rendered; nothing committed), then the same close again with the cache it"
        " left, and `formarket usage show` with an empty cache and again. The baseline is a plain"
        " DuckDB query over the same files written out of git (`read_json` of every .jsonl.gz,"
        " `DISTINCT ON (source, id)`, the period's successful calls summed per listing"
        " version), which validates, rates and writes nothing. Cold closes and DuckDB queries"
        " ran alternately (two of each at full size, three at a tenth), the best of each shown"
        f" (all runs, seconds: ours {_runs(f.colds)} and DuckDB {_runs(f.ducks)} at full size;"
        f" ours {_runs(s.colds)} and DuckDB {_runs(s.ducks)} at a tenth); peak memory sums the"
        " command and its workers. The operator's close also computes every paying account's"
        " invoice (`--invoices`, with a fresh accounts database): measured once, at a tenth,"
        " where each call's account is one of 50,000 chosen at random, so that nearly every"
        " account uses many listing versions, and a month's invoices hold about as many lines"
        " as it has events.",
        f"The cold and the warm close wrote {'the same' if f.identical else '**different**'}"
        " bytes (statements, ledger, payouts, summary).",
        f"The machine's load average was {load:.1f} on {len(os.sched_getaffinity(0))} cores when"
        " the runs started: other work on it stretches wall-clock times, not CPU times.",
        "",
        "| figure | ours | DuckDB query | ratio (DuckDB ÷ ours) | target | met |",
        "|---|---:|---:|---:|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
        *PROFILE,
        "",
        f"**Growth.** From {s.bench.events:,} to {f.bench.events:,} events the cold close took"
        f" {growth:.1f}× as long and its peak memory went from {_gib(s.peak)} to"
        f" {_gib(f.peak)}. A cold close reads every event once, so its time grows with the"
        " events; its memory grows with what it keeps per event, the key digest and line of"
        " every event counted (12 bytes, sorted once to find repeats), and with each file's"
        " totals, which grow with the pairs of listing versions in a file, not with its events."
        " A warm close grows with neither: it reads one sealed tally.",
        "",
        "**100 million events a month** (~4,000 files of 25,000 events) is ten times the"
        " cold figures here on this machine, and 1.2 GB of digests and lines: past the 1 GiB"
        " budget. The next two steps of this design answer it. Each file's partial (totals,"
        " digests, set-aside lines, kept by blob id) is computed when the bot commits the file,"
        " not at the close, and without the rules a close's period decides (which listing"
        " versions were published, which usage came too late), which are applied when the"
        " partials are merged; then a close merges partials and the warm figures above become"
        " the cold ones. And the repeat search runs by digest range (16 passes over the"
        " partials' digests, a sixteenth of the memory each), exact as now, since only repeated"
        " digests are ever read again.",
        "",
        "**A billion events a month** (~40,000 files, ~300 GB of JSON, ~30 GB gzipped) is"
        " partitioned by day, as the files already are (registry/usage/YYYY/MM/DD/): a day's"
        " files are read and kept as partials the day they arrive, on the farm's workers (the"
        " Celery queue formarket already runs), each keyed by its blob id, so no step ever reads"
        " a month at once. The close merges 31 days of totals (kilobytes each) and the days'"
        " digest indexes. Only the exact repeat search sees every event: a sort-merge of 8 GB of"
        " digests, which DuckDB does out of core on one machine; beyond one machine it is a"
        " shuffle by digest range, the job Spark (or Trino over Parquet partials) takes over,"
        " while the rules of a line and its USG code stay in the per-file step formarket owns.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_royalties")
    parser.add_argument("--quick", action="store_true", help="500,000 events, 1,000 listings")
    parser.add_argument("--duckdb", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.duckdb:
        print(duckdb_baseline(args.duckdb))
        return 0
    print(section(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
