"""GPUs as devices: the inventory lists them, a deployment gets whole IOMMU groups of the model
it asks for and none another holds, and the domain XML passes exactly those through."""

from __future__ import annotations

import itertools
from xml.etree import ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from formarket.errors import LocatedError
from formarket.farm.devices import GpuDevice, counts, hostdev, pick
from formarket.farm.hosts import parse_inventory


def pci(n: int, model: str = "H100", group: int | None = None) -> GpuDevice:
    return GpuDevice(model=model, address=f"0000:{n:02x}:00.0", iommu_group=group)


INVENTORY = b"""\
hosts:
  - name: gpu-a1
    uri: qemu+ssh://farm@gpu-a1/system
    vcpus: 64
    memory_mib: 491520
    devices:
      - {model: H100, address: "0000:41:00.0", iommu_group: 12, memory_gib: 80}
      - {model: H100, address: "0000:42:00.0", iommu_group: 13, memory_gib: 80}
      - {model: L4, mdev_uuid: 4b20d080-1b54-4048-85b3-a6a62d165c01, mdev_type: nvidia-593}
"""


def test_the_inventory_counts_the_devices_it_lists() -> None:
    host = parse_inventory(INVENTORY, "hosts.yaml").hosts[0]
    assert host.gpus == {"H100": 2, "L4": 1}
    assert [d.key for d in host.devices] == [
        "0000:41:00.0",
        "0000:42:00.0",
        "mdev:4b20d080-1b54-4048-85b3-a6a62d165c01",
    ]


@pytest.mark.parametrize(
    ("extra", "found"),
    [
        (b"    gpus: {H100: 8}\n", "gpus says"),
        (b'      - {model: H100, address: "0000:41:00.0"}\n', "listed twice"),
        (b'      - {model: H100, address: "0000:43:00.0", mdev_uuid: "x"}\n', "devices.3"),
        (b'      - {model: H100, address: "41:00.0"}\n', "devices.3.address"),
        (b'      - {model: H100, address: "0000:44:00.0\\" onload=\\"x"}\n', "devices.3.address"),
    ],
)
def test_a_wrong_device_list_is_an_error_at_its_line(extra: bytes, found: str) -> None:
    text = (
        INVENTORY + extra
        if extra.startswith(b"      -")
        else INVENTORY.replace(b"    devices:\n", extra + b"    devices:\n")
    )
    with pytest.raises(LocatedError) as caught:
        parse_inventory(text, "hosts.yaml")
    assert found in str(caught.value)
    assert "hosts.yaml:" in str(caught.value)


def test_a_device_is_pci_or_mediated_never_both_nor_neither() -> None:
    with pytest.raises(ValidationError):
        GpuDevice(model="H100")
    with pytest.raises(ValidationError):
        GpuDevice(
            model="L4",
            address="0000:41:00.0",
            mdev_uuid="4b20d080-1b54-4048-85b3-a6a62d165c01",
        )


def test_a_deployment_gets_free_devices_of_its_model() -> None:
    devices = [pci(1, group=1), pci(2, group=2), pci(3, "L40S", group=3), pci(4, group=4)]
    assert pick(devices, "H100", 2, held=[]) == (devices[0], devices[1])
    assert pick(devices, "H100", 2, held=["0000:01:00.0"]) == (devices[1], devices[3])
    assert pick(devices, "H100", 3, held=["0000:01:00.0"]) is None
    assert pick(devices, "L40S", 1, held=[]) == (devices[2],)
    assert pick(devices, "B200", 1, held=[]) is None
    assert pick(devices, "H100", 0, held=[]) == ()


def test_an_iommu_group_is_given_whole_or_not_at_all() -> None:
    pair = [pci(1, group=7), pci(2, group=7)]
    single = [pci(3, group=8)]
    # One GPU asked for: the group of one, never half of the pair.
    assert pick(pair + single, "H100", 1, held=[]) == (single[0],)
    # Two: the pair, in one group, rather than two groups.
    assert pick([*single, pci(4, group=9), *pair], "H100", 2, held=[]) == tuple(pair)
    # A group with one device held elsewhere gives nothing.
    assert pick(pair, "H100", 1, held=["0000:02:00.0"]) is None
    # A group that also holds another model's device cannot be given for this one.
    mixed = [pci(5, group=3), pci(6, "L40S", group=3)]
    assert pick(mixed, "H100", 1, held=[]) is None


DEVICES = st.lists(
    st.tuples(st.sampled_from(["H100", "L40S"]), st.none() | st.integers(0, 4)),
    max_size=8,
).map(lambda specs: [pci(i, model, group) for i, (model, group) in enumerate(specs)])


@given(DEVICES, st.sampled_from(["H100", "L40S"]), st.integers(0, 6), st.data())
def test_a_pick_is_exact_whole_and_free_or_none_exists(
    devices: list[GpuDevice], model: str, count: int, data: st.DataObject
) -> None:
    held = data.draw(st.sets(st.sampled_from([d.key for d in devices]))) if devices else set()
    got = pick(devices, model, count, held)
    groups: dict[object, set[str]] = {}
    for device in devices:
        unit = device.iommu_group if device.iommu_group is not None else device.key
        groups.setdefault(unit, set()).add(device.key)
    units = list(groups.values())
    if got is not None:
        keys = {d.key for d in got}
        assert len(got) == count
        assert all(d.model == model for d in got)
        assert not keys & held
        assert all(unit <= keys or not unit & keys for unit in units)
        return
    # None: no set of whole, free groups of that model only makes up the count.
    by_key = {d.key: d for d in devices}
    fit = [u for u in units if not u & held and all(by_key[k].model == model for k in u)]
    for size in range(len(fit) + 1):
        for combination in itertools.combinations(fit, size):
            assert sum(len(u) for u in combination) != count


def test_the_domain_xml_passes_a_pci_device_by_its_address() -> None:
    element = hostdev(GpuDevice(model="H100", address="0000:41:00.1"))
    assert element.attrib == {"mode": "subsystem", "type": "pci", "managed": "yes"}
    address = element.find("source/address")
    assert address is not None
    assert address.attrib == {"domain": "0x0000", "bus": "0x41", "slot": "0x00", "function": "0x1"}


def test_the_domain_xml_passes_a_vgpu_by_its_uuid() -> None:
    uuid = "4b20d080-1b54-4048-85b3-a6a62d165c01"
    element = hostdev(GpuDevice(model="L4", mdev_uuid=uuid, mdev_type="nvidia-593"))
    assert element.attrib == {"mode": "subsystem", "type": "mdev", "model": "vfio-pci"}
    source = ET.tostring(element).decode()
    assert f'uuid="{uuid}"' in source


def test_counts_are_by_model() -> None:
    assert counts([pci(1), pci(2), pci(3, "L40S")]) == {"H100": 2, "L40S": 1}
