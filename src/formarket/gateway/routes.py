"""Where calls go: the running deployments, their endpoints and who may call them.

The gateway asks a `RouteTable` for a snapshot of the routes; it does not care who fills it.
Until the farm publishes the endpoints of running deployments itself, `FileRouteTable` reads
them from `routes.json` in the gateway's state folder, which the farm (or an operator, with
`formarket gateway routes`) writes and the gateway re-reads when it changes:

    {"format": "formarket.gateway-routes/1",
     "routes": [{"deployment": "dep-1", "endpoint": "http://10.0.0.5:8000",
                 "account": "acme", "agent": null,
                 "model": {"id": "acme/llama-8b", "version": "1.2.0"}}]}

A caller may use the deployments of its own account, by deployment id or, when exactly one of
its deployments serves it, by listing id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from formarket.atomicfile import write_atomically
from formarket.errors import InputError
from formarket.gateway.watch import WatchedFile
from formarket.schemas._base import Document
from formarket.schemas.usage import ACCOUNT_PATTERN, DEPLOYMENT_PATTERN, ListingVersion
from formarket.usage.events import Served

__all__ = [
    "FileRouteTable",
    "Route",
    "RouteTable",
    "RouteTokenizer",
    "Routes",
    "RoutesFile",
    "load_routes",
    "resolve",
    "save_routes",
]


class RouteTokenizer(Document):
    """The model's tokenizer, which the gateway counts the route's calls with: the file's
    SHA-256 (the farm copies it to `tokenizers/<sha256>.json` in the gateway's state folder)
    and its chat template's overhead, as the listing declares them."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    per_message: int = Field(ge=0, le=8)
    per_reply: int = Field(ge=0, le=16)


class Route(Document):
    """One running deployment the gateway forwards to."""

    deployment: str = Field(pattern=DEPLOYMENT_PATTERN, description="The deployment id.")
    endpoint: str = Field(
        max_length=2048,
        description="Base URL of the deployment's OpenAI-compatible server, such as"
        " http://10.0.0.5:8000 (the gateway appends /v1/chat/completions and the like).",
    )
    account: str = Field(pattern=ACCOUNT_PATTERN, description="The account that deployed it.")
    agent: ListingVersion | None = Field(default=None, description="The agent it runs, if any.")
    model: ListingVersion | None = Field(default=None, description="The model it runs, if any.")
    upstream_model: str | None = Field(
        default=None,
        max_length=256,
        description="The model name the deployment's server expects; the caller's is passed"
        " through when unset.",
    )
    tokenizer: RouteTokenizer | None = Field(
        default=None,
        description="The model's tokenizer; without one, the route's counts are estimates.",
    )
    input_price: Decimal = Field(
        default=Decimal(0),
        ge=0,
        description="The price of one input token in the platform's currency, from the model"
        " version's listing (0: none; a spending cap reserves nothing for it).",
    )
    output_price: Decimal = Field(
        default=Decimal(0),
        ge=0,
        description="The price of one output token in the platform's currency.",
    )
    request_price: Decimal = Field(
        default=Decimal(0),
        ge=0,
        description="The price of one answered call in the platform's currency, from per-request"
        " pricing (0: none).",
    )
    subscription: bool = Field(
        default=False,
        description="Whether the listing version that prices its calls is priced by"
        " subscription: a subscriber's calls draw on its tier's included usage, then on its"
        " credit at the tier's overage price.",
    )
    idle_since: datetime | None = Field(
        default=None,
        description="Set while the deployment is scaled to zero: its VM was stopped, idle, at"
        " this time. A call wakes it (the gateway holds the call meanwhile).",
    )

    @field_validator("endpoint")
    @classmethod
    def _http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not carry a query, a fragment or credentials")
        return value

    @model_validator(mode="after")
    def _serves_something(self) -> Route:
        if self.agent is None and self.model is None:
            raise ValueError("a deployment serves an agent, a model or both")
        return self

    @property
    def priced(self) -> bool:
        """Whether its calls cost anything (a free route holds no credit)."""
        return self.input_price > 0 or self.output_price > 0 or self.request_price > 0

    def served(self) -> Served:
        return Served(
            self.deployment,
            self.account,
            (self.agent.id, self.agent.version) if self.agent else None,
            (self.model.id, self.model.version) if self.model else None,
        )

    @property
    def priced_by(self) -> str:
        """The listing whose terms price its calls: the agent it runs, else its model (a
        subscription to it is what a call draws on)."""
        ref = self.agent or self.model
        assert ref is not None  # checked when it was made
        return ref.id

    def listings(self) -> tuple[str, ...]:
        return tuple(ref.id for ref in (self.agent, self.model) if ref is not None)


class RoutesFile(Document):
    format: Literal["formarket.gateway-routes/1"] = "formarket.gateway-routes/1"
    routes: tuple[Route, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> RoutesFile:
        seen: set[str] = set()
        for route in self.routes:
            if route.deployment in seen:
                raise ValueError(f"deployment {route.deployment} is routed twice")
            seen.add(route.deployment)
        return self


@dataclass(frozen=True, slots=True)
class Routes:
    """A snapshot of the routes, indexed for the two lookups a call makes."""

    by_deployment: Mapping[str, Route]
    by_account: Mapping[str, tuple[Route, ...]]

    @staticmethod
    def of(routes: Iterable[Route]) -> Routes:
        by_deployment = {route.deployment: route for route in routes}
        by_account: dict[str, list[Route]] = {}
        for route in by_deployment.values():
            by_account.setdefault(route.account, []).append(route)
        return Routes(by_deployment, {k: tuple(v) for k, v in by_account.items()})

    def owned_by(self, accounts: Set[str]) -> tuple[Route, ...]:
        """The routes of the account git names by one of `accounts`."""
        return tuple(route for name in accounts for route in self.by_account.get(name, ()))


class RouteTable(Protocol):
    """What the gateway needs of whoever knows the running deployments."""

    def snapshot(self) -> Routes: ...


def resolve(routes: Routes, accounts: Set[str], name: str) -> Route | list[str]:
    """The route `name` means for the account git names by one of `accounts` (its pseudonym,
    and its login in deployments from before pseudonyms): its deployment of that id, or its
    one deployment of that listing. Otherwise the deployments it could mean (empty when none)."""
    route = routes.by_deployment.get(name)
    if route is not None:
        return route if route.account in accounts else []
    matches = [r for r in routes.owned_by(accounts) if name in r.listings()]
    if len(matches) == 1:
        return matches[0]
    return sorted(r.deployment for r in matches)


def load_routes(path: Path) -> RoutesFile:
    """The routes file; a missing one routes nothing."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return RoutesFile()
    try:
        return RoutesFile.model_validate_json(raw)
    except ValidationError as exc:
        raise InputError(
            f"{path} is not a routes file:\n{exc}",
            hint="see `formarket gateway routes --help` for its shape",
        ) from exc


def save_routes(path: Path, routes: Iterable[Route]) -> None:
    """Replace the routes file atomically (the gateway never reads half of one)."""
    doc = RoutesFile(routes=tuple(sorted(routes, key=lambda r: r.deployment)))
    write_atomically(path, doc.model_dump_json(indent=2).encode() + b"\n")


class FileRouteTable:
    """Routes from `routes.json`, re-read when it changes (see `WatchedFile`)."""

    def __init__(
        self,
        path: Path,
        *,
        check_every: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._file = WatchedFile(
            path,
            lambda p: Routes.of(load_routes(p).routes),
            Routes.of(()),
            check_every=check_every,
            clock=clock,
        )

    @property
    def problem(self) -> str:
        return self._file.problem

    def snapshot(self) -> Routes:
        return self._file.get()

    def fresh(self) -> Routes:
        """The routes as the file is now, for a call waiting on a change (a wake)."""
        return self._file.fresh()
