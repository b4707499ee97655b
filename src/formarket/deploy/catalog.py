"""What a request is checked against: the listings at one commit and the desired deployments.

Listings are read on demand (a request names two or three of them), from git objects, so that
a request is checked against exactly the commit it will be committed on top of. A version no
longer at the tip is read as the commit that published it had it (`farm.versions`); the owners'
marks on versions are the tip's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from formarket.errors import FormarketError
from formarket.farm.settings import open_market
from formarket.farm.versions import Versions
from formarket.market.layout import AGENTS, GOVERNANCE, MODELS, SOLUTIONS
from formarket.registry.snapshot import Snapshot
from formarket.schemas.deployment import Deployment
from formarket.schemas.listing import AgentListing, ModelListing, VersionMark
from formarket.schemas.publisher import Governance
from formarket.schemas.solution import Solution
from formarket.yamldoc import load_yaml

__all__ = ["Catalog", "open_market"]

_T = TypeVar("_T", bound=BaseModel)
_L = TypeVar("_L", ModelListing, AgentListing)


@dataclass
class Catalog:
    """The registry as a request sees it: listings by id, governance, desired deployments."""

    snapshot: Snapshot
    deployments: Mapping[str, Deployment] = field(default_factory=dict)
    versions: Versions | None = None  # None: only the tip's versions are known
    _cache: dict[str, BaseModel | None] = field(default_factory=dict, repr=False)

    def _load(self, path: str, model: type[_T], older: str | None = None) -> _T | None:
        key = path if older is None else f"{path}@{older}"
        if key not in self._cache:
            raw = self.snapshot.read(path) if older is None else self._older(path, older)
            doc: BaseModel | None = None
            if raw is not None:
                try:
                    doc = model.model_validate(load_yaml(raw, path).data)
                except (FormarketError, ValidationError):
                    # An invalid document cannot be deployed; the registry check reports why.
                    doc = None
            self._cache[key] = doc
        found = self._cache[key]
        return found if isinstance(found, model) else None

    def _older(self, path: str, version: str) -> bytes | None:
        listing_id = path.split("/", 2)[2].removesuffix("/listing.yaml")
        found = self.versions.listing_file(listing_id, version) if self.versions else None
        return found[1] if found is not None and found[0] == path else None

    def _at(self, path: str, model: type[_L], listing_id: str, version: str | None) -> _L | None:
        tip = self._load(path, model)
        if version is None or (tip is not None and tip.version == version):
            return tip if tip is not None and tip.id == listing_id else None
        found = self._load(path, model, version)
        if found is None or found.id != listing_id or found.version != version:
            return None
        return found

    def model_at(self, listing_id: str, version: str | None) -> ModelListing | None:
        """The model as `version` was published (the tip's version when None)."""
        return self._at(f"{MODELS}/{listing_id}/listing.yaml", ModelListing, listing_id, version)

    def agent_at(self, listing_id: str, version: str | None) -> AgentListing | None:
        return self._at(f"{AGENTS}/{listing_id}/listing.yaml", AgentListing, listing_id, version)

    def published(self, listing_id: str) -> list[str]:
        """The listing's published versions, oldest first (the tip's alone when unknown)."""
        if self.versions is not None:
            return self.versions.published(listing_id)
        tip = self.model(listing_id) or self.agent(listing_id)
        return [tip.version] if tip is not None else []

    def marks(self, listing_id: str) -> Mapping[str, VersionMark]:
        """The owners' marks on the listing's versions, from the listing at the tip."""
        tip = self.model(listing_id) or self.agent(listing_id)
        return tip.version_marks if tip is not None else {}

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
