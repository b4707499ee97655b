"""GPUs really attached, on simulated hosts (libvirt's test driver, whose node devices are the
host's GPUs): placement picks devices, the domain XML passes them through and records them,
they are free again once the domain is gone, and a device missing at start is a clear error
after which the deployment is placed again without it."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from formarket.builder.store import DirectoryStore
from formarket.farm import deployer
from formarket.farm.devices import GpuDevice
from formarket.farm.domain import DomainSpec, domain_name, domain_xml, read_metadata
from formarket.farm.gpus import (
    DeviceMissing,
    NoFreeDevices,
    missing_devices,
    remember_missing,
)
from formarket.farm.hosts import Host
from formarket.farm.libvirt_conn import Connections
from formarket.farm.placement import Need, Placed, Placer, Refused
from formarket.farm.reconcile import Domain, plan
from formarket.schemas.deployment import Deployment
from formarket.standins.libvirt_test import write_test_host
from tests.farm_libvirt.factories import manifest

VGPU = "c2177883-f1bb-47f0-914d-32a22e3a8804"


def l4(address: str, group: int) -> GpuDevice:
    return GpuDevice(model="L4", address=address, iommu_group=group, memory_gib=24)


def h100(address: str, group: int) -> GpuDevice:
    return GpuDevice(model="H100", address=address, iommu_group=group, memory_gib=80)


# Two L4 hosts (one with a pair of L4s sharing an IOMMU group) and an H100 host with a vGPU.
INVENTORY: dict[str, tuple[GpuDevice, ...]] = {
    "gpu-a": (l4("0000:41:00.0", 10), l4("0000:42:00.0", 11)),
    "gpu-b": (l4("0000:81:00.0", 20), l4("0000:81:00.1", 20), l4("0000:82:00.0", 21)),
    "gpu-c": (
        h100("0000:17:00.0", 30),
        h100("0000:18:00.0", 31),
        GpuDevice(model="L4", mdev_uuid=VGPU, mdev_type="nvidia-558"),
    ),
}


def hosts(tmp_path: Path, *, gone: dict[str, set[str]] | None = None) -> dict[str, Host]:
    """The inventory's hosts; the devices in `gone` are listed but not on the host."""
    found = {}
    for name, devices in INVENTORY.items():
        there = [d for d in devices if d.key not in (gone or {}).get(name, set())]
        uri = write_test_host(tmp_path / f"{name}.xml", name, 32, 131072, there)
        found[name] = Host(
            name=name,
            uri=uri,
            vcpus=32,
            memory_mib=131072,
            devices=devices,
            domain_type="qemu",
            pool_path=f"/pools/{name}",
        )
    return found


def gpu_deployment(dep_id: str, model: str, count: int) -> Deployment:
    data: dict[str, Any] = {
        "id": dep_id,
        "kind": "model",
        "listing": {"id": "northwind-ai/northwind-chat-8b", "version": "1.2.0"},
        "size": {
            "vcpus": 4,
            "memory_mib": 16384,
            "disk_gib": 40,
            "gpu": {"model": model, "count": count},
        },
        "state": "running",
        "requester": "ada",
        "account": "ada",
        "origin": {"kind": "cli"},
        "requested": "2026-11-25T12:00:00Z",
        "request_sha256": "0" * 64,
    }
    return Deployment.model_validate(data)


def hostdevs(xml: str) -> list[str]:
    """Each passed-through device of a domain's XML: a PCI address, or mdev:<uuid>."""
    found = []
    for element in ET.fromstring(xml).iter("hostdev"):
        address = element.find("source/address")
        assert address is not None
        if element.get("type") == "mdev":
            assert element.get("model") == "vfio-pci"
            found.append(f"mdev:{address.get('uuid')}")
        else:
            assert (element.get("mode"), element.get("managed")) == ("subsystem", "yes")
            parts = [int(address.get(k) or "", 16) for k in ("domain", "bus", "slot", "function")]
            found.append("{:04x}:{:02x}:{:02x}.{:x}".format(*parts))
    return found


