"""Schemathesis against the gateway's own OpenAPI document, over real HTTP: valid and invalid
requests generated from the document, and every answer checked against it. No 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from formarket.gateway.config import GatewayConfig, StatePaths
from formarket.gateway.keys import create_key
from formarket.gateway.openapi import openapi_document
from formarket.gateway.routes import Route, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from formarket.standins.openai import StandIn
from tests.gateway.conftest import MODEL

schema = schemathesis.openapi.from_dict(msgspec.json.decode(openapi_document()))
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], deterministic=True
)
# not_a_server_error is always run; these are the checks of what the document promises.
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@dataclass
class Live:
    url: str
    key: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    state = StatePaths(Path(tmp_path_factory.mktemp("schemathesis")) / "state")
    with ServerThread(StandIn()) as upstream:
        save_routes(
            state.routes,
            [Route(deployment="dep-1", endpoint=upstream.url, account="acme", model=MODEL)],
        )
        key, _ = create_key(state.keys, "acme", rate_per_second=100_000, burst=100_000)
        with ServerThread(build_gateway(GatewayConfig(state, source="gateway/st"))) as gateway:
            yield Live(gateway.url, key)


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_the_gateway_keeps_the_promises_of_its_openapi_document(
    case: schemathesis.Case, live: Live
) -> None:
    # Half the valid bodies name a real deployment, so that calls are forwarded and metered
    # too, not only refused as unknown models.
    positive = case.meta is not None and not case.meta.generation.mode.is_negative
    body = case.body
    if positive and isinstance(body, dict) and isinstance(body.get("model"), str):
        body["model"] = "dep-1" if len(body["model"]) % 2 == 0 else body["model"]
    case.call_and_validate(
        base_url=live.url,
        headers={"Authorization": f"Bearer {live.key}"},
        checks=CHECKS,
        timeout=30,
    )
