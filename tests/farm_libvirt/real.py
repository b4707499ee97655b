"""Helpers for the tests on a real libvirtd: builds, and the qemu processes left running."""

from __future__ import annotations

from pathlib import Path

from formarket.builder.build import Builder, BuildResult, BuildSettings
from tests.builder.conftest import BASES, shared_cache


def build(formfile: Path, root: Path) -> BuildResult:
    settings = BuildSettings(
        store=root / "store", cache=root / "cache", bases_dir=BASES, base_cache=shared_cache()
    )
    return Builder(settings).build(formfile)


def qemu_processes(deployment_ids: list[str]) -> list[int]:
    """Pids of qemu processes running one of these deployments' domains."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in cmdline and any(
            f"guest=formarket-{dep}".encode() in cmdline for dep in deployment_ids
        ):
            found.append(int(proc.name))
    return found
