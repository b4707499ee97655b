"""One grafting scenario on real overlayfs, run as root in a mount namespace of its own.

    unshare --mount --propagation private python graft_scenario.py SCENARIO.json WORKDIR

The scenario holds three lists of layers, each a list of file operations: `shared` (the layers
both stacks have), `old` and `new`. Each layer is made as a build step makes it: the operations
run on an overlay mount whose upper folder becomes the layer. Then a copy of what the old stack
shows (`cp -a` of its merged view: what `mke2fs -d` would put on a disk) is rewound and has the
new layers applied by `layer_graft`, and the result is compared with what the new stack shows.
Prints a JSON list of the differences (empty when the graft is exact).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
from typing import Any

from formarket.builder import layer_graft
from formarket.process import Runner


def _mount_overlay(lowers: list[str], target: str, upper: str = "", work: str = "") -> None:
    if not upper and len(lowers) == 1:
        Runner().run(["mount", "--bind", "-o", "ro", lowers[0], target])
        return
    options = "lowerdir=" + ":".join(reversed(lowers))
    if upper:
        options += f",upperdir={upper},workdir={work}"
    options += ",index=off,metacopy=off,redirect_dir=off"
    Runner().run(["mount", "-t", "overlay", "-o", options, "overlay", target])


def _op(root: str, op: list[Any]) -> None:
    """One operation inside the merged view; one that cannot be done here is skipped, as a
    shell command that fails in a RUN would be left out of a working Formfile."""
    name, path = op[0], os.path.join(root, op[1])
    paths = [path, os.path.join(root, op[2])] if name in ("link", "rename") else [path]
    # Never through a link: one may point anywhere on the host, and the test runs as root.
    if not all(_no_link_above(each, root) for each in paths):
        return
    try:
        if name == "write":
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.isdir(path) and not os.path.islink(path):
                return
            if os.path.lexists(path):
                os.unlink(path)
            with open(path, "w") as handle:
                handle.write(op[2])
        elif name == "append":
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "a") as handle:
                    handle.write(op[2])
        elif name == "mkdir":
            os.makedirs(path, exist_ok=True)
        elif name == "remove":
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.unlink(path)
        elif name == "symlink":
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if not os.path.lexists(path):
                os.symlink(op[2], path)
        elif name == "chmod":
            if os.path.lexists(path) and not os.path.islink(path):
                os.chmod(path, op[2])
        elif name == "chown":
            if os.path.lexists(path):
                os.lchown(path, op[2], op[2])
        elif name == "link":
            other = os.path.join(root, op[2])
            if os.path.isfile(path) and not os.path.islink(path) and not os.path.lexists(other):
                os.makedirs(os.path.dirname(other), exist_ok=True)
                os.link(path, other)
        elif name == "rename":
            other = os.path.join(root, op[2])
            inside = other.startswith(path + "/")
            if os.path.lexists(path) and not os.path.lexists(other) and not inside:
                os.makedirs(os.path.dirname(other), exist_ok=True)
                shutil.move(path, other)  # a folder from below is copied (no redirects)
        elif name == "xattr":
            if os.path.lexists(path) and not os.path.islink(path):
                os.setxattr(path, "user.formarket", op[2].encode(), follow_symlinks=False)
        elif name == "touch" and os.path.lexists(path):
            os.utime(path, (op[2], op[2]), follow_symlinks=False)
    except OSError:
        pass  # e.g. a folder where a file was wanted, or a loop of links


def _no_link_above(path: str, root: str) -> bool:
    parent = os.path.dirname(path)
    rel = os.path.relpath(parent, root)
    real_root = os.path.realpath(root)
    return os.path.realpath(parent) == (real_root if rel == "." else os.path.join(real_root, rel))


def _make_layers(
    work: str, lowers: list[str], layers: list[list[list[Any]]], name: str
) -> list[str]:
    made: list[str] = []
    for n, ops in enumerate(layers):
        upper, scratch, merged = (f"{work}/{name}{n}/{part}" for part in ("t", "w", "m"))
        for folder in (upper, scratch, merged):
            os.makedirs(folder)
        _mount_overlay([*lowers, *made], merged, upper, scratch)
        for op in ops:
            _op(merged, op)
        Runner().run(["umount", merged])
        made.append(upper)
    return made


def _describe(root: str) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    groups: dict[tuple[int, int], list[str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(folder, name)
            info = os.lstat(path)
            rel = os.path.relpath(path, root)
            entry: dict[str, Any] = {
                "mode": info.st_mode,
                "owner": [info.st_uid, info.st_gid],
                "mtime": info.st_mtime_ns // 1_000_000_000,
                "xattrs": {
                    key: os.getxattr(path, key, follow_symlinks=False).hex()
                    for key in os.listxattr(path, follow_symlinks=False)
                },
            }
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    entry["sha256"] = hashlib.sha256(handle.read()).hexdigest()
                groups.setdefault((info.st_dev, info.st_ino), []).append(rel)
            elif stat.S_ISLNK(info.st_mode):
                entry["target"] = os.readlink(path)
            tree[rel] = entry
    for names in groups.values():
        for rel in names:
            tree[rel]["same_file_as"] = sorted(names)
    return tree


def main(scenario_path: str, work: str) -> int:
    with open(scenario_path) as handle:
        scenario = json.load(handle)
    Runner().run(["mount", "--make-rprivate", "/"])
    base = f"{work}/base"
    os.makedirs(base)
    for op in scenario["base"]:
        _op(base, op)
    shared = _make_layers(work, [base], scenario["shared"], "s")
    old = _make_layers(work, [base, *shared], scenario["old"], "o")
    new = _make_layers(work, [base, *shared], scenario["new"], "n")

    views = {}
    for label, stack in (("old", [base, *shared, *old]), ("new", [base, *shared, *new])):
        view = f"{work}/view-{label}"
        os.makedirs(view)
        _mount_overlay(stack, view)
        views[label] = view
    prefix = f"{work}/view-prefix"
    os.makedirs(prefix)
    _mount_overlay([base, *shared], prefix)

    disk = f"{work}/disk"
    Runner().run(["cp", "-a", views["old"], disk])
    layer_graft.rewind(disk, prefix, old)
    for layer in new:
        layer_graft.apply(disk, layer)

    got, want = _describe(disk), _describe(views["new"])
    differences = []
    for rel in sorted(set(got) | set(want)):
        if got.get(rel) != want.get(rel):
            differences.append({"path": rel, "got": got.get(rel), "want": want.get(rel)})
    print(json.dumps(differences))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
