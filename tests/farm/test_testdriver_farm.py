"""The farm on simulated hosts (libvirt's test driver, one node file per host): the reconciler
places 200 mixed deployments with no host over capacity, and places a dead host's deployments
again elsewhere. The actions run in this process (one connection pool: the test driver forgets
its domains when a connection closes); the queue is tested in tests/farm_queue."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dulwich.repo import Repo

from formarket.farm import operations
from formarket.farm.celery_app import make_app
from formarket.farm.desired import read_deployments, set_state, submit
from formarket.farm.hosts import Host
from formarket.farm.leases import open_leases
from formarket.farm.libvirt_conn import Connections, HostConnection, HostUnreachable
from formarket.farm.settings import FarmSettings
from formarket.gateway.routes import load_routes
from formarket.gateway.tokenizer import tokenizer_path
from formarket.market.governance import bot_identity
from formarket.schemas.deployment import Deployment
from formarket.standins.libvirt_test import write_test_host
from tests.builder.conftest import shared_cache
from tests.farm import factories
from tests.redis_server import RedisServer

# The starter registry's versions, which these farms build from git.
VERSIONS = {"tinyforge/echo-chat": "1.1.0", "tinyforge/faq-bot": "1.1.0"}


def deployment(dep_id: str, **fields: Any) -> Deployment:
    listing = fields.get("listing", "tinyforge/echo-chat")
    return factories.deployment(dep_id, version=VERSIONS[listing], **fields)


# Room for all but some GPU work, and for a dead host's deployments on the others.
SIZES = [
    (96, 98304, {}),
    (128, 131072, {}),
    (16, 16384, {}),
    (64, 131072, {"H100": 4}),
    (96, 98304, {}),
]


class Farm:
    """Simulated hosts whose death the test decides, and the actions run in-process."""

    def __init__(self, root: Path, repo: Repo, broker_url: str | None = None) -> None:
        hosts = []
        for n, (vcpus, memory, gpus) in enumerate(SIZES):
            uri = write_test_host(root / f"host{n}.xml", f"host{n}", vcpus, memory)
            hosts.append(
                {
                    "name": f"host{n}",
                    "uri": uri,
                    "vcpus": vcpus,
                    "memory_mib": memory,
                    "gpus": gpus,
                    "domain_type": "qemu",
                }
            )
        (root / "hosts.yaml").write_text(yaml.safe_dump({"hosts": hosts}))
        self.settings = FarmSettings(
            repo=Path(repo.path),
            state=root / "state",
            store=root / "store",
            cache=root / "cache",
            base_cache=shared_cache(),
            hosts=root / "hosts.yaml",
            broker_url=broker_url,
        )
        self.dead: set[str] = set()
        self.pool = Connections(self._open)
        self.leases = open_leases(broker_url or "", root / "state")

    def _open(self, host: Host) -> HostConnection:
        if host.name in self.dead:
            raise HostUnreachable(host.name, f"{host.name} does not answer")
        return HostConnection.open(host)

    def kill(self, name: str) -> None:
        self.dead.add(name)
        self.pool.mark_down(name, "killed by the test")  # its domains are gone with it

    def cycle(self, enqueue: operations.Enqueue | None = None) -> operations.Cycle:
        return operations.reconcile_once(
            self.settings,
            enqueue or operations.run_here(self.settings, self.pool),
            pool=self.pool,
            leases=self.leases,
            meter=False,
        )

    def settle(self, limit: int = 8) -> operations.Cycle:
        for _ in range(limit):
            result = self.cycle()
            self.check_capacity()
            if result.plan.idle and not any(
                w.startswith("waiting for") for w in result.plan.waiting.values()
            ):
                return result
        raise AssertionError(f"not settled after {limit} cycles: {result.summary()}")

    def placed(self) -> dict[str, str]:
        actual = operations.observe(operations.inventory(self.settings).hosts, self.pool)
        return {d.deployment: d.host for d in actual.domains()}

    def check_capacity(self) -> None:
        desired = read_deployments(Repo(str(self.settings.repo)))
        inventory = operations.inventory(self.settings)
        for host, records in operations.observe(inventory.hosts, self.pool).records.items():
            spec = inventory.host(host)
            mine = [desired[r.deployment_id].size for r in records]
            assert sum(s.vcpus for s in mine) <= spec.vcpus, host
            assert sum(s.memory_mib for s in mine) <= spec.memory_mib, host
            gpus = sum(s.gpu.count for s in mine if s.gpu)
            assert gpus <= sum(spec.gpus.values()), host


@pytest.fixture
def farm(tmp_path: Path, marketplace: Repo) -> Iterator[Farm]:
    made = Farm(tmp_path, marketplace)
    yield made
    made.pool.close()


def mixed_requests(count: int, seed: int = 7) -> list:
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        dep_id = f"dep-{i:04d}"
        if i % 10 == 0:
            docs.append(
                deployment(
                    dep_id,
                    vcpus=rng.choice([2, 4]),
                    memory_mib=4096,
                    gpu={"model": "H100", "count": rng.choice([1, 2])},
                )
            )
        elif i % 3 == 0 and docs:
            model = next(d for d in reversed(docs) if d.kind == "model")
            docs.append(
                deployment(
                    dep_id,
                    kind="agent",
                    listing="tinyforge/faq-bot",
                    vcpus=1,
                    memory_mib=512,
                    model_deployment=model.id,
                )
            )
        else:
            docs.append(
                deployment(
                    dep_id, vcpus=rng.choice([1, 1, 2]), memory_mib=rng.choice([512, 1024, 2048])
                )
            )
    return docs


@pytest.mark.slow
def test_200_requests_fit_and_a_dead_hosts_deployments_move(farm: Farm, marketplace: Repo) -> None:
    docs = mixed_requests(200)
    submit(marketplace, "main", docs, "200 deployments", bot_identity(marketplace, "main"))

    first = farm.settle()
    placed = farm.placed()
    refused = dict(first.plan.refused)
    assert set(placed) | set(refused) == {d.id for d in docs}
    assert len(placed) > 100
    assert refused
    for reason in refused.values():
        assert reason.startswith(("no host", "its model deployment")), reason
    # Every agent runs only with its model, and is routed with both listings.
    routes = {r.deployment: r for r in load_routes(operations.routes_path(farm.settings)).routes}
    for doc in docs:
        if doc.kind == "agent" and doc.id in placed:
            assert doc.model_deployment in placed
            assert routes[doc.id].model is not None

    victim = "host1"
    moved = [dep for dep, host in placed.items() if host == victim]
    assert moved
    farm.kill(victim)
    second = farm.settle()
    assert second.down == {victim: f"host {victim}: {victim} does not answer"}
    now = farm.placed()
    assert victim not in now.values()
    for dep in moved:
        assert dep in now or dep in second.plan.refused, dep
    assert sum(dep in now for dep in moved) == len(
        [d for d in moved if d not in second.plan.refused]
    )
    assert len([d for d in moved if d in now]) > len(moved) // 2

    # Stopping in git stops it on its host; nothing is left of it.
    running = sorted(now)[0]
    set_state(marketplace, "main", running, "stopped", "stop", bot_identity(marketplace, "main"))
    farm.settle()
    assert running not in farm.placed()


def test_redis_losing_everything_loses_no_work(
    tmp_path: Path, marketplace: Repo, redis_server: RedisServer
) -> None:
    farm = Farm(tmp_path, marketplace, broker_url=redis_server.url)
    bot = bot_identity(marketplace, "main")
    try:
        submit(marketplace, "main", [deployment(f"dep-run{i}") for i in range(4)], "four", bot)
        farm.settle()  # in this process: built, and four domains run
        assert len(farm.placed()) == 4
        # Each is routed with echo-chat's tokenizer, copied where the gateway looks for it.
        routes = load_routes(operations.routes_path(farm.settings)).routes
        assert len(routes) == 4
        for route in routes:
            assert route.tokenizer is not None
            state = operations.routes_path(farm.settings).parent
            assert tokenizer_path(state, route.tokenizer.sha256).exists()
        submit(marketplace, "main", [deployment(f"dep-new{i}") for i in range(6)], "six", bot)
        to_queue = operations.celery_enqueue(make_app(farm.settings))
        handed = farm.cycle(to_queue)
        assert handed.enqueued == 6
        assert {d.split()[0] for d in handed.summary()["deploys"]} == {
            f"dep-new{i}" for i in range(6)
        }
        client = redis_server.client()
        assert client.llen("deploy") == 6
        # While their leases last, the work is not handed out twice.
        assert farm.cycle(to_queue).enqueued == 0
        assert client.llen("deploy") == 6

        redis_server.restart(wipe=True)
        assert client.llen("deploy") == 0
        again = farm.cycle(operations.celery_enqueue(make_app(farm.settings)))
        assert again.enqueued == 6  # all of it, from git and libvirt
        assert sorted(again.summary()["deploys"]) == sorted(handed.summary()["deploys"])
        assert client.llen("deploy") == 6
        assert sorted(again.plan.running) == [f"dep-run{i}" for i in range(4)]
        assert not again.plan.stops
    finally:
        farm.pool.close()
