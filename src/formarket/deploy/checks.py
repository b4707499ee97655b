"""Checking a deployment request in full, before anything is committed. Pure.

`resolve` answers with the documents to commit, or with every reason the request cannot run
(not only the first: a user fixes them all in one go). Resources given with a request size
the deployment the user named (the agent, or the model deployed alone); the model behind an
agent runs at its recommended size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import jsonschema_rs

from formarket.deploy.catalog import Catalog
from formarket.registry.compatibility import incompatibilities
from formarket.schemas.deployment import (
    Deployment,
    DeploymentRequest,
    DeploymentSize,
    GpuRequest,
    PinnedListing,
    RequestedListing,
)
from formarket.schemas.listing import AgentListing, ModelListing
from formarket.schemas.pricing import (
    FreePricing,
    PerInstanceHourPricing,
    PerRequestPricing,
    PerTokenPricing,
    Pricing,
    SubscriptionPricing,
)

__all__ = [
    "PriceLine",
    "Refusal",
    "Resolved",
    "deployment_id",
    "issue_seed",
    "request_sha256",
    "resolve",
]


@dataclass(frozen=True, slots=True)
class PriceLine:
    """What one listing costs, per unit of what the gateway meters."""

    listing: str  # id@version
    currency: str | None
    charges: tuple[tuple[Decimal, str], ...]  # (amount, unit); empty when free
    pricing: Pricing | None = None  # the listing's terms, for a forecast

    def __str__(self) -> str:
        if not self.charges:
            return f"{self.listing}: free"
        parts = ", ".join(f"{self.currency} {amount} per {unit}" for amount, unit in self.charges)
        return f"{self.listing}: {parts}"


@dataclass(frozen=True, slots=True)
class Resolved:
    """A request that passed every check: the documents to commit, model first."""

    request: DeploymentRequest
    deployments: tuple[Deployment, ...]
    reused: tuple[Deployment, ...]
    prices: tuple[PriceLine, ...]
    warnings: tuple[str, ...] = ()  # deprecated versions, with their owners' messages

    @property
    def all(self) -> tuple[Deployment, ...]:
        """What will run for this request, reused deployments included."""
        return (*self.reused, *self.deployments)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Every reason the request cannot run, each a sentence."""

    reasons: tuple[str, ...]


def deployment_id(seed: str, role: str) -> str:
    """`dep-` and 12 hex digits, derived from a seed so that a re-run finds the same ids."""
    return "dep-" + hashlib.sha256(f"{seed}\0{role}".encode()).hexdigest()[:12]


def issue_seed(repo_slug: str, issue: int) -> str:
    return f"issue:{repo_slug.lower()}#{issue}"


def request_sha256(request: DeploymentRequest) -> str:
    plain = request.model_dump(mode="json")
    if plain.get("idle_after") is None:
        # Requests from before scale to zero keep the digest they had.
        plain.pop("idle_after", None)
    canonical = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def price_line(listing: ModelListing | AgentListing) -> PriceLine:
    pricing = listing.pricing
    name = f"{listing.id}@{listing.version}"
    if isinstance(pricing, FreePricing):
        return PriceLine(name, None, (), pricing)
    if isinstance(pricing, PerRequestPricing):
        return PriceLine(name, pricing.currency, ((pricing.per_request, "request"),), pricing)
    if isinstance(pricing, PerTokenPricing):
        return PriceLine(
            name,
            pricing.currency,
            (
                (pricing.input_per_million, "million input tokens"),
                (pricing.output_per_million, "million output tokens"),
            ),
            pricing,
        )
    if isinstance(pricing, PerInstanceHourPricing):
        return PriceLine(name, pricing.currency, ((pricing.per_hour, "instance-hour"),), pricing)
    assert isinstance(pricing, SubscriptionPricing)
    return PriceLine(
        name,
        pricing.currency,
        tuple((tier.monthly, f"month ({tier.name} tier)") for tier in pricing.tiers),
        pricing,
    )


def _at_version(
    kind: str, ref: RequestedListing, catalog: Catalog
) -> tuple[ModelListing | AgentListing | None, list[str], list[str]]:
    """The listing at the version asked for (any published one), the reasons it cannot be
    deployed, and warnings (a deprecated version)."""
    listing = (catalog.agent_at if kind == "agent" else catalog.model_at)(ref.id, ref.version)
    if listing is None:
        known = catalog.published(ref.id)
        if ref.version is None or not known:
            return None, [_missing(kind, ref.id, catalog)], []
        return (
            None,
            [
                f"{kind} {ref.id} has no published version {ref.version}; its versions:"
                f" {', '.join(known)}."
            ],
            [],
        )
    mark = catalog.marks(listing.id).get(listing.version)
    named = f"{kind} {listing.id}@{listing.version}"
    if mark is not None and mark.status == "yanked":
        return listing, [f"{named} is yanked and takes no new deployments: {mark.message}"], []
    if mark is not None:
        return listing, [], [f"{named} is deprecated: {mark.message}"]
    return listing, [], []


