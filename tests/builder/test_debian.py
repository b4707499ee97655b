"""Builds on the Debian base: apt through INSTALL, a systemd service, the step cache.

The base takes about a minute to make once; it is kept in the shared test cache, and these
tests run on one worker (an xdist group) so that only one of them waits for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from formarket.builder.templates import load_templates, scaffold
from formarket.builder.vm import boot
from formarket.process import Runner
from tests.builder.conftest import TEMPLATES, Build, image_file, write_context

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("debian")]


def test_the_agent_template_builds_on_debian_and_its_service_answers(
    build: Build, tmp_path: Path
) -> None:
    folder = scaffold(load_templates(TEMPLATES), "agent", "agent", "acme/helper", tmp_path)
    result = build(folder / "Formfile")
    manifest = result.manifest
    assert manifest.base == "debian:bookworm"
    assert [s.name for s in manifest.steps if s.key] == [
        "01-install",
        "02-copy",
        "03-workdir",
        "04-env",
        "05-run",
        "06-service",
    ]
    image = result.image_dir
    unit = (image_file(image, "/etc/systemd/system/form-app.service", tmp_path) or b"").decode()
    assert 'ExecStart="python3" "/app/agent.py"' in unit
    assert "WorkingDirectory=/app" in unit
    env = image_file(image, "/etc/formfile/env.service.form-app", tmp_path) or b""
    assert b"MODEL_ENDPOINT='http://127.0.0.1:8080'" in env
    assert image_file(image, "/usr/sbin/policy-rc.d", tmp_path) is None
    assert image_file(image, "/etc/resolv.conf", tmp_path) == b""
    with boot(Runner(), image, manifest, console=tmp_path / "console") as vm:
        vm.wait_booted(timeout=240)
        health = json.loads(vm.request(8000, "/health", timeout=120))
    assert health == {"status": "ok", "agent": "acme/helper", "model": "http://127.0.0.1:8080"}


RECIPE = """\
NAME cached-install
FROM debian:bookworm
INSTALL jq
RUN jq --version > /jq-version
RUN echo {last} > /last
"""


def test_changing_only_the_last_run_reuses_the_package_layers(build: Build, tmp_path: Path) -> None:
    first = build(write_context(tmp_path / "a", RECIPE.format(last="one")))
    second = build(write_context(tmp_path / "a", RECIPE.format(last="two")))
    ran = [s.name for s in second.manifest.steps if s.key and not s.cached]
    assert ran == ["04-run"]  # 01 copies the (empty) context: there is no COPY
    assert image_file(second.image_dir, "/last", tmp_path) == b"two\n"
    assert (image_file(second.image_dir, "/jq-version", tmp_path) or b"").startswith(b"jq-1.")
    install = next(s for s in first.manifest.steps if s.name == "02-install")
    rerun = next(s for s in second.manifest.steps if s.name == "04-run")
    assert rerun.seconds < install.seconds
