"""The farm's work, as plain functions the Celery tasks call: deploy, stop, reconcile.

Each is idempotent and reads what it needs from git (the desired deployments), the host
inventory and libvirt (the actual domains), so a task that runs twice, or after Redis lost
its queue, does no harm. Deploying and stopping are `running`'s; the hosts and what runs on
them are `fleet`'s; this module holds the reconcile cycle.

This module knows nothing of the Celery app: the app's tasks call these functions, and a
reconcile hands its actions to an `Enqueue` it is given (`celery_enqueue(app)` for the queues,
`run_here` to do them in this process).
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from dulwich.repo import Repo

from formarket.builder.store import DirectoryStore
from formarket.errors import FormarketError
from formarket.farm import image_index, status, upgrades
from formarket.farm.agentkeys import sweep_agent_keys
from formarket.farm.billing import instance_charges, record_charges
from formarket.farm.building import build_listing
from formarket.farm.credit_cycle import (
    CreditCycle,
    charge_and_stop,
    hour_prices_of,
    renew_subscriptions,
)
from formarket.farm.desired import read_deployments
from formarket.farm.fleet import (
    Actual,
    agent_keys_path,
    connections,
    inventory,
    missing_devices_path,
    observe,
    routes_path,
)
from formarket.farm.gpus import missing_devices
from formarket.farm.leases import Leases, open_leases
from formarket.farm.libvirt_conn import Connections
from formarket.farm.metering import meter_running
from formarket.farm.notices import tell_marked_issues
from formarket.farm.notify import tell_ready_issues
from formarket.farm.publish import (
    publish_routes,
    routes_for,
    served_by,
    stock_tokenizers,
    tip_reader,
)
from formarket.farm.reconcile import Build, Deploy, Plan, Stop, Wake, plan
from formarket.farm.running import DRAIN_SECONDS, deploy, image_key_of, prices_of, stop
from formarket.farm.settings import FarmSettings, open_market
from formarket.farm.sleeping import SleepMarks
from formarket.farm.versions import Versions, versions_at
from formarket.farm.waking import WAKE_LEASE_SECONDS, idle_stops_now, wake_deployment, watch_wakes
from formarket.gateway.routes import Route, load_routes
from formarket.gateway.wake import WakeRequests
from formarket.github import GitHub
from formarket.schemas.deployment import Deployment

# deploy, stop, observe and the rest are `running`'s and `fleet`'s, named here too: the tasks
# and the tests reach the farm's work through this one module.
__all__ = [
    "Actual",
    "Enqueue",
    "TaskSender",
    "celery_enqueue",
    "connections",
    "deploy",
    "inventory",
    "observe",
    "reconcile",
    "reconcile_once",
    "routes_path",
    "run_here",
    "stop",
    "wake_deployment",
    "watch_wakes",
]

_log = logging.getLogger("formarket.farm")
# How long a handed-out action is not handed out again (it is released when it finishes).
LEASE_SECONDS = {"deploy": 960.0, "stop": 360.0, "wake": WAKE_LEASE_SECONDS}

Action = Build | Deploy | Stop | Wake
Enqueue = Callable[[Action], None]


class TaskSender(Protocol):
    """What enqueuing needs of the farm's Celery app: sending a task by its name."""

    def send_task(self, name: str, args: Sequence[Any] | None = None) -> object: ...


RECONCILE_LEASE = "reconcile"
RECONCILE_LEASE_SECONDS = 300.0


class ReconcileBusy(FormarketError):
    """Another reconcile cycle holds the farm's reconcile lease."""


@dataclass(frozen=True, slots=True)
class Cycle:
    plan: Plan
    down: Mapping[str, str]
    problems: tuple[str, ...]
    enqueued: int
    failed: tuple[str, ...]
    metered: int
    seconds: float
    credit: CreditCycle = field(default_factory=CreditCycle)

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
            "charged": self.credit.charged,
            "out_of_credit": list(self.credit.at_zero),
            "stopped_for_credit": list(self.credit.stopped),
            "subscriptions": dict(self.credit.renewed),
            "seconds": round(self.seconds, 3),
        }


def _has_images(
    repo: Repo, settings: FarmSettings, versions: Versions, desired: Mapping[str, Deployment]
) -> dict[tuple[str, str], bool]:
    store = DirectoryStore(settings.store.absolute())
    found: dict[tuple[str, str], bool] = {}
    for deployment in desired.values():
        ref = (deployment.listing.id, deployment.listing.version)
        if ref in found or deployment.state != "running":
            continue
        key = image_key_of(repo, versions, *ref)
        found[ref] = key is not None and image_index.lookup(store, key) is not None
    return found


