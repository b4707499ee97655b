"""Cold start benchmark: the first call to a scaled-to-zero deployment, from the caller's
request to the first byte of its answer, beside the bare boot of the same VM.

`python -m benchmarks.bench_coldstart [--quick]` prints a Markdown section; `section(quick)`
returns it for the benchmark report.

The starter model tinyforge/echo-chat (a busybox image) is deployed with `--idle-after` on a
private libvirtd running qemu under TCG, behind the gateway, with the farm's waker watching
the gateway's wake folder. Each round puts it to sleep the way the farm does (its VM powered
off, its route marked idle), then either calls it through the gateway (ours: the gateway holds
the call, the waker starts the domain, the call goes on) or, alternately, powers the same domain
on and waits for its service directly (the baseline: what the VM's boot alone costs). The cold
call's time is cut into its parts from the waker's and the console's clocks:

- notice: from the call to the waker seeing the gateway's wake request;
- start: libvirt starting the domain;
- boot: from started to the image's boot marker on the serial console;
- health: from the marker to the service's first HTTP answer;
- forward: from the route published running to the caller's first byte.
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from dulwich.repo import Repo

from formarket.builder.vm import BOOT_MARKER
from formarket.deploy.request import DeployOptions, run
from formarket.farm import deployer, operations, status
from formarket.farm.domain import domain_name
from formarket.farm.libvirt_conn import Connections
from formarket.farm.libvirtd import ensure_libvirtd, local_host, stop_libvirtd
from formarket.farm.settings import FarmSettings
from formarket.farm.sleeping import SleepMarks, sleep, wake
from formarket.gateway.config import GatewayConfig, StatePaths, default_state_dir
from formarket.gateway.keys import create_key
from formarket.gateway.server import ServerThread, build_gateway
from formarket.gateway.wake import WakeRequests
from formarket.market.writer import Identity, commit_changes, import_tree

__all__ = ["section"]

SOURCE = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 8.0
_SERIAL = re.compile(r"<serial type=['\"]file['\"]>\s*<source path=['\"]([^'\"]+)['\"]")


@dataclass
class Cold:
    """One cold call, in seconds."""

    total: float = 0.0
    notice: float = 0.0
    start: float = 0.0
    boot: float = 0.0
    health: float = 0.0
    forward: float = 0.0


class _Waker:
    """The farm's waker, with its clocks read: sees the request, starts the domain (timed),
    then the route is published running."""

    def __init__(self, farm: _Farm) -> None:
        self.farm = farm
        self.seen = 0.0
        self.woken = 0.0
        self.start = 0.0
        self.up = 0.0  # the service answered
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        requests = WakeRequests(self.farm.gateway_state.root)
        while not self._stop.is_set():
            if self.farm.dep in requests.pending():
                self.seen = time.monotonic()
                woken = wake(
                    self.farm.pool,
                    self.farm.host,
                    self.farm.dep,
                    self.farm.slot(),
                    SleepMarks(self.farm.settings.state),
                    operations.routes_path(self.farm.settings),
                )
                requests.clear(self.farm.dep)
                self.start = woken.start
                self.up = time.monotonic()
                self.woken = self.up
            self._stop.wait(0.02)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class _Farm:
    def __init__(self, root: Path) -> None:
        self.root = root
        repo = Repo.init(str(root / "marketplace"), mkdir=True)
        files = import_tree(SOURCE, ("registry", "builder", "royalties"))
        commit_changes(repo, "main", files, "Starter registry", Identity("mara", "m@example.org"))
        self.workdir = Path(tempfile.mkdtemp(prefix="fm-coldstart-", dir="/tmp"))
        ensure_libvirtd(self.workdir)
        self.host = local_host(self.workdir)
        hosts = root / "hosts.yaml"
        hosts.write_text(yaml.safe_dump({"hosts": [self.host.model_dump(mode="json")]}))
        self.gateway_state = StatePaths(default_state_dir(Path(repo.path)))
        self.key, _ = create_key(self.gateway_state.keys, "ada", rate_per_second=100, burst=100)
        self.gateway = ServerThread(
            build_gateway(GatewayConfig(self.gateway_state, source="gateway/bench"))
        ).start()
        self.settings = FarmSettings.from_env(
            root,
            {
                "FORMARKET_REPO": repo.path,
                "FORMARKET_STATE": str(root / "farm"),
                "FORMARKET_HOSTS": str(hosts),
                "FORMARKET_GATEWAY_URL": self.gateway.url,
            },
        )
        self.pool = Connections()
        planned = run(
            self.settings,
            DeployOptions(
                model="tinyforge/echo-chat", account="ada", requester="ada", idle_after="1h"
            ),
            echo=lambda _line: None,
        )
        self.dep = planned.resolved.deployments[0].id
        enqueue = operations.run_here(self.settings, self.pool)
        deadline = time.monotonic() + 600
        while not status.endpoint(self.settings, self.dep):
            if time.monotonic() > deadline:
                raise RuntimeError("echo-chat was not deployed in 10 minutes")
            operations.reconcile_once(self.settings, enqueue, pool=self.pool, meter=False)
        self.endpoint = status.endpoint(self.settings, self.dep) or ""

    def slot(self) -> int:
        records = deployer.actual(self.pool.get(self.host))
        return next(r.slot for r in records if r.deployment_id == self.dep)

    def console(self) -> Path:
        xml = self.pool.get(self.host).domain(domain_name(self.dep, self.slot()))
        found = _SERIAL.search(xml.xml if xml else "")
        if found is None:
            raise RuntimeError("the domain has no serial console file")
        return Path(found.group(1))

    def sleep(self) -> None:
        sleep(
            self.pool,
            self.host,
            self.dep,
            self.slot(),
            SleepMarks(self.settings.state),
            operations.routes_path(self.settings),
        )

    def close(self) -> None:
        self.gateway.stop()
        self.pool.close()
        stop_libvirtd(self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _markers(path: Path) -> int:
    try:
        return path.read_bytes().count(BOOT_MARKER)
    except FileNotFoundError:
        return 0


def _watch_marker(path: Path, before: int, out: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        if _markers(path) > before:
            out.append(time.monotonic())
            return
        time.sleep(0.01)


def _first_byte(url: str, key: str, model: str) -> float:
    """Seconds from sending a chat call to reading the first byte of its answer."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    body = (
        b'{"model": "%s", "messages": [{"role": "user", "content": "cold start"}]}' % model.encode()
    )
    began = time.monotonic()
    conn.request(
        "POST",
        "/v1/chat/completions",
        body,
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    response.read(1)
    took = time.monotonic() - began
    response.read()
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"the cold call was answered {response.status}")
    return took


