"""Gateway benchmark: what the gateway adds to a call, and what committing usage costs.

`python -m benchmarks.bench_gateway [--quick]` prints a Markdown section; `section(quick)`
returns it for the benchmark report.

Calls: the stand-in deployment (`python -m formarket.standins.openai`) and the gateway
(`formarket gateway serve`, its default settings: the spool synced every 50 ms) run as
processes of their own on loopback; a load generator in a third process (asyncio on uvloop,
keep-alive connections, pre-built requests) calls either the stand-in directly (the baseline)
or the gateway in front of it, alternately, several rounds, and the best round of each counts
(the machine is shared: the best is the least disturbed). Latency is one call at a time;
throughput is 16 calls in flight. The stand-in does no inference, so the gateway's share of
the work here is as large as it can ever be.

Usage: events are written to a spool (untimed), then `formarket usage flush` commits them in
a new process (timed whole). Bytes per event are the sizes on disk of the git objects that
commit added (usage files, trees, the commit), over the events. Baselines: `gzip -6` of the
same JSON lines (the floor of compressing them), and the JSON lines uncompressed.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import random
import shutil
import subprocess  # noqa: TID251 - the benchmarks time whole commands
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from dulwich.objects import Commit, Tree
from dulwich.repo import Repo

from formarket.gateway.config import StatePaths
from formarket.gateway.keys import create_key
from formarket.gateway.routes import Route, RouteTokenizer, save_routes
from formarket.gateway.tokenizer import tokenizer_path
from formarket.market.refs import branch_tip
from formarket.market.repository import create_repository
from formarket.market.trees import commit_tree, list_dir, read_blob
from formarket.market.writer import Identity, commit_changes
from formarket.schemas.usage import ListingVersion
from formarket.usage.events import Served, call_event
from formarket.usage.files import USAGE_ROOT
from formarket.usage.spool import SpoolWriter

__all__ = ["section"]

SOURCE = Path(__file__).resolve().parent.parent
FORMARKET = [sys.executable, "-m", "formarket"]
QUESTION = "Summarise the royalty terms in one line."


def _body(number: int | None) -> bytes:
    """A chat request; numbered ones differ, so that no count can be reused from another."""
    content = QUESTION if number is None else f"{QUESTION} (call {number})"
    return json.dumps(
        {
            "model": "dep-bench",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 16,
        }
    ).encode()


@dataclass(frozen=True)
class Load:
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu: float = 0.0  # CPU seconds the process called spent meanwhile (0: not measured)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    @property
    def cpu_per_call_us(self) -> float:
        return self.server_cpu / self.calls * 1e6


# --- the load generator (a process of its own) ------------------------------------------------


async def _load(
    url: str, key: str, concurrency: int, seconds: float, calls: int, distinct: int
) -> Load:
    """Calls `concurrency` at a time; `distinct` > 0 cycles through that many different
    requests (each worker from its own place), else every call is the same."""
    host, port = url.removeprefix("http://").split(":")
    requests = [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer "
        + key.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
        for body in ([_body(n) for n in range(distinct)] if distinct else [_body(None)])
    ]
    started = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal started
        turn = started * len(requests) // concurrency
        started += 1
        reader, writer = await asyncio.open_connection(host, int(port))
        while time.perf_counter() < deadline and len(latencies) < calls:
            began = time.perf_counter()
            writer.write(requests[turn % len(requests)])
            turn += 1
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"a call failed: {head!r}")
            at = head.lower().index(b"content-length:")
            await reader.readexactly(int(head[at + 15 : head.index(b"\r\n", at)]))
            latencies.append(time.perf_counter() - began)
        writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return Load(
        len(ordered),
        elapsed,
        ordered[len(ordered) // 2] * 1000,
        ordered[int(len(ordered) * 0.99)] * 1000,
    )


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pinned(cpus: set[int] | None) -> Callable[[], None] | None:
    """Run a child on these CPUs only (None: wherever the kernel likes)."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def _run_load(
    url: str,
    key: str,
    concurrency: int,
    seconds: float,
    calls: int,
    cpus: set[int] | None,
    distinct: int = 0,
) -> Load:
    out = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.bench_gateway", "--load", url, key,
            str(concurrency), str(seconds), str(calls), str(distinct),
        ],
        capture_output=True, text=True, check=True, cwd=SOURCE, preexec_fn=_pinned(cpus),
    )  # fmt: skip
    return Load(**json.loads(out.stdout))


