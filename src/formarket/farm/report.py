"""What a person asks about one deployment: what git wants, what libvirt runs, and its logs.

The two states are kept apart on purpose: git says what should run (`desired`), libvirt says
what does (`actual`). A deployment that never ran has a desired state of running and no VM; a
deployment being upgraded has two VMs for a while. The serial console is read over the host's
libvirt connection; the image's init writes a boot marker to it and then the service's own
output, so the log splits there into the VM's boot and its service's log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from formarket.builder.vm import BOOT_MARKER
from formarket.errors import FormarketError
from formarket.farm import status, upgrades
from formarket.farm.domain import instance_name
from formarket.farm.fleet import Actual, inventory, observe
from formarket.farm.images import console_text
from formarket.farm.libvirt_conn import Connections, HostError
from formarket.farm.settings import FarmSettings
from formarket.schemas.deployment import Deployment
from formarket.schemas.listing import VersionMark

__all__ = ["Console", "actual_of", "consoles", "look", "view"]


def look(settings: FarmSettings, pool: Connections) -> Actual | str:
    """What libvirt reports on the farm's hosts, or why it cannot be asked."""
    if settings.hosts is None:
        return "unknown: the farm's host inventory is not configured (FORMARKET_HOSTS)"
    try:
        return observe(inventory(settings).hosts, pool)
    except FormarketError as exc:
        return f"unknown: {exc.message}"


def actual_of(actual: Actual | str, deployment_id: str) -> dict[str, Any]:
    """The deployment's VMs as libvirt reports them."""
    if isinstance(actual, str):
        return {"state": actual, "vms": []}
    vms: list[dict[str, Any]] = [
        {
            "host": host,
            "slot": record.slot,
            "running": bool(record.running),
            "version": record.listing_version,
            "build": record.build_id[:16],
            "endpoint": record.endpoint,
        }
        for host, record in actual.of(deployment_id)
    ]
    if any(vm["running"] for vm in vms):
        versions = sorted({str(vm["version"]) for vm in vms if vm["running"]})
        state = f"running ({', '.join(versions)})"
    elif vms:
        state = "defined, not running"
    else:
        state = "no VM" + (f" (hosts down: {', '.join(actual.down)})" if actual.down else "")
    return {"state": state, "vms": vms}


def view(
    settings: FarmSettings,
    deployment: Deployment,
    actual: Actual | str,
    marks: Mapping[str, VersionMark],
) -> dict[str, Any]:
    """Everything about one deployment, the desired and the actual state apart."""
    listing = deployment.listing
    found: dict[str, Any] = {
        **deployment.model_dump(mode="json", exclude={"state"}),
        "desired": {"state": deployment.state, "version": listing.version},
        "actual": actual_of(actual, deployment.id),
        "endpoint": status.endpoint(settings, deployment.id),
        "farm": progress
        if (progress := status.progress(settings, deployment.id)) and deployment.state == "running"
        else "stopped in git",
    }
    last = upgrades.load(settings.state).get(deployment.id)
    if last is not None:
        found["upgrade"] = last.model_dump()
    mark = marks.get(listing.version)
    if mark is not None:
        found["notice"] = f"{listing.id}@{listing.version} is {mark.status}: {mark.message}"
    return found


@dataclass(frozen=True, slots=True)
class Console:
    """One VM's serial console, split at the boot marker."""

    host: str
    slot: int
    running: bool
    boot: str
    service: str


def consoles(settings: FarmSettings, deployment_id: str, pool: Connections) -> list[Console]:
    """The serial console of each VM of the deployment, running ones first."""
    actual = look(settings, pool)
    if isinstance(actual, str):
        raise FormarketError(f"cannot read {deployment_id}'s logs: {actual}")
    hosts = inventory(settings)
    found: list[Console] = []
    for host_name, record in sorted(actual.of(deployment_id), key=lambda x: not x[1].running):
        try:
            text = console_text(
                pool.get(hosts.host(host_name)), instance_name(deployment_id, record.slot)
            )
        except HostError as exc:
            text = f"(the console could not be read: {exc.message})"
        boot, marker, service = text.partition(BOOT_MARKER.decode())
        if marker:
            line, _, service = service.partition("\n")
            boot += marker + line + "\n"
        found.append(Console(host_name, record.slot, bool(record.running), boot, service))
    return found
