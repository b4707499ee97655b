"""The guest kernel and its initrd, made without installing anything on the build host.

The kernel comes from Debian's `linux-image-*-cloud-amd64` package, fetched with
`apt-get download` and unpacked with `dpkg-deb -x` (a meta-package is followed to the image it
depends on). The initrd is a busybox initramfs written here in cpio's `newc` format: it loads
the base's virtio modules in the configured order (the package has no modules.dep), mounts the
root disk and switches to it. Writing the archive ourselves makes it byte-for-byte reproducible.
"""

from __future__ import annotations

import gzip
import io
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from formarket.errors import FormarketError
from formarket.process import ProcessError, Runner

__all__ = ["Kernel", "KernelError", "fetch_kernel", "initrd_bytes"]

HOST_BUSYBOX = Path("/bin/busybox")
_APPLETS = ("sh", "mount", "umount", "insmod", "switch_root", "mkdir", "cat", "sleep", "echo")
_INIT = """#!/bin/sh
# formarket initrd: load virtio, mount the root disk, hand over to its /sbin/init.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/modules); do
  insmod "/lib/modules/$m.ko" || echo "initrd: cannot load $m"
done
root=/dev/vda
for arg in $(cat /proc/cmdline); do
  case $arg in root=*) root=${arg#root=} ;; esac
done
i=0
while [ ! -b "$root" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mount -t ext4 -o rw "$root" /newroot || { echo "initrd: cannot mount $root"; exec sh; }
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
"""


class KernelError(FormarketError):
    """The guest kernel could not be fetched or lacks what the base needs."""


@dataclass(frozen=True, slots=True)
class Kernel:
    package: str  # the file name of the .deb, which names its version
    vmlinuz: Path
    modules: Path  # lib/modules/<version>


def _download(runner: Runner, package: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    argv = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package]
    try:
        try:
            runner.run(argv, cwd=folder, timeout=600)
        except ProcessError:
            # Package lists older than the mirror name files it no longer has: refresh, retry.
            runner.run(["apt-get", "update", "-q"], timeout=600)
            runner.run(argv, cwd=folder, timeout=600)
    except ProcessError as exc:
        raise KernelError(
            f"cannot download the guest kernel package {package}: {exc.message}",
            hint="run `apt-get update` so that apt knows the package, then build again",
        ) from exc
    found = sorted(folder.glob(f"{package}_*.deb"))
    if not found:
        raise KernelError(f"apt-get download {package} left no .deb in {folder}")
    return found[-1]


def fetch_kernel(runner: Runner, package: str, downloads: Path) -> Kernel:
    """Download `package` (following a meta-package) and unpack it once into `downloads`."""
    for _hop in range(3):
        deb = _download(runner, package, downloads)
        unpacked = downloads / deb.stem
        if not unpacked.is_dir():
            partial = downloads / f"{deb.stem}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            runner.run(["dpkg-deb", "-x", deb, partial], timeout=600)
            partial.rename(unpacked)
        images = sorted((unpacked / "boot").glob("vmlinuz-*"))
        if images:
            version = images[-1].name.removeprefix("vmlinuz-")
            modules = unpacked / "lib" / "modules" / version
            return Kernel(deb.name, images[-1], modules)
        depends = runner.run(["dpkg-deb", "-f", deb, "Depends"], timeout=60).stdout
        image = re.search(r"\b(linux-image-[a-z0-9.+-]+)", depends)
        if image is None:
            raise KernelError(f"{deb.name} holds no kernel and depends on none")
        package = image.group(1)
    raise KernelError(f"{package}: too many meta-packages before a kernel")


def _module_files(modules: Path, names: tuple[str, ...]) -> list[tuple[str, bytes]]:
    index = {path.name.removesuffix(".ko"): path for path in modules.rglob("*.ko")}
    found = []
    for name in names:
        path = index.get(name) or index.get(name.replace("_", "-"))
        if path is None:
            raise KernelError(
                f"the kernel has no module {name}.ko under {modules}",
                hint="check the base's kernel.modules list against the kernel package",
            )
        found.append((name, path.read_bytes()))
    return found


class _Cpio:
    """A newc archive; every entry owned by root with mtime 0, so the bytes are reproducible."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.inode = 0

    def _pad(self) -> None:
        self.out.write(b"\0" * (-self.out.tell() % 4))

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        self.inode += 1
        raw = name.encode() + b"\0"
        fields = (self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, *rdev, len(raw), 0)
        self.out.write(b"070701" + b"".join(b"%08X" % value for value in fields))
        self.out.write(raw)
        self._pad()
        self.out.write(data)
        self._pad()

    def finish(self) -> bytes:
        self.inode = -1
        self.add("TRAILER!!!", 0)
        return self.out.getvalue()


def initrd_bytes(kernel: Kernel, modules: tuple[str, ...], busybox: Path = HOST_BUSYBOX) -> bytes:
    """A gzip-compressed initramfs that loads `modules` in order and boots `root=`."""
    try:
        busybox_bytes = busybox.read_bytes()
    except OSError as exc:
        raise KernelError(
            f"cannot read {busybox}: {exc.strerror}",
            hint="install the busybox-static package",
        ) from exc
    archive = _Cpio()
    for folder in ("bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "newroot"):
        archive.add(folder, stat.S_IFDIR | 0o755)
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    archive.add("bin/busybox", stat.S_IFREG | 0o755, busybox_bytes)
    for applet in _APPLETS:
        archive.add(f"bin/{applet}", stat.S_IFLNK | 0o777, b"busybox")
    archive.add("init", stat.S_IFREG | 0o755, _INIT.encode())
    archive.add("etc/modules", stat.S_IFREG | 0o644, "".join(f"{m}\n" for m in modules).encode())
    for name, data in _module_files(kernel.modules, modules):
        archive.add(f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, data)
    return gzip.compress(archive.finish(), compresslevel=6, mtime=0)
