"""The documents of formarket as frozen pydantic models: the one definition of each.

Pure: imports nothing else of formarket. JSON Schemas in the top-level `schemas/` folder are
exported from these models by `formarket schema export`.

Importing this package costs nothing: each name is imported from its module on first use, so
that commands that never touch a model do not pay for pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from formarket.schemas.listing import (
        AgentListing,
        AgentPermissions,
        AgentTool,
        Compatibility,
        Links,
        Listing,
        ModelListing,
        TokenizerFile,
        VersionMark,
        WeightFile,
    )
    from formarket.schemas.pricing import (
        FreePricing,
        Monetization,
        PerInstanceHourPricing,
        PerRequestPricing,
        PerTokenPricing,
        Pricing,
        SubscriptionPricing,
        SubscriptionTier,
    )
    from formarket.schemas.publisher import Governance, Payout, Publisher
    from formarket.schemas.resources import GpuSpec, Resources, ResourceSpec
    from formarket.schemas.solution import ListingRef, Solution

_MODULE_OF = {
    "AgentListing": "formarket.schemas.listing",
    "AgentPermissions": "formarket.schemas.listing",
    "AgentTool": "formarket.schemas.listing",
    "Compatibility": "formarket.schemas.listing",
    "FreePricing": "formarket.schemas.pricing",
    "Governance": "formarket.schemas.publisher",
    "GpuSpec": "formarket.schemas.resources",
    "Links": "formarket.schemas.listing",
    "Listing": "formarket.schemas.listing",
    "ListingRef": "formarket.schemas.solution",
    "ModelListing": "formarket.schemas.listing",
    "Monetization": "formarket.schemas.pricing",
    "Payout": "formarket.schemas.publisher",
    "PerInstanceHourPricing": "formarket.schemas.pricing",
    "PerRequestPricing": "formarket.schemas.pricing",
    "PerTokenPricing": "formarket.schemas.pricing",
    "Pricing": "formarket.schemas.pricing",
    "Publisher": "formarket.schemas.publisher",
    "ResourceSpec": "formarket.schemas.resources",
    "Resources": "formarket.schemas.resources",
    "Solution": "formarket.schemas.solution",
    "SubscriptionPricing": "formarket.schemas.pricing",
    "SubscriptionTier": "formarket.schemas.pricing",
    "TokenizerFile": "formarket.schemas.listing",
    "VersionMark": "formarket.schemas.listing",
    "WeightFile": "formarket.schemas.listing",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "AgentListing",
    "AgentPermissions",
    "AgentTool",
    "Compatibility",
    "FreePricing",
    "Governance",
    "GpuSpec",
    "Links",
    "Listing",
    "ListingRef",
    "ModelListing",
    "Monetization",
    "Payout",
    "PerInstanceHourPricing",
    "PerRequestPricing",
    "PerTokenPricing",
    "Pricing",
    "Publisher",
    "ResourceSpec",
    "Resources",
    "Solution",
    "SubscriptionPricing",
    "SubscriptionTier",
    "TokenizerFile",
    "VersionMark",
    "WeightFile",
]
