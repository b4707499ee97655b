"""The reconcile plan: what to build, deploy and stop so that libvirt agrees with git. Pure.

git says which deployments should run (`registry/deployments/`); libvirt says which domains
exist on each host that answers. The plan closes the gap one step at a time, and the next
cycle sees what the last one did:

- a domain whose deployment is stopped or gone from git is stopped;
- a deployment that should run and has no domain on a host that answers is built first when
  its image does not exist yet, then placed and deployed; so a deployment whose host died is
  placed again elsewhere;
- a domain that exists but is not running (it crashed, or its host rebooted) is deployed again
  where it is;
- an agent waits until its model deployment runs, and is started again when the gateway it
  calls its model through moved (its VM is forwarded to the gateway's address: a model that
  moves needs nothing, the gateway routes to wherever it runs);
- two domains of one deployment (a host came back after its deployment was placed elsewhere)
  are reduced to one.

Work already handed to the queue is not handed again while its lease lasts (`in_flight`); the
leases live beside the queue, so when the queue loses its contents the leases go with them and
the next plan hands everything out again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from formarket.farm.hosts import Host
from formarket.farm.placement import Need, Placed, Placer, Usage
from formarket.schemas.deployment import Deployment

__all__ = ["Build", "Deploy", "Domain", "Plan", "Stop", "Wake", "need_of", "plan"]


@dataclass(frozen=True, slots=True)
class Domain:
    """A formarket domain that libvirt reports on a host."""

    deployment: str
    host: str
    running: bool
    build_id: str = ""
    endpoint: str | None = None
    model_endpoint: str | None = None  # an agent's: the gateway its model calls go to
    version: str = ""  # the listing version it runs ("" when not known)
    slot: int = 0
    devices: tuple[str, ...] = ()  # the GPUs it holds, by key


@dataclass(frozen=True, slots=True)
class Build:
    listing: str
    version: str

    @property
    def key(self) -> str:
        return f"build:{self.listing}@{self.version}"


@dataclass(frozen=True, slots=True)
class Deploy:
    deployment: str
    host: str
    reason: str

    @property
    def key(self) -> str:
        return f"deploy:{self.deployment}"


@dataclass(frozen=True, slots=True)
class Stop:
    deployment: str
    host: str
    reason: str
    slot: int | None = None  # None: every VM of the deployment on the host

    @property
    def key(self) -> str:
        suffix = "" if self.slot is None else f"/{self.slot}"
        return f"stop:{self.deployment}@{self.host}{suffix}"


@dataclass(frozen=True, slots=True)
class Wake:
    """Start a sleeping (scaled to zero) deployment's domain again: a call waits for it."""

    deployment: str
    host: str
    reason: str = "a call is waiting for it"

    @property
    def key(self) -> str:
        return f"wake:{self.deployment}"


@dataclass(frozen=True, slots=True)
class Plan:
    builds: tuple[Build, ...] = ()
    deploys: tuple[Deploy, ...] = ()
    stops: tuple[Stop, ...] = ()
    waiting: Mapping[str, str] = field(default_factory=dict)  # deployment -> why not yet
    refused: Mapping[str, str] = field(default_factory=dict)  # deployment -> why it cannot run
    running: Mapping[str, Domain] = field(default_factory=dict)  # deployment -> its domain

    @property
    def idle(self) -> bool:
        return not (self.builds or self.deploys or self.stops)


def need_of(deployment: Deployment) -> Need:
    size = deployment.size
    if size.gpu is None:
        return Need(size.vcpus, size.memory_mib)
    return Need(size.vcpus, size.memory_mib, size.gpu.model, size.gpu.count)


def _keep(domains: Sequence[Domain], version: str) -> Domain:
    # Prefer a running domain, then one of the version git wants; among equals the host and
    # slot that sort first, so the choice is stable.
    return min(
        domains, key=lambda d: (not d.running, d.version not in ("", version), d.host, d.slot)
    )


def _upgrade(
    deployment: Deployment,
    current: Domain,
    has_image: Mapping[tuple[str, str], bool],
    in_flight: Mapping[str, str],
    failed_upgrades: Mapping[str, str],
) -> Build | Deploy | str:
    """The next step of moving a running deployment to the version git wants, or why none."""
    listing = deployment.listing
    if f"deploy:{deployment.id}" in in_flight:
        return f"being upgraded from {current.version} to {listing.version}"
    if failed_upgrades.get(deployment.id) == listing.version:
        return (
            f"its upgrade to {listing.version} failed; {current.version} serves on"
            " (`formarket deployments show` says why)"
        )
    if not has_image.get((listing.id, listing.version), False):
        return Build(listing.id, listing.version)
    return Deploy(
        deployment.id, current.host, f"upgrade from {current.version} to {listing.version}"
    )


