"""The documents of formarket as frozen pydantic models: the one definition of each.

Pure: imports nothing else of formarket. JSON Schemas in the top-level `schemas/` folder are
exported from these models by `formarket schema export`.
"""

from formarket.schemas.listing import (
    AgentListing,
    AgentPermissions,
    AgentTool,
    Compatibility,
    Links,
    Listing,
    ModelListing,
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
    "WeightFile",
]
