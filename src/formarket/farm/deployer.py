"""The libvirt deployer: start a deployment's domain on a host, check it answers, stop it,
and read back what runs.

`start` is idempotent (a deployment is keyed by its id): a domain that already runs the same
build is left alone; a stopped one, or one of another build, is replaced. Host
ports are free ports of this machine when the host's address is loopback (the host is this
machine); for other hosts, the first ports of a fixed range that none of formarket's domains
on that host uses (this machine cannot see which ports are free over there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from formarket.builder.manifest import BuildManifest
from formarket.builder.store import DirectoryStore
from formarket.builder.vm import free_port
from formarket.errors import FormarketError
from formarket.farm.configdisk import config_disk_bytes, deployment_env
from formarket.farm.datadisks import ensure_data_disk
from formarket.farm.devices import GpuDevice
from formarket.farm.domain import (
    SLOTS,
    DomainRecord,
    DomainSpec,
    domain_name,
    domain_xml,
    instance_name,
    read_metadata,
)
from formarket.farm.gpus import choose
from formarket.farm.hosts import Host
from formarket.farm.images import (
    HostImage,
    console_log_path,
    create_config_disk,
    create_overlay,
    ensure_image,
    remove_deployment_volumes,
)
from formarket.farm.libvirt_conn import HostConnection
from formarket.httpclient import Client, HTTPError
from formarket.schemas.deployment import Deployment

__all__ = ["HealthError", "Started", "actual", "is_loopback", "start", "stop", "wait_healthy"]

REMOTE_PORTS = range(20000, 30000)


class HealthError(FormarketError):
    """A deployment's service did not answer in time."""


@dataclass(frozen=True, slots=True)
class Started:
    """A deployment's domain, running on a host."""

    deployment_id: str
    host: str
    domain: str
    endpoint: str | None  # None when the image EXPOSEs no port
    ports: tuple[tuple[int, int], ...]  # (guest, host)
    console_log: str  # on the host
    image: HostImage | None  # None when the domain already ran and was left alone


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _choose_ports(
    conn: HostConnection, host: Host, expose: tuple[int, ...]
) -> tuple[tuple[int, int], ...]:
    if is_loopback(host.address):
        return tuple((guest, free_port()) for guest in expose)
    taken = {port for record in actual(conn) for _guest, port in record.ports}
    free = (port for port in REMOTE_PORTS if port not in taken)
    try:
        return tuple((guest, next(free)) for guest in expose)
    except StopIteration:
        raise FormarketError(
            f"host {host.name}: every port from {REMOTE_PORTS.start} to {REMOTE_PORTS.stop - 1}"
            " is forwarded already",
            hint="place the deployment on another host",
        ) from None


def _started(conn: HostConnection, record: DomainRecord, console: str) -> Started:
    return Started(
        deployment_id=record.deployment_id,
        host=conn.name,
        domain=domain_name(record.deployment_id, record.slot),
        endpoint=record.endpoint,
        ports=record.ports,
        console_log=console,
        image=None,
    )


