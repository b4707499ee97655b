"""`formarket validate` without a PATH checks the repository that holds the current folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from formarket.cli import main
from formarket.market.repository import create_repository
from formarket.market.writer import Identity, commit_changes, import_tree
from tests.conftest import ROOT

LISTING = "registry/models/tinyforge/echo-chat"


def _validate(*args: str) -> Result:
    return CliRunner().invoke(main, ["validate", "--no-cache", "--jobs", "1", *args])


@pytest.fixture
def market(tmp_path: Path) -> Path:
    path = tmp_path / "market"
    repo = create_repository(path)
    files = import_tree(ROOT, ("registry", "schemas"))
    commit_changes(repo, "main", files, "Start", Identity("mara-maintainer", "m@example.org"))
    repo.close()
    return path


def test_validate_in_a_listing_folder_finds_the_repository(
    market: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_top = _validate(str(market))
    monkeypatch.chdir(market / LISTING)

    inside = _validate()

    assert inside.exit_code == 0, inside.output
    assert "validated:" in inside.output
    assert inside.output.split("documents")[0] == at_top.output.split("documents")[0]


def test_a_registry_outside_git_is_validated_where_it_is(
    market: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    if any((parent / ".git").exists() for parent in plain.parents):
        pytest.skip("the temporary folder lies inside a git repository")
    shutil.copytree(market / "registry", plain / "registry")
    shutil.copytree(market / "schemas", plain / "schemas")
    at_top = _validate(str(market))
    monkeypatch.chdir(plain)

    result = _validate()

    assert result.exit_code == 0, result.output
    assert result.output.split("documents")[0] == at_top.output.split("documents")[0]


def test_no_registry_here_says_where_to_run_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    result = _validate()

    assert result.exit_code == 1
    assert "no registry/ folder" in result.output
