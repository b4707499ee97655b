"""Farm fixtures: a marketplace repository made from the starter registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from dulwich.repo import Repo

from formarket.market.writer import Identity, commit_changes, import_tree

ROOT = Path(__file__).parents[2]


@pytest.fixture
def marketplace(tmp_path: Path) -> Repo:
    """A bare-bones marketplace: the starter registry and builder data on `main`."""
    repo = Repo.init(str(tmp_path / "marketplace"), mkdir=True)
    files = import_tree(ROOT, ("registry", "builder", "royalties"))
    commit_changes(repo, "main", files, "Starter registry", Identity("mara", "mara@example.org"))
    return repo
