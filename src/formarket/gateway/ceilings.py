"""The gateway's ceilings on what a caller and a deployment may send: one definition, read by
the gateway and by `formarket gateway serve` for its options' defaults (this module imports
nothing, so the command line's help does not load the gateway)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "GatewayLimits"]


@dataclass(frozen=True, slots=True)
class GatewayLimits:
    """Bounds on what a caller and a deployment may send."""

    max_body: int = 4 << 20
    max_response: int = 64 << 20  # bytes of one answer, a stream's included
    max_duration: float = 600.0  # seconds of one call, a stream's included
    max_calls_per_key: int = 256  # calls of one key in progress at once
    header_timeout: float = 10.0  # seconds for a request's head to arrive, once begun
    body_timeout: float = 30.0  # seconds for its body to arrive, after the head
    max_connections: int = 10_000  # callers' connections open at once


DEFAULT_LIMITS = GatewayLimits()
