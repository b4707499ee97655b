"""Farm fixtures: a marketplace repository made from the starter registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dulwich.repo import Repo

from formarket.gitstore import Identity, commit_changes, import_tree
from tests.redis_server import RedisServer

ROOT = Path(__file__).parents[2]


@pytest.fixture
def marketplace(tmp_path: Path) -> Repo:
    """A bare-bones marketplace: the starter registry and builder data on `main`."""
    repo = Repo.init(str(tmp_path / "marketplace"), mkdir=True)
    files = import_tree(ROOT, ("registry", "builder", "royalties"))
    commit_changes(repo, "main", files, "Starter registry", Identity("mara", "mara@example.org"))
    return repo


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis of this test's own (never the machine's shared one)."""
    with RedisServer(tmp_path / "redis") as server:
        yield server