def start(
    conn: HostConnection,
    host: Host,
    deployment: Deployment,
    manifest: BuildManifest,
    store: DirectoryStore,
    env: Mapping[str, str],
    *,
    gateway: str | None = None,
    slot: int = 0,
    unavailable: Iterable[str] = (),
) -> Started:
    """Run `deployment` on `host` in `slot`: its GPUs (DeviceMissing when one is not on the
    host), image, overlay, config disk (the deployment's own variables with `env` on top:
    resolved secrets, an agent's MODEL_ENDPOINT and key), data disk of weights, ports, domain;
    started. An agent's VM is forwarded to `gateway` (the gateway's URL) and nowhere else. The
    deployment's VM in the other slot, if any, is left alone (and keeps its GPUs). GPU devices
    `unavailable` (found missing on the host lately) are given to nobody."""
    if deployment.kind != "agent" or deployment.model_deployment is None:
        gateway = None
    name = domain_name(deployment.id, slot)
    instance = instance_name(deployment.id, slot)
    pool_path = conn.ensure_pool()
    console = console_log_path(pool_path, instance)
    existing = conn.domain(name)
    if existing is not None:
        record = read_metadata(existing.xml)
        if (
            existing.running
            and record is not None
            and record.build_id == manifest.build_id
            and record.model_endpoint == gateway
        ):
            return _started(conn, record, console)
        # Stopped, another build or (an agent) a gateway that moved: made again from scratch,
        # so that its ports are free now and its config disk says what is true now.
        stop(conn, deployment.id, slot)
    gpus: tuple[GpuDevice, ...] = ()
    if deployment.size.gpu is not None and host.devices:
        held = [*unavailable, *(key for record in actual(conn) for key in record.devices)]
        gpus = choose(host, deployment, held, conn.node_devices())
    image = ensure_image(conn, store, manifest)
    weights = ensure_data_disk(conn, store, manifest)
    overlay = create_overlay(conn, image, instance)
    variables = deployment_env(deployment) | dict(env)
    config = create_config_disk(conn, instance, config_disk_bytes(variables))
    spec = DomainSpec(
        deployment_id=deployment.id,
        kind=deployment.kind,
        listing_id=deployment.listing.id,
        listing_version=deployment.listing.version,
        model_deployment=deployment.model_deployment,
        build_id=manifest.build_id,
        domain_type=host.domain_type,
        vcpus=deployment.size.vcpus,
        memory_mib=deployment.size.memory_mib,
        kernel=image.kernel,
        initrd=image.initrd,
        disk=overlay,
        config_disk=config,
        kernel_cmdline=manifest.kernel_cmdline,
        ports=_choose_ports(conn, host, manifest.expose),
        address=host.address,
        console_log=console,
        model_endpoint=gateway,
        slot=slot,
        data_disk=weights,
        gpus=gpus,
    )
    try:
        conn.define_and_start(domain_xml(spec))
    except FormarketError:
        # Nothing half-made stays behind: the next try starts from scratch. (If the host
        # stopped answering, cleaning up fails too; the first error is the one to report.)
        with contextlib.suppress(FormarketError):
            stop(conn, deployment.id, slot)
        raise
    return Started(
        deployment_id=deployment.id,
        host=conn.name,
        domain=name,
        endpoint=spec.record().endpoint,
        ports=spec.ports,
        console_log=console,
        image=image,
    )


def wait_healthy(endpoint: str, timeout: float = 120.0, *, interval: float = 0.3) -> float:
    """Seconds until the service at `endpoint` gives any HTTP answer (`/health`, then `/`)."""
    started = time.monotonic()
    deadline = started + timeout
    last = "no answer yet"
    with Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            for path in ("/health", "/"):
                try:
                    client.get(endpoint.rstrip("/") + path)
                except HTTPError as exc:
                    last = exc.message
                    continue
                return time.monotonic() - started
            time.sleep(interval)
    raise HealthError(
        f"{endpoint} did not answer within {timeout:.0f}s ({last})",
        hint="the deployment's console log shows how far its VM got",
    )


def stop(conn: HostConnection, deployment_id: str, slot: int | None = None) -> bool:
    """Remove a deployment's domain and volumes from the host, in one slot or in every slot;
    True if anything was there."""
    removed = False
    for each in SLOTS if slot is None else (slot,):
        removed = conn.destroy(domain_name(deployment_id, each)) or removed
        removed = (
            bool(remove_deployment_volumes(conn, instance_name(deployment_id, each))) or removed
        )
    return removed


def actual(conn: HostConnection) -> list[DomainRecord]:
    """formarket's domains on the host, running or not, read from their metadata."""
    records = []
    for dom in conn.domains():
        record = read_metadata(dom.xml)
        if record is not None:
            records.append(dataclasses.replace(record, running=dom.running))
    return records
