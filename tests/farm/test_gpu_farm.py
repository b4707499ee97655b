"""The farm's reconciler with GPU hosts (libvirt's test driver, GPUs as node devices): a GPU
deployment whose first device is missing from its host fails to start with that device named,
and the next cycle places it again on a device that is there; a stop frees its devices."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dulwich.repo import Repo

from formarket.farm import operations
from formarket.farm.desired import set_state, submit
from formarket.farm.devices import GpuDevice
from formarket.farm.libvirt_conn import Connections
from formarket.farm.settings import FarmSettings
from formarket.market.governance import bot_identity
from formarket.standins.libvirt_test import write_test_host
from tests.builder.conftest import shared_cache
from tests.farm import factories

pytestmark = pytest.mark.slow

L4 = [
    GpuDevice(model="L4", address="0000:41:00.0", iommu_group=10),
    GpuDevice(model="L4", address="0000:42:00.0", iommu_group=11),
]


def test_a_missing_device_is_named_and_the_deployment_placed_again(
    tmp_path: Path, marketplace: Repo
) -> None:
    # One host lists two L4s; the first is gone from the host itself.
    uri = write_test_host(tmp_path / "gpu.xml", "gpu", 16, 65536, L4[1:])
    inventory = {
        "hosts": [
            {
                "name": "gpu",
                "uri": uri,
                "vcpus": 16,
                "memory_mib": 65536,
                "devices": [d.model_dump(mode="json", exclude_none=True) for d in L4],
                "domain_type": "qemu",
            }
        ]
    }
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(inventory))
    settings = FarmSettings(
        repo=Path(marketplace.path),
        state=tmp_path / "state",
        store=tmp_path / "store",
        cache=tmp_path / "cache",
        base_cache=shared_cache(),
        hosts=tmp_path / "hosts.yaml",
    )
    pool = Connections()
    dep = factories.deployment("dep-0000000f0001", version="1.1.0", gpu={"model": "L4", "count": 1})
    identity = bot_identity(marketplace, "main")
    submit(marketplace, "main", [dep], "a GPU deployment", identity)

    def cycle() -> operations.Cycle:
        return operations.reconcile_once(
            settings, operations.run_here(settings, pool), pool=pool, meter=False
        )

    cycles = [cycle() for _ in range(4)]
    records = operations.observe(operations.inventory(settings).hosts, pool).records["gpu"]

    failures = [failure for c in cycles for failure in c.failed]
    assert len(failures) == 1
    assert (
        "L4 at 0000:41:00.0 are listed in the host inventory but libvirt does not" in (failures[0])
    )
    assert [(r.deployment_id, r.devices) for r in records] == [(dep.id, ("0000:42:00.0",))]
    assert cycles[-1].plan.idle

    set_state(marketplace, "main", dep.id, "stopped", "stop it", identity)
    cycle()
    assert operations.observe(operations.inventory(settings).hosts, pool).records["gpu"] == []
    pool.close()
