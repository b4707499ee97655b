"""From the stack of layers to a bootable disk: an ext4 filesystem of the declared size, as qcow2.

`mke2fs -d` fills the filesystem from the merged layers without a loop device (these machines
have no partitions on loop devices, no device-mapper, no nbd); the raw file is sparse, so a
20 GiB disk costs what its files weigh. `qemu-img convert` then keeps only the written
clusters. The filesystem's UUID and hash seed come from the build id, so they are stable too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path

from formarket.builder.sandbox import Sandbox
from formarket.process import Runner

__all__ = ["make_disk", "virtual_size"]


def make_disk(
    sandbox: Sandbox,
    runner: Runner,
    lowers: Sequence[Path],
    disk_gib: int,
    build_id: str,
    scratch: Path,
    out: Path,
) -> None:
    """Write `out` (qcow2) holding an ext4 root filesystem of `disk_gib` GiB."""
    scratch.mkdir(parents=True, exist_ok=True)
    raw = scratch / "root.raw"
    fs_uuid = str(uuid.UUID(build_id[:32]))
    argv = [
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
    try:
        sandbox.export(lowers, argv, scratch)
        runner.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out], timeout=1800)
    finally:
        raw.unlink(missing_ok=True)


def virtual_size(runner: Runner, image: Path) -> int:
    done = runner.run(["qemu-img", "info", "--output=json", image], timeout=60)
    size: int = json.loads(done.stdout)["virtual-size"]
    return size
