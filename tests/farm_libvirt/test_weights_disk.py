"""A model's data disk of weights reaches its domain read-only: by its store path on simulated
hosts, uploaded once into the pool of a real libvirtd and shared there, and the VM reads its
files at /weights."""

from __future__ import annotations

import os
from pathlib import Path
from xml.etree import ElementTree as ET

import httpx  # noqa: TID251 - the deployment is called as a user calls it
import pytest

from formarket.builder.build import Builder, BuildSettings
from formarket.builder.manifest import BuildManifest, DataDisk
from formarket.builder.store import DirectoryStore
from formarket.farm import deployer
from formarket.farm.domain import domain_name
from formarket.farm.hosts import Host
from formarket.farm.libvirt_conn import Connections, HostConnection
from tests.builder.conftest import BASES, shared_cache, write_context
from tests.farm_libvirt.factories import deployment, manifest, sim_host
from tests.farm_libvirt.real import qemu_processes
from tests.weightserver import Plan, serving

WEIGHTS = DataDisk(id="d" * 64, size=4096, sha256="e" * 64, files=("model.bin",))


def disks(xml: str) -> list[tuple[str | None, str | None, bool]]:
    """(target, source, read-only) of each disk of a domain's XML, in order."""
    found = []
    for disk in ET.fromstring(xml).iter("disk"):
        source = disk.find("source")
        target = disk.find("target")
        found.append(
            (
                None if target is None else target.get("dev"),
                None if source is None else source.get("file"),
                disk.find("readonly") is not None,
            )
        )
    return found


def with_weights(base: BuildManifest, disk: DataDisk = WEIGHTS) -> BuildManifest:
    return base.model_copy(update={"data_disk": disk})


def test_a_simulated_host_attaches_the_stores_data_disk_read_only(tmp_path: Path) -> None:
    host = sim_host(tmp_path, "h1")
    store = DirectoryStore(tmp_path / "store")
    conn = HostConnection.open(host)

    deployer.start(conn, host, deployment("dep-0000000000e1"), with_weights(manifest()), store, {})
    plain = deployer.start(
        conn, host, deployment("dep-0000000000e2"), manifest("cd" * 32), store, {}
    )

    dom = conn.domain(domain_name("dep-0000000000e1"))
    assert dom is not None
    assert [(t, ro) for t, _s, ro in disks(dom.xml)] == [
        ("vda", False),
        ("vdb", True),
        ("vdc", True),
    ]
    assert disks(dom.xml)[2][1] == str(store.data_disk(WEIGHTS.id))
    other = conn.domain(plain.domain)
    assert other is not None
    assert len(disks(other.xml)) == 2  # no weights, no data disk
    assert not any(name.startswith("weights-") for name in conn.volumes())


@pytest.mark.slow
@pytest.mark.xdist_group("libvirtd")
@pytest.mark.skipif(os.geteuid() != 0, reason="building images needs root")
def test_versions_sharing_weights_share_one_volume_and_read_it(
    host: Host, conns: Connections, tmp_path: Path
) -> None:
    body = os.urandom(200_000)
    settings = BuildSettings(
        store=tmp_path / "store",
        cache=tmp_path / "cache",
        bases_dir=BASES,
        base_cache=shared_cache(),
        weights_allow_private=True,
    )
    store = DirectoryStore(settings.store)
    conn = conns.get(host)
    server = (
        "NAME weights-reader\nFROM busybox\nVCPU 1\nMEMORY 512\nDISK 5\nRUN echo {v} > /srv/v\n"
        "EXPOSE 8080\nENTRYPOINT httpd -f -p 8080 -h /weights\n"
    )
    deps = [deployment("dep-0000000000f1"), deployment("dep-0000000000f2")]
    with serving() as files:
        weight = files.serve("/model.bin", Plan(body))
        built = [
            Builder(settings).build(
                write_context(tmp_path / v, server.format(v=v)), weights=(weight,)
            )
            for v in ("one", "two")
        ]
    assert built[0].manifest.build_id != built[1].manifest.build_id
    try:
        started = [
            deployer.start(conn, host, dep, result.manifest, store, {})
            for dep, result in zip(deps, built, strict=True)
        ]
        answers = []
        for each in started:
            assert each.endpoint is not None
            deployer.wait_healthy(each.endpoint, timeout=90)
            answers.append(httpx.get(each.endpoint + "/model.bin", timeout=30).content)
        volumes = [name for name in conn.volumes() if name.startswith("weights-")]
    finally:
        for dep in deps:
            deployer.stop(conn, dep.id)
    assert answers == [body, body]
    # One volume and its marker, shared by both versions; it outlives their deployments.
    assert len(volumes) == 2
    assert any(name.endswith(".img") for name in volumes)
    assert [name for name in conn.volumes() if name.startswith("weights-")] == volumes
    assert qemu_processes([dep.id for dep in deps]) == []
