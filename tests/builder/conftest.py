"""Fixtures for builder tests: real builds, in scratch stores, over bases shared by the session.

Bases are kept in one cache shared by every test and worker (and by later runs on the same
machine: `build/test-cache`, or $FORMARKET_TEST_CACHE), because the Debian base takes a minute
to make; the builder locks a base while it makes it. Layers and images stay per test.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from formarket.builder.build import Builder, BuildResult, BuildSettings
from formarket.process import Runner
from tests.weightserver import Files, serving

ROOT = Path(__file__).parents[2]
BASES = ROOT / "builder" / "bases"
TEMPLATES = ROOT / "builder" / "templates"


def shared_cache() -> Path:
    return Path(os.environ.get("FORMARKET_TEST_CACHE") or ROOT / "build" / "test-cache")


@pytest.fixture
def settings(tmp_path: Path) -> BuildSettings:
    return BuildSettings(
        store=tmp_path / "store",
        cache=tmp_path / "cache",
        bases_dir=BASES,
        base_cache=shared_cache(),
    )


def write_context(root: Path, formfile: str, files: Mapping[str, str | bytes] = {}) -> Path:
    """A build context folder holding `formfile` as its Formfile and `files`; the Formfile."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    (root / "Formfile").write_text(formfile)
    return root / "Formfile"


Build = Callable[..., BuildResult]


@pytest.fixture
def files() -> Iterator[Files]:
    """A local HTTP server of weight files the test generates."""
    with serving() as server:
        yield server


@pytest.fixture
def build(settings: BuildSettings) -> Build:
    """Build a Formfile with the test's settings (keyword arguments replace settings)."""

    def run(formfile: Path, **changes: Any) -> BuildResult:
        return Builder(dataclasses.replace(settings, **changes)).build(formfile)

    return run


def image_file(image_dir: Path, path: str, scratch: Path) -> bytes | None:
    """A file's bytes from a built image's ext4 filesystem (read with debugfs), or None."""
    raw = scratch / f"{image_dir.name}.raw"
    runner = Runner()
    if not raw.exists():
        runner.run(["qemu-img", "convert", "-O", "raw", image_dir / "disk.qcow2", raw])
    done = runner.run(["debugfs", "-R", f"cat {path}", raw])
    if "not found" in done.stderr or "File not found" in done.stderr:
        return None
    return done.stdout.encode()


TINY = """\
NAME hello-agent
FROM busybox
VCPU 1
MEMORY 512
DISK 5
COPY ./www /srv/www
ENV GREETING="hello from a formfile"
EXPOSE 8080
ENTRYPOINT httpd -f -p 8080 -h /srv/www
"""