def _cold(farm: _Farm) -> Cold:
    farm.sleep()
    console = farm.console()
    before = _markers(console)
    marker: list[float] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_marker, args=(console, before, marker, stop))
    waker = _Waker(farm)
    watcher.start()
    try:
        began = time.monotonic()
        total = _first_byte(farm.gateway.url, farm.key, farm.dep)
    finally:
        stop.set()
        watcher.join(10)
        waker.close()
    started = waker.seen + waker.start
    booted = marker[0] if marker else started
    return Cold(
        total=total,
        notice=waker.seen - began,
        start=waker.start,
        boot=booted - started,
        health=waker.up - booted,
        forward=began + total - waker.up,
    )


def _bare_boot(farm: _Farm) -> float:
    """The same domain powered on and waited for directly: its boot alone."""
    farm.sleep()
    conn = farm.pool.get(farm.host)
    began = time.monotonic()
    conn.power_on(domain_name(farm.dep, farm.slot()))
    deployer.wait_healthy(farm.endpoint, 120, interval=0.05)
    took = time.monotonic() - began
    SleepMarks(farm.settings.state).woke(farm.dep, datetime.now(UTC))
    return took


@contextmanager
def _farm() -> Iterator[_Farm]:
    root = Path(tempfile.mkdtemp(prefix="fm-coldstart-farm-"))
    farm = _Farm(root)
    try:
        yield farm
    finally:
        farm.close()
        shutil.rmtree(root, ignore_errors=True)


def _row(name: str, values: list[float], baseline: str = "") -> str:
    return f"| {name} | {statistics.median(values):.2f} s | {baseline} |"


def section(quick: bool) -> str:
    rounds = 2 if quick else 5
    colds: list[Cold] = []
    bare: list[float] = []
    print("coldstart: deploying echo-chat with --idle-after on a private libvirtd")
    with _farm() as farm:
        for n in range(rounds):
            print(f"coldstart: round {n + 1} of {rounds}")
            colds.append(_cold(farm))
            bare.append(_bare_boot(farm))
    total = [c.total for c in colds]
    median = statistics.median(total)
    met = median < TARGET_SECONDS
    lines = [
        "## Scale to zero: the first call to an idle deployment",
        "",
        "The starter model tinyforge/echo-chat (a busybox image) deployed with `--idle-after`"
        " on a private libvirtd running qemu under TCG (no KVM on these machines), behind the"
        " gateway, with the farm's waker watching the gateway's wake folder every 20 ms. Each"
        " round stops its VM as the farm does for idleness (the domain and its disk kept, the"
        " route marked idle), then sends one chat call through the gateway and times it to the"
        " answer's first byte; then, alternately, the same domain is powered on and waited for"
        f" directly, the baseline: the boot alone. Median of {rounds} rounds each. The parts are"
        " read from the waker's clock and the serial console's boot marker.",
        "",
        "| figure | ours | baseline | ratio | target | met |",
        "|---|---:|---:|---:|---|---|",
        f"| first call to an idle deployment, to the first byte of its answer |"
        f" {median:.2f} s | {statistics.median(bare):.2f} s (power on, service answers) |"
        f" +{median - statistics.median(bare):.2f} s | under {TARGET_SECONDS:g} s |"
        f" {'yes' if met else '**no**'} |",
        "",
        "Where the cold call's time goes (medians):",
        "",
        "| part | seconds | what would cut it |",
        "|---|---:|---|",
        f"| notice: the call to the waker seeing the wake request |"
        f" {statistics.median(c.notice for c in colds):.2f} |"
        " the gateway telling the waker directly (a socket) instead of a file it polls |",
        f"| start: libvirt starting the domain | {statistics.median(c.start for c in colds):.2f} |"
        " KVM; a domain kept paused in memory (resume instead of boot) for short idle spans |",
        f"| boot: started to the boot marker | {statistics.median(c.boot for c in colds):.2f} |"
        " KVM (TCG emulates every instruction); a smaller kernel and initrd; a memory snapshot"
        " restored instead of a boot |",
        f"| health: the marker to the service's first answer |"
        f" {statistics.median(c.health for c in colds):.2f} |"
        " the service started before the marker; health polled more often than every 0.3 s |",
        f"| forward: route running to the first byte |"
        f" {statistics.median(c.forward for c in colds):.2f} |"
        " the gateway told of the route at once instead of looking every 50 ms |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_coldstart")
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args(argv)
    print(section(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
