"""The farm for real: a private Redis, two `formarket farm worker` processes (one per queue),
a private libvirtd running qemu, and the starter registry in git. A user's request for the
FAQ bot with the echo model is committed, reconcile cycles hand out the builds and deploys,
both VMs boot, the agent answers and reaches its model through the gateway, and once stopped
in git nothing of either is left: no domain, no volume, no qemu process, no route, no key."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx  # noqa: TID251 - the deployment is called as a user calls it
import pytest
import yaml
from dulwich.repo import Repo

from formarket.deploy.request import DeployOptions, run
from formarket.farm import operations, status
from formarket.farm.celery_app import make_app
from formarket.farm.desired import set_state
from formarket.farm.libvirt_conn import Connections
from formarket.farm.libvirtd import ensure_libvirtd, local_host
from formarket.farm.settings import FarmSettings
from formarket.gateway.config import GatewayConfig, StatePaths, default_state_dir
from formarket.gateway.keys import load_keys
from formarket.gateway.server import ServerThread, build_gateway
from formarket.market.governance import bot_identity
from tests.builder.conftest import shared_cache
from tests.farm_libvirt.real import qemu_processes
from tests.farm_queue.conftest import Worker
from tests.redis_server import RedisServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("vm-journeys"),
    pytest.mark.skipif(os.geteuid() != 0, reason="building images needs root"),
]


def until(
    condition: Callable[[], object], timeout: float, what: str, tick: Callable[[], object]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tick()
        if condition():
            return
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout}s: {what}")


def ask(endpoint: str, question: str) -> str:
    body = {"model": "any", "messages": [{"role": "user", "content": question}]}
    response = httpx.post(f"{endpoint}/v1/chat/completions", json=body, timeout=30)
    response.raise_for_status()
    answer: str = response.json()["choices"][0]["message"]["content"]
    return answer


def test_a_request_is_built_deployed_called_and_stopped_by_the_farm(
    tmp_path: Path, marketplace: Repo, redis_server: RedisServer, libvirt_workdir: Path
) -> None:
    ensure_libvirtd(libvirt_workdir)
    host = local_host(libvirt_workdir)
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(yaml.safe_dump({"hosts": [host.model_dump(mode="json")]}))
    # The gateway runs first: agents are forwarded to it when they start.
    state = StatePaths(default_state_dir(Path(marketplace.path)))
    gateway = ServerThread(build_gateway(GatewayConfig(state, source="gateway/test"))).start()
    settings = FarmSettings.from_env(
        tmp_path,
        {
            "FORMARKET_REPO": marketplace.path,
            "FORMARKET_STATE": str(tmp_path / "farm"),
            "FORMARKET_BASE_CACHE": str(shared_cache()),
            "FORMARKET_BROKER_URL": redis_server.url,
            "FORMARKET_HOSTS": str(hosts),
            "FORMARKET_GATEWAY_URL": gateway.url,
        },
    )
    builder = Worker(settings, ["build"])
    deployer_ = Worker(settings, ["deploy"])
    pool = Connections()
    try:
        planned = run(
            settings,
            DeployOptions(
                agent="tinyforge/faq-bot",
                model="tinyforge/echo-chat",
                sets=("handoff_message=nobody knows",),
                account="ada",
                requester="ada",
            ),
            echo=lambda _line: None,
        )
        model, agent = (d.id for d in planned.resolved.deployments)
        enqueue = operations.celery_enqueue(make_app(settings))

        def cycle() -> None:
            operations.reconcile_once(settings, enqueue, pool=pool)

        until(lambda: status.endpoint(settings, agent), 240, "the agent to be routed", cycle)
        model_url = status.endpoint(settings, model)
        agent_url = status.endpoint(settings, agent)
        assert model_url
        assert agent_url
        assert ask(model_url, "hello model").endswith("hello model")
        # Not in the FAQ: forwarded to the echo model through the gateway, with the agent's key.
        assert "purple giraffes" in ask(agent_url, "Do you sell purple giraffes?")
        (key,) = [k for k in load_keys(state.keys).by_id.values() if k.scope == (model,)]
        assert not key.revoked
        assert qemu_processes([model, agent])

        bot = bot_identity(marketplace, "main")
        set_state(marketplace, "main", agent, "stopped", "stop", bot)
        set_state(marketplace, "main", model, "stopped", "stop", bot)
        conn = pool.get(host)
        until(lambda: not conn.domains(), 120, "both domains to go", cycle)
        cycle()  # publishes the routes of what is left: nothing
        assert status.endpoint(settings, agent) is None
        assert not [v for v in conn.volumes() if model in v or agent in v]
        assert not qemu_processes([model, agent])
        assert load_keys(state.keys).by_id[key.id].revoked
    finally:
        gateway.stop()
        pool.close()
        builder.stop()
        deployer_.stop()
