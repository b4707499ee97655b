"""The gateway side by side with LiteLLM's proxy, in front of the same stand-in, under the
same load.

`python -m benchmarks.bench_litellm [--quick]` prints a Markdown section, runnable on its own
(`python -m benchmarks --only litellm` writes it as the report); `section(quick)` returns it
for the benchmark report, after the gateway's own section.

LiteLLM is not a formarket dependency: it is installed from the package index into a virtual
environment of its own under build/bench/ on first use (`pip install 'litellm[proxy]==...'`),
and its proxy runs from there with one worker and no database, as `litellm --config` starts
it. The stand-in deployment, the gateway and the load generator are those of
`benchmarks.bench_gateway`: the proxies each have CPU 1 to themselves in turn, the stand-in
and the load generator share CPU 0, and the best of alternating rounds counts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess  # noqa: TID251 - the benchmarks time whole commands
import sys
import time
from decimal import Decimal
from pathlib import Path

import yaml

from benchmarks.bench_gateway import (
    FORMARKET,
    MODEL_LIKE,
    SOURCE,
    Load,
    _exact_counting,
    _run_load,
    _start,
)
from formarket.builder.vm import free_port
from formarket.gateway.config import StatePaths
from formarket.gateway.keys import create_key
from formarket.gateway.routes import Route, save_routes
from formarket.httpclient import Client, HTTPError
from formarket.schemas.usage import ListingVersion

__all__ = ["LITELLM_VERSION", "litellm_venv", "section"]

LITELLM_VERSION = "1.108.7"
MASTER_KEY = "sk-formarket-bench"


class InstallError(RuntimeError):
    """LiteLLM could not be installed from the package index; the message is pip's."""


def litellm_venv(root: Path) -> Path:
    """The `litellm` command of a virtual environment holding LiteLLM's proxy, made on first
    use. InstallError with pip's own output when the package index does not have it."""
    venv = root / f"litellm-{LITELLM_VERSION}"
    command = venv / "bin" / "litellm"
    if command.exists():
        return command
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"]
    done = subprocess.run(pip, capture_output=True, text=True)
    if done.returncode != 0 or not command.exists():
        shutil.rmtree(venv, ignore_errors=True)
        lines = [ln for ln in done.stderr.splitlines() if not ln.startswith("WARNING: Location")]
        raise InstallError("\n".join(lines[-12:]) or f"pip exited with {done.returncode}")
    return command


