"""The farm's work, as plain functions the Celery tasks call: deploy, stop, reconcile.

Each is idempotent and reads what it needs from git (the desired deployments), the host
inventory and libvirt (the actual domains), so a task that runs twice, or after Redis lost
its queue, does no harm. Connections to hosts live as long as the process (libvirt's test
driver forgets its domains when its connection closes), in one pool per process.

This module knows nothing of the Celery app: the app's tasks call these functions, and a
reconcile hands its actions to an `Enqueue` it is given (`celery_enqueue(app)` for the queues,
`run_here` to do them in this process).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from dulwich.repo import Repo

from formarket.builder.manifest import BuildManifest
from formarket.builder.store import DirectoryStore
from formarket.errors import FormarketError, UsageError
from formarket.farm import deployer, image_index, status
from formarket.farm.agentkeys import agent_key, drop_agent_key, sweep_agent_keys
from formarket.farm.building import build_listing
from formarket.farm.configdisk import resolve_secrets
from formarket.farm.desired import read_deployments
from formarket.farm.domain import GUEST_GATEWAY, DomainRecord
from formarket.farm.errors import TransientError
from formarket.farm.gpus import DeviceMissing, missing_devices, remember_missing
from formarket.farm.hosts import Host, Inventory, load_inventory
from formarket.farm.leases import Leases, open_leases
from formarket.farm.libvirt_conn import Connections, HostError
from formarket.farm.metering import meter_running
from formarket.farm.notify import tell_ready_issues
from formarket.farm.publish import (
    publish_routes,
    route_for,
    routes_for,
    served_by,
    stock_tokenizers,
    tip_reader,
    token_prices,
)
from formarket.farm.reconcile import Build, Deploy, Domain, Plan, Stop, plan
from formarket.farm.settings import FarmSettings, open_market
from formarket.gateway.routes import Route, load_routes, save_routes
from formarket.github import GitHub
from formarket.market.refs import branch_tip, resolve_rev
from formarket.royalties.gitio import cache_dir_of, price_book
from formarket.royalties.pricebook import PriceBook
from formarket.schemas.deployment import Deployment
from formarket.schemas.usage import ListingVersion

__all__ = [
    "Actual",
    "Enqueue",
    "TaskSender",
    "celery_enqueue",
    "deploy",
    "observe",
    "reconcile",
    "reconcile_once",
    "run_here",
    "stop",
]

_log = logging.getLogger("formarket.farm")
# How long a handed-out action is not handed out again (it is released when it finishes).
LEASE_SECONDS = {"deploy": 960.0, "stop": 360.0}

Enqueue = Callable[[Build | Deploy | Stop], None]


class TaskSender(Protocol):
    """What enqueuing needs of the farm's Celery app: sending a task by its name."""

    def send_task(self, name: str, args: Sequence[Any] | None = None) -> object: ...


RECONCILE_LEASE = "reconcile"
RECONCILE_LEASE_SECONDS = 300.0


class ReconcileBusy(FormarketError):
    """Another reconcile cycle holds the farm's reconcile lease."""


_pool_lock = threading.Lock()
_pools: dict[int, Connections] = {}


def connections() -> Connections:
    """This process's connection pool (a forked worker gets its own)."""
    with _pool_lock:
        pool = _pools.get(os.getpid())
        if pool is None:
            pool = _pools[os.getpid()] = Connections()
        return pool


def inventory(settings: FarmSettings) -> Inventory:
    if settings.hosts is None:
        raise UsageError(
            "the farm has no host inventory",
            hint="set FORMARKET_HOSTS to a hosts file (see builder/hosts.example.yaml)",
        )
    return load_inventory(settings.hosts)


def routes_path(settings: FarmSettings) -> Path:
    return status.gateway_state(settings).routes


@dataclass(frozen=True, slots=True)
class Actual:
    """What libvirt says: every formarket domain on the hosts that answered, and the rest."""

    records: dict[str, list[DomainRecord]] = field(default_factory=dict)  # host -> domains
    down: dict[str, str] = field(default_factory=dict)  # host -> why

    def domains(self) -> list[Domain]:
        return [
            Domain(
                r.deployment_id,
                host,
                bool(r.running),
                r.build_id,
                r.endpoint,
                r.model_endpoint,
                r.devices,
            )
            for host, records in sorted(self.records.items())
            for r in records
        ]

    def find(self, deployment_id: str) -> tuple[str, DomainRecord] | None:
        for host, records in sorted(self.records.items()):
            for record in records:
                if record.deployment_id == deployment_id and record.running:
                    return host, record
        return None


