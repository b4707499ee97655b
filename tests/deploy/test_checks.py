"""The pure checks, on a registry folder made for each case."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from formarket.deploy.catalog import Catalog
from formarket.deploy.checks import Refusal, Resolved, deployment_id, issue_seed, resolve
from formarket.registry.snapshot import WorkTreeSnapshot
from formarket.schemas.deployment import DeploymentRequest, GpuRequest, RequestedListing
from formarket.schemas.resources import Resources

ROOT = Path(__file__).resolve().parent.parent.parent
GPU_MODEL = "registry/models/northwind-ai/northwind-chat-8b/listing.yaml"
WHEN = "2026-01-01T00:00:00Z"


def catalog(tmp_path: Path, **overrides: dict[str, Any]) -> Catalog:
    """The starter registry's GPU model with `overrides` merged into its listing."""
    for rel in (
        GPU_MODEL,
        "registry/agents/tinyforge/faq-bot/listing.yaml",
        "registry/models/tinyforge/echo-chat/listing.yaml",
    ):
        data = yaml.safe_load((ROOT / rel).read_text())
        if rel == GPU_MODEL:
            data.update(overrides)
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(yaml.safe_dump(data))
    return Catalog(WorkTreeSnapshot(tmp_path))


def request(**fields: Any) -> DeploymentRequest:
    return DeploymentRequest(requester="ann", account="ann", **fields)


GPU_RESOURCES = {
    "minimum": {"vcpus": 4, "memory_mib": 16384, "disk_gib": 40, "gpu": {"model": "L4"}},
    "recommended": {"vcpus": 8, "memory_mib": 32768, "disk_gib": 60, "gpu": {"model": "L4"}},
    "maximum": {
        "vcpus": 32,
        "memory_mib": 131072,
        "disk_gib": 60,
        "gpu": {"model": "L4", "count": 4},
    },
}


def test_a_maximum_widens_what_may_be_asked_for(tmp_path: Path) -> None:
    cat = catalog(tmp_path, resources=GPU_RESOURCES)
    model = RequestedListing(id="northwind-ai/northwind-chat-8b")

    ok = resolve(
        request(model=model, vcpus=16, memory_mib=65536, gpu=GpuRequest(model="L4", count=4)),
        cat,
        seed="s",
        requested=WHEN,
    )
    too_much = resolve(
        request(model=model, vcpus=64, memory_mib=8192, gpu=GpuRequest(model="H100", count=1)),
        cat,
        seed="s",
        requested=WHEN,
    )

    assert isinstance(ok, Resolved)
    (dep,) = ok.deployments
    assert (dep.size.vcpus, dep.size.memory_mib, dep.size.disk_gib) == (16, 65536, 60)
    assert dep.size.gpu == GpuRequest(model="L4", count=4)
    assert isinstance(too_much, Refusal)
    assert sorted(too_much.reasons) == [
        "northwind-ai/northwind-chat-8b may use at most 32 vCPUs; 64 were asked for.",
        "northwind-ai/northwind-chat-8b needs at least 16384 MiB of memory; 8192 were asked for.",
        "northwind-ai/northwind-chat-8b runs on L4 GPUs, not H100.",
    ]


def test_without_a_maximum_the_recommended_size_is_the_limit(tmp_path: Path) -> None:
    cat = catalog(tmp_path)
    model = RequestedListing(id="northwind-ai/northwind-chat-8b")

    result = resolve(
        request(model=model, gpu=GpuRequest(model="L4", count=2)), cat, seed="s", requested=WHEN
    )

    assert isinstance(result, Refusal)
    assert result.reasons == (
        "northwind-ai/northwind-chat-8b may use at most 1 L4 GPUs; 2 were asked for.",
    )


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (
            {**GPU_RESOURCES, "maximum": {**GPU_RESOURCES["maximum"], "vcpus": 6}},
            "maximum.vcpus is below recommended.vcpus",
        ),
        (
            {
                "minimum": GPU_RESOURCES["minimum"],
                "maximum": {**GPU_RESOURCES["minimum"], "memory_mib": 8192},
            },
            "maximum.memory_mib is below minimum.memory_mib",
        ),
        (
            {
                **GPU_RESOURCES,
                "maximum": {**GPU_RESOURCES["maximum"], "gpu": {"model": "L4"}},
                "recommended": {**GPU_RESOURCES["recommended"], "gpu": {"model": "L4", "count": 2}},
            },
            "maximum.gpu.count is below recommended.gpu.count",
        ),
    ],
)
def test_resources_must_be_in_order(resources: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Resources.model_validate(resources)


def test_price_lines_are_decimal(tmp_path: Path) -> None:
    result = resolve(
        request(model=RequestedListing(id="northwind-ai/northwind-chat-8b")),
        catalog(tmp_path),
        seed="s",
        requested=WHEN,
    )

    assert isinstance(result, Resolved)
    (line,) = result.prices
    assert line.charges == (
        (Decimal("0.20"), "million input tokens"),
        (Decimal("0.60"), "million output tokens"),
    )


def test_ids_derive_from_the_seed(tmp_path: Path) -> None:
    cat = catalog(tmp_path)
    req = request(agent=RequestedListing(id="tinyforge/faq-bot"))
    seed = issue_seed("Acme/Market", 7)

    first = resolve(req, cat, seed=seed, requested=WHEN)
    second = resolve(req, cat, seed=seed, requested=WHEN)

    assert isinstance(first, Resolved)
    assert first == second
    assert [d.id for d in first.deployments] == [
        deployment_id(seed, "model"),
        deployment_id(seed, "agent"),
    ]
    assert seed == issue_seed("acme/market", 7)


MODEL_SETTINGS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "context_length": {"type": "integer", "minimum": 256, "maximum": 131072, "default": 8192},
        "parallel_requests": {"type": "integer", "minimum": 1, "maximum": 16, "default": 1},
    },
}
CHAT_8B = RequestedListing(id="northwind-ai/northwind-chat-8b")


