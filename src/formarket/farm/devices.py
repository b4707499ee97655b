"""GPUs as devices, not counts: what a host has, which ones a deployment gets, and the domain
XML that passes them through. Pure.

A host's inventory may list its GPUs one by one (`devices:`), each a PCI device given whole
to a VM (VFIO passthrough) or a mediated device (a vGPU slice, created on the host beforehand
with its UUID). The count by model that placement uses is then taken from that list.

Which devices a deployment gets (`pick`) follows VFIO's rule: a VM takes whole IOMMU groups,
since the devices of one group cannot be isolated from each other. A group with any device
held by another VM cannot be given. Among the ways to make up the count from free groups, the
fewest groups win (a GPU and its partner on one switch stay together), then the lowest
addresses, so the same inputs always give the same devices.

The domain XML names each device by its host address (`<hostdev mode='subsystem' type='pci'
managed='yes'>`, libvirt detaching it from its host driver at start and giving it back at
stop) or by its mediated device's UUID.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from xml.etree import ElementTree as ET

from pydantic import Field, model_validator

from formarket.schemas._base import Document
from formarket.schemas.farm import GpuModel

__all__ = ["DEVICE_KEY", "PCI_ADDRESS", "GpuDevice", "counts", "hostdev", "pick"]

PCI_ADDRESS = r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$"
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# A device's `key`, as a domain's metadata records it.
DEVICE_KEY = (
    r"^(?:[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]"
    r"|mdev:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)


class GpuDevice(Document):
    """One GPU of a host: a PCI device given whole, or a mediated device (vGPU)."""

    model: GpuModel = Field(description="The model, as listings name it in `gpu`.")
    address: str | None = Field(
        default=None,
        pattern=PCI_ADDRESS,
        description="A PCI device's address, domain:bus:slot.function in lower-case hex.",
    )
    iommu_group: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Its IOMMU group (/sys/kernel/iommu_groups): a VM takes a group whole.",
    )
    mdev_uuid: str | None = Field(
        default=None, pattern=_UUID, description="A mediated device's UUID (a vGPU slice)."
    )
    mdev_type: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="The mediated device's type, such as nvidia-558.",
    )
    memory_gib: int | None = Field(default=None, ge=1, le=4096)

    @model_validator(mode="after")
    def _one_kind(self) -> GpuDevice:
        if (self.address is None) == (self.mdev_uuid is None):
            raise ValueError("a device has either an `address` (PCI) or an `mdev_uuid` (vGPU)")
        if self.mdev_uuid is not None and self.iommu_group is not None:
            raise ValueError("a mediated device has no IOMMU group of its own to give")
        return self

    @property
    def key(self) -> str:
        """How a domain records that it holds this device."""
        return self.address if self.address is not None else f"mdev:{self.mdev_uuid}"

    def present_in(self, node_devices: Iterable[str]) -> bool:
        """Whether the host has it, by libvirt's names of its node devices (`virsh
        nodedev-list`): `pci_0000_41_00_0`; `mdev_<uuid>`, which newer libvirt follows with
        the parent's address."""
        if self.address is not None:
            name = "pci_" + re.sub(r"[:.]", "_", self.address)
            return name in set(node_devices)
        name = "mdev_" + str(self.mdev_uuid).replace("-", "_")
        return any(found == name or found.startswith(name + "_") for found in node_devices)


def counts(devices: Iterable[GpuDevice]) -> dict[str, int]:
    """GPUs by model, as placement counts them."""
    found: dict[str, int] = {}
    for device in devices:
        found[device.model] = found.get(device.model, 0) + 1
    return found


def _groups(devices: Sequence[GpuDevice]) -> list[tuple[GpuDevice, ...]]:
    """The host's devices as the units a VM can be given: an IOMMU group, or one device."""
    grouped: dict[tuple[str, object], list[GpuDevice]] = {}
    for device in devices:
        group = device.iommu_group
        unit = ("group", group) if group is not None else ("one", device.key)
        grouped.setdefault(unit, []).append(device)
    return [tuple(sorted(members, key=lambda d: d.key)) for members in grouped.values()]


def pick(
    devices: Sequence[GpuDevice], model: str, count: int, held: Iterable[str]
) -> tuple[GpuDevice, ...] | None:
    """The devices of `model` a deployment asking for `count` gets, none of them `held` (by
    key), in whole IOMMU groups; None when no such set exists."""
    if count <= 0:
        return ()
    taken = set(held)
    usable = []
    for group in _groups(devices):
        if any(member.key in taken for member in group):
            continue  # a group is given whole or not at all
        if all(member.model == model for member in group):
            usable.append(group)
    usable.sort(key=lambda group: group[0].key)
    # Fewest groups that make up exactly `count` (a knapsack over a host's few devices):
    # best[n] is the chosen groups for n devices, by (number of groups, addresses).
    best: dict[int, tuple[int, ...]] = {0: ()}
    for index, group in enumerate(usable):
        for have, chosen in sorted(best.items(), reverse=True):
            total = have + len(group)
            if total > count:
                continue
            candidate = (*chosen, index)
            current = best.get(total)
            if current is None or (len(candidate), candidate) < (len(current), current):
                best[total] = candidate
    answer = best.get(count)
    if answer is None:
        return None
    return tuple(member for index in answer for member in usable[index])


def hostdev(device: GpuDevice) -> ET.Element:
    """The `<hostdev>` element that gives `device` to a domain."""
    if device.address is not None:
        domain, bus, rest = device.address.split(":")
        slot, function = rest.split(".")
        element = ET.Element("hostdev", mode="subsystem", type="pci", managed="yes")
        source = ET.SubElement(element, "source")
        ET.SubElement(
            source,
            "address",
            domain=f"0x{domain}",
            bus=f"0x{bus}",
            slot=f"0x{slot}",
            function=f"0x{function}",
        )
        return element
    element = ET.Element("hostdev", mode="subsystem", type="mdev", model="vfio-pci")
    source = ET.SubElement(element, "source")
    ET.SubElement(source, "address", uuid=str(device.mdev_uuid))
    return element
