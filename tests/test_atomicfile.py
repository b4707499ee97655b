"""Replacing a small file all at once: the new bytes or the old, never half, no stray left."""

from __future__ import annotations

import pickle
import stat
from pathlib import Path

import pytest

from formarket.atomicfile import write_atomically, writing_atomically


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_file_is_written_whole_in_a_new_folder_readable_by_its_owner(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "state.json"
    write_atomically(target, b"one")
    write_atomically(target, b"two", durable=False)
    assert target.read_bytes() == b"two"
    assert _mode(target) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]


def test_a_mode_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    write_atomically(target, b"{}", durable=False, mode=0o644)
    assert _mode(target) == 0o644


def test_a_writer_streams_into_the_file(tmp_path: Path) -> None:
    target = tmp_path / "cache.pickle"
    with writing_atomically(target, durable=False) as f:
        pickle.dump({"a": 1}, f)
    assert pickle.loads(target.read_bytes()) == {"a": 1}


def test_a_failed_writer_leaves_the_old_file_and_no_stray(tmp_path: Path) -> None:
    target = tmp_path / "cache.pickle"
    target.write_bytes(b"old")

    def write_half() -> None:
        with writing_atomically(target) as f:
            f.write(b"half of the n")
            raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError):
        write_half()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.pickle"]