def _start_litellm(
    command: Path, upstream: str, work: Path, cpus: set[int] | None
) -> tuple[subprocess.Popen[bytes], str]:
    config = {
        "model_list": [
            {
                "model_name": "dep-bench",
                "litellm_params": {
                    "model": "openai/bench-model",
                    "api_base": f"{upstream}/v1",
                    "api_key": "unused",
                },
            }
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"telemetry": False, "set_verbose": False},
    }
    path = work / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    env.pop("PYTHONPATH", None)
    log = (work / "litellm.log").open("wb")
    argv = [str(command), "--config", str(path), "--port", str(port), "--num_workers", "1"]
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=work,
        env=env,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    with Client(url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                if client.get("/health/liveliness").status_code == 200:
                    return proc, url
            except HTTPError:
                pass
            time.sleep(0.5)
    proc.kill()
    tail = (work / "litellm.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"LiteLLM's proxy did not start:\n{tail}")


def compare(work: Path, quick: bool) -> dict[str, tuple[Load, Load]]:
    """(best latency round, best throughput round) for the stand-in called directly, through
    the gateway and through LiteLLM's proxy."""
    command = litellm_venv(SOURCE / "build" / "bench")
    pinned = len(os.sched_getaffinity(0)) >= 2
    client, alone = ({0}, {1}) if pinned else (None, None)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    state = StatePaths(work / "state")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        upstream, upstream_url = _start(
            [sys.executable, "-m", "formarket.standins.openai", *MODEL_LIKE],
            work / "standin.log",
            client,
        )
        procs.append(upstream)
        model = ListingVersion(id="bench/model", version="1.0.0")
        route = Route(
            deployment="dep-bench",
            endpoint=upstream_url,
            account="bench",
            model=model,
            input_price=Decimal("0.0000005"),
            output_price=Decimal("0.0000015"),
            tokenizer=_exact_counting(state),
        )
        save_routes(state.routes, [route])
        # Budgets in force, as in the gateway's own section: each call reserves, then settles.
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
        procs.append(gateway)
        litellm, litellm_url = _start_litellm(command, upstream_url, work, alone)
        procs.append(litellm)
        targets = {
            "direct": (upstream_url, key),
            "gateway": (gateway_url, key),
            "litellm": (litellm_url, MASTER_KEY),
        }
        for url, token in targets.values():  # warm each up
            _run_load(url, token, 4, 2.0, 300, client)
        rounds = 2 if quick else 3
        calls = 300 if quick else 1000
        seconds = 3.0 if quick else 5.0
        lat: dict[str, list[Load]] = {name: [] for name in targets}
        rate: dict[str, list[Load]] = {name: [] for name in targets}
        for _ in range(rounds):
            for name, (url, token) in targets.items():
                lat[name].append(_run_load(url, token, 1, 60.0, calls, client))
                rate[name].append(_run_load(url, token, 16, seconds, 10**9, client))
        return {
            name: (min(lat[name], key=lambda r: r.p50_ms), max(rate[name], key=lambda r: r.rate))
            for name in targets
        }
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


# What each proxy does for every call in this setup (the route names the starter model's
# tokenizer; the bench key has a token quota and a spending cap): read from each one's code
# and configuration as run here, not from either project's list of features.
PER_CALL = (
    ("who may call", "a key of the account, checked against its SHA-256", "the master key"),
    (
        "limits per key",
        "calls per second checked; the key's daily token quota and spending cap: the call's"
        " bound reserved before forwarding, settled after",
        "none (they need its database)",
    ),
    (
        "what is passed back",
        "at most `n` choices of at most `max_tokens`, within size and time ceilings",
        "what the upstream sent",
    ),
    (
        "tokens billed",
        "counted by the gateway exactly, with the model's tokenizer; the upstream's compared",
        "the upstream's `usage`, as reported",
    ),
    (
        "record of the call",
        "a usage event, spooled to disk (synced every 50 ms), then committed to git",
        "none kept (it needs its database)",
    ),
)


def section(quick: bool) -> str:
    """The Markdown of the comparison, or what kept it from running."""
    heading = "## Gateway: side by side with LiteLLM's proxy"
    try:
        results = compare(SOURCE / "build" / "bench" / "litellm", quick)
    except InstallError as exc:
        return "\n".join(
            [
                heading,
                "",
                f"LiteLLM {LITELLM_VERSION} could not be installed from the package index, so"
                " there are no figures for it. pip said:",
                "",
                "```",
                str(exc),
                "```",
                "",
            ]
        )
    d_lat, d_rate = results["direct"]
    rows = []
    for name, label in (
        ("gateway", "formarket gateway"),
        ("litellm", f"LiteLLM {LITELLM_VERSION}"),
    ):
        lat, rate = results[name]
        rows.append(
            f"| {label} | {lat.p50_ms:.2f} ms | +{lat.p50_ms - d_lat.p50_ms:.2f} ms"
            f" | {lat.p99_ms:.2f} ms | {rate.rate:,.0f} calls/s | {rate.rate / d_rate.rate:.1%} |"
        )
    g_rate, l_rate = results["gateway"][1].rate, results["litellm"][1].rate
    lines = [
        heading,
        "",
        f"LiteLLM {LITELLM_VERSION}'s proxy (`litellm --config ... --num_workers 1`, installed"
        " from the package index in a virtual environment of its own, no database) and `formarket"
        " gateway serve` in front of the same stand-in deployment, under the same load: latency"
        " one call at a time, throughput with 16 calls in flight, each proxy alone on CPU 1 in"
        " turn while the stand-in and the load generator share CPU 0; the best of alternating"
        " rounds counts. The stand-in answers as a model with the starter tokenizer does"
        " (within `max_tokens` of it), and the gateway meters exactly, with that tokenizer and"
        " with the key's token quota and spending cap reserved and settled on every call.",
        "",
        "| in front of the stand-in | latency p50 | added | latency p99 | throughput | of direct |",
        "|---|---:|---:|---:|---:|---:|",
        f"| nothing (direct) | {d_lat.p50_ms:.2f} ms | | {d_lat.p99_ms:.2f} ms"
        f" | {d_rate.rate:,.0f} calls/s | 100% |",
        *rows,
        "",
        f"The gateway carries {g_rate / l_rate:.0f}× LiteLLM's calls per second here. What each"
        " does for every call, as set up here:",
        "",
        "| per call | formarket gateway | LiteLLM proxy |",
        "|---|---|---|",
        *(f"| {what} | {ours} | {theirs} |" for what, ours, theirs in PER_CALL),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_litellm")
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    args = parser.parse_args(argv)
    print(section(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
