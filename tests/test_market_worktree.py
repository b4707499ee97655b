"""The writer on a checked-out branch: the commit that won comes into the working tree and the
index, as a fast-forward would, and a path with local changes stops it before it writes.

Each test works in a real clone made by git, and asks git itself (`git status`) whether the
working tree and the index agree with the branch afterwards.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dulwich.objects import ObjectID
from dulwich.repo import Repo
from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.market.refs import find_tip, set_branch
from formarket.market.repository import create_repository, open_repository
from formarket.market.trees import commit_tree, read_path
from formarket.market.writer import (
    ConflictError,
    Identity,
    LocalChangesError,
    commit_changes,
    fast_forward,
)
from tests.gitcli import clone, git, head, status

BOT = Identity("formarket-bot", "bot@example.org")
MAINTAINER = Identity("mara-maintainer", "mara@example.org")
START = {
    "README.md": b"the marketplace\n",
    "registry/governance.yaml": b"maintainers: [mara-maintainer]\nbot: formarket-bot\n",
    "registry/deployments/dep-1.yaml": b"id: dep-1\n",
    "registry/deployments/dep-2.yaml": b"id: dep-2\n",
    "royalties/policy.yaml": b"version: 1\n",
}


def _origin(path: Path) -> Path:
    repo = create_repository(path, bare=True)
    commit_changes(repo, "main", START, "Start the marketplace", MAINTAINER)
    repo.close()
    return path


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _origin(tmp_path_factory.mktemp("origin") / "market.git")


@pytest.fixture
def work(origin: Path, tmp_path: Path) -> Iterator[tuple[Path, Repo]]:
    """A working clone with main checked out, and formarket's handle on it."""
    path = clone(origin, tmp_path / "work")
    repo = open_repository(path)
    yield path, repo
    repo.close()


def _at_tip(repo: Repo, path: str) -> bytes | None:
    tip = find_tip(repo, "main")
    assert tip is not None
    return read_path(repo, commit_tree(repo, tip), path)


def test_a_bot_commit_brings_the_working_tree_along(work: tuple[Path, Repo]) -> None:
    path, repo = work

    commit_changes(
        repo,
        "main",
        {
            "registry/usage/2026/03/01/gateway/gw-1-000001.jsonl.gz": b"usage\n",
            "registry/deployments/dep-1.yaml": b"id: dep-1\nstate: stopped\n",
            "registry/deployments/dep-2.yaml": None,
            "royalties/2026-03/summary.json": b"{}\n",
        },
        "The bot's work",
        BOT,
    )

    assert status(path) == []
    assert (path / "registry/usage/2026/03/01/gateway/gw-1-000001.jsonl.gz").read_bytes() == (
        b"usage\n"
    )
    assert (path / "registry/deployments/dep-1.yaml").read_bytes() == b"id: dep-1\nstate: stopped\n"
    assert not (path / "registry/deployments/dep-2.yaml").exists()
    assert (path / "royalties/2026-03/summary.json").read_bytes() == b"{}\n"
    assert head(path) == find_tip(repo, "main").decode()  # type: ignore[union-attr]
    # git's own view agrees byte for byte: nothing to commit, nothing to restore.
    assert git(path, "diff", "HEAD", "--stat") == ""


def test_deleting_the_last_file_of_a_folder_removes_the_folder(work: tuple[Path, Repo]) -> None:
    path, repo = work

    commit_changes(
        repo,
        "main",
        {"registry/deployments/dep-1.yaml": None, "registry/deployments/dep-2.yaml": None},
        "Remove the deployments",
        BOT,
    )

    assert status(path) == []
    assert not (path / "registry/deployments").exists()
    assert (path / "registry").is_dir()


@pytest.mark.parametrize("staged", [False, True], ids=["edited", "staged"])
def test_a_local_change_on_a_path_to_write_is_refused(
    work: tuple[Path, Repo], staged: bool
) -> None:
    path, repo = work
    target = path / "registry/deployments/dep-1.yaml"
    target.write_bytes(b"id: dep-1\n# my note\n")
    if staged:
        git(path, "add", "registry/deployments/dep-1.yaml")
    before_status, before_tip = status(path), find_tip(repo, "main")

    with pytest.raises(LocalChangesError) as raised:
        commit_changes(
            repo,
            "main",
            {"registry/deployments/dep-1.yaml": b"id: dep-1\nstate: stopped\n", "new": b"x"},
            "Stop dep-1",
            BOT,
        )

    assert raised.value.paths == ("registry/deployments/dep-1.yaml",)
    assert "registry/deployments/dep-1.yaml" in str(raised.value)
    assert "stash" in raised.value.hint
    assert find_tip(repo, "main") == before_tip
    assert status(path) == before_status
    assert target.read_bytes() == b"id: dep-1\n# my note\n"
    assert not (path / "new").exists()


