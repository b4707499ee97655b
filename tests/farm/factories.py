"""Deployment documents for farm tests."""

from __future__ import annotations

from typing import Any

from formarket.schemas.deployment import Deployment


def deployment(
    dep_id: str,
    *,
    kind: str = "model",
    listing: str = "tinyforge/echo-chat",
    version: str = "1.0.0",
    vcpus: int = 1,
    memory_mib: int = 512,
    state: str = "running",
    model_deployment: str | None = None,
    gpu: dict[str, Any] | None = None,
) -> Deployment:
    return Deployment.model_validate(
        {
            "id": dep_id,
            "kind": kind,
            "listing": {"id": listing, "version": version},
            "size": {"vcpus": vcpus, "memory_mib": memory_mib, "disk_gib": 5, "gpu": gpu},
            "state": state,
            "model_deployment": model_deployment,
            "requester": "ada",
            "account": "ada",
            "origin": {"kind": "cli"},
            "requested": "2026-11-25T12:00:00Z",
            "request_sha256": "0" * 64,
        }
    )
