"""One reconcile cycle of a farm at scale: 1,000 desired deployments across 50 hosts.

    python -m benchmarks.farm_reconcile [--quick]

The hosts are libvirt test-driver hosts in this process (`farm.testdriver`): real libvirt
calls, no VMs. A scratch marketplace repository is made from the starter registry, the
images of echo-chat and faq-bot are built into a scratch store (busybox images, under a
second each with the shared base cache), and 1,000 Deployment documents go to git in one
commit with `farm.desired.submit`: mostly echo-chat models on CPUs, some on GPUs, and faq-bot
agents attached to models. About half of them are defined as running domains beforehand,
placed by the farm's own `Placer` so that no host is over capacity: the steady state of a
farm where half the work is new. The cycle then has the other half to place and hand out.

Ours: `operations.reconcile_once` as the reconcile task runs it (git read, images looked up,
every host's domains listed once, planned, a lease taken per action, routes published,
running time metered) with an enqueue that only records, and fresh SQLite leases each run
so each run hands out the same work.

The baseline is the same cycle observing libvirt the obvious way: for every desired
deployment, ask every host for its domain by name (`HostConnection.domain`, libvirt's
lookupByName). It is run through the very same `reconcile_once`, with a host connection whose
`domains()` answers by those lookups, so the two differ in that alone. (It would not see a
domain whose deployment is gone from git; there is none here.) Both must plan the same.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from formarket.builder.manifest import BuildManifest
from formarket.farm import operations
from formarket.farm.building import build_listing
from formarket.farm.desired import submit
from formarket.farm.domain import DomainSpec, domain_name, domain_xml
from formarket.farm.hosts import Host
from formarket.farm.leases import SqliteLeases
from formarket.farm.libvirt_conn import Connections, DomainXml, HostConnection
from formarket.farm.libvirtd import ensure_libvirtd, stop_libvirtd
from formarket.farm.placement import Placed, Placer
from formarket.farm.reconcile import Build, Deploy, Stop, need_of
from formarket.farm.settings import FarmSettings
from formarket.market.governance import bot_identity
from formarket.market.repository import create_repository
from formarket.market.writer import Identity, commit_changes, import_tree
from formarket.schemas.deployment import Deployment
from formarket.standins.libvirt_test import write_test_host
from formarket.yamldoc import load_yaml

__all__ = ["TARGET_SECONDS", "reconcile_cycle"]

SOURCE = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 5.0


def _current(kind: str, listing: str) -> tuple[str, str]:
    """A starter listing with the version its listing.yaml holds now: only that version can
    be built from the branch tip."""
    raw = (SOURCE / "registry" / kind / listing / "listing.yaml").read_bytes()
    data = load_yaml(raw, f"registry/{kind}/{listing}/listing.yaml").data
    return listing, str(data["version"])


MODEL = _current("models", "tinyforge/echo-chat")
AGENT = _current("agents", "tinyforge/faq-bot")
# (vCPUs, memory MiB, GPUs, how many) of the 50 hosts.
_HOSTS: tuple[tuple[int, int, dict[str, int], int], ...] = (
    (32, 131072, {}, 16),
    (64, 262144, {}, 16),
    (96, 393216, {}, 8),
    (64, 524288, {"H100": 8}, 6),
    (32, 262144, {"L4": 4}, 4),
)


@dataclass(slots=True)
class _Mode:
    """How the pool's connections behave, switched between runs."""

    names: Sequence[str] | None = None  # set: domains are found the baseline's way
    socket: str | None = None  # set: hosts are reached through the libvirtd at this socket


class _Observed(HostConnection):
    """A host connection that, given the desired deployments' names, finds its domains by
    asking for each name in turn instead of listing them: the baseline's way."""

    mode: _Mode

    def domains(self) -> list[DomainXml]:
        if self.mode.names is None:
            return super().domains()
        found = []
        for name in self.mode.names:
            dom = self.domain(name)
            if dom is not None:
                found.append(dom)
        return found


