"""End to end on a real, private libvirtd (qemu under TCG): build, distribute through the
storage pool, deploy, call, stop, and nothing is left behind."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import httpx  # noqa: TID251 - the deployment is called as a user calls it
import pytest

from formarket.builder.store import DirectoryStore
from formarket.farm import deployer, images
from formarket.farm.hosts import Host
from formarket.farm.images import LOCK_STALE_SECONDS, ROLES, ImageBusy, ensure_image
from formarket.farm.libvirt_conn import Connections, HostConnection
from tests.builder.conftest import write_context
from tests.farm_libvirt.factories import deployment
from tests.farm_libvirt.real import build, qemu_processes

ROOT = Path(__file__).parents[2]
ECHO_CHAT = ROOT / "registry" / "models" / "tinyforge" / "echo-chat" / "Formfile"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("libvirtd"),
    pytest.mark.skipif(os.geteuid() != 0, reason="building images needs root"),
]


def hold_lock(conn: HostConnection, name: str, since: float) -> None:
    conn.create_volume(name, 4096)
    conn.upload(name, io.BytesIO(f"{since:.3f}".encode().ljust(4096, b"\0")), 4096)


def flip_a_byte(path: str) -> None:
    with open(path, "r+b") as handle:
        handle.seek(os.path.getsize(path) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))


def test_echo_chat_is_distributed_deployed_called_and_stopped_without_a_trace(
    host: Host, conns: Connections, tmp_path: Path
) -> None:
    result = build(ECHO_CHAT, tmp_path)
    store = DirectoryStore(tmp_path / "store")
    conn = conns.get(host)
    first, second = deployment("dep-e2e000000001"), deployment("dep-e2e000000002")
    ids = [first.id, second.id]

    started = deployer.start(conn, host, first, result.manifest, store, {})
    assert started.image is not None
    assert started.image.uploaded == ROLES
    assert started.image.in_pool
    assert started.image.disk.startswith(host.pool_path or "?")
    assert started.endpoint is not None
    deployer.wait_healthy(started.endpoint, timeout=90)
    request = {"model": "tinyforge/echo-chat", "messages": [{"role": "user", "content": "ping"}]}
    answer = httpx.post(f"{started.endpoint}/v1/chat/completions", json=request, timeout=30)
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "You said: ping"

    # The same build again: the host's verified cache serves it.
    again = deployer.start(conn, host, second, result.manifest, store, {})
    assert again.image is not None
    assert again.image.uploaded == ()
    assert {r.deployment_id for r in deployer.actual(conn) if r.running} == set(ids)

    for dep in ids:
        assert deployer.stop(conn, dep) is True
        assert deployer.stop(conn, dep) is False
    assert deployer.actual(conn) == []
    assert [v for v in conn.volumes() if v.startswith(tuple(ids))] == []
    assert qemu_processes(ids) == []
    assert not Path(started.console_log).exists()

    # A cached volume that changed is caught by its sha256 and sent again, alone.
    cached = images._image_name(result.manifest)
    assert cached.startswith(result.manifest.build_id)
    disk = conn.volume_path(f"{cached}.disk")
    assert disk is not None
    flip_a_byte(disk)
    lock = f"{cached}.lock"
    # Another worker's upload holds the lock: this one waits, then gives up (and is retried).
    hold_lock(conn, lock, time.time())
    with pytest.raises(ImageBusy):
        ensure_image(conn, store, result.manifest, wait=0.3)
    # A lock left by a worker that died long ago is broken.
    conn.delete_volume(lock)
    hold_lock(conn, lock, time.time() - LOCK_STALE_SECONDS - 60)
    assert ensure_image(conn, store, result.manifest).uploaded == ("disk",)
    assert ensure_image(conn, store, result.manifest).uploaded == ()
    assert conn.volume_path(lock) is None


ENV_ECHO = """\
NAME env-echo
FROM busybox
MEMORY 512
DISK 5
COPY ./serve.sh /srv/serve.sh
ENV GREETING="from the image"
EXPOSE 8080
ENTRYPOINT sh /srv/serve.sh
"""
SERVE = """\
mkdir -p /srv/www
printf '%s|%s|%s' "$GREETING" "$SETTING_TONE" "$MODEL_ENDPOINT" > /srv/www/index.html
exec httpd -f -p 8080 -h /srv/www
"""


def test_the_config_disk_reaches_the_entrypoint_and_wins_over_the_image(
    host: Host, conns: Connections, tmp_path: Path
) -> None:
    result = build(write_context(tmp_path / "ctx", ENV_ECHO, {"serve.sh": SERVE}), tmp_path)
    conn: HostConnection = conns.get(host)
    agent = deployment(
        "dep-e2e000000003",
        kind="agent",
        listing="tinyforge/env-echo",
        model_deployment="dep-e2e000000001",
        settings={"tone": "it's 'dry' $(id)"},
    )
    env = {"GREETING": "from the deployment", "MODEL_ENDPOINT": "http://127.0.0.1:1"}
    store = DirectoryStore(tmp_path / "store")
    started = deployer.start(conn, host, agent, result.manifest, store, env)
    try:
        assert started.endpoint is not None
        deployer.wait_healthy(started.endpoint, timeout=90)
        page = httpx.get(started.endpoint + "/", timeout=30).text
    finally:
        deployer.stop(conn, agent.id)
    assert page == "from the deployment|it's 'dry' $(id)|http://127.0.0.1:1"
    assert qemu_processes([agent.id]) == []
