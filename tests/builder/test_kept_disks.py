"""A disk brought forward from a kept one holds exactly what a disk made whole holds."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from formarket.builder.build import BuildResult
from formarket.builder.kept_disks import DiskRecipe, KeptDisks
from formarket.process import Runner
from tests.builder.conftest import Build, write_context

# Folders and files that the later RUNs turn into one another, delete from the layers below and
# from the base, link, and mark set-id: every case of overlayfs's upper folders.
FORMFILE = """\
NAME graft-check
FROM busybox
DISK 5
RUN mkdir -p /data/keep /data/gone /data/swap /data/turn && echo a > /data/keep/a \
    && echo b > /data/gone/b && echo c > /data/swap/c && echo t > /data/turn/t \
    && ln -s keep /data/link && echo h > /data/h1 && ln /data/h1 /data/h2
RUN {last}
"""
FIRST = (
    "rm -rf /data/gone && echo one > /data/keep/a && mkdir /data/only-first"
    " && echo x > /data/only-first/x && rm /etc/shells && touch -d @100 /data/keep"
)
SECOND = (
    "rm -rf /data/swap && mkdir /data/swap && echo new > /data/swap/n && rm /data/link"
    " && echo file > /data/link && chmod 4711 /data/h1 && mkfifo /data/fifo"
    " && rm -rf /data/turn && echo now-a-file > /data/turn && rm /etc/hostname"
    " && ln -s /nowhere /data/dangling && echo second > /data/keep/a"
)

# Run in a mount namespace of its own: loop-mount a raw disk read-only, describe every entry.
_DESCRIBE = r"""
import hashlib, json, os, stat, subprocess, sys
raw, mnt = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-o", "loop,ro,noload", raw, mnt], check=True)
tree = {}
for folder, dirs, files in os.walk(mnt):
    for name in dirs + files:
        path = os.path.join(folder, name)
        info = os.lstat(path)
        rel = os.path.relpath(path, mnt)
        entry = {"mode": info.st_mode, "uid": info.st_uid, "gid": info.st_gid}
        if stat.S_ISREG(info.st_mode):
            entry["sha256"] = hashlib.sha256(open(path, "rb").read()).hexdigest()
            entry["nlink"] = info.st_nlink
            entry["mtime"] = info.st_mtime_ns
        elif stat.S_ISLNK(info.st_mode):
            entry["target"] = os.readlink(path)
        elif stat.S_ISDIR(info.st_mode):
            entry["mtime"] = info.st_mtime_ns
        entry["xattrs"] = sorted(os.listxattr(path, follow_symlinks=False))
        tree[rel] = entry
print(json.dumps(tree))
"""


def describe(result: BuildResult, scratch: Path) -> dict[str, Any]:
    """Every entry of the image's filesystem: type and mode, owner, content, link target."""
    scratch.mkdir(parents=True, exist_ok=True)
    raw, mnt = scratch / "disk.raw", scratch / "mnt"
    mnt.mkdir()
    runner = Runner()
    runner.run(["qemu-img", "convert", "-O", "raw", result.image_dir / "disk.qcow2", raw])
    # A consistent filesystem first: e2fsck -n exits non-zero on any error it finds.
    runner.run(["e2fsck", "-f", "-n", raw], timeout=120)
    argv = ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", _DESCRIBE]
    done = runner.run([*argv, str(raw), str(mnt)], timeout=120)
    tree: dict[str, Any] = json.loads(done.stdout)
    tree.pop("lost+found", None)
    return tree


def disk_step(result: BuildResult) -> str:
    log = (result.image_dir / "build.log").read_text().splitlines()
    return "\n".join(line for line in log if "kept disk" in line)


