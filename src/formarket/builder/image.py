"""From the stack of layers to a bootable disk: an ext4 filesystem of the declared size, as qcow2.

`mke2fs -d` fills the filesystem from the merged layers without a loop device (these machines
have no partitions on loop devices, no device-mapper, no nbd); the raw file is sparse, so a
20 GiB disk costs what its files weigh. The filesystem's UUID and hash seed come from the
disk's inputs (the builder's disk key), so they are stable too.

The raw file is made in memory (/dev/shm) when there is room: on a disk filesystem, mke2fs
took half as long again. It is then written as qcow2 here rather than by `qemu-img convert`:
the clusters that hold data are known from the sparse file's extents, so the qcow2 can be
written front to back, and hashed while it is written instead of read again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import struct
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from formarket.builder.sandbox import Sandbox
from formarket.process import ProcessError, Runner

__all__ = [
    "MEMORY",
    "data_extents",
    "make_disk",
    "sweep_leftovers",
    "virtual_size",
    "write_qcow2",
]

GIB = 1024**3
MEMORY = Path("/dev/shm")  # noqa: S108 - a tmpfs on every Linux host; falls back to scratch
_LEFTOVER_AGE = 600.0  # seconds; a raw file this old and unlocked was left by a killed build

_CLUSTER_BITS = 16  # 64 KiB clusters, qemu's default
_CLUSTER = 1 << _CLUSTER_BITS
_ZERO = bytes(_CLUSTER)
_L2_ENTRIES = _CLUSTER // 8
_REFCOUNTS_PER_BLOCK = _CLUSTER // 2  # refcount_order 4: 16-bit refcounts
_COPIED = 1 << 63  # the cluster's refcount is exactly one: qemu may write it in place
_RUN = 32  # clusters per read and write: 2 MiB (larger buffers cost more than they save)
# QCOW2 version 3 header, 104 bytes: the bytes after it are zero, which ends the extensions.
_HEADER = struct.Struct(">4sIQIIQIIQQIIQQQQII")


def make_disk(
    sandbox: Sandbox,
    lowers: Sequence[Path],
    disk_gib: int,
    identity: str,
    scratch: Path,
    out: Path,
    keep: Callable[[Path], None] | None = None,
) -> str:
    """Write `out` (qcow2) holding an ext4 root filesystem of `disk_gib` GiB; its sha256.
    `identity` (hex) gives the filesystem's UUID and hash seed; `keep`, when given, is handed
    the raw file once the qcow2 is written, to move it away for later builds."""
    scratch.mkdir(parents=True, exist_ok=True)
    size = disk_gib * GIB
    folders = [MEMORY, scratch] if memory_has_room(size) else [scratch]
    for folder in folders:
        with _raw_image(folder) as raw:
            try:
                sandbox.export(lowers, _mke2fs(raw, identity, disk_gib), scratch)
            except ProcessError:
                if folder == scratch or memory_has_room(size):
                    raise
                continue  # other builds filled the memory meanwhile: again, on disk
            sha256 = write_qcow2(raw, out)
            if keep is not None:
                keep(raw)
            return sha256
    raise AssertionError("the scratch folder is always the last one tried")


def _mke2fs(raw: Path, identity: str, disk_gib: int) -> list[str]:
    fs_uuid = str(uuid.UUID(identity[:32]))
    return [
        "mke2fs",
        "-q",
        "-t",
        "ext4",
        "-L",
        "root",
        "-U",
        fs_uuid,
        # Lazy init: the guest kernel zeroes inode tables in the background on first mount,
        # instead of the builder writing gigabytes of zeros into a sparse file.
        "-E",
        f"lazy_itable_init=1,lazy_journal_init=1,hash_seed={fs_uuid},nodiscard",
        "-d",
        "{root}",
        "-F",
        str(raw),
        f"{disk_gib}G",
    ]


def memory_has_room(size: int) -> bool:
    """Whether a raw image of `size` bytes fits in /dev/shm and in half the free memory."""
    try:
        shm = os.statvfs(MEMORY)
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return False
    available = 0
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            available = int(line.split()[1]) * 1024
    return shm.f_bavail * shm.f_frsize >= size and available >= 2 * size


@contextmanager
def _raw_image(folder: Path) -> Iterator[Path]:
    """A new raw file's path in `folder`, locked while the build uses it, removed after."""
    if folder == MEMORY:
        sweep_leftovers(folder)
    raw = folder / f"formarket-{uuid.uuid4().hex}.raw"
    fd = os.open(raw, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        # The lock tells other builds' sweeps that this file is in use.
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield raw
    finally:
        raw.unlink(missing_ok=True)
        os.close(fd)


def sweep_leftovers(folder: Path, older_than: float = _LEFTOVER_AGE) -> int:
    """Remove raw files of killed builds (unlocked and old) from `folder`; how many."""
    removed = 0
    now = time.time()
    for leftover in folder.glob("formarket-*.raw"):
        try:
            # /dev/shm is everyone's: never follow a link, never wait on a fifo.
            fd = os.open(leftover, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                continue
            if now - info.st_mtime < older_than:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # locked: a build is using it
        else:
            leftover.unlink(missing_ok=True)
            removed += 1
        finally:
            os.close(fd)
    return removed


def write_qcow2(raw: Path, out: Path) -> str:
    """Write the raw image `raw` as qcow2 `out`, keeping only clusters that hold data; the
    sha256 of `out`."""
    fd = os.open(raw, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        # Two small buffers, read with pread: while one is hashed the other is filled.
        buffers = (bytearray(_RUN * _CLUSTER), bytearray(_RUN * _CLUSTER))
        clusters = _data_clusters(fd, size, buffers[0])
        return _write(out, _metadata(size, clusters), fd, clusters, buffers)
    finally:
        os.close(fd)


def _runs(clusters: list[int]) -> Iterator[tuple[int, int]]:
    """(first cluster, count) of each run of consecutive clusters, at most `_RUN` long."""
    n = 0
    while n < len(clusters):
        end = n + 1
        while end < len(clusters) and end - n < _RUN and clusters[end] == clusters[end - 1] + 1:
            end += 1
        yield clusters[n], end - n
        n = end


def _read(fd: int, buffer: bytearray, first: int, count: int) -> memoryview:
    """Clusters `first`.. of the raw file, the last one padded with zeros past its end."""
    view = memoryview(buffer)[: count * _CLUSTER]
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], first * _CLUSTER + done)
        if got == 0:
            break  # the end of the file
        done += got
    view[done:] = bytes(len(view) - done)
    return view


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of a sparse file that is not a hole, in order."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after offset
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        offset = end


def _data_clusters(fd: int, size: int, buffer: bytearray) -> list[int]:
    """The indexes of the clusters that hold a non-zero byte, in order; holes are skipped
    without reading them."""
    clusters: list[int] = []
    for start, end in data_extents(fd, size):
        first = start >> _CLUSTER_BITS
        if clusters and clusters[-1] >= first:
            first = clusters[-1] + 1
        stop = (end + _CLUSTER - 1) >> _CLUSTER_BITS
        for chunk in range(first, stop, _RUN):
            count = min(_RUN, stop - chunk)
            with _read(fd, buffer, chunk, count) as view:
                for n in range(count):
                    if view[n << _CLUSTER_BITS : (n + 1) << _CLUSTER_BITS] != _ZERO:
                        clusters.append(chunk + n)
    return clusters


def _metadata(size: int, clusters: list[int]) -> bytearray:
    """Header, L1 table, refcount table and blocks, and L2 tables: every cluster of the qcow2
    before its data, which follows in guest order."""
    l1_size = -(-size // (_CLUSTER * _L2_ENTRIES))
    tables = sorted({index // _L2_ENTRIES for index in clusters})
    l1_clusters = max(1, -(-l1_size * 8 // _CLUSTER))
    table_clusters, blocks = 1, 1
    while True:  # the refcounts count their own clusters too
        total = 1 + l1_clusters + table_clusters + blocks + len(tables) + len(clusters)
        need_blocks = -(-total // _REFCOUNTS_PER_BLOCK)
        need_table = -(-need_blocks * 8 // _CLUSTER)
        if need_blocks <= blocks and need_table <= table_clusters:
            break
        blocks, table_clusters = max(blocks, need_blocks), max(table_clusters, need_table)
    l1_at = 1
    refcount_table_at = l1_at + l1_clusters
    blocks_at = refcount_table_at + table_clusters
    l2_at = blocks_at + blocks
    data_at = l2_at + len(tables)
    total = data_at + len(clusters)

    meta = bytearray(data_at * _CLUSTER)
    _HEADER.pack_into(
        meta,
        0,
        *(b"QFI\xfb", 3, 0, 0, _CLUSTER_BITS, size, 0, l1_size, l1_at * _CLUSTER),
        *(refcount_table_at * _CLUSTER, table_clusters, 0, 0, 0, 0, 0, 4, _HEADER.size),
    )
    where = {table: l2_at + n for n, table in enumerate(tables)}
    for table, host in where.items():
        struct.pack_into(">Q", meta, l1_at * _CLUSTER + table * 8, host * _CLUSTER | _COPIED)
    for n, index in enumerate(clusters):
        table, slot = divmod(index, _L2_ENTRIES)
        entry = (data_at + n) * _CLUSTER | _COPIED
        struct.pack_into(">Q", meta, where[table] * _CLUSTER + slot * 8, entry)
    for block in range(blocks):
        entry = (blocks_at + block) * _CLUSTER
        struct.pack_into(">Q", meta, refcount_table_at * _CLUSTER + block * 8, entry)
    start = blocks_at * _CLUSTER
    meta[start : start + 2 * total] = b"\x00\x01" * total  # every cluster is used once
    return meta


def _write(
    out: Path,
    meta: bytearray,
    fd: int,
    clusters: list[int],
    buffers: tuple[bytearray, bytearray],
) -> str:
    """Write the metadata then the data clusters; the file's sha256, computed by a second
    thread while the first reads and writes (both release the GIL on large buffers)."""
    digest = hashlib.sha256()
    with ThreadPoolExecutor(1) as hasher, out.open("wb", buffering=0) as target:
        pending: Future[None] = hasher.submit(digest.update, meta)
        _write_all(target.fileno(), meta)
        for turn, (first, count) in enumerate(_runs(clusters)):
            buffer = buffers[turn % 2]
            # The hash that last used this buffer has finished (waited for below, a turn ago).
            chunk = _read(fd, buffer, first, count)
            _write_all(target.fileno(), chunk)
            pending.result()
            pending = hasher.submit(digest.update, chunk)
        pending.result()
    return digest.hexdigest()


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    written = 0
    with memoryview(data) as remaining:
        while written < len(remaining):
            written += os.write(fd, remaining[written:])


def virtual_size(runner: Runner, image: Path) -> int:
    done = runner.run(["qemu-img", "info", "--output=json", image], timeout=60)
    size: int = json.loads(done.stdout)["virtual-size"]
    return size