def reconcile_once(
    settings: FarmSettings,
    enqueue: Enqueue,
    *,
    pool: Connections | None = None,
    leases: Leases | None = None,
    meter: bool = True,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Cycle:
    """One cycle: read git and libvirt, plan, hand out the work (each under a lease), publish
    the routes of what runs, meter its running time and charge it to the accounts' balances
    (stopping, past the grace of the terms, what accounts out of credit run)."""
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
        return _cycle(settings, enqueue, pool, leases, meter, started, clock)
    finally:
        leases.release(RECONCILE_LEASE)


def _cycle(
    settings: FarmSettings,
    enqueue: Enqueue,
    pool: Connections,
    leases: Leases,
    meter: bool,
    started: float,
    clock: Callable[[], datetime],
) -> Cycle:
    hosts = inventory(settings)
    repo = open_market(settings)
    problems: list[str] = []
    try:
        desired = read_deployments(repo, settings.branch, problems=problems)
        versions = versions_at(repo, settings.branch)
        has_image = _has_images(repo, settings, versions, desired)
        tokenizers = stock_tokenizers(
            tip_reader(repo, settings.branch),
            desired,
            status.gateway_state(settings).root,
            versions.reader,
        )
        # Read now, while the repository is open: the owners' marks on versions issues run.
        by_issue = {d.listing.id for d in desired.values() if d.origin.kind == "issue"}
        owners = {i: versions.marks(i) for i in sorted(by_issue)} if settings.github_repo else {}
    finally:
        repo.close()
    running = {dep_id for dep_id, d in desired.items() if d.state == "running"}
    sweep_agent_keys(agent_keys_path(settings), status.gateway_state(settings).keys, running)
    marks = SleepMarks(settings.state)
    # Read before libvirt: a domain woken meanwhile is then still taken for asleep (and seen
    # running next cycle), never for a crashed one to make again from scratch.
    asleep = marks.sleeping()
    actual = observe(hosts.hosts, pool)
    domains = actual.domains()
    sleeping = frozenset(
        d.deployment
        for d in domains
        if not d.running and d.deployment in asleep and d.deployment in running
    )
    in_flight = leases.held()
    the_plan = plan(
        desired,
        domains,
        hosts.hosts,
        frozenset(actual.down),
        has_image,
        in_flight,
        settings.gateway_url,
        upgrades.failed_upgrades(settings.state),
        sleeping,
        unavailable=missing_devices(missing_devices_path(settings)),
    )
    enqueued = 0
    failed: list[str] = []
    gateway_root = status.gateway_state(settings).root
    asked = set(WakeRequests(gateway_root).pending())
    wakes = [Wake(d.deployment, d.host) for d in domains if d.deployment in sleeping & asked]
    actions: list[Action] = [*the_plan.stops, *the_plan.builds, *the_plan.deploys, *wakes]
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
    slept = idle_stops_now(settings, desired, the_plan, marks, pool, hosts, leases, failed)
    endpoints = {
        dep_id: domain.endpoint
        for dep_id, domain in the_plan.running.items()
        if domain.endpoint is not None
    }
    # Read again: a wake this cycle handed out and ran in this process is over already.
    still = marks.sleeping()
    idle_since = {d: still[d] for d in sleeping if d in still}
    idle_since.update({dep_id: at for dep_id, (_, at) in slept.items()})
    for found in domains:
        if (found.deployment in sleeping or found.deployment in slept) and found.endpoint:
            endpoints.setdefault(found.deployment, found.endpoint)
    for dep_id in set(asleep) - sleeping:
        if dep_id in the_plan.running and dep_id in running:
            marks.woke(dep_id, datetime.now(UTC))  # running again: woken, or made again
        else:
            marks.forget(dep_id)  # stopped in git, or gone from its host
    # A deployment being deployed or upgraded keeps the route its task last wrote: what
    # libvirt showed before the task ran may be a VM that is not healthy yet, or already gone.
    busy = {a.deployment for a in the_plan.deploys if a.key in taken}
    busy |= {key.partition(":")[2] for key in in_flight if key.startswith("deploy:")}
    routes = routes_for(
        desired,
        {k: v for k, v in endpoints.items() if k not in busy},
        tokenizers=tokenizers,
        prices=prices_of(settings),
    )
    routes += _routes_of_busy(settings, desired, busy)
    routes = [
        r.model_copy(update={"idle_since": idle_since[r.deployment]})
        if r.deployment in idle_since
        else r
        for r in routes
    ]
    publish_routes(routes_path(settings), routes)
    awake_routes = [r for r in routes if r.idle_since is None]
    if settings.github_repo:
        tell_ready_issues(
            settings.state,
            desired,
            set(endpoints),
            settings.github_repo,
            GitHub.from_env,
            settings.gateway_url,
        )
        tell_marked_issues(
            settings.state,
            desired,
            lambda listing_id: owners.get(listing_id, {}),
            settings.github_repo,
            GitHub.from_env,
        )
    metered = 0
    credit = CreditCycle()
    if meter:
        served = served_by(routes)
        hour_prices = hour_prices_of(settings)
        metered = meter_running(
            settings.state / "meter.json",
            status.gateway_state(settings).spool,
            _meter_source(),
            served_by(awake_routes),
            clock(),
            started=marks.awake(),
            ended={d: (served[d], at) for d, (_, at) in slept.items() if d in served},
            bill=lambda events: record_charges(
                settings.state, instance_charges(events, hour_prices)
            ),
        )
        credit = charge_and_stop(
            settings,
            desired,
            hour_prices,
            clock,
            GitHub.from_env if settings.github_repo else None,
        )
        renewed = renew_subscriptions(settings, clock)
        credit = replace(credit, renewed=tuple(sorted(renewed.items())))
    cycle = Cycle(
        the_plan,
        actual.down,
        tuple(problems),
        enqueued,
        tuple(failed),
        metered,
        time.perf_counter() - started,
        credit,
    )
    status.save_cycle(settings, cycle.summary())
    return cycle


def _routes_of_busy(
    settings: FarmSettings, desired: Mapping[str, Deployment], busy: set[str]
) -> list[Route]:
    if not busy:
        return []
    return [
        route
        for route in load_routes(routes_path(settings)).routes
        if route.deployment in busy
        and route.deployment in desired
        and desired[route.deployment].state == "running"
    ]


def _host_of(action: Action) -> str:
    return "" if isinstance(action, Build) else action.host


def _lease_seconds(action: Action, settings: FarmSettings) -> float:
    kind = action.key.partition(":")[0]
    return LEASE_SECONDS.get(kind, float(settings.build_time_limit + 120))


def _meter_source() -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")[:60].strip("-")
    return f"farm/{name or 'farm'}"


def celery_enqueue(app: TaskSender) -> Enqueue:
    """Hand actions to the farm's queues by task name, through `app` (`celery_app.make_app`)."""

    def enqueue(action: Action) -> None:
        if isinstance(action, Build):
            app.send_task("formarket.build", (action.listing, action.version))
        elif isinstance(action, Deploy):
            app.send_task("formarket.deploy", (action.deployment, action.host))
        elif isinstance(action, Wake):
            app.send_task("formarket.wake", (action.deployment, action.host))
        else:
            app.send_task("formarket.stop", (action.deployment, action.host, action.slot))

    return enqueue


def run_here(
    settings: FarmSettings,
    pool: Connections | None = None,
    *,
    health_timeout: float = 180.0,
    drain: float = DRAIN_SECONDS,
) -> Enqueue:
    """Do each action at once in this process, instead of through the queues."""
    leases = open_leases(settings.broker_url or "", settings.state)

    def execute(action: Action) -> None:
        if isinstance(action, Build):
            try:
                build_listing(settings, action.listing, action.version)
            finally:
                leases.release(action.key)
        elif isinstance(action, Deploy):
            deploy(
                settings,
                action.deployment,
                action.host,
                pool=pool,
                health_timeout=health_timeout,
                drain=drain,
            )
        elif isinstance(action, Wake):
            wake_deployment(
                settings, action.deployment, action.host, pool=pool, health_timeout=health_timeout
            )
        else:
            stop(settings, action.deployment, action.host, pool=pool, slot=action.slot)

    return execute


def reconcile(settings: FarmSettings, enqueue: Enqueue) -> dict[str, Any]:
    """The reconcile task's body: one cycle, its actions handed to `enqueue` (the task's own
    app's queues)."""
    try:
        return reconcile_once(settings, enqueue).summary()
    except ReconcileBusy as exc:
        return {"skipped": exc.message}
