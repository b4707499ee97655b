"""Round trip of the farm's trivial task, against a bare Redis echo on the same server.

    python -m benchmarks.farm_queue [--quick]

The farm's figure is `formarket.ping` sent with the farm's own app (its settings: late
acknowledgement, prefetch 1, the Redis result backend) to a real `formarket farm worker`
process, and its answer read back: what a caller of any farm task pays on top of the task.

The baseline is the least any cross-process round trip through that Redis can cost: a second
process that BRPOPs a request and LPUSHes the reply, with the caller LPUSHing and BRPOPping,
like the farm's own path (message to a list, answer back through Redis) with none of the
machinery. It is the honest floor; Celery with its defaults would only compare one Celery with
another, and its defaults (early acknowledgement, prefetch 4) are the ones the farm must not use.
Both run side by side on one private redis-server, alternating in rounds so that noise from
other processes falls on both. Target: a median under 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from formarket.farm.celery_app import DEPLOY_QUEUE, make_app
from formarket.farm.embedded import start_worker, stop_worker, wait_ready
from formarket.farm.settings import FarmSettings
from formarket.process import Runner, Started

__all__ = ["TARGET_MEDIAN_MS", "round_trip"]

TARGET_MEDIAN_MS = 5.0
_REQUESTS = "bench:echo:requests"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(runner: Runner, folder: Path) -> tuple[Started, int]:
    port = _free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    argv += ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
    server = runner.start(argv)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    client.close()
    return server, port


def _echo(port: int) -> None:
    """The baseline's other process: answer each request on the list named in it."""
    client = redis.Redis(port=port)
    while True:
        _, raw = client.brpop([_REQUESTS])  # type: ignore[misc]
        reply_to, _, payload = raw.partition(b" ")
        if payload == b"stop":
            return
        client.lpush(reply_to, payload)


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(p95 * 1000, 3),
    }


def round_trip(quick: bool) -> dict[str, Any]:
    """Median and p95 round trip (ms) of `formarket.ping` through the farm, and of the bare
    Redis echo, measured in alternating rounds; the target and whether it is met."""
    count = 200 if quick else 2000
    rounds = 4 if quick else 10
    runner = Runner()
    with tempfile.TemporaryDirectory(prefix="bench-farm-") as scratch:
        root = Path(scratch)
        server, port = _start_redis(runner, root)
        url = f"redis://127.0.0.1:{port}/0"
        settings = FarmSettings.from_env(
            root, {"FORMARKET_BROKER_URL": url, "FORMARKET_STATE": str(root / "farm")}
        )
        app = make_app(settings)
        worker, log = start_worker(settings, (DEPLOY_QUEUE,), 1, loglevel="warning")
        echo = runner.start(
            [sys.executable, "-m", "benchmarks.farm_queue", "--echo", str(port)],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        client = redis.Redis(port=port)
        reply_to = f"bench:echo:reply:{uuid.uuid4().hex}"
        farm: list[float] = []
        bare: list[float] = []
        try:
            wait_ready(app, worker, log, DEPLOY_QUEUE)
            ping = app.tasks["formarket.ping"]
            for warm in range(20):  # connections, pub/sub subscriptions, imports
                ping.delay(warm).get(timeout=10)
                client.lpush(_REQUESTS, f"{reply_to} {warm}")
                client.brpop([reply_to], timeout=10)
            per_round = count // rounds
            for _ in range(rounds):
                for i in range(per_round):
                    started = time.perf_counter()
                    answer = ping.delay(i).get(timeout=10)
                    farm.append(time.perf_counter() - started)
                    if answer != i:
                        raise RuntimeError(f"formarket.ping({i}) answered {answer!r}")
                for i in range(per_round):
                    started = time.perf_counter()
                    client.lpush(_REQUESTS, f"{reply_to} {i}")
                    got = client.brpop([reply_to], timeout=10)
                    bare.append(time.perf_counter() - started)
                    if got is None or got[1] != str(i).encode():
                        raise RuntimeError(f"the echo answered {got!r} to {i}")
        finally:
            client.lpush(_REQUESTS, f"{reply_to} stop")
            echo.stop(grace=2)
            client.close()
            stop_worker(worker, grace=10)
            app.close()
            server.stop()
    farm_ms = _ms(farm)
    return {
        "tasks": len(farm),
        "farm_ping": farm_ms,
        "redis_echo_baseline": _ms(bare),
        "target_median_ms": TARGET_MEDIAN_MS,
        "meets_target": farm_ms["median_ms"] < TARGET_MEDIAN_MS,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.farm_queue", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 round trips instead of 2000")
    parser.add_argument("--echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo:
        _echo(args.echo)
        return 0
    figures = round_trip(args.quick)
    farm, bare = figures["farm_ping"], figures["redis_echo_baseline"]
    print(
        f"formarket.ping through the farm: median {farm['median_ms']:.2f} ms,"
        f" p95 {farm['p95_ms']:.2f} ms ({figures['tasks']} tasks, target median"
        f" < {TARGET_MEDIAN_MS:g} ms: {'met' if figures['meets_target'] else 'NOT met'})"
    )
    print(
        f"bare Redis LPUSH/BRPOP echo:     median {bare['median_ms']:.2f} ms,"
        f" p95 {bare['p95_ms']:.2f} ms"
    )
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