def plan(
    desired: Mapping[str, Deployment],
    domains: Sequence[Domain],
    hosts: Sequence[Host],
    down: frozenset[str],
    has_image: Mapping[tuple[str, str], bool],
    in_flight: Mapping[str, str] | None = None,
    gateway: str | None = None,
    failed_upgrades: Mapping[str, str] | None = None,
    sleeping: frozenset[str] = frozenset(),
    unavailable: Mapping[str, frozenset[str]] | None = None,
) -> Plan:
    """The next steps. `domains` are those of the hosts that answered (hosts in `down` did not);
    `has_image` tells, per (listing id, version), whether its image is in the store;
    `in_flight` maps the key of each action already handed out to its host ("" for builds);
    `gateway` is where agents' model calls must go (the gateway's URL); `failed_upgrades`
    maps a deployment to the version its last upgrade could not bring up (not tried again);
    `sleeping` are the deployments stopped for idleness, whose stopped domains stay as they
    are (a call wakes them, and an upgrade waits for that) and keep their room on their host;
    `unavailable` names, by host, GPU devices found missing there, given to nobody."""
    in_flight = in_flight or {}
    failed_upgrades = failed_upgrades or {}
    by_deployment: dict[str, list[Domain]] = {}
    for domain in domains:
        by_deployment.setdefault(domain.deployment, []).append(domain)
    stops: list[Stop] = []
    kept: dict[str, Domain] = {}
    for dep_id, found in sorted(by_deployment.items()):
        wanted = desired.get(dep_id)
        if wanted is None or wanted.state != "running":
            why = "it is not in git" if wanted is None else "it is stopped in git"
            stops.extend(Stop(dep_id, d.host, why) for d in sorted(found, key=lambda d: d.host))
            continue
        keep = _keep(found, wanted.listing.version)
        kept[dep_id] = keep
        if f"deploy:{dep_id}" in in_flight:
            continue  # an upgrade runs two VMs of it for a while; its task stops the old one
        stops.extend(
            Stop(dep_id, d.host, f"it also runs on {keep.host}")
            if d.host != keep.host
            else Stop(dep_id, d.host, f"it also runs in slot {keep.slot}", d.slot)
            for d in sorted(found, key=lambda d: (d.host, d.slot))
            if d is not keep
        )

    live = [h for h in hosts if h.name not in down]
    usage: dict[str, Usage] = {}
    for dep_id, domain in kept.items():
        usage[domain.host] = usage.get(domain.host, Usage()).plus(need_of(desired[dep_id]))
    # A deployment handed out but not yet defined takes its room already.
    for dep_id, deployment in desired.items():
        host = in_flight.get(f"deploy:{dep_id}")
        if host and dep_id not in kept and deployment.state == "running":
            usage[host] = usage.get(host, Usage()).plus(need_of(deployment))
    held: dict[str, set[str]] = {host: set(keys) for host, keys in (unavailable or {}).items()}
    # Every domain holds its devices until it is gone: one being stopped, or an upgrade's old VM.
    for domain in domains:
        held.setdefault(domain.host, set()).update(domain.devices)
    placer = Placer(live, usage, held)

    builds: dict[str, Build] = {}
    deploys: list[Deploy] = []
    waiting: dict[str, str] = {}
    refused: dict[str, str] = {}
    running = {dep_id: d for dep_id, d in kept.items() if d.running}
    # Models before agents, so an agent's model is placed in the same cycle.
    order = sorted(
        (d for d in desired.values() if d.state == "running"),
        key=lambda d: (d.kind != "model", d.id),
    )
    for deployment in order:
        dep_id = deployment.id
        current = kept.get(dep_id)
        listing = deployment.listing
        if current is not None and current.running and current.version not in ("", listing.version):
            step = _upgrade(deployment, current, has_image, in_flight, failed_upgrades)
            if isinstance(step, Build):
                if step.key not in in_flight:
                    builds.setdefault(step.key, step)
                waiting[dep_id] = f"waiting for the image of {listing.id}@{listing.version}"
            elif isinstance(step, Deploy):
                deploys.append(step)
            else:
                waiting[dep_id] = step
            continue
        if current is not None and current.running:
            if (
                deployment.model_deployment
                and gateway is not None
                and current.model_endpoint != gateway
                and f"deploy:{dep_id}" not in in_flight
            ):
                why = f"its model calls must go to the gateway at {gateway}"
                deploys.append(Deploy(dep_id, current.host, why))
            continue
        if current is not None and dep_id in sleeping:
            continue
        if not has_image.get((listing.id, listing.version), False):
            build = Build(listing.id, listing.version)
            if build.key not in in_flight:
                builds.setdefault(build.key, build)
            waiting[dep_id] = f"waiting for the image of {listing.id}@{listing.version}"
            continue
        if deployment.model_deployment:
            model = desired.get(deployment.model_deployment)
            if model is None or model.state != "running":
                refused[dep_id] = (
                    f"its model deployment {deployment.model_deployment} is not running in git"
                )
                continue
            if deployment.model_deployment in refused:
                refused[dep_id] = (
                    f"its model deployment {deployment.model_deployment} cannot run:"
                    f" {refused[deployment.model_deployment]}"
                )
                continue
            if deployment.model_deployment not in running:
                waiting[dep_id] = f"waiting for its model deployment {deployment.model_deployment}"
                continue
        action_key = f"deploy:{dep_id}"
        if current is not None:
            if action_key not in in_flight:
                deploys.append(Deploy(dep_id, current.host, "its domain is not running"))
            continue
        if action_key in in_flight:
            waiting[dep_id] = "being deployed"
            continue
        placed = placer.place(need_of(deployment))
        if isinstance(placed, Placed):
            deploys.append(Deploy(dep_id, placed.host, "it has no domain on a host that answers"))
        else:
            refused[dep_id] = placed.reason
    stops = [s for s in stops if s.key not in in_flight]
    return Plan(
        builds=tuple(builds.values()),
        deploys=tuple(deploys),
        stops=tuple(stops),
        waiting=waiting,
        refused=refused,
        running=running,
    )
