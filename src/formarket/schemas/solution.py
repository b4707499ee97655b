"""Solutions: a ready-made agent and model pairing with its configuration."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from formarket.schemas._base import Document
from formarket.schemas._types import ListingId, SemVer, Tag

__all__ = ["ListingRef", "Solution"]


class ListingRef(Document):
    """A listing, optionally pinned to a version (the newest when not)."""

    id: ListingId
    version: SemVer | None = None


class Solution(Document):
    """An agent paired with a compatible model, configured for one job."""

    id: ListingId = Field(description="`<publisher>/<slug>`, matching the file's path.")
    name: str = Field(min_length=1, max_length=80)
    version: SemVer
    description: str = Field(min_length=10, max_length=2000)
    agent: ListingRef
    model: ListingRef
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Agent settings, valid against its settings schema."
    )
    tags: tuple[Tag, ...] = Field(default=(), max_length=20)