def observe(hosts: tuple[Host, ...], pool: Connections) -> Actual:
    actual = Actual()
    for host in hosts:
        try:
            actual.records[host.name] = deployer.actual(pool.get(host))
        except HostError as exc:
            pool.mark_down(host.name, str(exc))
            actual.down[host.name] = exc.message
    return actual


def _published_manifest(
    settings: FarmSettings, store: DirectoryStore, deployment: Deployment
) -> BuildManifest | None:
    """The image the listing builds to at the branch tip, when it is in the store already."""
    repo = open_market(settings)
    try:
        key = image_index.image_key(repo, resolve_rev(repo, settings.branch), deployment.listing.id)
    finally:
        repo.close()
    build_id = image_index.lookup(store, key) if key else None
    raw = store.manifest_bytes(build_id) if build_id else None
    return BuildManifest.model_validate_json(raw) if raw else None


def missing_devices_path(settings: FarmSettings) -> Path:
    """GPU devices the inventory lists that a start found missing (see farm.gpus)."""
    return settings.state / "missing-devices.json"


def agent_keys_path(settings: FarmSettings) -> Path:
    """The farm's file of the keys its agents call their models with."""
    return settings.state / "agent-keys.json"


def _model_access(settings: FarmSettings, deployment: Deployment, actual: Actual) -> dict[str, str]:
    """What an agent's VM is given to call its model: the gateway, as the VM sees it through
    its one forward, the key the farm made for it, and the model deployment to name."""
    model = deployment.model_deployment or ""
    if actual.find(model) is None:
        raise TransientError(
            f"{deployment.id}: its model deployment {model} is not running yet",
            hint="the reconciler deploys the agent once its model runs",
        )
    key = agent_key(agent_keys_path(settings), status.gateway_state(settings).keys, deployment)
    return {
        "MODEL_ENDPOINT": f"http://{GUEST_GATEWAY}",
        "MODEL_API_KEY": key.key,
        "MODEL_NAME": model,
    }


def deploy(
    settings: FarmSettings,
    deployment_id: str,
    host_name: str,
    *,
    pool: Connections | None = None,
    health_timeout: float = 180.0,
) -> str:
    """Run a deployment on a host and wait until it answers; its endpoint ("" when git no
    longer wants it running)."""
    pool = pool or connections()
    repo = open_market(settings)
    try:
        desired = read_deployments(repo, settings.branch)
        tokenizers = stock_tokenizers(
            tip_reader(repo, settings.branch), desired, status.gateway_state(settings).root
        )
    finally:
        repo.close()
    deployment = desired.get(deployment_id)
    leases = open_leases(settings.broker_url or "", settings.state)
    try:
        if deployment is None or deployment.state != "running":
            _log.info("%s is not wanted running any more; nothing to deploy", deployment_id)
            return ""
        hosts = inventory(settings)
        host = hosts.host(host_name)
        env = resolve_secrets(deployment.secrets)
        if deployment.kind == "agent" and deployment.model_deployment:
            env.update(_model_access(settings, deployment, observe(hosts.hosts, pool)))
        store = DirectoryStore(settings.store.absolute())
        manifest = _published_manifest(settings, store, deployment)
        if manifest is None:
            # The reconciler builds before it deploys; a deploy asked for directly builds here.
            listing = deployment.listing
            manifest = build_listing(settings, listing.id, listing.version)
        conn = pool.get(host)
        missing = missing_devices_path(settings)
        try:
            started = deployer.start(
                conn,
                host,
                deployment,
                manifest,
                store,
                env,
                gateway=settings.gateway_url,
                unavailable=missing_devices(missing).get(host.name, frozenset()),
            )
        except DeviceMissing as exc:
            # The next cycle places it again, giving nobody these devices for a while.
            remember_missing(missing, exc)
            raise
        endpoint = started.endpoint or ""
        if endpoint and not conn.is_test:
            deployer.wait_healthy(endpoint, health_timeout)
        if endpoint:
            _add_route(
                settings,
                route_for(
                    deployment, endpoint, desired, tokenizers=tokenizers, prices=_prices(settings)
                ),
            )
        _log.info("%s runs on %s at %s", deployment_id, host_name, endpoint or "(no port)")
        return endpoint
    finally:
        leases.release(f"deploy:{deployment_id}")