def test_a_kept_disk_brought_forward_equals_one_made_whole(build: Build, tmp_path: Path) -> None:
    formfile = write_context(tmp_path / "ctx", FORMFILE.format(last=FIRST))
    first = build(formfile)
    assert "kept disk" not in disk_step(first)
    write_context(tmp_path / "ctx", FORMFILE.format(last=SECOND))
    forward = build(formfile)
    # The last RUN and the layers after it (the image's own configuration) are taken back.
    assert "brought a kept disk forward: 2 layers taken back, 2 put on" in disk_step(forward)
    # The same layers made whole: no kept disk to start from, a store without the image.
    shutil.rmtree(tmp_path / "cache" / "kept-disks")
    whole = build(formfile, store=tmp_path / "whole")
    assert "kept disk" not in disk_step(whole)
    assert forward.manifest.build_id == whole.manifest.build_id

    got, want = describe(forward, tmp_path / "got"), describe(whole, tmp_path / "want")
    assert got == want
    assert "etc/hostname" not in got
    assert "etc/shells" in got
    assert got["data/h1"]["mode"] & 0o7777 == 0o4711
    assert got["data/h1"]["nlink"] == 1  # chmod copied it up: no longer one file with h2
    assert "data/only-first" not in got

    # And back again: the first recipe (its layers cached), from the disk the second one left.
    write_context(tmp_path / "ctx", FORMFILE.format(last=FIRST))
    again = build(formfile, store=tmp_path / "again")
    assert "brought a kept disk forward" in disk_step(again)
    assert describe(again, tmp_path / "again-tree") == describe(first, tmp_path / "first-tree")


def test_without_the_step_cache_no_disk_is_kept(build: Build, tmp_path: Path) -> None:
    formfile = write_context(tmp_path / "ctx", FORMFILE.format(last=FIRST))
    build(formfile, step_cache=False)
    assert not list((tmp_path / "cache" / "kept-disks").glob("*.raw"))


def test_only_the_newest_kept_disks_stay(tmp_path: Path) -> None:
    kept = KeptDisks(tmp_path / "kept", keep=2)
    for n in range(4):
        raw = tmp_path / f"{n}.raw"
        raw.write_bytes(b"x")
        kept.keep(raw, DiskRecipe(base="b", disk_gib=1, format_version="1", layers=(str(n),)))
    names = {json.loads(p.read_text())["layers"][0] for p in (tmp_path / "kept").glob("*.json")}
    assert names == {"2", "3"}
    assert len(list((tmp_path / "kept").glob("*.raw"))) == 2


@pytest.mark.parametrize(
    ("mine", "theirs", "shared"),
    [
        (("a", "b", "c"), ("a", "b", "d"), 2),
        (("a",), ("a", "b"), 1),
        (("x",), ("a",), 0),
        ((), (), 0),
    ],
)
def test_recipes_share_their_common_bottom_layers(
    mine: tuple[str, ...], theirs: tuple[str, ...], shared: int
) -> None:
    recipe = DiskRecipe(base="b", disk_gib=1, format_version="1", layers=mine)
    other = DiskRecipe(base="b", disk_gib=1, format_version="1", layers=theirs)
    assert recipe.shared_with(other) == shared
    assert recipe.shared_with(DiskRecipe("other", 1, "1", theirs)) == -1
    assert recipe.shared_with(DiskRecipe("b", 2, "1", theirs)) == -1


def test_broken_or_foreign_records_are_passed_over(tmp_path: Path) -> None:
    kept = KeptDisks(tmp_path / "kept")
    good = DiskRecipe(base="b", disk_gib=1, format_version="1", layers=("a",))
    raw = tmp_path / "good.raw"
    raw.write_bytes(b"x")
    kept.keep(raw, good)
    root = tmp_path / "kept"
    for name, text in {
        "half": '{"base": "b", "disk_gib"',  # a writer killed mid-way
        "unknown": '{"base": "b", "disk_gib": 1, "format_version": "1", "layers": [], "x": 1}',
        "wrongname": json.dumps(
            {"base": "b", "disk_gib": 1, "format_version": "1", "layers": ["a"]}
        ),  # its name is not its recipe's: another recipe's disk may be under it
        "nodisk": json.dumps({"base": "b", "disk_gib": 1, "format_version": "1", "layers": []}),
    }.items():
        (root / f"{name}.json").write_text(text)
        if name != "nodisk":
            (root / f"{name}.raw").write_bytes(b"y")
    assert [k.recipe for k in kept._kept()] == [good]