def _opener(mode: _Mode) -> Callable[[Host], HostConnection]:
    def open_host(host: Host) -> HostConnection:
        reach = host
        if mode.socket is not None:
            # The inventory says test:///<node file>; the daemon opens that same file.
            path = host.uri.removeprefix("test://")
            reach = host.model_copy(update={"uri": f"test+unix://{path}?socket={mode.socket}"})
        conn = _Observed.open(reach)
        assert isinstance(conn, _Observed)
        conn.host = host  # the pool knows a host's connection by the inventory's URI
        conn.mode = mode
        return conn

    return open_host


def _deployment(dep_id: str, rng: random.Random, **extra: Any) -> Deployment:
    listing = extra.pop("listing", MODEL)
    size = {
        "vcpus": rng.choice((1, 1, 2, 2, 4)),
        "memory_mib": rng.choice((512, 1024, 2048, 4096)),
        "disk_gib": 5,
        "gpu": None,
    } | extra.pop("size", {})
    return Deployment.model_validate(
        {
            "id": dep_id,
            "kind": extra.pop("kind", "model"),
            "listing": {"id": listing[0], "version": listing[1]},
            "size": size,
            "state": "running",
            "model_deployment": extra.pop("model_deployment", None),
            "requester": f"user-{rng.randrange(200)}",
            "account": f"account-{rng.randrange(80)}",
            "origin": {"kind": "cli"},
            "requested": "2026-11-25T12:00:00Z",
            "request_sha256": f"{rng.getrandbits(256):064x}",
        }
    )


def deployments(count: int, seed: int = 3) -> list[Deployment]:
    """`count` deployments: 85% CPU models, 5% GPU models, 10% agents on an earlier model."""
    rng = random.Random(seed)
    docs: list[Deployment] = []
    models: list[str] = []
    for i in range(count):
        dep_id = f"dep-{i:05d}"
        roll = rng.random()
        if roll < 0.05:
            gpu = rng.choice(({"model": "H100", "count": 1}, {"model": "H100", "count": 2},
                              {"model": "L4", "count": 1}))  # fmt: skip
            size = {"vcpus": 8, "memory_mib": 32768, "gpu": gpu}
            docs.append(_deployment(dep_id, rng, size=size))
        elif roll < 0.15 and models:
            model = rng.choice(models[-50:])
            docs.append(
                _deployment(
                    dep_id,
                    rng,
                    kind="agent",
                    listing=AGENT,
                    size={"vcpus": 1, "memory_mib": 512},
                    model_deployment=model,
                )
            )
            continue
        else:
            docs.append(_deployment(dep_id, rng))
        models.append(dep_id)
    return docs


def _write_hosts(root: Path) -> list[dict[str, Any]]:
    hosts: list[dict[str, Any]] = []
    for vcpus, memory, gpus, many in _HOSTS:
        for _ in range(many):
            name = f"host-{len(hosts):02d}"
            uri = write_test_host(root / "hosts" / f"{name}.xml", name, vcpus, memory)
            hosts.append(
                {
                    "name": name,
                    "uri": uri,
                    "vcpus": vcpus,
                    "memory_mib": memory,
                    "gpus": gpus,
                    "domain_type": "qemu",
                }
            )
    (root / "hosts.yaml").write_text(yaml.safe_dump({"hosts": hosts}))
    return hosts


def _spec(deployment: Deployment, manifest: BuildManifest, port: int) -> DomainSpec:
    # Test-driver domains are records: the paths only have to look like a host's.
    folder = f"/var/lib/formarket/pool/{deployment.id}"
    return DomainSpec(
        deployment_id=deployment.id,
        kind=deployment.kind,
        listing_id=deployment.listing.id,
        listing_version=deployment.listing.version,
        model_deployment=deployment.model_deployment,
        build_id=manifest.build_id,
        domain_type="qemu",
        vcpus=deployment.size.vcpus,
        memory_mib=deployment.size.memory_mib,
        kernel=f"/var/lib/formarket/pool/{manifest.build_id}.kernel",
        initrd=f"/var/lib/formarket/pool/{manifest.build_id}.initrd",
        disk=f"{folder}.qcow2",
        config_disk=f"{folder}.config",
        kernel_cmdline=manifest.kernel_cmdline,
        ports=tuple((guest, port + n) for n, guest in enumerate(manifest.expose)),
        address="127.0.0.1",
        console_log=f"{folder}.log",
    )


