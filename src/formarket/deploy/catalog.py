"""What a request is checked against: the listings at one commit and the desired deployments.

Listings are read on demand (a request names two or three of them), from git objects, so that
a request is checked against exactly the commit it will be committed on top of.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from formarket.errors import FormarketError
from formarket.farm.settings import open_market
from formarket.market.layout import AGENTS, GOVERNANCE, MODELS, SOLUTIONS
from formarket.registry.snapshot import Snapshot
from formarket.schemas.deployment import Deployment
from formarket.schemas.listing import AgentListing, ModelListing
from formarket.schemas.publisher import Governance
from formarket.schemas.solution import Solution
from formarket.yamldoc import load_yaml

__all__ = ["Catalog", "open_market"]

_T = TypeVar("_T", bound=BaseModel)


@dataclass
class Catalog:
    """The registry as a request sees it: listings by id, governance, desired deployments."""

    snapshot: Snapshot
    deployments: Mapping[str, Deployment] = field(default_factory=dict)
    _cache: dict[str, BaseModel | None] = field(default_factory=dict, repr=False)

    def _load(self, path: str, model: type[_T]) -> _T | None:
        if path not in self._cache:
            raw = self.snapshot.read(path)
            doc: BaseModel | None = None
            if raw is not None:
                try:
                    doc = model.model_validate(load_yaml(raw, path).data)
                except (FormarketError, ValidationError):
                    # An invalid document cannot be deployed; the registry check reports why.
                    doc = None
            self._cache[path] = doc
        found = self._cache[path]
        return found if isinstance(found, model) else None

    def model(self, listing_id: str) -> ModelListing | None:
        found = self._load(f"{MODELS}/{listing_id}/listing.yaml", ModelListing)
        return found if found is not None and found.id == listing_id else None

    def agent(self, listing_id: str) -> AgentListing | None:
        found = self._load(f"{AGENTS}/{listing_id}/listing.yaml", AgentListing)
        return found if found is not None and found.id == listing_id else None

    def solution(self, solution_id: str) -> Solution | None:
        found = self._load(f"{SOLUTIONS}/{solution_id}.yaml", Solution)
        return found if found is not None and found.id == solution_id else None

    def governance(self) -> Governance | None:
        return self._load(GOVERNANCE, Governance)
