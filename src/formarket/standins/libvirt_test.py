"""Simulated hosts for tests and benchmarks: libvirt's test driver, one node file per host.

`test:///<abs path>` opens a test-driver host described by that file; several are independent
in one process. Each new connection starts from the file again (domains are forgotten when a
connection closes), and the driver enforces no capacity: capacity comes from the inventory.
A host may have GPUs: they are node devices of the file, as libvirt lists a real host's (a
device left out of the file is one the host does not have, whatever the inventory says).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

from formarket.farm.devices import GpuDevice

__all__ = ["write_test_host"]


def _node_device(device: GpuDevice) -> ET.Element:
    element = ET.Element("device")
    if device.address is None:
        uuid = str(device.mdev_uuid)
        ET.SubElement(element, "name").text = "mdev_" + uuid.replace("-", "_")
        ET.SubElement(element, "parent").text = "computer"
        capability = ET.SubElement(element, "capability", type="mdev")
        ET.SubElement(capability, "type", id=device.mdev_type or "nvidia-558")
        ET.SubElement(capability, "uuid").text = uuid
        ET.SubElement(capability, "iommuGroup", number="0")
        return element
    domain, bus, rest = device.address.split(":")
    slot, function = rest.split(".")
    ET.SubElement(element, "name").text = "pci_" + f"{domain}_{bus}_{slot}_{function}"
    ET.SubElement(element, "parent").text = "computer"
    capability = ET.SubElement(element, "capability", type="pci")
    for tag, value in (("domain", domain), ("bus", bus), ("slot", slot), ("function", function)):
        ET.SubElement(capability, tag).text = str(int(value, 16))
    ET.SubElement(capability, "product", id="0x0001").text = device.model
    ET.SubElement(capability, "vendor", id="0x10de").text = "formarket simulated GPU"
    if device.iommu_group is not None:
        ET.SubElement(capability, "iommuGroup", number=str(device.iommu_group))
    return element


def write_test_host(
    path: Path, name: str, vcpus: int, memory_mib: int, devices: Sequence[GpuDevice] = ()
) -> str:
    """Write a test-driver node file for a host of this size, with these GPUs; the host's
    libvirt URI."""
    node = ET.Element("node")
    ET.SubElement(node, "description").text = f"formarket simulated host {name}"
    cpu = ET.SubElement(node, "cpu")
    ET.SubElement(cpu, "mhz").text = "2000"
    ET.SubElement(cpu, "model").text = "x86_64"
    ET.SubElement(cpu, "active").text = str(vcpus)
    ET.SubElement(cpu, "nodes").text = "1"
    ET.SubElement(cpu, "sockets").text = "1"
    ET.SubElement(cpu, "cores").text = str(vcpus)
    ET.SubElement(cpu, "threads").text = "1"
    ET.SubElement(node, "memory").text = str(memory_mib * 1024)  # KiB
    for device in devices:
        node.append(_node_device(device))
    path = path.absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ET.tostring(node, encoding="unicode") + "\n")
    return f"test://{path}"
