"""The qcow2 writer, checked by qemu itself, and the sweep of raw files left in memory."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.builder.image import memory_has_room, sweep_leftovers, write_qcow2
from formarket.process import Runner
from tests.builder.conftest import TINY, Build, image_file, write_context

MIB = 1 << 20
CLUSTER = 1 << 16


def _raw(path: Path, size: int, writes: list[tuple[int, bytes]]) -> Path:
    """A sparse raw image of `size` bytes holding `writes` (offset, bytes)."""
    with path.open("wb") as handle:
        handle.truncate(size)
        for offset, data in writes:
            handle.seek(offset)
            handle.write(data)
    return path


def _check_same(raw: Path, qcow2: Path, digest: str) -> dict[str, object]:
    """qemu-img finds no error or leak, reads the same bytes as the raw image; qemu's check."""
    runner = Runner()
    done = runner.run(["qemu-img", "check", "--output=json", "-f", "qcow2", qcow2])
    report: dict[str, object] = json.loads(done.stdout)
    assert report.get("check-errors", 0) == 0
    assert report.get("leaks", 0) == 0
    assert report.get("corruptions", 0) == 0
    runner.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, qcow2])
    info = json.loads(runner.run(["qemu-img", "info", "--output=json", qcow2]).stdout)
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == raw.stat().st_size
    assert digest == hashlib.sha256(qcow2.read_bytes()).hexdigest()
    return report


def test_a_sparse_image_keeps_only_its_data_clusters(tmp_path: Path) -> None:
    size = 1536 * MIB  # three L2 tables' worth of guest space
    writes = [
        (0, b"boot"),
        (512 * MIB - 100, os.urandom(300)),  # across the first L2 table's edge
        (700 * MIB, bytes(4 * CLUSTER)),  # written, but only zeros: kept out
        (1536 * MIB - 4096, b"\xff" * 4096),
    ]
    raw = _raw(tmp_path / "disk.raw", size, writes)
    qcow2 = tmp_path / "disk.qcow2"
    report = _check_same(raw, qcow2, write_qcow2(raw, qcow2))
    # boot, two across the edge, the last one: the zeros cost nothing.
    assert report["allocated-clusters"] == 4


def test_an_empty_image_and_one_ending_inside_a_cluster(tmp_path: Path) -> None:
    empty = _raw(tmp_path / "empty.raw", 64 * MIB, [])
    _check_same(empty, tmp_path / "empty.qcow2", write_qcow2(empty, tmp_path / "empty.qcow2"))
    odd = _raw(tmp_path / "odd.raw", 3 * CLUSTER + 4096, [(3 * CLUSTER + 10, b"tail")])
    _check_same(odd, tmp_path / "odd.qcow2", write_qcow2(odd, tmp_path / "odd.qcow2"))


@settings(max_examples=15, deadline=None)
@given(
    sectors=st.integers(min_value=1, max_value=(1200 * MIB) // 512),
    writes=st.lists(
        st.tuples(st.floats(min_value=0, max_value=1), st.binary(min_size=1, max_size=3 * CLUSTER)),
        max_size=8,
    ),
)
def test_any_raw_image_reads_back_the_same_through_qemu(
    tmp_path_factory: pytest.TempPathFactory, sectors: int, writes: list[tuple[float, bytes]]
) -> None:
    folder = tmp_path_factory.mktemp("qcow2")
    size = sectors * 512
    placed = []
    for at, data in writes:
        data = data[:size]
        placed.append((min(int(at * size), size - len(data)), data))
    raw = _raw(folder / "disk.raw", size, placed)
    _check_same(raw, folder / "disk.qcow2", write_qcow2(raw, folder / "disk.qcow2"))


def test_the_sweep_removes_only_old_unlocked_raw_files(tmp_path: Path) -> None:
    old = tmp_path / "formarket-old.raw"
    in_use = tmp_path / "formarket-in-use.raw"
    fresh = tmp_path / "formarket-fresh.raw"
    other = tmp_path / "someone-else.raw"
    for path in (old, in_use, fresh, other):
        path.write_bytes(b"x")
    # Anyone may write in /dev/shm: a fifo must not hang the sweep, a link is not followed.
    os.mkfifo(tmp_path / "formarket-fifo.raw")
    (tmp_path / "formarket-link.raw").symlink_to(other)
    hour_ago = time.time() - 3600
    for path in (old, in_use, other, tmp_path / "formarket-fifo.raw"):
        os.utime(path, (hour_ago, hour_ago))
    with in_use.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert sweep_leftovers(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "formarket-fifo.raw",
        "formarket-fresh.raw",
        "formarket-in-use.raw",
        "formarket-link.raw",
        "someone-else.raw",
    ]


def test_memory_has_no_room_for_an_absurd_disk() -> None:
    assert memory_has_room(1 << 60) is False


def test_a_build_that_changes_no_layer_links_the_disk_it_already_has(
    build: Build, tmp_path: Path
) -> None:
    files = {"www/index.html": "<h1>hi</h1>\n"}
    first = build(write_context(tmp_path / "a", TINY, files))
    more = TINY.replace("MEMORY 512", "MEMORY 1024")
    second = build(write_context(tmp_path / "b", more, files))
    assert second.manifest.build_id != first.manifest.build_id
    assert second.manifest.artifact("disk") == first.manifest.artifact("disk")
    disk = next(s for s in second.manifest.steps if s.name == "disk")
    assert first.manifest.build_id[:16] in disk.title
    assert (second.image_dir / "disk.qcow2").samefile(first.image_dir / "disk.qcow2")

    # Without the step cache nothing is reused, the disk included.
    third = build(
        write_context(tmp_path / "c", TINY.replace("MEMORY 512", "MEMORY 768"), files),
        step_cache=False,
    )
    assert not (third.image_dir / "disk.qcow2").samefile(first.image_dir / "disk.qcow2")
    # A changed layer makes a new disk.
    fourth = build(write_context(tmp_path / "d", TINY, {"www/index.html": "<h1>ho</h1>\n"}))
    assert not (fourth.image_dir / "disk.qcow2").samefile(first.image_dir / "disk.qcow2")
    assert image_file(fourth.image_dir, "/srv/www/index.html", tmp_path) == b"<h1>ho</h1>\n"
