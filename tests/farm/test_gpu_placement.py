"""Placement over GPU devices, for any inventory of hosts with L4s and H100s in IOMMU groups
and any run of requests: no device is given twice, none held or missing is given, a request
gets exactly its count of its model in whole groups, and a refusal only when no host could."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.farm.devices import GpuDevice, pick
from formarket.farm.hosts import Host
from formarket.farm.placement import Need, Placed, Placer

MODELS = ("L4", "H100")


@st.composite
def gpu_hosts(draw: st.DrawFn) -> list[Host]:
    hosts = []
    bus = 0
    for n in range(draw(st.integers(1, 4))):
        devices = []
        for group in range(draw(st.integers(0, 4))):
            model = draw(st.sampled_from(MODELS))
            for function in range(draw(st.integers(1, 2))):
                devices.append(
                    GpuDevice(
                        model=model,
                        address=f"0000:{bus:02x}:00.{function}",
                        iommu_group=100 * n + group,
                    )
                )
            bus += 1
        hosts.append(
            Host(
                name=f"h{n}",
                uri=f"test:///tmp/h{n}.xml",
                vcpus=64,
                memory_mib=262144,
                devices=tuple(devices),
            )
        )
    return hosts


@settings(max_examples=150, deadline=None)
@given(
    hosts=gpu_hosts(),
    needs=st.lists(st.tuples(st.sampled_from(MODELS), st.integers(1, 3)), max_size=10),
    missing_draw=st.data(),
)
def test_devices_are_given_once_whole_and_never_when_held(
    hosts: list[Host], needs: list[tuple[str, int]], missing_draw: st.DataObject
) -> None:
    every = {host.name: host for host in hosts}
    missing = {
        host.name: set(
            missing_draw.draw(st.sets(st.sampled_from([d.key for d in host.devices])))
            if host.devices
            else ()
        )
        for host in hosts
    }
    placer = Placer(hosts, held=missing)
    given_out: dict[str, set[str]] = {name: set() for name in every}
    for model, count in needs:
        before = {name: given_out[name] | missing[name] for name in every}
        placed = placer.place(Need(1, 1024, model, count))
        if isinstance(placed, Placed):
            host = every[placed.host]
            chosen = [d for d in host.devices if d.key in placed.devices]
            assert len(chosen) == count
            assert all(d.model == model for d in chosen)
            assert not set(placed.devices) & before[placed.host]
            groups = {d.iommu_group for d in chosen}
            whole = [d.key for d in host.devices if d.iommu_group in groups]
            assert sorted(whole) == sorted(placed.devices)
            given_out[placed.host] |= set(placed.devices)
        else:
            # Refused only when no host has such a set among its devices not given or missing.
            for name, host in every.items():
                assert pick(host.devices, model, count, before[name]) is None