def _missing(kind: str, ident: str, catalog: Catalog) -> str:
    if kind == "agent" and catalog.model(ident) is not None:
        return f"{ident} is a model, not an agent: deploy it with --model {ident}."
    if kind == "model" and catalog.agent(ident) is not None:
        return f"{ident} is an agent, not a model: name it as the agent."
    return f"There is no {kind} listing {ident} in the registry."


def _bounds(what: str, name: str, asked: int, low: int, high: int) -> list[str]:
    if asked < low:
        return [f"{name} needs at least {low} {what}; {asked} were asked for."]
    if asked > high:
        return [f"{name} may use at most {high} {what}; {asked} were asked for."]
    return []


def _size(
    listing: ModelListing | AgentListing, request: DeploymentRequest | None
) -> tuple[DeploymentSize, list[str]]:
    """The machine for `listing`: the request's resources, else the recommended size."""
    res = listing.resources
    low, rec, high = res.minimum, res.effective_recommended, res.effective_maximum
    vcpus = request.vcpus if request and request.vcpus else rec.vcpus
    memory = request.memory_mib if request and request.memory_mib else rec.memory_mib
    reasons = _bounds("vCPUs", listing.id, vcpus, low.vcpus, high.vcpus)
    reasons += _bounds("MiB of memory", listing.id, memory, low.memory_mib, high.memory_mib)
    gpu = GpuRequest(model=rec.gpu.model, count=rec.gpu.count) if rec.gpu else None
    if request and request.gpu:
        gpu = request.gpu
        if high.gpu is None:
            reasons.append(f"{listing.id} does not use GPUs; leave out the GPU request.")
        elif gpu.model != high.gpu.model:
            reasons.append(f"{listing.id} runs on {high.gpu.model} GPUs, not {gpu.model}.")
        else:
            least = low.gpu.count if low.gpu else 0
            reasons += _bounds(f"{gpu.model} GPUs", listing.id, gpu.count, least, high.gpu.count)
    elif low.gpu is not None and gpu is None:  # pragma: no cover - the schema ensures it
        reasons.append(f"{listing.id} needs {low.gpu.count} {low.gpu.model} GPUs.")
    size = DeploymentSize(vcpus=vcpus, memory_mib=memory, disk_gib=rec.disk_gib, gpu=gpu)
    return size, reasons


