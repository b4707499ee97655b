"""The private libvirtd's checks that need no daemon."""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from formarket.farm.libvirt_conn import Connections, HostUnreachable
from formarket.farm.libvirtd import (
    LibvirtdError,
    ensure_libvirtd,
    libvirtd_uri,
    local_host,
    stop_libvirtd,
)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the daemon to another user")
def test_a_work_dir_the_daemon_user_cannot_reach_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(LibvirtdError) as caught:
        ensure_libvirtd(private / "libvirtd")
    assert str(private) in caught.value.message
    assert not (private / "libvirtd" / "libvirtd.pid").exists()


def test_a_work_dir_too_deep_for_a_socket_is_refused(tmp_path: Path) -> None:
    deep = Path("/tmp") / ("d" * 120)
    with pytest.raises(LibvirtdError):
        ensure_libvirtd(deep)
    assert not deep.exists()


def test_stopping_a_daemon_that_never_ran_is_harmless(tmp_path: Path) -> None:
    assert stop_libvirtd(tmp_path) is False


def test_the_local_host_names_the_daemons_socket_and_pool(tmp_path: Path) -> None:
    host = local_host(tmp_path, "here")
    assert host.uri == libvirtd_uri(tmp_path)
    assert host.uri.endswith(f"socket={tmp_path}/run/libvirt/libvirt-sock")
    assert (host.domain_type, host.pool_path) == ("qemu", f"{tmp_path}/pool")


@pytest.mark.xdist_group("libvirtd")
def test_a_host_that_stops_answering_is_marked_down_until_it_answers_again() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="fm-libvirtd-", dir="/tmp"))
    conns = Connections()
    try:
        host = local_host(workdir)
        ensure_libvirtd(workdir)
        first = conns.get(host)
        assert first.ensure_pool() == host.pool_path
        assert stop_libvirtd(workdir) is True
        with pytest.raises(HostUnreachable):
            conns.get(host)
        assert set(conns.down()) == {"local"}
        ensure_libvirtd(workdir)
        again = conns.get(host)
        assert again is not first
        assert conns.down() == {}
        assert again.volumes() == []  # the pool survived the restart, empty
    finally:
        conns.close()
        stop_libvirtd(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.xdist_group("libvirtd")
def test_two_callers_at_once_share_one_daemon() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="fm-libvirtd-", dir="/tmp"))
    try:
        with ThreadPoolExecutor(2) as pool:
            uris = list(pool.map(lambda _: ensure_libvirtd(workdir), range(2)))
        assert uris == [libvirtd_uri(workdir)] * 2
        daemons = [
            p
            for p in Path("/proc").glob("[0-9]*")
            if _cmdline(p).startswith(b"/usr/sbin/libvirtd")
            and str(workdir).encode() in _cmdline(p)
        ]
        assert len(daemons) == 1
    finally:
        stop_libvirtd(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
