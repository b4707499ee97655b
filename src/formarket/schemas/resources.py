"""What a deployment needs from a host."""

from __future__ import annotations

from itertools import pairwise

from pydantic import Field, model_validator

from formarket.schemas._base import Document
from formarket.schemas.farm import GpuModel

__all__ = ["GpuModel", "GpuSpec", "ResourceSpec", "Resources"]


class GpuSpec(Document):
    """GPUs of one model."""

    model: GpuModel = Field(description="The GPU model, as the farm's host inventory names it.")
    count: int = Field(default=1, ge=1, le=8, description="How many GPUs of that model.")
    vram_gib: int | None = Field(
        default=None, ge=1, le=1024, description="VRAM needed per GPU, in GiB."
    )


class ResourceSpec(Document):
    """One size of virtual machine."""

    vcpus: int = Field(ge=1, le=128, description="Virtual CPUs.")
    memory_mib: int = Field(ge=512, le=256000, description="Memory in MiB.")
    disk_gib: int = Field(ge=5, le=65535, description="Root disk in GiB.")
    gpu: GpuSpec | None = Field(default=None, description="GPUs, if any.")


class Resources(Document):
    """The smallest machine the listing runs on, and the one it runs well on."""

    minimum: ResourceSpec = Field(description="Below this the listing does not work.")
    recommended: ResourceSpec | None = Field(
        default=None, description="What the publisher advises; defaults to the minimum."
    )
    maximum: ResourceSpec | None = Field(
        default=None,
        description="The largest machine a user may deploy it on; defaults to the recommended.",
    )

    @model_validator(mode="after")
    def _sizes_in_order(self) -> Resources:
        # maximum >= recommended >= minimum, field by field (GPU counts included).
        sizes = [("minimum", self.minimum)]
        if self.recommended is not None:
            sizes.append(("recommended", self.recommended))
        if self.maximum is not None:
            sizes.append(("maximum", self.maximum))
        for (low_name, low), (high_name, high) in pairwise(sizes):
            for field in ("vcpus", "memory_mib", "disk_gib"):
                if getattr(high, field) < getattr(low, field):
                    raise ValueError(f"{high_name}.{field} is below {low_name}.{field}")
            if low.gpu is not None and high.gpu is not None and high.gpu.count < low.gpu.count:
                raise ValueError(f"{high_name}.gpu.count is below {low_name}.gpu.count")
        return self

    @property
    def effective_recommended(self) -> ResourceSpec:
        return self.recommended or self.minimum

    @property
    def effective_maximum(self) -> ResourceSpec:
        return self.maximum or self.effective_recommended
