"""The farm's view of its hosts: the inventory, one connection pool per process, what libvirt
reports running, and where the farm keeps the files the gateway reads.

Connections to hosts live as long as the process (libvirt's test driver forgets its domains
when its connection closes), in one pool per process.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from formarket.errors import UsageError
from formarket.farm import deployer, status
from formarket.farm.domain import DomainRecord
from formarket.farm.hosts import Host, Inventory, load_inventory
from formarket.farm.libvirt_conn import Connections, HostError
from formarket.farm.reconcile import Domain
from formarket.farm.settings import FarmSettings

__all__ = [
    "Actual",
    "agent_keys_path",
    "connections",
    "inventory",
    "missing_devices_path",
    "observe",
    "routes_path",
]

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
                version=r.listing_version,
                slot=r.slot,
                devices=r.devices,
            )
            for host, records in sorted(self.records.items())
            for r in records
        ]

    def of(self, deployment_id: str) -> list[tuple[str, DomainRecord]]:
        """Every domain of the deployment, on every host that answered (running or not)."""
        return [
            (host, record)
            for host, records in sorted(self.records.items())
            for record in records
            if record.deployment_id == deployment_id
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


def missing_devices_path(settings: FarmSettings) -> Path:
    """GPU devices the inventory lists that a start found missing (see farm.gpus)."""
    return settings.state / "missing-devices.json"


def agent_keys_path(settings: FarmSettings) -> Path:
    """The farm's file of the keys its agents call their models with."""
    return settings.state / "agent-keys.json"
