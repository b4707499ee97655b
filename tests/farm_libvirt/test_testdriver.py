"""The deployer on simulated hosts (libvirt's test driver): no disk, no process, real libvirt."""

from __future__ import annotations

from pathlib import Path

import pytest

from formarket.builder.store import DirectoryStore
from formarket.farm import deployer
from formarket.farm.hosts import Host
from formarket.farm.images import ensure_image
from formarket.farm.libvirt_conn import Connections, HostConnection, HostError, HostUnreachable
from tests.farm_libvirt.factories import deployment, manifest, sim_host


def test_two_hosts_define_start_list_and_stop_independently(tmp_path: Path) -> None:
    hosts = [sim_host(tmp_path, "h1"), sim_host(tmp_path, "h2")]
    store = DirectoryStore(tmp_path / "store")
    conns = Connections()
    model = deployment("dep-00000000000a")
    agent = deployment(
        "dep-00000000000b",
        kind="agent",
        listing="tinyforge/faq-bot",
        model_deployment="dep-00000000000a",
        settings={"tone": "dry"},
    )
    first = deployer.start(conns.get(hosts[0]), hosts[0], model, manifest(), store, {})
    second = deployer.start(
        conns.get(hosts[1]),
        hosts[1],
        agent,
        manifest("cd" * 32),
        store,
        {"MODEL_ENDPOINT": first.endpoint or ""},
    )
    assert first.endpoint == f"http://127.0.0.1:{first.ports[0][1]}"
    assert second.domain == "formarket-dep-00000000000b"

    on_h1 = deployer.actual(conns.get(hosts[0]))
    on_h2 = deployer.actual(conns.get(hosts[1]))
    assert [(r.deployment_id, r.running, r.build_id) for r in on_h1] == [
        ("dep-00000000000a", True, "ab" * 32)
    ]
    assert [(r.kind, r.listing_id, r.model_deployment) for r in on_h2] == [
        ("agent", "tinyforge/faq-bot", "dep-00000000000a")
    ]
    assert on_h2[0].endpoint == second.endpoint

    assert deployer.stop(conns.get(hosts[0]), model.id) is True
    assert deployer.stop(conns.get(hosts[0]), model.id) is False  # idempotent
    assert deployer.actual(conns.get(hosts[0])) == []
    assert conns.get(hosts[0]).volumes(prefix=model.id) == []
    assert [r.deployment_id for r in deployer.actual(conns.get(hosts[1]))] == [agent.id]


def test_a_test_host_references_store_paths_and_uploads_nothing(tmp_path: Path) -> None:
    host = sim_host(tmp_path, "h1")
    store = DirectoryStore(tmp_path / "store")
    conn = HostConnection.open(host)
    image = ensure_image(conn, store, manifest())
    assert image.uploaded == ()
    assert not image.in_pool
    assert image.disk == str(store.image_dir("ab" * 32) / "disk.qcow2")
    started = deployer.start(conn, host, deployment("dep-00000000000c"), manifest(), store, {})
    assert started.image == image
    assert sorted(conn.volumes()) == [
        "dep-00000000000c.config.img",
        "dep-00000000000c.overlay.qcow2",
    ]


def test_starting_again_is_idempotent_and_a_stopped_or_older_domain_is_replaced(
    tmp_path: Path,
) -> None:
    host = sim_host(tmp_path, "h1")
    store = DirectoryStore(tmp_path / "store")
    conn = HostConnection.open(host)
    dep = deployment("dep-00000000000d")
    first = deployer.start(conn, host, dep, manifest(), store, {})
    again = deployer.start(conn, host, dep, manifest(), store, {})
    assert again.ports == first.ports
    assert again.image is None  # left alone
    newer = deployer.start(conn, host, dep, manifest("ef" * 32), store, {})
    assert newer.image is not None
    assert [r.build_id for r in deployer.actual(conn)] == ["ef" * 32]
    assert conn.power_off("formarket-dep-00000000000d")
    restarted = deployer.start(conn, host, dep, manifest("ef" * 32), store, {})
    assert restarted.image is not None  # made again, with a fresh config disk
    assert [r.running for r in deployer.actual(conn)] == [True]


def test_remote_hosts_get_the_first_ports_no_domain_uses(tmp_path: Path) -> None:
    host = sim_host(tmp_path, "far", address="10.1.2.3")
    store = DirectoryStore(tmp_path / "store")
    conn = HostConnection.open(host)
    two = manifest(expose=(8080, 9090))
    a = deployer.start(conn, host, deployment("dep-0000000000e1"), two, store, {})
    b = deployer.start(conn, host, deployment("dep-0000000000e2"), two, store, {})
    assert a.ports == ((8080, 20000), (9090, 20001))
    assert b.ports == ((8080, 20002), (9090, 20003))
    assert b.endpoint == "http://10.1.2.3:20002"


def test_a_test_host_without_a_pool_path_gets_a_pool_of_records(tmp_path: Path) -> None:
    host = sim_host(tmp_path, "h1").model_copy(update={"pool_path": None})
    conn = HostConnection.open(host)
    assert conn.ensure_pool() == "/formarket-pool"


def test_an_unreachable_host_is_reported_and_marked_down(tmp_path: Path) -> None:
    dead = Host(
        name="dead",
        uri=f"qemu+unix:///session?socket={tmp_path}/no-such-sock",
        vcpus=1,
        memory_mib=128,
    )
    conns = Connections()
    with pytest.raises(HostUnreachable) as caught:
        conns.get(dead)
    assert caught.value.host == "dead"
    assert "dead" in conns.down()
    alive = sim_host(tmp_path, "h1")
    assert conns.get(alive) is conns.get(alive)  # one connection per host, kept
    assert conns.down().keys() == {"dead"}


def test_libvirt_refusals_become_host_errors(tmp_path: Path) -> None:
    conn = HostConnection.open(sim_host(tmp_path, "h1"))
    with pytest.raises(HostError) as caught:
        conn.define_and_start("<domain type='qemu'><name>broken</name></domain>")
    assert not isinstance(caught.value, HostUnreachable)
