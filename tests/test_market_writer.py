"""Writing git: compare-and-swap commits lose nothing when writers race, and a lock left by a
writer that died does not block the next one for ever."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from dulwich.objects import Commit
from dulwich.refs import Ref
from dulwich.repo import Repo

from formarket.market.writer import ConflictError, Identity, commit_changes

BOT = Identity("formarket-bot", "bot@example.org")
MAIN = Ref(b"refs/heads/main")


def _files_at_tip(repo: Repo) -> set[str]:
    commit = repo[repo.refs[MAIN]]
    assert isinstance(commit, Commit)
    return {
        entry.path.decode()
        for entry in repo.object_store.iter_tree_contents(commit.tree)
        if entry.path is not None
    }


def test_racing_writers_lose_nothing(tmp_path: Path) -> None:
    repo = Repo.init(str(tmp_path / "r"), mkdir=True)
    commit_changes(repo, "main", {"start": b"0"}, "start", BOT)

    def writer(name: str) -> None:
        own = Repo(str(tmp_path / "r"))
        for i in range(25):
            commit_changes(own, "main", {f"{name}/{i}": name.encode()}, f"{name} {i}", BOT)

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {"start"} | {f"w{n}/{i}" for n in range(3) for i in range(25)}
    assert _files_at_tip(repo) == expected


def test_a_stale_lock_is_broken(tmp_path: Path) -> None:
    repo = Repo.init(str(tmp_path / "r"), mkdir=True)
    commit_changes(repo, "main", {"a": b"1"}, "a", BOT)
    lock = tmp_path / "r" / ".git" / "refs" / "heads" / "main.lock"
    lock.write_bytes(b"")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    commit_changes(repo, "main", {"b": b"2"}, "b", BOT, stale_lock_seconds=60)
    assert _files_at_tip(repo) == {"a", "b"}
    assert not lock.exists()


def test_a_live_lock_is_respected(tmp_path: Path) -> None:
    repo = Repo.init(str(tmp_path / "r"), mkdir=True)
    commit_changes(repo, "main", {"a": b"1"}, "a", BOT)
    lock = tmp_path / "r" / ".git" / "refs" / "heads" / "main.lock"
    lock.write_bytes(b"")
    with pytest.raises(ConflictError):
        commit_changes(repo, "main", {"b": b"2"}, "b", BOT, attempts=3)
    assert lock.exists()
    assert _files_at_tip(repo) == {"a"}
