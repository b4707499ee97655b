"""The plan shown before a request is committed: what is built, where it runs, what it costs.

Where it runs is a forecast: the running deployments are placed first, in id order, then the
new ones, with the farm's own placement on the host inventory. The farm decides for real when
it starts them; the forecast tells a user early that a request cannot fit anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from formarket.deploy.checks import Resolved
from formarket.farm.hosts import Host
from formarket.farm.placement import Need, Placed, Placer
from formarket.schemas.deployment import Deployment, DeploymentSize

__all__ = ["describe_size", "forecast", "plan_lines"]


def _need(size: DeploymentSize) -> Need:
    gpu = size.gpu
    return Need(size.vcpus, size.memory_mib, gpu.model if gpu else None, gpu.count if gpu else 0)


def describe_size(size: DeploymentSize) -> str:
    gpus = f", {size.gpu.count}× {size.gpu.model}" if size.gpu else ""
    return f"{size.vcpus} vCPU, {size.memory_mib} MiB, {size.disk_gib} GiB disk{gpus}"


def forecast(
    new: Sequence[Deployment], existing: Mapping[str, Deployment], hosts: Sequence[Host]
) -> dict[str, str]:
    """Deployment id -> `on HOST`, or why no host can take it now."""
    placer = Placer(hosts)
    for dep_id in sorted(existing):
        dep = existing[dep_id]
        if dep.state == "running" and dep_id not in {d.id for d in new}:
            placer.place(_need(dep.size))
    where: dict[str, str] = {}
    for dep in new:
        placed = placer.place(_need(dep.size))
        where[dep.id] = (
            f"on {placed.host}" if isinstance(placed, Placed) else f"nowhere yet: {placed.reason}"
        )
    return where


def plan_lines(resolved: Resolved, where: Mapping[str, str]) -> list[str]:
    """The plan as lines of plain text."""
    lines = ["Plan:"]
    for dep in resolved.reused:
        lines.append(
            f"  reuse  {dep.id}  {dep.listing.id}@{dep.listing.version} ({dep.kind}),"
            " already running for this account"
        )
    for dep in resolved.deployments:
        runs = where.get(dep.id, "where the farm places it (no host inventory configured)")
        lines.append(f"  build  {dep.id}  {dep.listing.id}@{dep.listing.version} ({dep.kind})")
        lines.append(f"         {describe_size(dep.size)}; runs {runs}")
        if dep.model_deployment:
            lines.append(f"         talks to the model deployment {dep.model_deployment}")
        if dep.settings:
            shown = ", ".join(f"{k}={v!r}" for k, v in sorted(dep.settings.items()))
            lines.append(f"         settings: {shown}")
        if dep.secrets:
            lines.append(
                "         secrets: " + ", ".join(f"{s.name} from {s.ref}" for s in dep.secrets)
            )
    lines.append("Price per unit:")
    lines += [f"  {price}" for price in resolved.prices]
    lines += [f"Warning: {warning}" for warning in resolved.warnings]
    return lines
