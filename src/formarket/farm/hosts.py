"""The host inventory: the libvirt hosts the farm may place deployments on, and their size.

Capacity is configured, not asked of libvirt: libvirt's own figures can be wrong (a 24 GiB
machine reports 7.3 GiB) and its test driver reports none. `builder/hosts.example.yaml` is an
example; the farm reads the file that `FORMARKET_HOSTS` names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from formarket.errors import InputError, NotFoundError
from formarket.farm.devices import GpuDevice, counts
from formarket.schemas._base import Document
from formarket.schemas.farm import GpuModel
from formarket.yamldoc import load_yaml

__all__ = ["Host", "Inventory", "load_inventory", "parse_inventory"]

HOST_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
_URI_SCHEMES = ("test", "qemu", "qemu+ssh", "qemu+tls", "qemu+tcp", "qemu+unix", "qemu+libssh")


class Host(Document):
    """One libvirt host and what the farm may use of it."""

    name: str = Field(pattern=HOST_NAME_PATTERN, description="Unique in the inventory.")
    uri: str = Field(max_length=1024, description="The libvirt connection URI.")
    vcpus: int = Field(ge=1, le=4096, description="vCPUs the farm may hand out.")
    memory_mib: int = Field(ge=128, le=64 * 1024 * 1024, description="Memory it may hand out.")
    gpus: dict[GpuModel, int] = Field(
        default_factory=dict,
        description="GPUs by model (taken from `devices` when those are listed).",
    )
    devices: tuple[GpuDevice, ...] = Field(
        default=(),
        max_length=64,
        description="The GPUs one by one, so that a deployment is given particular ones.",
    )
    labels: dict[str, str] = Field(default_factory=dict)
    domain_type: Literal["qemu", "kvm"] = Field(
        default="kvm", description="`qemu` is software emulation, for hosts without KVM."
    )
    address: str = Field(
        default="127.0.0.1",
        max_length=253,
        description="Where the gateway reaches the ports forwarded from this host's VMs.",
    )
    storage_pool: str = Field(
        default="formarket",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="The libvirt storage pool that caches images on this host, by build id.",
    )
    pool_path: str | None = Field(
        default=None, description="The pool's folder on the host, when the farm creates it."
    )

    @field_validator("uri")
    @classmethod
    def _libvirt_uri(cls, value: str) -> str:
        scheme, sep, _rest = value.partition("://")
        if not sep or scheme not in _URI_SCHEMES:
            raise ValueError(f"must be a libvirt URI ({', '.join(_URI_SCHEMES)})")
        if any(c.isspace() for c in value):
            raise ValueError("must not contain spaces")
        return value

    @field_validator("gpus")
    @classmethod
    def _counts(cls, value: dict[str, int]) -> dict[str, int]:
        if any(count < 0 or count > 64 for count in value.values()):
            raise ValueError("a GPU count is between 0 and 64")
        return value

    @model_validator(mode="after")
    def _devices(self) -> Host:
        if not self.devices:
            return self
        listed = counts(self.devices)
        if self.gpus and self.gpus != listed:
            raise ValueError(
                f"gpus says {self.gpus} but devices list {listed}: give one of them, or both alike"
            )
        keys = [device.key for device in self.devices]
        if len(set(keys)) != len(keys):
            raise ValueError("a device is listed twice")
        object.__setattr__(self, "gpus", listed)  # frozen: set once, while validating
        return self


class Inventory(Document):
    hosts: tuple[Host, ...] = Field(min_length=1, max_length=100_000)

    @model_validator(mode="after")
    def _unique(self) -> Inventory:
        seen: set[str] = set()
        for host in self.hosts:
            if host.name in seen:
                raise ValueError(f"two hosts are named {host.name}")
            seen.add(host.name)
        return self

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise NotFoundError(f"no host named {name!r} in the inventory")


def parse_inventory(data: bytes, path: str) -> Inventory:
    """An inventory from YAML bytes; errors name the file, line and field."""
    return load_yaml(data, path).validated(
        Inventory, "host inventory", hint="see builder/hosts.example.yaml"
    )


def load_inventory(path: Path) -> Inventory:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(
            f"{path}: no such host inventory", hint="copy builder/hosts.example.yaml"
        ) from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read the host inventory: {exc}") from exc
    return parse_inventory(data, str(path))
