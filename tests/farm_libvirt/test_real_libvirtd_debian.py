"""The Debian base reads the config disk too: its service sees the deployment's variables.

Separate from the busybox end-to-end test because it is slower: the Debian base takes about a
minute to make the first time (then it is in the shared test cache) and systemd boots in
about 15 s under TCG.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from formarket.builder.build import Builder, BuildSettings
from formarket.builder.store import DirectoryStore
from formarket.farm import deployer
from formarket.farm.hosts import Host
from formarket.farm.images import console_text
from formarket.farm.libvirt_conn import Connections
from tests.builder.conftest import BASES, shared_cache, write_context
from tests.farm_libvirt.factories import deployment
from tests.farm_libvirt.real import build, qemu_processes
from tests.weightserver import Plan, serving

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("libvirtd"),
    pytest.mark.skipif(os.geteuid() != 0, reason="building images needs root"),
]

DEBIAN_ENV = """\
NAME deb-env
FROM debian:bookworm
MEMORY 1024
DISK 5
COPY ./show.sh /srv/show.sh
ENV GREETING="from the image"
ENTRYPOINT sh /srv/show.sh
"""
# The service's output goes to the journal; the console is where a test can read it.
SHOW = """\
printf 'DEPLOYED[%s|%s]\\n' "$GREETING" "$SETTING_TONE" > /dev/console
exec sleep 3600
"""


def test_the_debian_service_reads_the_config_disk_through_its_unit(
    host: Host, conns: Connections, tmp_path: Path
) -> None:
    result = build(write_context(tmp_path / "ctx", DEBIAN_ENV, {"show.sh": SHOW}), tmp_path)
    conn = conns.get(host)
    dep = deployment(
        "dep-deb000000001",
        kind="agent",
        listing="tinyforge/deb-env",
        settings={"tone": 'it\'s "dry" $(id) `x` \\ back'},
        memory_mib=1024,
    )
    env = {"GREETING": "from the deployment"}
    deployer.start(conn, host, dep, result.manifest, DirectoryStore(tmp_path / "store"), env)
    try:
        deadline = time.monotonic() + 180
        text = ""
        while time.monotonic() < deadline and "DEPLOYED[" not in text:
            time.sleep(1)
            text = console_text(conn, dep.id)
    finally:
        deployer.stop(conn, dep.id)
    line = next((x for x in text.splitlines() if "DEPLOYED[" in x), text[-2000:])
    assert line.strip() == 'DEPLOYED[from the deployment|it\'s "dry" $(id) `x` \\ back]'
    assert qemu_processes([dep.id]) == []


WEIGHTS_SHOW = """\
printf 'WEIGHTS[%s]\\n' "$(cat /weights/hello.txt)" > /dev/console
exec sleep 3600
"""


def test_the_debian_service_finds_its_weights_mounted_read_only(
    host: Host, conns: Connections, tmp_path: Path
) -> None:
    settings = BuildSettings(
        store=tmp_path / "store",
        cache=tmp_path / "cache",
        bases_dir=BASES,
        base_cache=shared_cache(),
        weights_allow_private=True,
    )
    recipe = DEBIAN_ENV.replace("show.sh", "weights.sh")
    with serving() as files:
        weight = files.serve("/hello.txt", Plan(b"hello from the data disk"))
        result = Builder(settings).build(
            write_context(tmp_path / "ctx", recipe, {"weights.sh": WEIGHTS_SHOW}),
            weights=(weight,),
        )
    conn = conns.get(host)
    dep = deployment("dep-deb000000002", memory_mib=1024)
    deployer.start(conn, host, dep, result.manifest, DirectoryStore(settings.store), {})
    try:
        deadline = time.monotonic() + 180
        text = ""
        while time.monotonic() < deadline and "WEIGHTS[" not in text:
            time.sleep(1)
            text = console_text(conn, dep.id)
    finally:
        deployer.stop(conn, dep.id)
    line = next((x for x in text.splitlines() if "WEIGHTS[" in x), text[-2000:])
    assert line.strip() == "WEIGHTS[hello from the data disk]"
    assert qemu_processes([dep.id]) == []
