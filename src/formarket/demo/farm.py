"""The farm in `formarket demo`, on embedded defaults: no server to install.

A private libvirtd (qemu under software emulation) is the one host; the queue is the embedded
sqlite broker with one local worker process taking both queues; reconcile cycles run here, as
beat would run them, until every requested deployment answers. On the way out everything the
demo started is stopped: its VMs, the worker and the libvirtd.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from formarket.errors import FormarketError
from formarket.farm import operations, status
from formarket.farm.embedded import local_worker
from formarket.farm.libvirt_conn import Connections
from formarket.farm.libvirtd import ensure_libvirtd, local_host, stop_libvirtd
from formarket.farm.settings import FarmSettings

__all__ = ["DemoFarm", "demo_farm"]

Echo = Callable[[str], None]


@dataclass
class DemoFarm:
    settings: FarmSettings
    pool: Connections
    echo: Echo
    enqueue: operations.Enqueue  # to the local worker's queues

    def cycle(self) -> operations.Cycle:
        return operations.reconcile_once(self.settings, self.enqueue, pool=self.pool)

    def run_until(
        self, done: Callable[[operations.Cycle], bool], what: str, timeout: float = 420.0
    ) -> operations.Cycle:
        """Reconcile every second or two, narrating what changes, until `done`."""
        said: set[str] = set()
        deadline = time.monotonic() + timeout
        while True:
            cycle = self.cycle()
            summary = cycle.summary()
            lines = [f"build {b}" for b in summary["builds"]]
            lines += [f"deploy {d}" for d in summary["deploys"]]
            lines += [f"stop {s}" for s in summary["stops"]]
            lines += [f"{dep} runs" for dep in summary["running"]]
            lines += [f"{dep}: {why}" for dep, why in summary["refused"].items()]
            lines += [f"failed: {f}" for f in summary["failed"]]
            for line in lines:
                if line not in said:
                    said.add(line)
                    self.echo(f"  reconcile: {line}")
            if summary["refused"]:
                raise FormarketError(f"the farm refused: {summary['refused']}")
            if done(cycle):
                return cycle
            if time.monotonic() > deadline:
                raise FormarketError(
                    f"the farm did not get there within {timeout:.0f}s: {what}",
                    hint=f"the worker's log is under {self.settings.state / 'logs'}",
                )
            time.sleep(1.5)

    def wait_routed(self, deployment_ids: Sequence[str]) -> dict[str, str]:
        self.run_until(
            lambda _c: all(status.endpoint(self.settings, d) for d in deployment_ids),
            "every deployment answering",
        )
        return {d: status.endpoint(self.settings, d) or "" for d in deployment_ids}

    def wait_gone(self) -> None:
        self.run_until(lambda c: not c.plan.running and c.plan.idle, "every VM stopped")


@contextlib.contextmanager
def demo_farm(repo_path: Path, state: Path, echo: Echo, gateway: str) -> Iterator[DemoFarm]:
    """The farm; `gateway` is the gateway's URL, which its agents call their models through."""
    # The daemon runs unprivileged, so its folder lies where any user may enter (and its
    # socket path stays short).
    libvirt_dir = Path(tempfile.mkdtemp(prefix="formarket-libvirtd-", dir="/tmp"))
    pool = Connections()
    try:
        ensure_libvirtd(libvirt_dir)
        host = local_host(libvirt_dir, "demo-host", vcpus=8, memory_mib=8192)
        state.mkdir(parents=True, exist_ok=True)
        hosts = state / "hosts.yaml"
        hosts.write_text(yaml.safe_dump({"hosts": [host.model_dump(mode="json")]}))
        settings = FarmSettings(
            repo=repo_path.absolute(),
            state=state.absolute(),
            store=(state / "store").absolute(),
            cache=(state / "cache").absolute(),
            hosts=hosts.absolute(),
            gateway_url=gateway,
        )
        echo(f"a private libvirtd ({host.uri}) is the farm's one host: qemu, no KVM needed")
        echo(f"the queue: sqlite files in {state} and one local worker process (no Redis)")
        with local_worker(settings, concurrency=2) as app:
            farm = DemoFarm(settings, pool, echo, operations.celery_enqueue(app))
            try:
                yield farm
            finally:
                _remove_everything(farm)
    finally:
        pool.close()
        stop_libvirtd(libvirt_dir)
        shutil.rmtree(libvirt_dir, ignore_errors=True)


def _remove_everything(farm: DemoFarm) -> None:
    """Stop every VM the demo started, even after a failure."""
    hosts = operations.inventory(farm.settings).hosts
    for host in hosts:
        with contextlib.suppress(FormarketError):
            conn = farm.pool.get(host)
            for domain in conn.domains():
                conn.destroy(domain.name)
