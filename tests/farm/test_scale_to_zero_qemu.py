"""Scale to zero for real: echo-chat deployed with --idle-after on a private libvirtd running
qemu, called through the gateway, stopped by the farm once idle (its qemu process gone, its
domain kept), then called again: the gateway holds the call, the waker starts the same domain,
and the call is answered. Instance time is metered for the running spans only."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from dulwich.repo import Repo

from formarket.deploy.request import DeployOptions, run
from formarket.farm import operations, status
from formarket.farm.libvirt_conn import Connections
from formarket.farm.libvirtd import ensure_libvirtd, local_host
from formarket.farm.settings import FarmSettings
from formarket.gateway.config import GatewayConfig, StatePaths, default_state_dir
from formarket.gateway.keys import create_key
from formarket.gateway.server import ServerThread, build_gateway
from formarket.usage.spool import parse_segment
from tests.builder.conftest import shared_cache
from tests.farm_libvirt.real import qemu_processes
from tests.gateway.helpers import Client

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("vm-journeys"),
    pytest.mark.skipif(os.geteuid() != 0, reason="building images needs root"),
]


def until(
    condition: Callable[[], object],
    timeout: float,
    what: str,
    tick: Callable[[], object] = lambda: None,
) -> None:
    deadline = time.monotonic() + timeout
    tick()
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s: {what}"
        time.sleep(0.2)
        tick()


def instance_seconds(spool: Path, deployment: str) -> int:
    found: dict[str, int] = {}
    for segment in spool.rglob("*"):
        if segment.is_file():
            for _, payload in parse_segment(segment.read_bytes()).events:
                event = json.loads(payload)
                data = event.get("data", {})
                if "instance_seconds" in data and event["id"].startswith(f"ih-{deployment}-"):
                    found[event["id"]] = data["instance_seconds"]
    return sum(found.values())


def test_an_idle_deployment_is_stopped_and_a_call_starts_it_again(
    tmp_path: Path, marketplace: Repo, libvirt_workdir: Path
) -> None:
    ensure_libvirtd(libvirt_workdir)
    host = local_host(libvirt_workdir)
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(yaml.safe_dump({"hosts": [host.model_dump(mode="json")]}))
    state = StatePaths(default_state_dir(Path(marketplace.path)))
    key, _ = create_key(state.keys, "ada", rate_per_second=100, burst=100)
    gateway = ServerThread(
        build_gateway(GatewayConfig(state, source="gateway/test", wake_timeout=60))
    ).start()
    settings = FarmSettings.from_env(
        tmp_path,
        {
            "FORMARKET_REPO": marketplace.path,
            "FORMARKET_STATE": str(tmp_path / "farm"),
            "FORMARKET_BASE_CACHE": str(shared_cache()),
            "FORMARKET_HOSTS": str(hosts),
            "FORMARKET_GATEWAY_URL": gateway.url,
        },
    )
    pool = Connections()
    stop = threading.Event()
    try:
        planned = run(
            settings,
            DeployOptions(
                model="tinyforge/echo-chat", account="ada", requester="ada", idle_after="10s"
            ),
            echo=lambda _line: None,
        )
        (dep,) = (d.id for d in planned.resolved.deployments)
        assert planned.resolved.deployments[0].idle_after == 10
        enqueue = operations.run_here(settings, pool)

        def cycle() -> None:
            operations.reconcile_once(settings, enqueue, pool=pool)

        until(lambda: status.endpoint(settings, dep), 300, "the model to be routed", cycle)
        client = Client(gateway.url, key, timeout=90)
        body = {"model": dep, "messages": [{"role": "user", "content": "wake up"}]}
        first = client.request("POST", "/v1/chat/completions", body)
        assert first.status == 200, first.body
        assert qemu_processes([dep])

        # No call for longer than idle_after (the gateway publishes its last call meanwhile).
        time.sleep(12.5)
        cycle()
        assert status.progress(settings, dep).startswith("idle since ")
        until(lambda: not qemu_processes([dep]), 30, "its qemu process to end")
        assert pool.get(host).domain(f"formarket-{dep}") is not None  # the domain is kept
        asleep_at = time.monotonic()
        cycle()  # asleep: not made again, not metered
        metered_asleep = instance_seconds(state.spool, dep)

        waker = threading.Thread(
            target=operations.watch_wakes,
            args=(settings,),
            kwargs={"interval": 0.05, "stop": stop, "pool": pool},
            daemon=True,
        )
        waker.start()
        time.sleep(2.0)
        started = time.monotonic()
        again = client.request("POST", "/v1/chat/completions", body)
        waited = time.monotonic() - started
        assert again.status == 200, again.body
        assert again.json()["choices"][0]["message"]["content"].endswith("wake up")
        assert waited > 1.0  # held while the VM booted
        assert qemu_processes([dep])
        cycle()
        # Nothing was metered for the time it slept: from its stop to its waking.
        slept = started - asleep_at
        assert instance_seconds(state.spool, dep) - metered_asleep <= waited + 2
        assert slept > 2
    finally:
        stop.set()
        gateway.stop()
        pool.close()
