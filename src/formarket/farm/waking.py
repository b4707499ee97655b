"""Scale to zero, as the farm runs it: stopping idle deployments in a reconcile cycle, and
waking one for the call that waits on it (a `formarket.wake` task, or `formarket farm waker`
watching the gateway's wake folder)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime

from formarket.errors import FormarketError
from formarket.farm import status
from formarket.farm.fleet import connections, inventory, observe, routes_path
from formarket.farm.hosts import Inventory
from formarket.farm.idle import idle_stops
from formarket.farm.leases import Leases, open_leases
from formarket.farm.libvirt_conn import Connections
from formarket.farm.reconcile import Domain, Plan
from formarket.farm.settings import FarmSettings
from formarket.farm.sleeping import SleepMarks, set_route_idle, sleep, wake
from formarket.gateway.wake import WakeRequests, last_calls
from formarket.schemas.deployment import Deployment

__all__ = ["WAKE_LEASE_SECONDS", "idle_stops_now", "wake_deployment", "watch_wakes"]

_log = logging.getLogger("formarket.farm")
# How long a wake handed out is not handed out again (it is released when it finishes).
WAKE_LEASE_SECONDS = 300.0


def idle_stops_now(
    settings: FarmSettings,
    desired: Mapping[str, Deployment],
    the_plan: Plan,
    marks: SleepMarks,
    pool: Connections,
    hosts: Inventory,
    leases: Leases,
    failed: list[str],
) -> dict[str, tuple[Domain, datetime]]:
    """Stop the VMs of deployments idle for their `idle_after`; each one's domain and when."""
    now = datetime.now(UTC)
    for dep_id in the_plan.running:
        wanted = desired.get(dep_id)
        if wanted is not None and wanted.idle_after is not None:
            marks.seen_awake(dep_id, now)
    due = idle_stops(
        desired,
        the_plan.running,
        last_calls(status.gateway_state(settings).root),
        marks.awake(),
        now,
    )
    slept: dict[str, tuple[Domain, datetime]] = {}
    busy = {a.deployment for a in the_plan.deploys}
    for due_one in due:
        # Not while it is being woken, deployed or upgraded: that work decides its state.
        if due_one.deployment in busy or not leases.take(due_one.key, due_one.host, 60.0):
            continue
        domain = the_plan.running[due_one.deployment]
        try:
            at = sleep(
                pool,
                hosts.host(due_one.host),
                due_one.deployment,
                domain.slot,
                marks,
                routes_path(settings),
            )
            slept[due_one.deployment] = (domain, at)
        except FormarketError as exc:
            failed.append(f"{due_one.key}: {exc}")
        finally:
            leases.release(due_one.key)
    return slept


def wake_deployment(
    settings: FarmSettings,
    deployment_id: str,
    host_name: str | None = None,
    *,
    pool: Connections | None = None,
    health_timeout: float = 120.0,
) -> str:
    """Start a sleeping deployment again for the call waiting on it; its endpoint ("" when it
    has no domain: the reconciler places it again)."""
    pool = pool or connections()
    hosts = inventory(settings)
    requests = WakeRequests(status.gateway_state(settings).root)
    marks = SleepMarks(settings.state)
    leases = open_leases(settings.broker_url or "", settings.state)
    try:
        actual = observe(hosts.hosts, pool)
        found = sorted(
            (
                (not record.running, host, record.slot, record)
                for host, records in actual.records.items()
                for record in records
                if record.deployment_id == deployment_id and host_name in (None, host)
            ),
            key=lambda item: item[:3],
        )
        if not found:
            requests.clear(deployment_id)
            return ""
        _, host, _, record = found[0]
        if record.running:
            # Woken already (or never asleep): the route may still say idle.
            marks.woke(deployment_id, datetime.now(UTC))
            set_route_idle(routes_path(settings), deployment_id, None)
            requests.clear(deployment_id)
            return record.endpoint or ""
        woken = wake(
            pool,
            hosts.host(host),
            deployment_id,
            record.slot,
            marks,
            routes_path(settings),
            health_timeout=health_timeout,
        )
        requests.clear(deployment_id)
        return woken.endpoint or ""
    finally:
        leases.release(f"wake:{deployment_id}")


def watch_wakes(
    settings: FarmSettings,
    *,
    interval: float = 0.1,
    stop: threading.Event | None = None,
    pool: Connections | None = None,
) -> None:
    """Wake each deployment a call waits for as soon as the gateway asks, until `stop` is set.
    A wake that fails leaves the deployment to the reconciler, which makes its domain again
    from scratch (new ports, a new disk) while the call goes on waiting."""
    stop = stop or threading.Event()
    pool = pool or connections()
    requests = WakeRequests(status.gateway_state(settings).root)
    leases = open_leases(settings.broker_url or "", settings.state)
    while not stop.is_set():
        for deployment_id in requests.pending():
            if not leases.take(f"wake:{deployment_id}", "", WAKE_LEASE_SECONDS):
                continue
            try:
                wake_deployment(settings, deployment_id, pool=pool)
            except FormarketError as exc:
                _log.error("%s could not be woken: %s", deployment_id, exc)
                SleepMarks(settings.state).forget(deployment_id)
        stop.wait(interval)
