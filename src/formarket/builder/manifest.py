"""The build manifest: what an image is, what it was made from and how long each step took.

It is published next to the image (`manifest.json`) and is what the deployer reads: the disk,
kernel and initrd to boot, the command line, the ports to forward and health-check.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from formarket.builder.context import ContextEntry
from formarket.schemas._base import Document

__all__ = ["Artifact", "BuildManifest", "DataDisk", "StepRecord"]


class StepRecord(Document):
    """One named step of the build and what it cost."""

    name: str
    title: str
    key: str = Field("", description="The step cache key; empty for the builder's own steps.")
    cached: bool = False
    seconds: float


class Artifact(Document):
    """A file of the published image."""

    name: str
    role: Literal["disk", "kernel", "initrd", "log"]
    size: int = Field(description="Bytes on disk.")
    sha256: str
    virtual_size: int | None = Field(None, description="A disk's size as the VM sees it.")


class DataDisk(Document):
    """The read-only disk of a model's weights, kept in the store by its id (a digest of the
    files it holds), shared by every image deployed with the same weights."""

    id: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(description="Bytes of the raw ext4 image.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Of the image's bytes.")
    files: tuple[str, ...] = Field(description="The files on it, as /weights/<path> has them.")


class BuildManifest(Document):
    """Everything a deployer and an auditor need to know about one built image."""

    build_id: str
    name: str = Field(description="The Formfile's NAME.")
    format_version: str
    base: str
    base_digest: str
    formfile_sha256: str = Field(description="sha256 of the canonical Formfile.")
    inputs: tuple[ContextEntry, ...] = Field(description="The context entries that went in.")
    vcpus: int
    memory_mib: int
    disk_gib: int
    gpus: tuple[str, ...] = ()
    expose: tuple[int, ...]
    entrypoint: tuple[str, ...] | None
    workdir: str
    kernel_cmdline: str
    artifacts: tuple[Artifact, ...]
    data_disk: DataDisk | None = Field(
        default=None, description="The weights' data disk, mounted read-only at /weights."
    )
    steps: tuple[StepRecord, ...]
    cache_hits: int = Field(description="Steps whose layer came from the step cache.")
    seconds: float = Field(description="Wall time of the build.")
    created: str = Field(description="When the build finished (UTC, ISO 8601).")

    def artifact(self, role: str) -> Artifact:
        return next(a for a in self.artifacts if a.role == role)
