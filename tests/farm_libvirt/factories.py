"""Deployments, manifests and simulated hosts for the libvirt deployer's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from formarket.builder.manifest import BuildManifest
from formarket.farm.hosts import Host
from formarket.schemas.deployment import Deployment
from formarket.standins.libvirt_test import write_test_host


def deployment(
    dep_id: str,
    *,
    kind: str = "model",
    listing: str = "tinyforge/echo-chat",
    version: str = "1.0.0",
    model_deployment: str | None = None,
    settings: dict[str, Any] | None = None,
    memory_mib: int = 256,
) -> Deployment:
    return Deployment.model_validate(
        {
            "id": dep_id,
            "kind": kind,
            "listing": {"id": listing, "version": version},
            "size": {"vcpus": 1, "memory_mib": memory_mib, "disk_gib": 5},
            "state": "running",
            "model_deployment": model_deployment,
            "settings": settings or {},
            "requester": "ada",
            "account": "ada",
            "origin": {"kind": "cli"},
            "requested": "2026-11-25T12:00:00Z",
            "request_sha256": "0" * 64,
        }
    )


def manifest(build_id: str = "ab" * 32, expose: tuple[int, ...] = (8080,)) -> BuildManifest:
    """A manifest as the builder writes it, for hosts that never read the files."""
    artifacts = [
        {
            "name": "disk.qcow2",
            "role": "disk",
            "size": 10,
            "sha256": "1" * 64,
            "virtual_size": 5 << 30,
        },
        {"name": "vmlinuz", "role": "kernel", "size": 10, "sha256": "2" * 64},
        {"name": "initrd.img", "role": "initrd", "size": 10, "sha256": "3" * 64},
    ]
    return BuildManifest.model_validate(
        {
            "build_id": build_id,
            "name": "echo-chat",
            "format_version": "1",
            "base": "busybox",
            "base_digest": "0" * 64,
            "formfile_sha256": "0" * 64,
            "inputs": [],
            "vcpus": 1,
            "memory_mib": 512,
            "disk_gib": 5,
            "expose": list(expose),
            "entrypoint": ["nc"],
            "workdir": "/",
            "kernel_cmdline": "console=ttyS0 root=/dev/vda rw quiet panic=-1",
            "artifacts": artifacts,
            "steps": [],
            "cache_hits": 0,
            "seconds": 1.0,
            "created": "2026-11-25T12:00:00+00:00",
        }
    )


def sim_host(folder: Path, name: str, *, address: str = "127.0.0.1") -> Host:
    uri = write_test_host(folder / f"{name}.xml", name, vcpus=8, memory_mib=16384)
    return Host(
        name=name,
        uri=uri,
        vcpus=8,
        memory_mib=16384,
        domain_type="qemu",
        address=address,
        pool_path=f"/pools/{name}",
    )
