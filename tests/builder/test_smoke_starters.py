"""Every starter listing (the starter registry's and the templates `formarket new` writes)
declares a smoke test, and `formarket test` passes it: built, booted under qemu, called.

Busybox listings boot in seconds; the Debian ones boot systemd under TCG in about a minute
each, so they run on one worker (the Debian base's xdist group) in a test of their own. VMs
boot two at a time, as `formarket test -j 2` does on a pull request.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from formarket.builder.templates import load_templates, scaffold
from formarket.cli import main
from tests.builder.conftest import ROOT, TEMPLATES, shared_cache

_REGISTRY = ROOT / "registry"


def _registry_listings() -> list[Path]:
    return sorted(p.parent for p in _REGISTRY.glob("*/*/*/listing.yaml"))


def _template_listings(registry: Path) -> list[Path]:
    templates = load_templates(TEMPLATES)
    return [
        scaffold(templates, name, template.kind, f"starter/{name}", registry)
        for name, (template, _) in sorted(templates.items())
    ]


def _base(folder: Path) -> str:
    for line in (folder / "Formfile").read_text().splitlines():
        if line.startswith("FROM "):
            return line.split()[1]
    return "debian:bookworm"


def _run(folders: list[Path], tmp_path: Path) -> None:
    env = {"FORMARKET_BASE_CACHE": str(shared_cache())}
    args = ["test", *map(str, folders), "--store", str(tmp_path / "store"), "-j", "2", "-q"]
    result = CliRunner().invoke(main, args, env={**os.environ, **env})
    assert result.exit_code == 0, result.output
    assert f"{len(folders)} of {len(folders)} smoke test(s) passed" in result.output


def test_every_starter_listing_declares_a_smoke_test(tmp_path: Path) -> None:
    folders = _registry_listings() + _template_listings(tmp_path / "registry")
    assert len(folders) >= 19
    missing = [f for f in folders if "test" not in yaml.safe_load((f / "listing.yaml").read_text())]
    assert missing == []


@pytest.mark.slow
def test_every_busybox_starter_listing_passes_its_smoke_test(tmp_path: Path) -> None:
    folders = _registry_listings() + _template_listings(tmp_path / "registry")
    busybox = [f for f in folders if _base(f) == "busybox"]
    assert len(busybox) >= 7
    _run(busybox, tmp_path)


@pytest.mark.slow
@pytest.mark.xdist_group("debian")
def test_every_debian_starter_listing_passes_its_smoke_test(tmp_path: Path) -> None:
    folders = _registry_listings() + _template_listings(tmp_path / "registry")
    debian = [f for f in folders if _base(f) != "busybox"]
    assert len(debian) >= 12
    _run(debian, tmp_path)