def _prices(settings: FarmSettings) -> Callable[[ListingVersion], tuple[Decimal, Decimal]]:
    """Per-token prices of listing versions, as each version was first published: the same
    price book the royalties rate calls with, so a deployment still running an older version
    reserves that version's prices. Read at most once per call of this, and only for a version
    this process has not priced yet (a published version's price never changes)."""
    books: list[PriceBook] = []

    def prices(ref: ListingVersion) -> tuple[Decimal, Decimal]:
        key = (str(settings.repo), ref.id, ref.version)
        found = _PRICES.get(key)
        if found is not None:
            return found
        if not books:
            repo = open_market(settings)
            try:
                books.append(
                    price_book(repo, branch_tip(repo, settings.branch), cache_dir_of(repo))
                )
            finally:
                repo.close()
        entry = books[0].get(ref.id, ref.version)
        if entry is None:
            return Decimal(0), Decimal(0)  # not published on the branch (yet): no price known
        found = _PRICES[key] = token_prices(entry.pricing)
        return found

    return prices


_PRICES: dict[tuple[str, str, str], tuple[Decimal, Decimal]] = {}


def _add_route(settings: FarmSettings, route: Route) -> None:
    path = routes_path(settings)
    others = [r for r in load_routes(path).routes if r.deployment != route.deployment]
    save_routes(path, [*others, route])


def stop(
    settings: FarmSettings,
    deployment_id: str,
    host_name: str | None = None,
    *,
    pool: Connections | None = None,
) -> bool:
    """Remove a deployment's domain from one host, or from every host that answers."""
    pool = pool or connections()
    hosts = inventory(settings)
    targets = [hosts.host(host_name)] if host_name else list(hosts.hosts)
    removed = False
    leases = open_leases(settings.broker_url or "", settings.state)
    try:
        for host in targets:
            try:
                removed = deployer.stop(pool.get(host), deployment_id) or removed
            except HostError as exc:
                if host_name:
                    raise
                pool.mark_down(host.name, str(exc))
        if host_name is None:
            # Stopped everywhere: an agent's key goes with it. (A stop on one host may be a
            # second copy of a deployment that runs on; the reconciler sweeps the keys of
            # deployments git no longer wants.)
            drop_agent_key(
                agent_keys_path(settings), status.gateway_state(settings).keys, deployment_id
            )
        if removed and host_name is None:
            path = routes_path(settings)
            kept = [r for r in load_routes(path).routes if r.deployment != deployment_id]
            save_routes(path, kept)
        return removed
    finally:
        for host in targets:
            leases.release(f"stop:{deployment_id}@{host.name}")


@dataclass(frozen=True, slots=True)
class Cycle:
    plan: Plan
    down: Mapping[str, str]
    problems: tuple[str, ...]
    enqueued: int
    failed: tuple[str, ...]
    metered: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {
            "running": sorted(self.plan.running),
            "builds": [f"{b.listing}@{b.version}" for b in self.plan.builds],
            "deploys": [f"{d.deployment} on {d.host}" for d in self.plan.deploys],
            "stops": [f"{s.deployment} on {s.host}" for s in self.plan.stops],
            "waiting": dict(self.plan.waiting),
            "refused": dict(self.plan.refused),
            "down": dict(self.down),
            "problems": list(self.problems),
            "enqueued": self.enqueued,
            "failed": list(self.failed),
            "metered": self.metered,
            "seconds": round(self.seconds, 3),
        }


def _has_images(
    repo: Repo, settings: FarmSettings, desired: Mapping[str, Deployment]
) -> dict[tuple[str, str], bool]:
    tip = resolve_rev(repo, settings.branch)
    store = DirectoryStore(settings.store.absolute())
    found: dict[tuple[str, str], bool] = {}
    for deployment in desired.values():
        ref = (deployment.listing.id, deployment.listing.version)
        if ref in found or deployment.state != "running":
            continue
        key = image_index.image_key(repo, tip, ref[0])
        found[ref] = key is not None and image_index.lookup(store, key) is not None
    return found


def reconcile_once(
    settings: FarmSettings,
    enqueue: Enqueue,
    *,
    pool: Connections | None = None,
    leases: Leases | None = None,
    meter: bool = True,
) -> Cycle:
    """One cycle: read git and libvirt, plan, hand out the work (each under a lease), publish
    the routes of what runs and meter its running time."""
    started = time.perf_counter()
    pool = pool or connections()
    leases = leases or open_leases(settings.broker_url or "", settings.state)
    # One cycle at a time per farm: two at once would meter the same running time twice.
    if not leases.take(RECONCILE_LEASE, socket.gethostname(), RECONCILE_LEASE_SECONDS):
        raise ReconcileBusy(
            "another reconcile cycle is running",
            hint=f"it ends within {RECONCILE_LEASE_SECONDS:.0f}s even if its process died",
        )
    try:
        return _cycle(settings, enqueue, pool, leases, meter, started)
    finally:
        leases.release(RECONCILE_LEASE)