def test_settings_for_a_model_without_a_schema_are_refused(tmp_path: Path) -> None:
    result = resolve(
        request(model=RequestedListing(id="tinyforge/echo-chat"), settings={"x": 1}),
        catalog(tmp_path),
        seed="s",
        requested=WHEN,
    )

    assert result == Refusal(("tinyforge/echo-chat takes no settings; leave them out.",))


def test_a_model_alone_takes_settings_with_its_schemas_defaults(tmp_path: Path) -> None:
    cat = catalog(tmp_path, settings_schema=MODEL_SETTINGS)

    result = resolve(
        request(model=CHAT_8B, settings={"context_length": 32768}), cat, seed="s", requested=WHEN
    )

    assert isinstance(result, Resolved)
    (dep,) = result.deployments
    assert dep.settings == {"context_length": 32768, "parallel_requests": 1}


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        (
            {"context_length": 1 << 20},
            "northwind-ai/northwind-chat-8b setting context_length: 1048576 is greater than the"
            " maximum of 131072.",
        ),
        (
            {"parallel_requests": "four"},
            'northwind-ai/northwind-chat-8b setting parallel_requests: "four" is not of type'
            ' "integer".',
        ),
        (
            {"temperature": 2},
            "northwind-ai/northwind-chat-8b settings: Additional properties are not allowed"
            " ('temperature' was unexpected).",
        ),
    ],
)
def test_a_models_settings_are_checked_as_an_agents_are(
    tmp_path: Path, given: dict[str, Any], reason: str
) -> None:
    cat = catalog(tmp_path, settings_schema=MODEL_SETTINGS)

    result = resolve(request(model=CHAT_8B, settings=given), cat, seed="s", requested=WHEN)

    assert result == Refusal((reason,))


def test_behind_an_agent_a_model_runs_with_its_defaults(tmp_path: Path) -> None:
    cat = catalog(tmp_path, settings_schema=MODEL_SETTINGS)

    result = resolve(
        request(agent=RequestedListing(id="tinyforge/faq-bot"), model=CHAT_8B, settings={}),
        cat,
        seed="s",
        requested=WHEN,
    )

    assert isinstance(result, Resolved)
    model, agent = result.deployments
    assert model.settings == {"context_length": 8192, "parallel_requests": 1}
    assert agent.settings == {"min_match": 0.34, "language": "en"}


def test_a_running_model_with_other_settings_is_not_reused(tmp_path: Path) -> None:
    cat = catalog(tmp_path, settings_schema=MODEL_SETTINGS)
    first = resolve(
        request(model=CHAT_8B, settings={"context_length": 512}), cat, seed="a", requested=WHEN
    )
    assert isinstance(first, Resolved)
    (running,) = first.deployments
    cat = Catalog(WorkTreeSnapshot(tmp_path), {running.id: running})
    agent = RequestedListing(id="tinyforge/faq-bot")

    other = resolve(request(agent=agent, model=CHAT_8B), cat, seed="b", requested=WHEN)
    same = resolve(
        request(model=CHAT_8B, settings={"context_length": 512}), cat, seed="c", requested=WHEN
    )

    assert isinstance(other, Resolved)
    assert isinstance(same, Resolved)
    assert other.reused == ()
    assert len(other.deployments) == 2
    assert same.reused == (running,)
    assert same.deployments == ()


def test_an_agent_without_a_compatible_preferred_model(tmp_path: Path) -> None:
    cat = catalog(tmp_path)
    (tmp_path / "registry/models/tinyforge/echo-chat/listing.yaml").unlink()

    result = resolve(
        request(agent=RequestedListing(id="tinyforge/faq-bot")), cat, seed="s", requested=WHEN
    )

    assert isinstance(result, Refusal)
    assert result.reasons == (
        "tinyforge/faq-bot needs a model and none of its preferred models (tinyforge/echo-chat,"
        " openhearth/hearth-chat-1.7b) is in the registry and compatible; name one with --model.",
    )
