"""The first process inside a build sandbox. Standard library only: run as `python -I -S`.

`formarket.builder.sandbox` starts it under `unshare --mount --pid --fork` (and `--net` unless
the step installs packages), with a JSON spec as its only argument. It then

1. mounts the step's layers with overlayfs (lower layers read-only, the step's own upper dir),
2. mounts a fresh /proc, a read-only /sys and a small /dev of harmless devices,
3. makes the image the root with pivot_root and detaches the host's root entirely, so a chroot
   escape finds nothing of the host to escape to (a plain chroot would not stop root),
4. drops the capabilities a build step never needs (mounting, devices, modules, raw I/O, ...),
5. copies context files (opened beneath a descriptor taken before the pivot, never following a
   link) or runs the step's commands as pid 1's children, reaping every orphan,

and exits with the status of the first command that fails. Everything it mounted disappears with
its mount namespace, so a killed build leaves no mount behind.

Op `export` mounts the layers read-only and runs a host program (mke2fs) on the merged tree.
Op `graft` loop-mounts a kept disk and brings it from its old stack of layers to the new one
(`layer_graft.py`); the loop device is released when the namespace goes, even on a crash.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import importlib.util
import json
import os
import platform
import stat
import sys
from typing import Any

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_CAPBSET_DROP = 24
# pivot_root has no glibc wrapper; its number depends on the architecture.
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
# CAP_LINUX_IMMUTABLE, NET_ADMIN, SYS_MODULE, SYS_RAWIO, SYS_PTRACE, SYS_ADMIN, SYS_BOOT,
# SYS_TIME, MKNOD, AUDIT_CONTROL, MAC_OVERRIDE, MAC_ADMIN, SYSLOG, WAKE_ALARM, BLOCK_SUSPEND,
# PERFMON, BPF, CHECKPOINT_RESTORE: none is needed to install packages or build software.
_DROPPED_CAPS = (9, 12, 16, 17, 19, 21, 22, 25, 27, 30, 32, 33, 34, 35, 36, 38, 39, 40)
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# The kernel must not start zeroing inode tables in the background (the disk was made with lazy
# init for the guest to do that); discard punches freed blocks out of the sparse file.
_GRAFT_MOUNT = "loop,noatime,noinit_itable,discard"
GRAFT_REFUSED = 3  # the exit status when a layer cannot be grafted: the disk is made whole

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class SandboxFailure(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SandboxFailure(f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {fstype or 'bind'} {source} on {target}",
    )


def mount_layers(spec: dict[str, Any], target: str, *, writable: bool) -> None:
    """Overlay the layers (top first) on `target`; paths relative to `layers_root` keep the
    option string short, since the kernel takes at most a page of mount options."""
    os.chdir(spec["layers_root"])
    lowers = spec["lowers"]
    if not writable and len(lowers) == 1:
        mount(lowers[0], target, None, MS_BIND | MS_REC)
        mount("none", target, None, MS_BIND | MS_REC | MS_RDONLY | 32)  # 32: MS_REMOUNT
        return
    options = "lowerdir=" + ":".join(lowers)
    if writable:
        options += f",upperdir={spec['upper']},workdir={spec['work']}"
    options += ",index=off,metacopy=off"
    mount("overlay", target, "overlay", 0 if writable else MS_RDONLY, options)


def prepare_root(root: str, network: bool) -> None:
    if os.path.isdir(f"{root}/proc"):
        mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if os.path.isdir(f"{root}/sys"):
        mount("sysfs", f"{root}/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if os.path.isdir(f"{root}/dev") and not os.path.islink(f"{root}/dev"):
        mount("tmpfs", f"{root}/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=1m")
        for name in _DEVICES:
            target = f"{root}/dev/{name}"
            with open(target, "w"):
                pass
            mount(f"/dev/{name}", target, None, MS_BIND)
        for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0")):
            os.symlink(link, f"{root}/dev/{name}")
        os.symlink("/proc/self/fd/1", f"{root}/dev/stdout")
        os.symlink("/proc/self/fd/2", f"{root}/dev/stderr")
        os.mkdir(f"{root}/dev/shm")  # noqa: S108 - the image's own /dev, not the host's
    resolv = f"{root}/etc/resolv.conf"
    if network and os.path.exists("/etc/resolv.conf") and _is_regular(resolv):
        # The host's resolver for package downloads, mounted over the image's file so that it
        # never becomes part of the layer.
        mount("/etc/resolv.conf", resolv, None, MS_BIND)


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def pivot_into(root: str) -> None:
    os.chdir(root)
    number = _PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise SandboxFailure(f"pivot_root is not known on {platform.machine()}")
    _check(_libc.syscall(number, b".", b"."), "pivot_root")
    # The old root is stacked on the new one at "/": detach it, and the host is out of reach.
    _check(_libc.umount2(b".", MNT_DETACH), "detach the host's root")
    os.chdir("/")


def drop_capabilities() -> None:
    for cap in _DROPPED_CAPS:
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            raise SandboxFailure(f"cannot drop capability {cap}: {os.strerror(ctypes.get_errno())}")


def open_beneath(dir_fd: int, rel: str) -> int:
    """Open `rel` below `dir_fd` without following any link on the way."""
    parts = [part for part in rel.split("/") if part not in ("", ".")]
    fd = os.dup(dir_fd)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        if not parts:
            return os.dup(fd)
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


def _replace(path: str) -> None:
    # COPY replaces whatever is at the destination except a folder; it never writes through a
    # link (inside the image that would be harmless, but it would not mean what COPY says).
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)


def copy_items(context_fd: int, items: list[dict[str, Any]]) -> None:
    for item in items:
        dst, kind = item["dst"], item["kind"]
        parent = os.path.dirname(dst)
        os.makedirs(parent, exist_ok=True)
        if kind == "dir":
            if not os.path.isdir(dst):
                _replace(dst)
                os.makedirs(dst, exist_ok=True)
            continue
        _replace(dst)
        if kind == "link":
            os.symlink(item["digest"], dst)
            os.lchown(dst, 0, 0)
            continue
        src_fd = open_beneath(context_fd, item["src"])
        digest = hashlib.sha256()
        with os.fdopen(src_fd, "rb") as src, open(dst, "wb") as out:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                raise SandboxFailure(f"{item['src']} is no longer a regular file")
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != item["digest"]:
            raise SandboxFailure(f"{item['src']} changed while the image was being built")
        os.chown(dst, 0, 0)
        os.chmod(dst, item["mode"])


def _which(program: str, path: str) -> str:
    if "/" in program:
        return program
    for folder in path.split(":"):
        candidate = f"{folder}/{program}"
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    raise SandboxFailure(f"{program}: not found in the image (PATH={path})")


def run_commands(commands: list[dict[str, Any]]) -> int:
    """Run each command as a child of this pid 1, reap every process, stop at a failure."""
    for command in commands:
        env = dict(command["env"])
        program = _which(command["argv"][0], env.get("PATH", "/usr/bin:/bin"))
        # A fork, not a new program: this is pid 1 of the sandbox, and it must stay to reap.
        pid = os.fork()
        if pid == 0:
            try:
                os.makedirs(command["cwd"], exist_ok=True)
                os.chdir(command["cwd"])
                os.execve(program, command["argv"], env)  # noqa: S606 - argv, never a shell
            except OSError as exc:
                print(f"formarket-sandbox: {command['argv'][0]}: {exc}", file=sys.stderr)
            os._exit(127)
        status = 0
        while True:
            try:
                done, code = os.wait()
            except ChildProcessError:
                break
            if done == pid:
                status = os.waitstatus_to_exitcode(code)
                break
        if status != 0:
            return status if status > 0 else 128 - status
    return 0


def graft(spec: dict[str, Any]) -> int:
    """Loop-mount the raw disk, take the old top layers back, put the new ones on, unmount."""
    found = importlib.util.spec_from_file_location(
        "layer_graft", os.path.join(os.path.dirname(os.path.abspath(__file__)), "layer_graft.py")
    )
    if found is None or found.loader is None:
        raise SandboxFailure("layer_graft.py is missing beside sandbox_init.py")
    layer_graft = importlib.util.module_from_spec(found)
    found.loader.exec_module(layer_graft)
    target, merged = spec["target"], spec["merged"]
    mounting = ["mount", "-t", "ext4", "-o", _GRAFT_MOUNT, spec["raw"], target]
    status = run_commands([{"argv": mounting, "env": [["PATH", _PATH]], "cwd": "/"}])
    if status != 0:
        return status
    try:
        if spec["rewind"]:
            mount_layers(spec, merged, writable=False)
            layer_graft.rewind(target, merged, spec["rewind"])
        for layer in spec["apply"]:
            layer_graft.apply(target, layer)
    except layer_graft.GraftRefused as exc:
        print(f"formarket-sandbox: {exc}", file=sys.stderr)
        return GRAFT_REFUSED
    finally:
        os.chdir("/")
        unmounting = ["umount", target]
        unmounted = run_commands([{"argv": unmounting, "env": [["PATH", _PATH]], "cwd": "/"}])
    return unmounted


def main(spec_path: str) -> int:
    with open(spec_path) as handle:
        spec = json.load(handle)
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    # A new uts namespace starts with the host's name; a build should not see it.
    _check(_libc.sethostname(b"formarket", 9), "sethostname")
    merged = spec["merged"]
    if spec["op"] == "export":
        mount_layers(spec, merged, writable=False)
        os.chdir("/")
        return run_commands([{"argv": spec["argv"], "env": spec["env"], "cwd": "/"}])
    if spec["op"] == "graft":
        return graft(spec)
    mount_layers(spec, merged, writable=True)
    prepare_root(merged, spec.get("network", False))
    context_fd = -1
    if spec["op"] == "copy":
        context_fd = os.open(spec["context"], os.O_RDONLY | os.O_DIRECTORY)
    pivot_into(merged)
    drop_capabilities()
    if spec["op"] == "copy":
        copy_items(context_fd, spec["items"])
        return 0
    created = []
    for path, content in spec.get("prepare", {}).items():
        # Written inside the image (after the pivot) unless the image has its own, and removed
        # again before the layer is kept.
        if os.path.lexists(path):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(content)
        os.chmod(path, 0o755)  # noqa: S103 - policy-rc.d must be executable
        created.append(path)
    try:
        return run_commands(spec["commands"])
    finally:
        for path in created:
            if _is_regular(path):
                os.unlink(path)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except (SandboxFailure, OSError) as exc:
        print(f"formarket-sandbox: {exc}", file=sys.stderr)
        sys.exit(125)
