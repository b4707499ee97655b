"""Changing a running deployment in git: moving it to another version, and stopping it.

`formarket deployments upgrade` and `formarket deployments stop` are thin click wrappers over
these. Both check first and commit one bot commit (compare-and-swap) or nothing; the farm's
reconciler does the rest: an upgrade starts the new VM beside the old one
(`farm.running`), a stop removes the VMs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from formarket.deploy.catalog import Catalog, open_market
from formarket.deploy.request import RefusedError
from formarket.errors import NotFoundError, UsageError
from formarket.farm import desired, upgrades
from formarket.farm.settings import FarmSettings
from formarket.farm.versions import semver_key, versions_at
from formarket.market.governance import bot_identity
from formarket.registry.compatibility import incompatibilities
from formarket.registry.git_snapshot import open_git_snapshot
from formarket.schemas.deployment import Deployment, PinnedListing
from formarket.schemas.listing import AgentListing, ModelListing

__all__ = ["Upgrade", "dependents", "stop", "upgrade"]


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A deployment moved to another version of its listing."""

    old: Deployment
    new: Deployment
    warnings: tuple[str, ...]
    commit: bytes | None  # None: a dry run, or nothing to change


def _get(current: Mapping[str, Deployment], deployment_id: str) -> Deployment:
    found = current.get(deployment_id)
    if found is None:
        raise NotFoundError(
            f"no deployment {deployment_id}", hint="`formarket deployments list --all` lists them"
        )
    return found


def dependents(current: Mapping[str, Deployment], deployment_id: str) -> list[Deployment]:
    """The running agent deployments that call the model deployment `deployment_id`."""
    return [
        d
        for _id, d in sorted(current.items())
        if d.kind == "agent" and d.state == "running" and d.model_deployment == deployment_id
    ]


def _target(catalog: Catalog, listing_id: str, to: str | None) -> str:
    """`to`, or the newest published version its owners did not yank."""
    if to is not None:
        return to
    marks = catalog.marks(listing_id)
    good = [
        v for v in catalog.published(listing_id) if not (v in marks and marks[v].status == "yanked")
    ]
    if not good:
        raise NotFoundError(f"{listing_id} has no published version that is not yanked")
    return max(good, key=semver_key)


def _listing(catalog: Catalog, dep: Deployment, version: str) -> ModelListing | AgentListing | None:
    at = catalog.agent_at if dep.kind == "agent" else catalog.model_at
    return at(dep.listing.id, version)


def _clashes(
    catalog: Catalog,
    current: Mapping[str, Deployment],
    dep: Deployment,
    new: ModelListing | AgentListing,
) -> list[str]:
    """Why the new version cannot work with the deployments it is paired with."""
    reasons: list[str] = []
    model_dep = current.get(dep.model_deployment or "")
    if isinstance(new, AgentListing) and model_dep is not None:
        model = catalog.model_at(model_dep.listing.id, model_dep.listing.version)
        if model is not None:
            found = incompatibilities(
                new.id, new.model_dump(mode="json"), model.id, model.model_dump(mode="json")
            )
            reasons += [f"with its model deployment {model_dep.id}: {r}." for r in found]
    if isinstance(new, ModelListing):
        for agent_dep in dependents(current, dep.id):
            agent = catalog.agent_at(agent_dep.listing.id, agent_dep.listing.version)
            if agent is None:
                continue
            found = incompatibilities(
                agent.id, agent.model_dump(mode="json"), new.id, new.model_dump(mode="json")
            )
            reasons += [f"the agent deployment {agent_dep.id} calls it: {r}." for r in found]
    return reasons


def upgrade(
    settings: FarmSettings, deployment_id: str, to: str | None = None, *, dry_run: bool = False
) -> Upgrade:
    """Pin `deployment_id` to version `to` (default: the newest that is not yanked) in git;
    RefusedError lists every reason it cannot run that version."""
    repo = open_market(settings)
    try:
        current = desired.read_deployments(repo, settings.branch, problems=[])
        dep = _get(current, deployment_id)
        if dep.state != "running":
            raise UsageError(
                f"{deployment_id} is stopped; only a running deployment is upgraded",
                hint="deploy the version you want with `formarket deploy ID@VERSION`",
            )
        versions = versions_at(repo, settings.branch)
        catalog = Catalog(open_git_snapshot(repo, settings.branch), current, versions)
        listing_id = dep.listing.id
        target = _target(catalog, listing_id, to)
        new = _listing(catalog, dep, target)
        if new is None:
            known = ", ".join(catalog.published(listing_id))
            raise RefusedError(
                [f"{listing_id} has no published version {target}; its versions: {known}."]
            )
        reasons = _clashes(catalog, current, dep, new)
        warnings: list[str] = []
        mark = catalog.marks(listing_id).get(target)
        if mark is not None and mark.status == "yanked":
            reasons.insert(0, f"{listing_id}@{target} is yanked: {mark.message}")
        elif mark is not None:
            warnings.append(f"{listing_id}@{target} is deprecated: {mark.message}")
        if reasons:
            raise RefusedError(reasons)
        moved = dep.model_copy(update={"listing": PinnedListing(id=listing_id, version=target)})
        if dry_run or moved == dep:
            return Upgrade(dep, moved, tuple(warnings), None)
        commit = desired.submit(
            repo,
            settings.branch,
            [moved],
            f"Upgrade {deployment_id}: {listing_id} {dep.listing.version} to {target}",
            bot_identity(repo, settings.branch),
        )
    finally:
        repo.close()
    # Asked again: a version whose last try failed is tried once more.
    upgrades.forget(settings.state, deployment_id)
    return Upgrade(dep, moved, tuple(warnings), commit)


def stop(
    settings: FarmSettings,
    deployment_id: str,
    *,
    cascade: bool = False,
    echo: Callable[[str], None] = print,
) -> tuple[list[str], bytes | None]:
    """Mark a deployment stopped in git, with the agent deployments that call it when
    `cascade`; without, a model that a running agent calls is refused. The ids stopped and
    the commit (None when they were stopped already)."""
    repo = open_market(settings)
    try:
        current = desired.read_deployments(repo, settings.branch, problems=[])
        dep = _get(current, deployment_id)
        calling = dependents(current, deployment_id)
        if calling and not cascade:
            named = ", ".join(f"{d.id} ({d.listing.id}@{d.listing.version})" for d in calling)
            raise UsageError(
                f"{deployment_id} is the model of the running agent deployment"
                f"{'s' if len(calling) > 1 else ''} {named}; stopping it alone would leave"
                " them calling a model that is gone",
                hint=f"stop them first, or `formarket deployments stop {deployment_id}"
                " --cascade` to stop them together",
            )
        stopping = [d for d in (*calling, dep) if d.state != "stopped"]
        for d in calling:
            echo(f"{d.id} ({d.listing.id}) calls {deployment_id}: stopped with it")
        if not stopping:
            return [], None
        commit = desired.submit(
            repo,
            settings.branch,
            [d.model_copy(update={"state": "stopped"}) for d in stopping],
            "Stop deployment " + ", ".join(d.id for d in stopping),
            bot_identity(repo, settings.branch),
        )
    finally:
        repo.close()
    return [d.id for d in stopping], commit
