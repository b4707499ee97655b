"""What the farm tells the gateway: the endpoint of every running deployment (routes.json),
and the tokenizer each model's calls are counted with.

Written whole and atomically after every reconcile cycle from what libvirt reports running,
so a stopped or vanished deployment stops being routed within one cycle.

A model listing that declares a tokenizer has its file copied into the gateway's state folder
by content (`tokenizers/<sha256>.json`, see `formarket.gateway.tokenizer`), and its model
deployments' routes name that digest. A published version never changes, so what a version's
tokenizer is gets looked up in git once, at the branch tip, and remembered in
`tokenizers/listings.json`: a deployment still running an older version keeps its tokenizer
after the listing moves on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

from dulwich.repo import BaseRepo
from pydantic import ValidationError

from formarket.atomicfile import write_atomically
from formarket.errors import FormarketError
from formarket.gateway.routes import Route, RouteTokenizer, load_routes, save_routes
from formarket.gateway.tokenizer import TOKENIZERS_DIR, tokenizer_path
from formarket.market.refs import resolve_rev
from formarket.market.trees import commit_tree, read_path
from formarket.registry.tokenizer_file import MAX_TOKENIZER_BYTES
from formarket.schemas.deployment import Deployment
from formarket.schemas.listing import TokenizerFile
from formarket.schemas.pricing import (
    PLATFORM_CURRENCY,
    PerRequestPricing,
    PerTokenPricing,
    SubscriptionPricing,
)
from formarket.schemas.usage import ListingVersion
from formarket.usage.events import Served
from formarket.yamldoc import load_yaml

__all__ = [
    "FREE",
    "CallPrices",
    "Tokenizers",
    "by_subscription",
    "call_prices",
    "publish_routes",
    "request_price",
    "route_for",
    "routes_for",
    "served_by",
    "stock_tokenizers",
    "tip_reader",
    "token_prices",
]

_log = logging.getLogger("formarket.farm")

# What each model version counts with, by (listing id, version); None: it declares no tokenizer.
Tokenizers = Mapping[tuple[str, str], RouteTokenizer | None]
_INDEX = "listings.json"

_MILLION = Decimal(1_000_000)
Prices = Callable[[ListingVersion], "CallPrices"]


class CallPrices(NamedTuple):
    """What one call costs in the platform's currency, by a listing's `pricing`: per input
    token, per output token, and per request (a close rates the call by the same terms); and
    whether it is priced by subscription (a subscriber's calls draw on its tier at the
    gateway)."""

    input: Decimal
    output: Decimal
    request: Decimal
    subscription: bool = False


FREE = CallPrices(Decimal(0), Decimal(0), Decimal(0))


def token_prices(pricing: object) -> tuple[Decimal, Decimal]:
    """(input, output) price of one token from a listing's `pricing` (the model, or its
    document): per-token pricing in the platform's currency, divided by a million; anything
    else prices no token (0, 0)."""
    if isinstance(pricing, PerTokenPricing):
        terms = pricing
    elif not isinstance(pricing, dict) or pricing.get("model") != "per_token":
        return Decimal(0), Decimal(0)
    else:
        try:
            terms = PerTokenPricing.model_validate(pricing)
        except ValidationError:
            return Decimal(0), Decimal(0)
    if terms.currency != PLATFORM_CURRENCY:
        return Decimal(0), Decimal(0)
    return terms.input_per_million / _MILLION, terms.output_per_million / _MILLION


def request_price(pricing: object) -> Decimal:
    """The price of one request from per-request pricing in the platform's currency; anything
    else prices no request (0)."""
    if isinstance(pricing, PerRequestPricing):
        terms = pricing
    elif not isinstance(pricing, dict) or pricing.get("model") != "per_request":
        return Decimal(0)
    else:
        try:
            terms = PerRequestPricing.model_validate(pricing)
        except ValidationError:
            return Decimal(0)
    return terms.per_request if terms.currency == PLATFORM_CURRENCY else Decimal(0)


def by_subscription(pricing: object) -> bool:
    """Whether `pricing` is subscription pricing in the platform's currency (the only one a
    subscription can be paid in)."""
    if isinstance(pricing, dict) and pricing.get("model") == "subscription":
        try:
            pricing = SubscriptionPricing.model_validate(pricing)
        except ValidationError:
            return False
    return isinstance(pricing, SubscriptionPricing) and pricing.currency == PLATFORM_CURRENCY


def call_prices(pricing: object) -> CallPrices:
    return CallPrices(*token_prices(pricing), request_price(pricing), by_subscription(pricing))


def _ref(deployment: Deployment) -> ListingVersion:
    return ListingVersion(id=deployment.listing.id, version=deployment.listing.version)


def route_for(
    deployment: Deployment,
    endpoint: str,
    desired: Mapping[str, Deployment],
    *,
    tokenizers: Tokenizers | None = None,
    prices: Prices | None = None,
) -> Route:
    """The route of a running deployment; `prices` gives a listing version's prices: those of
    the listing a close credits its calls to, the agent of an agent's deployment (its calls to
    its model are the model's own calls, on the model's route), else the model."""
    model: ListingVersion | None = None
    agent: ListingVersion | None = None
    tokenizer: RouteTokenizer | None = None
    if deployment.kind == "model":
        model = _ref(deployment)
        # An agent's own replies are its code's text, not its model's: estimated.
        tokenizer = (tokenizers or {}).get((model.id, model.version))
    else:
        agent = _ref(deployment)
        partner = desired.get(deployment.model_deployment or "")
        model = _ref(partner) if partner is not None else None
    priced = agent or model
    charged = prices(priced) if prices is not None and priced is not None else FREE
    return Route(
        deployment=deployment.id,
        endpoint=endpoint,
        account=deployment.account,
        agent=agent,
        model=model,
        tokenizer=tokenizer,
        input_price=charged.input,
        output_price=charged.output,
        request_price=charged.request,
        subscription=charged.subscription,
    )


def routes_for(
    desired: Mapping[str, Deployment],
    endpoints: Mapping[str, str],
    *,
    tokenizers: Tokenizers | None = None,
    prices: Prices | None = None,
) -> list[Route]:
    """A route for each running deployment that git still wants running."""
    return [
        route_for(desired[dep_id], endpoint, desired, tokenizers=tokenizers, prices=prices)
        for dep_id, endpoint in sorted(endpoints.items())
        if dep_id in desired and desired[dep_id].state == "running"
    ]


def served_by(routes: list[Route]) -> dict[str, Served]:
    return {route.deployment: route.served() for route in routes}


def publish_routes(path: Path, routes: list[Route]) -> bool:
    """Replace routes.json when it differs; whether it changed."""
    if path.exists() and list(load_routes(path).routes) == sorted(
        routes, key=lambda r: r.deployment
    ):
        return False
    save_routes(path, routes)
    return True


def tip_reader(repo: BaseRepo, branch: str) -> Callable[[str], bytes | None]:
    """Read files as they are at the branch tip."""
    tree_id = commit_tree(repo, resolve_rev(repo, branch))
    return lambda path: read_path(repo, tree_id, path)


def _index(state_dir: Path) -> dict[str, RouteTokenizer | None]:
    try:
        raw = json.loads((state_dir / TOKENIZERS_DIR / _INDEX).read_bytes())
        return {
            key: None if value is None else RouteTokenizer.model_validate(value)
            for key, value in raw.items()
        }
    except FileNotFoundError:
        return {}
    except (ValueError, AttributeError) as exc:  # rebuilt from git: it is only a memo
        _log.warning("%s is unreadable, looked up again: %s", _INDEX, exc)
        return {}


def _lookup(
    read: Callable[[str], bytes | None], listing_id: str, version: str, state_dir: Path
) -> tuple[bool, RouteTokenizer | None]:
    """Whether the tip holds the listing at `version` (otherwise its tokenizer cannot be known
    from here), and its tokenizer, stocked in the state folder."""
    folder = f"registry/models/{listing_id}"
    raw = read(f"{folder}/listing.yaml")
    data = load_yaml(raw, f"{folder}/listing.yaml").data if raw is not None else None
    if not isinstance(data, dict) or str(data.get("version")) != version:
        return False, None
    declared = data.get("tokenizer")
    if declared is None:
        return True, None
    spec = TokenizerFile.model_validate(declared)
    content = read(f"{folder}/{spec.file}")
    if content is None or len(content) > MAX_TOKENIZER_BYTES:
        raise FormarketError(f"{folder}/{spec.file} is missing or too large")
    sha = hashlib.sha256(content).hexdigest()
    target = tokenizer_path(state_dir, sha)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, content, mode=0o644)
    return True, RouteTokenizer(sha256=sha, per_message=spec.per_message, per_reply=spec.per_reply)


def stock_tokenizers(
    read: Callable[[str], bytes | None],
    desired: Mapping[str, Deployment],
    state_dir: Path,
    older: Callable[[str, str], Callable[[str], bytes | None]] | None = None,
) -> dict[tuple[str, str], RouteTokenizer | None]:
    """The tokenizer of every model version `desired` runs, its file copied into the gateway's
    state folder `state_dir`. `read` reads the tip; `older(id, version)` gives a reader of the
    commit that published a version the tip no longer has. A version whose tokenizer cannot be
    had is left out (its calls are estimated, and each cycle tries again)."""
    index = _index(state_dir)
    found: dict[tuple[str, str], RouteTokenizer | None] = {}
    learned = False
    for deployment in desired.values():
        ref = (deployment.listing.id, deployment.listing.version)
        if deployment.kind != "model" or ref in found:
            continue
        key = f"{ref[0]}@{ref[1]}"
        if key in index and (index[key] is None or _stocked(state_dir, index[key])):
            found[ref] = index[key]
            continue
        try:
            known, looked = _lookup(read, ref[0], ref[1], state_dir)
            if not known and older is not None:
                known, looked = _lookup(older(*ref), ref[0], ref[1], state_dir)
        except (FormarketError, ValidationError, OSError) as exc:
            _log.warning("%s counts by the estimate: %s", key, exc)
            continue
        if not known:
            continue
        found[ref] = index[key] = looked
        learned = True
    if learned:
        (state_dir / TOKENIZERS_DIR).mkdir(parents=True, exist_ok=True)
        plain = {k: None if v is None else v.model_dump() for k, v in sorted(index.items())}
        write_atomically(
            state_dir / TOKENIZERS_DIR / _INDEX,
            json.dumps(plain, indent=1).encode() + b"\n",
            mode=0o644,
        )
    return found


def _stocked(state_dir: Path, tokenizer: RouteTokenizer | None) -> bool:
    return tokenizer is not None and tokenizer_path(state_dir, tokenizer.sha256).exists()
