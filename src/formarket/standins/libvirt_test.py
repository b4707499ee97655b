"""Simulated hosts for tests and benchmarks: libvirt's test driver, one node file per host.

`test:///<abs path>` opens a test-driver host described by that file; several are independent
in one process. Each new connection starts from the file again (domains are forgotten when a
connection closes), and the driver enforces no capacity: capacity comes from the inventory.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

__all__ = ["write_test_host"]


def write_test_host(path: Path, name: str, vcpus: int, memory_mib: int) -> str:
    """Write a test-driver node file for a host of this size; the host's libvirt URI."""
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
    path = path.absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ET.tostring(node, encoding="unicode") + "\n")
    return f"test://{path}"