def domains_of(conns: Connections, found: dict[str, Host]) -> list[Domain]:
    return [
        Domain(r.deployment_id, name, bool(r.running), r.build_id, devices=r.devices)
        for name, host in found.items()
        for r in deployer.actual(conns.get(host))
    ]


def test_deployments_get_free_devices_which_their_domains_hold_until_stopped(
    tmp_path: Path,
) -> None:
    found = hosts(tmp_path)
    conns = Connections()
    store = DirectoryStore(tmp_path / "store")
    b = found["gpu-b"]
    conn = conns.get(b)
    pair = gpu_deployment("dep-00000000a001", "L4", 2)
    one = gpu_deployment("dep-00000000a002", "L4", 1)
    more = gpu_deployment("dep-00000000a003", "L4", 1)

    deployer.start(conn, b, pair, manifest(), store, {})
    deployer.start(conn, b, one, manifest(), store, {})
    with pytest.raises(NoFreeDevices):
        deployer.start(conn, b, more, manifest(), store, {})

    xml = {r.deployment_id: r for r in deployer.actual(conn)}
    pair_dom = conn.domain(domain_name(pair.id))
    assert pair_dom is not None
    # The pair is the one whole IOMMU group of two; the single the group of one.
    assert hostdevs(pair_dom.xml) == ["0000:81:00.0", "0000:81:00.1"]
    assert xml[pair.id].devices == ("0000:81:00.0", "0000:81:00.1")
    assert xml[one.id].devices == ("0000:82:00.0",)

    deployer.stop(conn, one.id)
    started = deployer.start(conn, b, more, manifest(), store, {})
    more_dom = conn.domain(started.domain)
    assert more_dom is not None
    assert hostdevs(more_dom.xml) == ["0000:82:00.0"]  # released by the stop: free again


def test_a_vgpu_is_passed_by_its_uuid(tmp_path: Path) -> None:
    found = hosts(tmp_path)
    conns = Connections()
    c = found["gpu-c"]
    started = deployer.start(
        conns.get(c),
        c,
        gpu_deployment("dep-00000000b001", "L4", 1),
        manifest(),
        DirectoryStore(tmp_path / "store"),
        {},
    )
    dom = conns.get(c).domain(started.domain)
    assert dom is not None
    assert hostdevs(dom.xml) == [f"mdev:{VGPU}"]


def test_placement_picks_devices_on_hosts_and_models_it_holds_apart(tmp_path: Path) -> None:
    found = hosts(tmp_path)
    desired = {
        d.id: d
        for d in (
            gpu_deployment("dep-00000000c001", "H100", 2),
            gpu_deployment("dep-00000000c002", "L4", 2),
            gpu_deployment("dep-00000000c003", "L4", 2),
            gpu_deployment("dep-00000000c004", "L4", 1),
            gpu_deployment("dep-00000000c005", "H100", 1),
        )
    }
    has_image = {("northwind-ai/northwind-chat-8b", "1.2.0"): True}
    conns = Connections()
    store = DirectoryStore(tmp_path / "store")

    first = plan(desired, [], list(found.values()), frozenset(), has_image)
    for action in first.deploys:
        host = found[action.host]
        deployer.start(conns.get(host), host, desired[action.deployment], manifest(), store, {})
    domains = domains_of(conns, found)
    again = plan(desired, domains, list(found.values()), frozenset(), has_image)

    placed = {a.deployment: a.host for a in first.deploys}
    assert placed == {
        "dep-00000000c001": "gpu-c",
        "dep-00000000c002": "gpu-a",  # two groups of one L4
        "dep-00000000c003": "gpu-b",  # the group of two
        "dep-00000000c004": "gpu-b",
    }
    assert first.refused == {
        "dep-00000000c005": "no host has 1 free H100 (the most free on one host: 0, on gpu-c)"
    }
    held = [key for d in domains for key in d.devices]
    assert len(held) == len(set(held)) == 7  # no device given twice
    assert again.deploys == ()