# --- the servers --------------------------------------------------------------------------------


def _start(
    argv: list[str], log: Path, cpus: set[int] | None
) -> tuple[subprocess.Popen[bytes], str]:
    output = log.open("wb")
    proc = subprocess.Popen(
        argv, stdout=output, stderr=subprocess.STDOUT, cwd=SOURCE, preexec_fn=_pinned(cpus)
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for word in log.read_text(errors="replace").split():
            if word.startswith("http://"):
                return proc, word
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{argv} did not start:\n{log.read_text(errors='replace')}")


# The starter model's tokenizer: the gateway counts the benchmark's calls exactly with it, as
# it does a listing that declares one.
TOKENIZER = SOURCE / "registry" / "models" / "tinyforge" / "echo-chat" / "tokenizer.json"


def _exact_counting(state: StatePaths) -> RouteTokenizer:
    """Put the tokenizer where the farm puts a route's, and name it in the route."""
    data = TOKENIZER.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    target = tokenizer_path(state.root, sha)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return RouteTokenizer(sha256=sha, per_message=4, per_reply=2)


# The stand-in answers as a model with the starter tokenizer does: within max_tokens of it.
MODEL_LIKE = ["--tokenizer", str(TOKENIZER), "--template", "4,2"]
# The stand-in answers max_tokens words, more tokens than that: every answer is cut.
OVERRUNS: list[str] = []


def _calls(
    work: Path,
    quick: bool,
    pin: bool,
    upstream_flags: list[str],
    distinct: int = 0,
    latency: bool = True,
) -> tuple[Load | None, Load | None, Load, Load]:
    """(direct latency, gateway latency, direct throughput, gateway throughput); the
    latencies None unless asked for. Pinned: the stand-in and the load generator share CPU 0
    and the gateway has CPU 1, as on separate hosts (the nearest a two-core machine comes);
    else all share every CPU. `distinct`: how many different requests the load cycles
    through (0: one, repeated)."""
    client = {0} if pin else None
    alone = {1} if pin else None
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    state = StatePaths(work / "state")
    upstream, upstream_url = _start(
        [sys.executable, "-m", "formarket.standins.openai", *upstream_flags],
        work / "standin.log",
        client,
    )
    gateway = None
    try:
        save_routes(
            state.routes,
            [
                Route(
                    deployment="dep-bench",
                    endpoint=upstream_url,
                    account="bench",
                    model=ListingVersion(id="bench/model", version="1.0.0"),
                    input_price=Decimal("0.0000005"),
                    output_price=Decimal("0.0000015"),
                    tokenizer=_exact_counting(state),
                )
            ],
        )
        # Budgets in force: every call reserves tokens and money before it is forwarded.
        key, _ = create_key(
            state.keys,
            "bench",
            rate_per_second=1e9,
            burst=10**9,
            tokens_per_day=10**15,
            usd_per_day=Decimal(10**9),
        )
        gateway, gateway_url = _start(
            [*FORMARKET, "gateway", "serve", "--gateway-dir", str(state.root), "--port", "0",
             "--source", "gateway/bench"],
            work / "gateway.log", alone,
        )  # fmt: skip
        rounds = 2 if quick else 4
        calls = 1000 if quick else 4000
        seconds = 2.0 if quick else 5.0
        for url in (upstream_url, gateway_url):  # warm both up
            _run_load(url, key, 4, 1.0, 500, client, distinct)
        lat: dict[str, list[Load]] = {"direct": [], "gateway": []}
        rate: dict[str, list[Load]] = {"direct": [], "gateway": []}
        for _ in range(rounds):
            for name, url, server in (
                ("direct", upstream_url, upstream),
                ("gateway", gateway_url, gateway),
            ):
                if latency:
                    lat[name].append(_run_load(url, key, 1, 60.0, calls, client, distinct))
                before = _cpu_seconds(server.pid)
                load = _run_load(url, key, 16, seconds, 10**9, client, distinct)
                rate[name].append(replace(load, server_cpu=_cpu_seconds(server.pid) - before))
        return (
            min(lat["direct"], key=lambda r: r.p50_ms) if latency else None,
            min(lat["gateway"], key=lambda r: r.p50_ms) if latency else None,
            max(rate["direct"], key=lambda r: r.rate),
            max(rate["gateway"], key=lambda r: r.rate),
        )
    finally:
        for proc in (gateway, upstream):
            if proc is not None:
                proc.terminate()
                proc.wait(30)


# --- committing usage -------------------------------------------------------------------------


def _spool(spool: Path, events: int) -> int:
    """Write `events` realistic call events (20 deployments, varied counts); raw bytes."""
    rng = random.Random(6)
    served = [
        Served(
            f"dep-{n:03d}",
            f"account-{n % 7}",
            (f"pub-{n % 3}/agent-{n}", "0.3.1") if n % 2 else None,
            (f"pub-{n % 5}/model-{n}", "1.2.0"),
        )
        for n in range(20)
    ]
    start = datetime.now(UTC) - timedelta(hours=1)
    size = 0
    with SpoolWriter(spool, segment_bytes=16 << 20, segment_seconds=1e9) as writer:
        for n in range(events):
            payload = call_event(
                event_id=writer.ids(),
                source="gateway/bench",
                moment=start + timedelta(milliseconds=n * 3 + rng.randrange(3)),
                served=served[rng.randrange(20)],
                input_tokens=rng.randrange(10, 2000),
                output_tokens=rng.randrange(1, 800),
                duration_ms=rng.randrange(5, 3000),
                outcome="ok" if rng.random() < 0.98 else "error",
                tokens_source="upstream" if rng.random() < 0.9 else "measured",
            )
            writer.append(payload)
            size += len(payload) + 1
            if writer.due():
                writer.seal(writer.detach())
    return size


def _object_bytes(repo: Repo, before: bytes, after: bytes) -> int:
    """On-disk bytes of the objects `after` added to `before`'s (loose objects: one file
    each, zlib-compressed, as git stores them until it packs)."""
    old: set[bytes] = set()
    stack = [repo[before].tree]  # type: ignore[attr-defined]
    while stack:
        sha = stack.pop()
        if sha in old:
            continue
        old.add(sha)
        obj = repo[sha]
        if isinstance(obj, Tree):
            stack.extend(entry.sha for entry in obj.iteritems())
    total = 0
    new = [after]
    stack = [repo[after].tree]  # type: ignore[attr-defined]
    while stack:
        sha = stack.pop()
        if sha in old:
            continue
        old.add(sha)
        new.append(sha)
        obj = repo[sha]
        if isinstance(obj, Tree):
            stack.extend(entry.sha for entry in obj.iteritems())
    objects = Path(repo.controldir()) / "objects"
    for sha in new:
        text = sha.decode()
        total += (objects / text[:2] / text[2:]).stat().st_size
    return total


def _commit(work: Path, events: int) -> tuple[float, float, int, int]:
    """(seconds to flush, seconds of gzip -6 alone, git bytes added, raw bytes)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    market = work / "market"
    # Bare: the figure is the flush's own work, with no working tree to write the files to.
    repo = create_repository(market, bare=True)
    commit_changes(
        repo,
        "main",
        {"registry/governance.yaml": b"maintainers: [maintainer]\nbot: formarket-bot\n"},
        "Start",
        Identity("maintainer", "maintainer@example.com"),
    )
    state = work / "state"
    print(f"gateway: spooling {events:,} events", flush=True)
    raw = _spool(state / "spool", events)
    before = branch_tip(repo, "main")
    print("gateway: formarket usage flush", flush=True)
    began = time.perf_counter()
    subprocess.run(
        [*FORMARKET, "usage", "flush", "--repo", str(market), "--gateway-dir", str(state)],
        check=True, cwd=SOURCE, capture_output=True,
    )  # fmt: skip
    seconds = time.perf_counter() - began
    after = branch_tip(repo, "main")
    commit = repo[after]
    assert isinstance(commit, Commit)
    added = _object_bytes(repo, before, after)
    if list((state / "spool").glob("*.seg")):
        raise RuntimeError("the flush left segments behind")
    plain = work / "plain.jsonl"
    _plain_lines(repo, after, plain)
    began = time.perf_counter()
    subprocess.run(["gzip", "-6", "-k", "-f", str(plain)], check=True)
    gzip_seconds = time.perf_counter() - began
    return seconds, gzip_seconds, added, raw


def _plain_lines(repo: Repo, commit: bytes, out: Path) -> None:
    """The committed JSON lines, uncompressed, for the baseline."""
    tree = commit_tree(repo, commit)  # type: ignore[arg-type]
    with out.open("wb") as f:
        stack = [USAGE_ROOT]
        while stack:
            folder = stack.pop()
            for name, (is_dir, sha) in list_dir(repo, tree, folder).items():
                if is_dir:
                    stack.append(f"{folder}/{name}")
                else:
                    f.write(gzip.decompress(read_blob(repo, sha)))


# --- the section ------------------------------------------------------------------------------


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"


def section(quick: bool) -> str:
    work = SOURCE / "build" / "bench" / "gateway"
    events = 100_000 if quick else 1_000_000
    pinned_ok = len(os.sched_getaffinity(0)) >= 2
    print("gateway: calls, direct and through the gateway (gateway on a CPU of its own)")
    d_lat, g_lat, d_rate, g_rate = _calls(work / "calls", quick, pinned_ok, MODEL_LIKE)
    assert d_lat is not None
    assert g_lat is not None
    print("gateway: different calls, none alike", flush=True)
    _, _, dd_rate, dg_rate = _calls(
        work / "calls-distinct", quick, pinned_ok, MODEL_LIKE, distinct=1024, latency=False
    )
    print("gateway: every answer over max_tokens, cut by the gateway", flush=True)
    _, _, cd_rate, cg_rate = _calls(
        work / "calls-cut", quick, pinned_ok, OVERRUNS, distinct=1024, latency=False
    )
    print("gateway: calls again, every process sharing every CPU", flush=True)
    _, _, sd_rate, sg_rate = _calls(work / "calls-shared", quick, False, MODEL_LIKE, latency=False)
    added = g_lat.p50_ms - d_lat.p50_ms
    ratio = g_rate.rate / d_rate.rate
    distinct = dg_rate.rate / dd_rate.rate
    cut = cg_rate.rate / cd_rate.rate
    shared = sg_rate.rate / sd_rate.rate
    flush_seconds, gzip_seconds, git_bytes, raw_bytes = _commit(work / "commit", events)
    per_event = git_bytes / events
    time_target = 30.0 * events / 1_000_000
    rows = [
        (
            "added latency, p50 (one call at a time)",
            f"{g_lat.p50_ms:.2f} ms",
            f"{d_lat.p50_ms:.2f} ms",
            f"+{added:.2f} ms",
            "under 1 ms added",
            _yes(added < 1.0),
        ),
        (
            "latency, p99 (one call at a time)",
            f"{g_lat.p99_ms:.2f} ms",
            f"{d_lat.p99_ms:.2f} ms",
            f"+{g_lat.p99_ms - d_lat.p99_ms:.2f} ms",
            "",
            "",
        ),
        (
            "throughput, 16 calls in flight, the gateway on a CPU of its own",
            f"{g_rate.rate:,.0f} calls/s",
            f"{d_rate.rate:,.0f} calls/s",
            f"{ratio:.0%} of direct",
            "at least 80% of direct",
            _yes(ratio >= 0.8),
        ),
        (
            "CPU per call of the process called, in those rounds",
            f"{g_rate.cpu_per_call_us:.0f} µs (the gateway)",
            f"{d_rate.cpu_per_call_us:.0f} µs (the stand-in)",
            f"{g_rate.cpu_per_call_us / d_rate.cpu_per_call_us:.1f}×",
            "",
            "",
        ),
        (
            "the same, 1,024 different calls in turn (no count reused)",
            f"{dg_rate.rate:,.0f} calls/s",
            f"{dd_rate.rate:,.0f} calls/s",
            f"{distinct:.0%} of direct",
            "",
            "",
        ),
        (
            "the same, every answer over `max_tokens` and cut by the gateway",
            f"{cg_rate.rate:,.0f} calls/s",
            f"{cd_rate.rate:,.0f} calls/s",
            f"{cut:.0%} of direct",
            "",
            "",
        ),
        (
            "throughput, 16 calls in flight, all sharing both CPUs",
            f"{sg_rate.rate:,.0f} calls/s",
            f"{sd_rate.rate:,.0f} calls/s",
            f"{shared:.0%} of direct",
            "",
            "",
        ),
        (
            f"commit {events:,} events (`formarket usage flush`)",
            f"{flush_seconds:.1f} s",
            f"{gzip_seconds:.1f} s (gzip -6 alone)",
            f"{flush_seconds / gzip_seconds:.1f}×",
            "under 30 s for 1,000,000" + (" (scaled: quick)" if quick else ""),
            _yes(flush_seconds < time_target),
        ),
        (
            "bytes per event in git",
            f"{per_event:.1f} B",
            f"{raw_bytes / events:.0f} B (JSON lines)",
            f"{raw_bytes / git_bytes:.0f}× smaller",
            "under 40 B",
            _yes(per_event < 40),
        ),
    ]
    lines = [
        "## Gateway: calls and usage",
        "",
        "Calls go to the stand-in deployment directly (the baseline) or through `formarket"
        " gateway serve` in front of it, each in a process of its own on loopback, from a load"
        " generator in a third; the best of several alternating rounds counts. Metering is in"
        " force as in production: each call's tokens counted by the gateway exactly, with the"
        " starter model's tokenizer (`tinyforge/echo-chat`), its answer held to"
        " `max_tokens`, and its bound reserved from the key's daily token quota and spending"
        " cap before it is forwarded, then settled. In production"
        " the gateway has a host of its own, apart from the VMs and the callers; the nearest"
        " this two-core machine comes is the gateway alone on CPU 1, the stand-in and the load"
        " generator sharing CPU 0 (in both runs), so the ratio is set by how the gateway's CPU"
        " per call compares with what the stand-in and the load generator spend together on"
        " theirs; the row after it gives the CPU time the process called (the gateway, or the"
        " stand-in in the direct run) spent per call in those rounds, as Linux accounts it."
        " Machines differ in that balance, so the ratio moves from one machine (or day) to"
        " another more than either figure alone. The last throughput row has every process"
        " share both CPUs instead. The stand-in does no inference, so the gateway's share of"
        " each call is as large as it gets: with a real model a call takes far longer and the"
        " gateway's cost is the same. The stand-in answers as a model with that tokenizer"
        " does, within `max_tokens` tokens of it, and reports the same counts. The first rows"
        " repeat one call, as load generators do, so the gateway counts each text once and"
        " remembers the count (as it does a chat's history, sent again each turn); the next"
        " cycles through 1,024 different calls, so every call's input and answer are encoded"
        " afresh: that costs what the `tokenizers` library costs, about a microsecond per"
        " token here, where a real model spends milliseconds generating each one. The row"
        " after has the stand-in overrun every answer (`max_tokens` words, more tokens than"
        " that), so the gateway cuts each one (find the cut from the encoding's offsets,"
        " count the kept part, re-encode the answer), also with different calls."
        " Committing: "
        f"{events:,} call events from the spool to git by `formarket usage flush` in a new"
        " process (read, checked, gzipped, committed); bytes per event are the on-disk sizes of"
        " the git objects the commit added.",
        "",
        "| figure | ours | baseline | ratio | target | met |",
        "|---|---:|---:|---:|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_gateway")
    parser.add_argument("--quick", action="store_true", help="fewer calls; 100,000 events")
    parser.add_argument("--load", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:
        import uvloop

        url, key, concurrency, seconds, calls, distinct = args.load
        result = uvloop.run(
            _load(url, key, int(concurrency), float(seconds), int(calls), int(distinct))
        )
        print(json.dumps(result.__dict__))
        return 0
    print(section(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