def _steady_state(
    docs: Sequence[Deployment],
    hosts: Sequence[Host],
    pool: Connections,
    manifests: dict[str, BuildManifest],
) -> int:
    """Define about half the deployments as running domains, placed within capacity; how many.
    An agent runs only where its model does."""
    placer = Placer(hosts)
    by_name = {host.name: host for host in hosts}
    running: set[str] = set()
    port = 20000
    for n, deployment in enumerate(docs):
        if n % 2:
            continue
        if deployment.model_deployment and deployment.model_deployment not in running:
            continue
        placed = placer.place(need_of(deployment))
        if not isinstance(placed, Placed):
            continue
        manifest = manifests[deployment.listing.id]
        spec = _spec(deployment, manifest, port)
        port += 10
        pool.get(by_name[placed.host]).define_and_start(domain_xml(spec))
        running.add(deployment.id)
    return len(running)


# The steps of a cycle, as (module file, function) whose cumulative time is the step's.
STEPS = (
    ("read the desired deployments from git", "farm/desired.py", "read_deployments"),
    ("look up their images", "farm/operations.py", "_has_images"),
    ("list every host's domains", "farm/fleet.py", "observe"),
    ("plan", "farm/reconcile.py", "plan"),
    ("read and take leases (SQLite)", "farm/leases.py", "held"),
    ("read and take leases (SQLite)", "farm/leases.py", "take"),
    ("publish routes", "farm/publish.py", "publish_routes"),
    ("publish routes", "farm/publish.py", "routes_for"),
    ("meter running time", "farm/metering.py", "meter_running"),
    ("save the cycle's summary", "farm/status.py", "save_cycle"),
)


def _cycle(
    settings: FarmSettings,
    pool: Connections,
    leases_file: Path,
    profile: cProfile.Profile | None = None,
) -> tuple[float, dict[str, Any], int]:
    handed: list[Build | Deploy | Stop] = []
    leases = SqliteLeases(leases_file)  # fresh: this run hands out the same work as the last
    started = time.perf_counter()
    if profile is not None:
        profile.enable()
    cycle = operations.reconcile_once(settings, handed.append, pool=pool, leases=leases, meter=True)
    if profile is not None:
        profile.disable()
    seconds = time.perf_counter() - started
    summary = cycle.summary()
    for volatile in ("seconds", "metered"):
        summary.pop(volatile)
    return seconds, summary, len(handed)


def reconcile_cycle(quick: bool, count: int = 1000, *, libvirtd: bool = False) -> dict[str, Any]:
    """Seconds of one reconcile cycle (best of a few, alternating with the baseline's) for
    `count` desired deployments on 50 test-driver hosts; the plan's shape and the target.

    With `libvirtd`, the hosts live in a private libvirtd on this machine and every libvirt
    call is an RPC over its unix socket, as with real hosts (minus the network); without, the
    test driver answers inside this process."""
    runs = 2 if quick else 5
    # Under /tmp, open to all: the daemon runs as an unprivileged user and reads the node
    # files, and its socket path must stay short.
    with tempfile.TemporaryDirectory(prefix="fm-bench-farm-") as scratch:
        root = Path(scratch)
        root.chmod(0o755)
        mode = _Mode()
        if libvirtd:
            uri = ensure_libvirtd(root / "libvirtd")
            mode.socket = uri.partition("socket=")[2]
        try:
            return _measure(root, count, runs, mode)
        finally:
            if libvirtd:
                stop_libvirtd(root / "libvirtd")