def _cycle(
    settings: FarmSettings,
    enqueue: Enqueue,
    pool: Connections,
    leases: Leases,
    meter: bool,
    started: float,
) -> Cycle:
    hosts = inventory(settings)
    repo = open_market(settings)
    problems: list[str] = []
    try:
        desired = read_deployments(repo, settings.branch, problems=problems)
        has_image = _has_images(repo, settings, desired)
        tokenizers = stock_tokenizers(
            tip_reader(repo, settings.branch), desired, status.gateway_state(settings).root
        )
    finally:
        repo.close()
    running = {dep_id for dep_id, d in desired.items() if d.state == "running"}
    sweep_agent_keys(agent_keys_path(settings), status.gateway_state(settings).keys, running)
    actual = observe(hosts.hosts, pool)
    the_plan = plan(
        desired,
        actual.domains(),
        hosts.hosts,
        frozenset(actual.down),
        has_image,
        leases.held(),
        settings.gateway_url,
        unavailable=missing_devices(missing_devices_path(settings)),
    )
    enqueued = 0
    failed: list[str] = []
    actions: list[Build | Deploy | Stop] = [*the_plan.stops, *the_plan.builds, *the_plan.deploys]
    wanted = [(a.key, _host_of(a), _lease_seconds(a, settings)) for a in actions]
    taken = leases.take_all(wanted) if wanted else set()
    for action in actions:
        if action.key not in taken:
            continue
        try:
            enqueue(action)
        except Exception as exc:  # the broker is down: the next cycle tries again
            leases.release(action.key)
            failed.append(f"{action.key}: {exc}")
            continue
        enqueued += 1
    endpoints = {
        dep_id: domain.endpoint
        for dep_id, domain in the_plan.running.items()
        if domain.endpoint is not None
    }
    routes = routes_for(desired, endpoints, tokenizers=tokenizers, prices=_prices(settings))
    publish_routes(routes_path(settings), routes)
    if settings.github_repo:
        tell_ready_issues(
            settings.state,
            desired,
            set(endpoints),
            settings.github_repo,
            GitHub.from_env,
            settings.gateway_url,
        )
    metered = 0
    if meter:
        metered = meter_running(
            settings.state / "meter.json",
            status.gateway_state(settings).spool,
            _meter_source(),
            served_by(routes),
        )
    cycle = Cycle(
        the_plan,
        actual.down,
        tuple(problems),
        enqueued,
        tuple(failed),
        metered,
        time.perf_counter() - started,
    )
    status.save_cycle(settings, cycle.summary())
    return cycle


def _host_of(action: Build | Deploy | Stop) -> str:
    return "" if isinstance(action, Build) else action.host


def _lease_seconds(action: Build | Deploy | Stop, settings: FarmSettings) -> float:
    kind = action.key.partition(":")[0]
    return LEASE_SECONDS.get(kind, float(settings.build_time_limit + 120))


def _meter_source() -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")[:60].strip("-")
    return f"farm/{name or 'farm'}"


def celery_enqueue(app: TaskSender) -> Enqueue:
    """Hand actions to the farm's queues by task name, through `app` (`celery_app.make_app`)."""

    def enqueue(action: Build | Deploy | Stop) -> None:
        if isinstance(action, Build):
            app.send_task("formarket.build", (action.listing, action.version))
        elif isinstance(action, Deploy):
            app.send_task("formarket.deploy", (action.deployment, action.host))
        else:
            app.send_task("formarket.stop", (action.deployment, action.host))

    return enqueue


def run_here(settings: FarmSettings, pool: Connections | None = None) -> Enqueue:
    """Do each action at once in this process, instead of through the queues."""
    leases = open_leases(settings.broker_url or "", settings.state)

    def execute(action: Build | Deploy | Stop) -> None:
        if isinstance(action, Build):
            try:
                build_listing(settings, action.listing, action.version)
            finally:
                leases.release(action.key)
        elif isinstance(action, Deploy):
            deploy(settings, action.deployment, action.host, pool=pool)
        else:
            stop(settings, action.deployment, action.host, pool=pool)

    return execute


def reconcile(settings: FarmSettings, enqueue: Enqueue) -> dict[str, Any]:
    """The reconcile task's body: one cycle, its actions handed to `enqueue` (the task's own
    app's queues)."""
    try:
        return reconcile_once(settings, enqueue).summary()
    except ReconcileBusy as exc:
        return {"skipped": exc.message}