@pytest.mark.parametrize(
    "edit",
    ["untracked file in the way", "deleted", "folder in the way", "file where a folder must be"],
)
def test_other_local_changes_on_a_path_to_write_are_refused(
    work: tuple[Path, Repo], edit: str
) -> None:
    path, repo = work
    if edit == "untracked file in the way":
        (path / "royalties/2026-03").mkdir()
        (path / "royalties/2026-03/summary.json").write_bytes(b"mine\n")
        wanted: dict[str, bytes | None] = {"royalties/2026-03/summary.json": b"{}\n"}
    elif edit == "deleted":
        (path / "registry/deployments/dep-2.yaml").unlink()
        wanted = {"registry/deployments/dep-2.yaml": b"id: dep-2\nstate: stopped\n"}
    elif edit == "folder in the way":
        (path / "registry/usage/x.gz").mkdir(parents=True)
        wanted = {"registry/usage/x.gz": b"usage\n"}
    else:
        (path / "registry/usage").write_bytes(b"not a folder\n")
        wanted = {"registry/usage/x.gz": b"usage\n"}
    before_status, before_tip = status(path), find_tip(repo, "main")

    with pytest.raises(LocalChangesError) as raised:
        commit_changes(repo, "main", wanted, "The bot's work", BOT)

    assert raised.value.paths == tuple(wanted)
    assert find_tip(repo, "main") == before_tip
    assert status(path) == before_status


def test_an_unrelated_local_edit_is_left_alone(work: tuple[Path, Repo]) -> None:
    path, repo = work
    (path / "README.md").write_bytes(b"my draft\n")
    (path / "notes.txt").write_bytes(b"untracked\n")
    git(path, "add", "notes.txt")
    (path / "registry/deployments/dep-1.yaml").write_bytes(b"id: dep-1\n# mine\n")

    commit_changes(repo, "main", {"registry/deployments/dep-3.yaml": b"id: dep-3\n"}, "d", BOT)

    assert sorted(status(path)) == [
        " M README.md",
        " M registry/deployments/dep-1.yaml",
        "A  notes.txt",
    ]
    assert (path / "README.md").read_bytes() == b"my draft\n"
    assert (path / "registry/deployments/dep-3.yaml").read_bytes() == b"id: dep-3\n"


def test_a_branch_that_is_not_checked_out_leaves_the_working_tree_alone(
    work: tuple[Path, Repo],
) -> None:
    path, repo = work
    (path / "registry/deployments/dep-1.yaml").write_bytes(b"mine\n")
    main = find_tip(repo, "main")
    assert main is not None
    set_branch(repo, "other", main)

    commit_changes(repo, "other", {"registry/deployments/dep-1.yaml": b"theirs\n"}, "o", BOT)

    assert status(path) == [" M registry/deployments/dep-1.yaml"]
    assert (path / "registry/deployments/dep-1.yaml").read_bytes() == b"mine\n"
    assert find_tip(repo, "main") == main


def test_a_bare_repository_takes_commits_as_before(tmp_path: Path) -> None:
    bare = open_repository(_origin(tmp_path / "market.git"))

    commit_changes(bare, "main", {"registry/deployments/dep-1.yaml": None}, "d", BOT)

    assert _at_tip(bare, "registry/deployments/dep-1.yaml") is None
    assert not (tmp_path / "market.git" / "index").exists()
    assert sorted(os.listdir(tmp_path)) == ["market.git"]


def test_only_the_commit_that_won_comes_into_the_working_tree(work: tuple[Path, Repo]) -> None:
    path, repo = work
    calls: list[ObjectID | None] = []

    def changes(tip: ObjectID | None) -> dict[str, bytes | None]:
        calls.append(tip)
        if len(calls) == 1:
            # Another writer, on another machine, moves main after we read it.
            assert tip is not None
            set_branch(repo, "elsewhere", tip)
            theirs = commit_changes(repo, "elsewhere", {"theirs.txt": b"t\n"}, "t", BOT)
            set_branch(repo, "main", theirs)
        return {"mine.txt": f"built on {len(calls)}\n".encode()}

    commit_changes(repo, "main", changes, "mine", BOT)

    assert len(calls) == 2
    assert (path / "mine.txt").read_bytes() == b"built on 2\n"
    assert _at_tip(repo, "theirs.txt") == b"t\n"
    # The other writer's file was committed without this working tree: it is not here, and
    # git says so; the writer brought in its own commit's paths only.
    assert not (path / "theirs.txt").exists()
    assert status(path) == ["D  theirs.txt"]


def test_racing_writers_in_one_checkout_lose_nothing(work: tuple[Path, Repo]) -> None:
    path, _repo = work

    def writer(name: str) -> None:
        own = open_repository(path)
        for i in range(10):
            commit_changes(own, "main", {f"{name}/{i}.txt": name.encode()}, f"{name} {i}", BOT)
        own.close()

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert status(path) == []
    for n in range(3):
        assert sorted(os.listdir(path / f"w{n}")) == sorted(f"{i}.txt" for i in range(10))


