"""Base images, built once per recipe and kept by key; each carries the digest of its content.

The key is what a base is made from: its YAML (as a model) and the host files it copies (the
static busybox), with the builder's format version. The digest is what it is: a hash over every
file of its root filesystem, the kernel and the initrd. Build ids use the digest, so an image
names the exact base it was built on.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from formarket.builder.bases import BaseFile, BaseSpec
from formarket.builder.kernel import fetch_kernel, initrd_bytes
from formarket.builder.plan import FORMAT_VERSION, BaseRef
from formarket.errors import FormarketError
from formarket.process import Runner

__all__ = ["BaseCache", "BaseImage", "file_lock", "tree_digest"]


@dataclass(frozen=True, slots=True)
class BaseImage:
    """A built base: its root filesystem folder, kernel, initrd and identity."""

    spec: BaseSpec
    key: str
    digest: str
    folder: Path
    sha256: dict[str, str]  # of the kernel and initrd, by file name

    @property
    def rootfs(self) -> Path:
        return self.folder / "rootfs"

    @property
    def vmlinuz(self) -> Path:
        return self.folder / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.folder / "initrd.img"

    @property
    def record(self) -> Path:
        return self.folder / "base.json"

    def ref(self) -> BaseRef:
        spec = self.spec
        return BaseRef(
            name=spec.name,
            digest=self.digest,
            init=spec.init,
            accounts=spec.accounts,
            package_manager=spec.package_manager,
            path=spec.path,
        )


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between builders on one host (two workers building one base)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tree_digest(root: Path) -> str:
    """sha256 over every entry's path, type, mode, owner and content (links: their target)."""
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted([*dirs, *files]):
            path = Path(folder) / name
            info = path.lstat()
            rel = str(path.relative_to(root))
            digest.update(f"{rel}\0{info.st_mode:o}\0{info.st_uid}\0{info.st_gid}\0".encode())
            if stat.S_ISLNK(info.st_mode):
                digest.update(os.readlink(path).encode())
            elif stat.S_ISREG(info.st_mode):
                with path.open("rb") as handle:
                    digest.update(hashlib.file_digest(handle, "sha256").digest())
            elif stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
                digest.update(f"{os.major(info.st_rdev)},{os.minor(info.st_rdev)}".encode())
            digest.update(b"\n")
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _beneath(root: Path, path: str) -> Path:
    """`path` inside `root`, creating folders, refusing any link on the way."""
    current = root
    for part in path.strip("/").split("/")[:-1]:
        current = current / part
        if current.is_symlink():
            raise FormarketError(f"base file {path}: {current} is a link; name the real path")
        current.mkdir(mode=0o755, exist_ok=True)
    return current / path.rsplit("/", 1)[-1]


def write_base_file(root: Path, item: BaseFile) -> None:
    target = _beneath(root, item.path)
    mode = int(item.mode, 8)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        target.unlink()
    if item.directory:
        target.mkdir(exist_ok=True)
        target.chmod(mode)
    elif item.link is not None:
        target.symlink_to(item.link)
    else:
        target.write_text(item.content or "")
        target.chmod(mode)


class BaseCache:
    """Bases under `<cache>/bases/<key>/`, built on first use under a lock."""

    def __init__(self, root: Path, runner: Runner) -> None:
        self.root = root
        self.runner = runner

    def key(self, spec: BaseSpec) -> str:
        parts = [FORMAT_VERSION, spec.recipe_digest()]
        if spec.source.busybox is not None:
            parts.append(_file_sha256(Path(spec.source.busybox.binary)))
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def folder(self, key: str) -> Path:
        return self.root / "bases" / key[:32]

    def find(self, spec: BaseSpec) -> BaseImage | None:
        key = self.key(spec)
        folder = self.folder(key)
        try:
            record = json.loads((folder / "base.json").read_text())
        except FileNotFoundError:
            return None
        return BaseImage(spec, key, record["digest"], folder, record["sha256"])

    def get(self, spec: BaseSpec) -> BaseImage:
        """The base, built now if it is not in the cache yet."""
        found = self.find(spec)
        if found is not None:
            return found
        key = self.key(spec)
        with file_lock(self.root / "locks" / f"base-{key[:32]}.lock"):
            found = self.find(spec)
            if found is not None:
                return found
            return self._build(spec, key)

    def _build(self, spec: BaseSpec, key: str) -> BaseImage:
        started = time.perf_counter()
        staging = self.root / "tmp" / f"base-{uuid.uuid4().hex}"
        rootfs = staging / "rootfs"
        staging.mkdir(parents=True)
        try:
            if spec.source.busybox is not None:
                self._busybox_root(spec, rootfs)
            elif spec.source.mmdebstrap is not None:
                src = spec.source.mmdebstrap
                argv = ["mmdebstrap", f"--variant={src.variant}", "--mode=root", "-q"]
                if src.include:
                    argv.append("--include=" + ",".join(src.include))
                argv += [src.suite, str(rootfs), src.mirror]
                self.runner.run(
                    argv, timeout=1800, hint="mmdebstrap needs Debian's mirror and root"
                )
            for item in spec.files:
                write_base_file(rootfs, item)
            kernel = fetch_kernel(self.runner, spec.kernel.package, self.root / "downloads")
            shutil.copyfile(kernel.vmlinuz, staging / "vmlinuz")
            (staging / "initrd.img").write_bytes(initrd_bytes(kernel, spec.kernel.modules))
            files = {name: _file_sha256(staging / name) for name in ("vmlinuz", "initrd.img")}
            parts = [tree_digest(rootfs), files["vmlinuz"], files["initrd.img"]]
            digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
            record = {
                "name": spec.name,
                "key": key,
                "digest": digest,
                "sha256": files,
                "kernel": kernel.package,
                "seconds": round(time.perf_counter() - started, 3),
            }
            (staging / "base.json").write_text(json.dumps(record, indent=2) + "\n")
            folder = self.folder(key)
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return BaseImage(spec, key, digest, folder, files)

    def _busybox_root(self, spec: BaseSpec, rootfs: Path) -> None:
        source = spec.source.busybox
        assert source is not None
        binary = Path(source.binary)
        if not binary.is_file():
            raise FormarketError(
                f"{binary} does not exist", hint=f"install the {source.package} package"
            )
        for folder in ("bin", "sbin", "usr/bin", "usr/sbin"):
            (rootfs / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy2(binary, rootfs / "bin" / "busybox")
        applets = self.runner.run([binary, "--list-full"], timeout=60).stdout.split()
        for applet in applets:
            target = rootfs / applet
            if applet == "bin/busybox" or target.exists() or target.is_symlink():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to("/bin/busybox")
