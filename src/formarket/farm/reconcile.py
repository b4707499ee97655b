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

__all__ = ["Build", "Deploy", "Domain", "Plan", "Stop", "need_of", "plan"]


@dataclass(frozen=True, slots=True)
class Domain:
    """A formarket domain that libvirt reports on a host."""

    deployment: str
    host: str
    running: bool
    build_id: str = ""
    endpoint: str | None = None
    model_endpoint: str | None = None  # an agent's: the gateway its model calls go to
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

    @property
    def key(self) -> str:
        return f"stop:{self.deployment}@{self.host}"


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


def _keep(domains: Sequence[Domain]) -> Domain:
    # Prefer a running domain; among equals the host that sorts first, so the choice is stable.
    return min(domains, key=lambda d: (not d.running, d.host))


def plan(
    desired: Mapping[str, Deployment],
    domains: Sequence[Domain],
    hosts: Sequence[Host],
    down: frozenset[str],
    has_image: Mapping[tuple[str, str], bool],
    in_flight: Mapping[str, str] | None = None,
    gateway: str | None = None,
    unavailable: Mapping[str, frozenset[str]] | None = None,
) -> Plan:
    """The next steps. `domains` are those of the hosts that answered (hosts in `down` did not);
    `has_image` tells, per (listing id, version), whether its image is in the store;
    `in_flight` maps the key of each action already handed out to its host ("" for builds);
    `gateway` is where agents' model calls must go (the gateway's URL); `unavailable` names,
    by host, GPU devices found missing there, which placement gives to nobody."""
    in_flight = in_flight or {}
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
        keep = _keep(found)
        kept[dep_id] = keep
        stops.extend(
            Stop(dep_id, d.host, f"it also runs on {keep.host}")
            for d in sorted(found, key=lambda d: d.host)
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
    for domain in kept.values():
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
        listing = deployment.listing
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
