"""A private libvirtd shared by the tests of a worker that need one (xdist group "libvirtd")."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from formarket.farm.hosts import Host
from formarket.farm.libvirt_conn import Connections
from formarket.farm.libvirtd import ensure_libvirtd, local_host, stop_libvirtd


@pytest.fixture(scope="session")
def host() -> Iterator[Host]:
    # Not under pytest's tmp_path: the daemon runs unprivileged and must reach its folder.
    workdir = Path(tempfile.mkdtemp(prefix="fm-libvirtd-", dir="/tmp"))
    try:
        uri = ensure_libvirtd(workdir)
        assert ensure_libvirtd(workdir) == uri  # a running daemon is reused
        yield local_host(workdir)
    finally:
        stop_libvirtd(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def conns() -> Iterator[Connections]:
    pool = Connections()
    yield pool
    pool.close()