def test_a_device_missing_at_start_is_an_error_and_the_deployment_placed_again(
    tmp_path: Path,
) -> None:
    # gpu-a's first L4 is in the inventory, but its host no longer has it.
    found = hosts(tmp_path, gone={"gpu-a": {"0000:41:00.0"}})
    found = {name: found[name] for name in ("gpu-a",)}
    conns = Connections()
    store = DirectoryStore(tmp_path / "store")
    dep = gpu_deployment("dep-00000000d001", "L4", 1)
    desired = {dep.id: dep}
    has_image = {("northwind-ai/northwind-chat-8b", "1.2.0"): True}
    state = tmp_path / "state" / "missing-devices.json"

    (action,) = plan(desired, [], list(found.values()), frozenset(), has_image).deploys
    a = found[action.host]
    with pytest.raises(DeviceMissing) as caught:
        deployer.start(conns.get(a), a, dep, manifest(), store, {})
    assert caught.value.message == (
        "host gpu-a: the GPU device(s) L4 at 0000:41:00.0 are listed in the host inventory but"
        " libvirt does not see them on the host"
    )
    assert deployer.actual(conns.get(a)) == []  # nothing half-made stays

    remember_missing(state, caught.value, now=1000.0)
    unavailable = missing_devices(state, now=1001.0)
    (again,) = plan(
        desired, [], list(found.values()), frozenset(), has_image, unavailable=unavailable
    ).deploys
    started = deployer.start(
        conns.get(a), a, dep, manifest(), store, {}, unavailable=unavailable["gpu-a"]
    )

    assert again.host == "gpu-a"
    assert unavailable == {"gpu-a": frozenset({"0000:41:00.0"})}
    dom = conns.get(a).domain(started.domain)
    assert dom is not None
    # The deployer picks what the plan picked: the device that is there.
    assert hostdevs(dom.xml) == ["0000:42:00.0"]
    assert missing_devices(state, now=1000.0 + 601) == {"gpu-a": frozenset()}


def test_a_count_that_only_a_shared_iommu_group_could_make_up_is_refused(tmp_path: Path) -> None:
    b = hosts(tmp_path)["gpu-b"]
    placer = Placer([b], held={"gpu-b": {"0000:82:00.0"}})

    refused = placer.place(Need(4, 16384, "L4", 1))
    pair = placer.place(Need(4, 16384, "L4", 2))

    assert refused == Refused(
        "no host has 1 free L4 in whole IOMMU groups (a group is given to one VM, and some of"
        " each are held or missing)"
    )
    assert pair == Placed("gpu-b", ("0000:81:00.0", "0000:81:00.1"))


@pytest.mark.parametrize("key", ["0000:41:00.0,evil", "mdev:not-a-uuid", "", "../x"])
def test_a_held_device_that_libvirt_could_not_have_written_voids_the_record(
    tmp_path: Path, key: str
) -> None:
    spec = DomainSpec(
        deployment_id="dep-00000000e001",
        kind="model",
        listing_id="acme/model",
        listing_version="1.0.0",
        model_deployment=None,
        build_id="ab" * 32,
        domain_type="qemu",
        vcpus=1,
        memory_mib=512,
        kernel="/k",
        initrd="/i",
        disk="/d",
        config_disk=None,
        kernel_cmdline="console=ttyS0",
        ports=((8080, 20000),),
        address="127.0.0.1",
        console_log="/c",
        gpus=(l4("0000:41:00.0", 10),),
    )
    xml = domain_xml(spec)
    record = read_metadata(xml)
    assert record is not None
    assert record.devices == ("0000:41:00.0",)
    assert read_metadata(xml.replace('key="0000:41:00.0"', f'key="{key}"')) is None