def _measure(root: Path, count: int, runs: int, mode: _Mode) -> dict[str, Any]:
    # Bare: the farm reads git only; the figure is the reconciler's, not a checkout's.
    repo = create_repository(root / "marketplace", bare=True)
    files = import_tree(SOURCE, ("registry", "builder", "royalties"))
    commit_changes(repo, "main", files, "Starter registry", Identity("mara", "mara@example.org"))
    hosts_data = _write_hosts(root)
    settings = FarmSettings(
        repo=Path(repo.path),
        state=root / "state",
        store=root / "store",
        cache=root / "cache",
        base_cache=SOURCE / "build" / "test-cache",
        hosts=root / "hosts.yaml",
    )
    print("farm: building echo-chat and faq-bot", flush=True)
    manifests = {
        listing: build_listing(settings, listing, version) for listing, version in (MODEL, AGENT)
    }
    docs = deployments(count)
    started = time.perf_counter()
    submit(repo, "main", docs, f"{count} deployments", bot_identity(repo, "main"))
    submitted = time.perf_counter() - started
    repo.close()
    hosts = [Host.model_validate(h) for h in hosts_data]
    pool = Connections(_opener(mode))
    try:
        defined = _steady_state(docs, hosts, pool, manifests)
        names = [domain_name(d.id) for d in docs]
        ours_s: list[float] = []
        base_s: list[float] = []
        summaries: list[dict[str, Any]] = []
        handed = 0
        for run in range(runs + 1):  # the first of each warms up, untimed
            mode.names = None
            seconds, summary, handed = _cycle(settings, pool, root / f"ours-{run}.sqlite")
            summaries.append(summary)
            if run:
                ours_s.append(seconds)
            mode.names = names
            seconds, summary, _ = _cycle(settings, pool, root / f"naive-{run}.sqlite")
            summaries.append(summary)
            if run:
                base_s.append(seconds)
        mode.names = None
        profile = cProfile.Profile()
        profiled, _, _ = _cycle(settings, pool, root / "profiled.sqlite", profile)
    finally:
        pool.close()
    first = summaries[0]
    for other in summaries[1:]:
        if other != first:
            changed = sorted(k for k in first if first[k] != other.get(k))
            raise RuntimeError(f"the cycles planned differently ({', '.join(changed)})")
    return {
        "hosts": len(hosts),
        "deployments": count,
        "defined": defined,
        "submit_seconds": submitted,
        "running": len(first["running"]),
        "deploys": len(first["deploys"]),
        "stops": len(first["stops"]),
        "builds": len(first["builds"]),
        "waiting": len(first["waiting"]),
        "refused": len(first["refused"]),
        "handed_out": handed,
        "runs": runs,
        "ours_seconds": min(ours_s),
        "ours_all": ours_s,
        "baseline_seconds": min(base_s),
        "baseline_all": base_s,
        "lookups": len(names) * len(hosts),
        "profiled_seconds": profiled,
        "steps": _steps(profile),
        "target_seconds": TARGET_SECONDS,
        "meets_target": min(ours_s) < TARGET_SECONDS,
    }


def _steps(profile: cProfile.Profile) -> dict[str, float]:
    """Seconds of each step of a profiled cycle (profiling adds its own overhead)."""
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    steps: dict[str, float] = {}
    for label, where, function in STEPS:
        for (filename, _line, name), (_cc, _nc, _tt, cumulative, _callers) in stats.items():
            if name == function and filename.endswith(where):
                steps[label] = steps.get(label, 0.0) + cumulative
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.farm_reconcile", description=__doc__
    )
    parser.add_argument("--quick", action="store_true", help="two timed runs each, not five")
    parser.add_argument("--libvirtd", action="store_true", help="hosts behind a private libvirtd")
    args = parser.parse_args(argv)
    print(json.dumps(reconcile_cycle(args.quick, libvirtd=args.libvirtd), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