def test_a_locked_index_is_waited_for_and_never_broken(work: tuple[Path, Repo]) -> None:
    path, repo = work
    lock = path / ".git" / "index.lock"
    lock.write_bytes(b"")
    old = time.time() - 3600
    os.utime(lock, (old, old))  # as old as a commit message that took an hour to write
    before = find_tip(repo, "main")

    with pytest.raises(ConflictError) as raised:
        commit_changes(repo, "main", {"a.txt": b"a\n"}, "a", BOT, attempts=3)

    assert "index.lock" in raised.value.hint
    assert lock.exists()
    assert find_tip(repo, "main") == before
    lock.unlink()
    commit_changes(repo, "main", {"a.txt": b"a\n"}, "a", BOT)
    assert status(path) == []


def test_a_fast_forward_brings_the_working_tree_along(work: tuple[Path, Repo]) -> None:
    path, repo = work
    main = find_tip(repo, "main")
    assert main is not None
    set_branch(repo, "pr-1", main)
    merged = commit_changes(
        repo,
        "pr-1",
        {"registry/models/acme/chat/listing.yaml": b"id: acme/chat\n", "README.md": None},
        "Add acme/chat",
        MAINTAINER,
    )
    (path / "registry/deployments/dep-1.yaml").write_bytes(b"unrelated\n")

    fast_forward(repo, "main", merged)

    assert find_tip(repo, "main") == merged
    assert status(path) == [" M registry/deployments/dep-1.yaml"]
    assert (path / "registry/models/acme/chat/listing.yaml").read_bytes() == b"id: acme/chat\n"
    assert not (path / "README.md").exists()


def test_a_fast_forward_over_a_local_edit_is_refused(work: tuple[Path, Repo]) -> None:
    path, repo = work
    main = find_tip(repo, "main")
    assert main is not None
    set_branch(repo, "pr-1", main)
    merged = commit_changes(repo, "pr-1", {"README.md": b"new\n"}, "Edit", MAINTAINER)
    (path / "README.md").write_bytes(b"mine\n")

    with pytest.raises(LocalChangesError, match=r"README\.md"):
        fast_forward(repo, "main", merged)

    assert find_tip(repo, "main") == main
    assert (path / "README.md").read_bytes() == b"mine\n"


# --- the property ---------------------------------------------------------------------------

TRACKED = ("README.md", "registry/deployments/dep-1.yaml", "registry/deployments/dep-2.yaml")
NEW = ("registry/deployments/dep-3.yaml", "registry/usage/2026/03/01/gateway/g-1.jsonl.gz")
PATHS = st.sampled_from(TRACKED + NEW)
CONTENT = st.binary(min_size=1, max_size=12)
# How a person changed a path locally: in the working tree only, staged, or removed.
EDITS = st.sampled_from(["edited", "staged", "removed"])


def _edit(path: Path, rel: str, how: str) -> bool:
    """Make a local change to `rel`; False when `how` changes nothing for that path."""
    target = path / rel
    if how == "removed":
        if rel not in TRACKED:
            return False
        target.unlink()
        return True
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"a person's edit of " + rel.encode())
    if how == "staged":
        git(path, "add", rel)
    return True


@settings(max_examples=25, deadline=None)
@given(
    written=st.dictionaries(PATHS, st.one_of(st.none(), CONTENT), max_size=4),
    edits=st.dictionaries(PATHS, EDITS, max_size=3),
)
def test_it_refuses_exactly_when_an_edited_path_is_written(
    origin: Path, written: dict[str, bytes | None], edits: dict[str, str]
) -> None:
    # A deletion of a path the branch does not hold is not a change.
    written = {rel: data for rel, data in written.items() if data is not None or rel in TRACKED}
    with tempfile.TemporaryDirectory() as scratch:
        path = clone(origin, Path(scratch) / "work")
        edited = {rel for rel, how in edits.items() if _edit(path, rel, how)}
        before_status = status(path)
        repo = open_repository(path)
        before_tip = find_tip(repo, "main")
        try:
            if edited & set(written):
                with pytest.raises(LocalChangesError) as raised:
                    commit_changes(repo, "main", written, "The bot's work", BOT)
                assert set(raised.value.paths) == edited & set(written)
                assert find_tip(repo, "main") == before_tip
            else:
                commit_changes(repo, "main", written, "The bot's work", BOT)
                for rel, data in written.items():
                    target = path / rel
                    assert (target.read_bytes() if target.exists() else None) == data
                    assert _at_tip(repo, rel) == data
            # Clean apart from the person's own edits, which are as they were.
            assert status(path) == before_status
        finally:
            repo.close()
