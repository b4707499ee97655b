"""Image distribution: a host receives a build's disk, kernel and initrd through libvirt.

Images are uploaded over the libvirt connection into the host's storage pool, one volume per
file, named by build id, so a host needs nothing but libvirt (no shared filesystem, no ssh).
They are cached there under `<build-id>-<digest of their sha256s>` (see `_image_name`): the
marker volume `<name>.sha256`, written LAST, holds the sha256
of each file and says the upload finished. Each use checks the cached volumes against the
manifest's sha256 (read back over the connection); a missing marker (a half-finished upload)
or a volume that no longer matches is uploaded again. Uploads of one build to one host take
turns through a lock volume (`<build-id>.lock`), whichever machine the workers run on.

Each deployment gets its own volumes, named `<deployment-id>.*`: a qcow2 overlay backed by the
cached disk (the image itself is never written), the config disk, and its console log.

On the libvirt test driver volumes are records with no bytes (it cannot upload), so test
hosts reference the image files by their artifact store paths and nothing is uploaded.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from formarket.builder.manifest import Artifact, BuildManifest
from formarket.builder.store import DirectoryStore
from formarket.errors import FormarketError
from formarket.farm.errors import TransientError
from formarket.farm.libvirt_conn import HostConnection, HostError, VolumeExists

__all__ = [
    "LOCK_STALE_SECONDS",
    "ROLES",
    "HostImage",
    "ImageBusy",
    "console_log_path",
    "console_text",
    "create_config_disk",
    "create_overlay",
    "ensure_image",
    "remove_deployment_volumes",
]

ROLES = ("disk", "kernel", "initrd")
LOCK_STALE_SECONDS = 1800.0
_MARKER_BYTES = 4096


class ImageBusy(TransientError):
    """Another worker is uploading this build to this host right now."""


@dataclass(frozen=True, slots=True)
class HostImage:
    """A build's files as a host sees them."""

    build_id: str
    disk: str
    kernel: str
    initrd: str
    virtual_size: int  # of the disk, for its overlays
    uploaded: tuple[str, ...]  # roles sent this time; empty when the host's cache served
    in_pool: bool  # False on test hosts: the paths are the artifact store's


def _image_name(manifest: BuildManifest) -> str:
    """The cache entry's name: the build id and a digest of the files' sha256s. A build made
    again (the store lost) has the same id but may differ in bytes (file times in the ext4):
    it gets volumes of its own and never replaces those that running overlays are backed by."""
    files = "".join(manifest.artifact(role).sha256 for role in ROLES)
    return f"{manifest.build_id}-{hashlib.sha256(files.encode()).hexdigest()[:16]}"


def _volume(build_id: str, role: str) -> str:
    return f"{build_id}.{role}"


def _marker(build_id: str) -> str:
    return f"{build_id}.sha256"


def _expected(manifest: BuildManifest) -> dict[str, str]:
    return {role: manifest.artifact(role).sha256 for role in ROLES}


def _read_marker(conn: HostConnection, build_id: str) -> dict[str, str] | None:
    chunks: list[bytes] = []
    if not conn.download(_marker(build_id), chunks.append, _MARKER_BYTES):
        return None
    try:
        data = json.loads(b"".join(chunks).rstrip(b"\0"))
    except ValueError:
        return None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return None
    return {str(k): v for k, v in data.items()}


def _volume_sha256(conn: HostConnection, name: str, length: int) -> str | None:
    digest = hashlib.sha256()
    seen = 0

    def sink(chunk: bytes) -> None:
        nonlocal seen
        seen += len(chunk)
        digest.update(chunk)

    if not conn.download(name, sink, length):
        return None
    return digest.hexdigest() if seen == length else None


def _upload(conn: HostConnection, name: str, path: Path, artifact: Artifact) -> None:
    conn.delete_volume(name)
    conn.create_volume(name, artifact.size)
    digest = hashlib.sha256()

    with path.open("rb") as handle:
        conn.upload(name, _Hashing(handle, digest), artifact.size)
    if digest.hexdigest() != artifact.sha256:
        conn.delete_volume(name)
        raise FormarketError(
            f"{path} does not match its build manifest's sha256",
            hint="the artifact store was changed after the build; rebuild the image",
        )


def _write_marker(conn: HostConnection, build_id: str, expected: dict[str, str]) -> None:
    name = _marker(build_id)
    data = json.dumps(expected, sort_keys=True).encode()
    conn.delete_volume(name)
    conn.create_volume(name, _MARKER_BYTES)
    conn.upload(name, _BytesReader(data.ljust(_MARKER_BYTES, b"\0")), _MARKER_BYTES)


class _Hashing:
    """Hashes what is sent, so a store file changed since its build is never marked good."""

    def __init__(self, handle: BinaryIO, digest: hashlib._Hash) -> None:
        self._handle = handle
        self._digest = digest

    def read(self, size: int) -> bytes:
        data = self._handle.read(size)
        self._digest.update(data)
        return data


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def read(self, size: int) -> bytes:
        chunk, self._data = self._data[:size], self._data[size:]
        return bytes(chunk)


def _stale_roles(conn: HostConnection, manifest: BuildManifest) -> list[str]:
    """The roles whose cached volume is missing or differs from the manifest: all of them
    without a marker, else those whose bytes read back do not match their sha256."""
    expected = _expected(manifest)
    name = _image_name(manifest)
    if _read_marker(conn, name) != expected:
        return list(ROLES)
    return [
        role
        for role in ROLES
        if _volume_sha256(conn, _volume(name, role), manifest.artifact(role).size) != expected[role]
    ]


