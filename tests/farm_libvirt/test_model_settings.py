"""A model's settings reach its VM as an agent's do: the deploy check applies the schema's
defaults, the config disk carries them, and the `formarket new` model template's server
answers with the context length it was given. On a real, private libvirtd (qemu under TCG)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx  # noqa: TID251 - the deployment is called as a user calls it
import pytest

from formarket.builder.store import DirectoryStore
from formarket.builder.templates import load_templates, scaffold
from formarket.deploy.catalog import Catalog
from formarket.deploy.checks import Resolved, resolve
from formarket.farm import deployer
from formarket.farm.hosts import Host
from formarket.farm.libvirt_conn import Connections
from formarket.registry.snapshot import WorkTreeSnapshot
from formarket.schemas.deployment import DeploymentRequest, RequestedListing
from tests.builder.conftest import TEMPLATES
from tests.farm_libvirt.real import build, qemu_processes

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("libvirtd"),
    pytest.mark.skipif(os.geteuid() != 0, reason="building images needs root"),
]


def test_the_template_models_context_length_reaches_its_server(
    host: Host, conns: Connections, tmp_path: Path
) -> None:
    folder = scaffold(
        load_templates(TEMPLATES), "openai-model", "model", "acme/echo", tmp_path / "registry"
    )
    request = DeploymentRequest(
        model=RequestedListing(id="acme/echo"),
        settings={"context_length": 2048},
        requester="ann",
        account="ann",
    )
    resolved = resolve(
        request, Catalog(WorkTreeSnapshot(tmp_path)), seed="s", requested="2026-01-01T00:00:00Z"
    )
    assert isinstance(resolved, Resolved)
    (model,) = resolved.deployments
    assert model.settings == {"context_length": 2048, "parallel_requests": 1}
    result = build(folder / "Formfile", tmp_path)
    conn = conns.get(host)

    started = deployer.start(
        conn, host, model, result.manifest, DirectoryStore(tmp_path / "store"), {}
    )
    try:
        assert started.endpoint is not None
        deployer.wait_healthy(started.endpoint, timeout=90)
        models = httpx.get(started.endpoint + "/v1/models", timeout=30).json()
    finally:
        deployer.stop(conn, model.id)
    assert models["data"][0] == {"id": "acme/echo", "object": "model", "max_model_len": 2048}
    assert qemu_processes([model.id]) == []
