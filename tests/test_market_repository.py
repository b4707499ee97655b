"""Opening the marketplace repository from any folder inside it, as git does."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from formarket.errors import NotFoundError
from formarket.market.refs import checked_out_branch, find_tip
from formarket.market.repository import create_repository, open_repository
from formarket.market.writer import Identity, commit_changes
from formarket.process import Runner
from tests.gitcli import clone, git

BOT = Identity("formarket-bot", "bot@example.org")


def _market(path: Path) -> Path:
    repo = create_repository(path)
    commit_changes(repo, "main", {"registry/models/acme/chat/listing.yaml": b"id: x\n"}, "s", BOT)
    repo.close()
    return path


def test_a_folder_deep_inside_finds_the_top(tmp_path: Path) -> None:
    top = _market(tmp_path / "market")
    deep = top / "registry" / "models" / "acme" / "chat"
    assert deep.is_dir()

    repo = open_repository(deep)

    assert Path(repo.path) == top
    assert find_tip(repo, "main") is not None


def test_the_current_folder_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    top = _market(tmp_path / "market")
    monkeypatch.chdir(top / "registry" / "models")

    assert Path(open_repository().path) == top
    assert Path(open_repository(".").path) == top


def test_a_clone_and_a_linked_worktree_are_found_from_inside(tmp_path: Path) -> None:
    origin = _market(tmp_path / "origin")
    work = clone(origin, tmp_path / "work")
    git(work, "worktree", "add", "--quiet", "-b", "side", str(tmp_path / "side"))

    assert Path(open_repository(work / "registry" / "models").path) == work
    linked = open_repository(tmp_path / "side" / "registry")
    assert Path(linked.path) == tmp_path / "side"
    assert checked_out_branch(linked) == "side"
    assert checked_out_branch(open_repository(work)) == "main"


def test_a_bare_repository_opens_from_its_own_folder(tmp_path: Path) -> None:
    bare = create_repository(tmp_path / "market.git", bare=True)
    commit_changes(bare, "main", {"a": b"1"}, "a", BOT)

    repo = open_repository(tmp_path / "market.git")

    assert repo.bare
    assert find_tip(repo, "main") == find_tip(bare, "main")


def test_no_repository_is_an_error_with_a_hint(tmp_path: Path) -> None:
    plain = tmp_path / "plain" / "folder"
    plain.mkdir(parents=True)
    if any((parent / ".git").exists() for parent in plain.parents):
        pytest.skip("the temporary folder lies inside a git repository")

    with pytest.raises(NotFoundError) as raised:
        open_repository(plain)

    assert "not inside a git repository" in raised.value.message
    assert "--repo" in raised.value.hint


def test_without_searching_up_only_the_folder_itself_counts(tmp_path: Path) -> None:
    top = _market(tmp_path / "market")

    with pytest.raises(NotFoundError):
        open_repository(top / "registry", search_up=False)
    assert Path(open_repository(top, search_up=False).path) == top


def test_a_folder_that_does_not_exist_is_not_looked_above(tmp_path: Path) -> None:
    top = _market(tmp_path / "market")

    with pytest.raises(NotFoundError) as raised:
        open_repository(top / "no-such-folder")

    assert "no folder" in raised.value.message


def test_a_new_repository_names_its_branch(tmp_path: Path) -> None:
    repo = create_repository(tmp_path / "new", branch="trunk")

    assert checked_out_branch(repo) == "trunk"
    assert not repo.bare
    assert os.path.isdir(tmp_path / "new" / ".git")


def test_finding_the_repository_loads_no_git_library(tmp_path: Path) -> None:
    top = _market(tmp_path / "market")
    probe = (
        "import sys\n"
        "from formarket.market.discovery import find_repository\n"
        f"print(find_repository({str(top / 'registry')!r}))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dulwich'))\n"
    )

    out = Runner().run([sys.executable, "-c", probe]).stdout.splitlines()

    assert out == [str(top), "[]"]