@contextmanager
def _upload_lock(conn: HostConnection, build_id: str, wait: float) -> Iterator[None]:
    """Hold `<build-id>.lock` in the host's pool while uploading: creating a volume is atomic
    in libvirt, so two workers (on any machines) never upload one build to one host at once.
    A lock older than LOCK_STALE_SECONDS was left by a worker that died; it is broken."""
    name = f"{build_id}.lock"
    deadline = time.monotonic() + wait
    while True:
        try:
            conn.create_volume(name, _MARKER_BYTES)
            break
        except VolumeExists:
            chunks: list[bytes] = []
            conn.download(name, chunks.append, _MARKER_BYTES)
            try:
                since = float(b"".join(chunks).rstrip(b"\0") or b"0")
            except ValueError:
                since = 0.0
            if since and time.time() - since > LOCK_STALE_SECONDS:
                conn.delete_volume(name)
                continue
            if time.monotonic() > deadline:
                raise ImageBusy(
                    f"host {conn.name}: another worker is uploading build {build_id}",
                    hint="it is retried; a lock left by a dead worker expires by itself",
                ) from None
            time.sleep(0.5)
    try:
        stamp = f"{time.time():.3f}".encode().ljust(_MARKER_BYTES, b"\0")
        conn.upload(name, _BytesReader(stamp), _MARKER_BYTES)
        yield
    finally:
        conn.delete_volume(name)


def ensure_image(
    conn: HostConnection,
    store: DirectoryStore,
    manifest: BuildManifest,
    *,
    wait: float = 300.0,
) -> HostImage:
    """The build's files on the host, uploaded unless the host's verified cache has them;
    waits up to `wait` seconds for another worker uploading the same build (then ImageBusy)."""
    image_dir = store.image_dir(manifest.build_id)
    artifacts = {role: manifest.artifact(role) for role in ROLES}
    virtual_size = artifacts["disk"].virtual_size or artifacts["disk"].size
    conn.ensure_pool()
    if conn.is_test:
        stored = {role: str(image_dir / artifacts[role].name) for role in ROLES}
        return HostImage(
            manifest.build_id,
            stored["disk"],
            stored["kernel"],
            stored["initrd"],
            virtual_size=virtual_size,
            uploaded=(),
            in_pool=False,
        )
    name = _image_name(manifest)
    stale = _stale_roles(conn, manifest)
    if stale:
        with _upload_lock(conn, name, wait):
            # Another worker may have finished the upload while this one waited for the lock.
            stale = _stale_roles(conn, manifest)
            # The marker goes first: an upload cut short must never look finished.
            conn.delete_volume(_marker(name))
            for role in stale:
                path = image_dir / artifacts[role].name
                if not path.is_file():
                    raise FormarketError(
                        f"{path}: the image's {role} is missing from the artifact store",
                        hint=f"rebuild build {manifest.build_id}",
                    )
                _upload(conn, _volume(name, role), path, artifacts[role])
            _write_marker(conn, name, _expected(manifest))
    paths: dict[str, str] = {}
    for role in ROLES:
        found = conn.volume_path(_volume(name, role))
        if found is None:
            raise HostError(conn.name, f"volume {_volume(name, role)} vanished")
        paths[role] = found
    return HostImage(
        manifest.build_id,
        paths["disk"],
        paths["kernel"],
        paths["initrd"],
        virtual_size=virtual_size,
        uploaded=tuple(stale),
        in_pool=True,
    )


def _deployment_volume(deployment_id: str, what: str) -> str:
    return f"{deployment_id}.{what}"


def create_overlay(conn: HostConnection, image: HostImage, deployment_id: str) -> str:
    """A fresh qcow2 overlay over the cached disk for one deployment; its path."""
    name = _deployment_volume(deployment_id, "overlay.qcow2")
    conn.delete_volume(name)
    return conn.create_volume(name, image.virtual_size, fmt="qcow2", backing=(image.disk, "qcow2"))


def create_config_disk(conn: HostConnection, deployment_id: str, data: bytes) -> str:
    """The deployment's config disk holding `data` (see configdisk.py); its path.

    On test hosts the volume is created but stays empty: the test driver cannot upload."""
    name = _deployment_volume(deployment_id, "config.img")
    conn.delete_volume(name)
    path = conn.create_volume(name, len(data))
    if not conn.is_test:
        conn.upload(name, _BytesReader(data), len(data))
    return path


def console_log_path(pool_path: str, deployment_id: str) -> str:
    """Where the deployment's serial console is written: in the pool, so that it can be read
    over the connection and is removed with the deployment's other volumes."""
    return f"{pool_path.rstrip('/')}/{_deployment_volume(deployment_id, 'console.log')}"


def console_text(conn: HostConnection, deployment_id: str, limit: int = 1 << 20) -> str:
    """The first `limit` bytes of a deployment's console log, read over the connection
    (qemu writes it, so the pool is refreshed to see it); empty when there is none yet."""
    name = _deployment_volume(deployment_id, "console.log")
    if conn.is_test or name not in conn.volumes(prefix=name):
        return ""
    chunks: list[bytes] = []
    conn.download(name, chunks.append, 0)
    return b"".join(chunks)[:limit].decode("utf-8", "replace")


def remove_deployment_volumes(conn: HostConnection, deployment_id: str) -> list[str]:
    """Delete every `<deployment-id>.*` volume; the names deleted."""
    removed = []
    for name in conn.volumes(prefix=f"{deployment_id}."):
        if conn.delete_volume(name):
            removed.append(name)
    return removed
