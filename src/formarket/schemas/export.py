"""The public contract: JSON Schemas generated from the models, one file per document kind."""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import BaseModel

from formarket.schemas.listing import AgentListing, ModelListing
from formarket.schemas.publisher import Governance, Publisher
from formarket.schemas.solution import Solution

__all__ = ["DOCUMENT_KINDS", "SCHEMA_BASE_URI", "render_schemas"]

SCHEMA_BASE_URI = "https://formarket.dev/schemas/"

# The kind of each registry document and the model that defines it; the file name in schemas/
# is `<kind>.schema.json`.
DOCUMENT_KINDS: Mapping[str, type[BaseModel]] = {
    "model": ModelListing,
    "agent": AgentListing,
    "publisher": Publisher,
    "solution": Solution,
    "governance": Governance,
}


def _published() -> Mapping[str, type[BaseModel]]:
    """Documents formarket writes rather than reads from publishers: deployment requests and
    the desired deployments, usage events, the royalty terms and statements. Published so that
    anyone can check them."""
    from formarket.schemas.deployment import Deployment, DeploymentRequest  # start-up: export only
    from formarket.schemas.usage import (  # start-up: export only
        RoyaltyPolicy,
        Statement,
        UsageEvent,
    )

    return {
        "deployment": Deployment,
        "deployment-request": DeploymentRequest,
        "usage-event": UsageEvent,
        "royalty-policy": RoyaltyPolicy,
        "royalty-statement": Statement,
    }


def render_schemas() -> dict[str, bytes]:
    """File name -> the exact bytes that `schemas/` must hold."""
    out: dict[str, bytes] = {}
    for kind, model in {**DOCUMENT_KINDS, **_published()}.items():
        schema = model.model_json_schema(mode="validation")
        document = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{SCHEMA_BASE_URI}{kind}.schema.json",
            **schema,
        }
        text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        out[f"{kind}.schema.json"] = text.encode()
    return out