def _settings(
    listing: AgentListing | ModelListing, given: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The listing's settings with the schema's defaults applied, and what is wrong with them."""
    schema = listing.settings_schema
    if schema is None:
        if given:
            return {}, [f"{listing.id} takes no settings; leave them out."]
        return {}, []
    settings = dict(given)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for key, spec in properties.items():
            if key not in settings and isinstance(spec, dict) and "default" in spec:
                settings[key] = spec["default"]
    try:
        validator = jsonschema_rs.Draft202012Validator(schema)
    except ValueError:
        return settings, [f"{listing.id}'s settings schema is not valid; tell its publisher."]
    reasons = []
    for error in validator.iter_errors(settings):
        where = ".".join(str(p) for p in error.instance_path)
        prefix = f"setting {where}" if where else "settings"
        reasons.append(f"{listing.id} {prefix}: {error.message}.")
    return settings, reasons


def _pick_model(agent: AgentListing, catalog: Catalog) -> tuple[ModelListing | None, list[str]]:
    """The first of the agent's preferred models that exists and fits it."""
    data = agent.model_dump(mode="json")
    for preferred in agent.preferred_models:
        model = catalog.model(preferred)
        mark = catalog.marks(preferred).get(model.version) if model else None
        if mark is not None and mark.status == "yanked":
            continue
        if model and not incompatibilities(agent.id, data, model.id, model.model_dump(mode="json")):
            return model, []
    if not agent.compatibility.needs_model:
        return None, []
    if agent.preferred_models:
        named = ", ".join(agent.preferred_models)
        why = f"none of its preferred models ({named}) is in the registry and compatible"
    else:
        why = "it names no preferred model"
    return None, [f"{agent.id} needs a model and {why}; name one with --model."]


def _reusable(
    catalog: Catalog, model: ModelListing, account: str, settings: Mapping[str, Any]
) -> Deployment | None:
    for dep_id in sorted(catalog.deployments):
        dep = catalog.deployments[dep_id]
        if (
            dep.kind == "model"
            and dep.state == "running"
            and dep.account == account
            and dep.listing.id == model.id
            and dep.listing.version == model.version
            and dep.settings == settings
        ):
            return dep
    return None


def resolve(
    request: DeploymentRequest, catalog: Catalog, *, seed: str, requested: str
) -> Resolved | Refusal:
    """Check `request` against `catalog`; new deployment ids derive from `seed`."""
    reasons: list[str] = []
    agent: AgentListing | None = None
    model: ModelListing | None = None
    agent_ref, model_ref = request.agent, request.model
    base_settings: dict[str, Any] = {}
    if request.solution is not None:
        solution = catalog.solution_at(request.solution.id, request.solution.version)
        if solution is None:
            if catalog.solution(request.solution.id) is None:
                return Refusal((f"There is no solution {request.solution.id} in the registry.",))
            known = ", ".join(catalog.published(request.solution.id))
            return Refusal(
                (
                    f"solution {request.solution.id} has no published version"
                    f" {request.solution.version}; its versions: {known}.",
                )
            )
        agent_ref = RequestedListing(id=solution.agent.id, version=solution.agent.version)
        model_ref = RequestedListing(id=solution.model.id, version=solution.model.version)
        base_settings = dict(solution.settings)
    warnings: list[str] = []
    if agent_ref is not None:
        found, why, warn = _at_version("agent", agent_ref, catalog)
        agent = found if isinstance(found, AgentListing) else None
        reasons += why
        warnings += warn
    if model_ref is not None:
        found, why, warn = _at_version("model", model_ref, catalog)
        model = found if isinstance(found, ModelListing) else None
        reasons += why
        warnings += warn
    elif agent is not None:
        model, why = _pick_model(agent, catalog)
        reasons += why
        mark = catalog.marks(model.id).get(model.version) if model is not None else None
        if model is not None and mark is not None:
            warnings.append(f"model {model.id}@{model.version} is deprecated: {mark.message}")
    if agent is not None and model is not None:
        clashes = incompatibilities(
            agent.id, agent.model_dump(mode="json"), model.id, model.model_dump(mode="json")
        )
        reasons += [f"{reason}." for reason in clashes]

    target: ModelListing | AgentListing | None = agent or model
    settings: dict[str, Any] = {}
    model_settings: dict[str, Any] = {}
    sizes: dict[str, DeploymentSize] = {}
    if agent is not None:
        settings, why = _settings(agent, {**base_settings, **request.settings})
        reasons += why
    if model is not None:
        # Behind an agent the request's settings are the agent's: the model runs with its
        # schema's defaults, so one such model deployment serves any agent of the account.
        given = request.settings if agent is None else {}
        model_settings, why = _settings(model, given)
        reasons += why
    names = [secret.name for secret in request.secrets]
    for name in sorted({n for n in names if names.count(n) > 1}):
        reasons.append(f"The secret {name} is given twice.")
    for listing in (agent, model):
        if listing is not None:
            sizes[listing.id], why = _size(listing, request if listing is target else None)
            reasons += why
    if reasons or target is None:
        return Refusal(tuple(reasons) or ("The request names nothing to deploy.",))

    sha = request_sha256(request)
    common: dict[str, Any] = {
        "requester": request.requester,
        "account": request.account,
        "origin": request.origin,
        "requested": requested,
        "request_sha256": sha,
        "state": "running",
        "idle_after": request.idle_after,
    }
    new: list[Deployment] = []
    reused: list[Deployment] = []
    model_dep: Deployment | None = None
    if model is not None:
        model_dep = _reusable(catalog, model, request.account, model_settings)
        if model_dep is not None:
            reused.append(model_dep)
        else:
            model_dep = Deployment(
                id=deployment_id(seed, "model"),
                kind="model",
                listing=PinnedListing(id=model.id, version=model.version),
                size=sizes[model.id],
                settings=model_settings,
                secrets=request.secrets if target is model else (),
                **common,
            )
            new.append(model_dep)
    if agent is not None:
        new.append(
            Deployment(
                id=deployment_id(seed, "agent"),
                kind="agent",
                listing=PinnedListing(id=agent.id, version=agent.version),
                size=sizes[agent.id],
                model_deployment=model_dep.id if model_dep else None,
                settings=settings,
                secrets=request.secrets,
                **common,
            )
        )
    prices = tuple(price_line(listing) for listing in (model, agent) if listing is not None)
    return Resolved(request, tuple(new), tuple(reused), prices, tuple(warnings))
