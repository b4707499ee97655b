"""Leases on handed-out work: taken once, expire on their own, taken in bulk; and one
reconcile cycle at a time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dulwich.repo import Repo

from formarket.farm import operations
from formarket.farm.leases import RedisLeases, SqliteLeases
from formarket.farm.settings import FarmSettings
from tests.redis_server import RedisServer


def check(leases: SqliteLeases | RedisLeases) -> None:
    assert leases.take("deploy:dep-1", "host-a", 30)
    assert not leases.take("deploy:dep-1", "host-b", 30)
    assert leases.take_all([("deploy:dep-1", "x", 30), ("stop:dep-2@a", "a", 30)]) == {
        "stop:dep-2@a"
    }
    assert leases.held() == {"deploy:dep-1": "host-a", "stop:dep-2@a": "a"}
    leases.release("deploy:dep-1")
    assert leases.take("deploy:dep-1", "host-c", 0.2)
    time.sleep(0.3)
    assert "deploy:dep-1" not in leases.held()
    assert leases.take("deploy:dep-1", "host-d", 30)  # an expired lease is free again


def test_sqlite_leases(tmp_path: Path) -> None:
    check(SqliteLeases(tmp_path / "leases.sqlite"))


def test_redis_leases(redis_server: RedisServer) -> None:
    check(RedisLeases(redis_server.url))


def test_one_reconcile_cycle_at_a_time(tmp_path: Path, marketplace: Repo) -> None:
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("hosts:\n  - {name: a, uri: 'test:///default', vcpus: 2, memory_mib: 2048}\n")
    settings = FarmSettings(repo=Path(marketplace.path), state=tmp_path / "state", hosts=hosts)
    leases = SqliteLeases(tmp_path / "state" / "leases.sqlite")
    assert leases.take(operations.RECONCILE_LEASE, "elsewhere", 30)
    with pytest.raises(operations.ReconcileBusy):
        operations.reconcile_once(settings, lambda _a: None, leases=leases)
    leases.release(operations.RECONCILE_LEASE)
    cycle = operations.reconcile_once(settings, lambda _a: None, leases=leases, meter=False)
    assert cycle.plan.idle
    assert operations.RECONCILE_LEASE not in leases.held()
