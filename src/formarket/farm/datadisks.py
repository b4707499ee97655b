"""The weights' data disk on a host: uploaded once through libvirt, as images are, and shared.

A model's image comes with a data disk of its weights (`BuildManifest.data_disk`). A host
keeps each data disk as one volume named by the disk's id and the sha256 of its bytes, with
the same marker volume written last and the same upload lock as an image (see `images.py`),
so every deployment of every version with the same weights on that host attaches the one
volume, read-only. Unlike an image's files, a cached data disk is trusted on its marker
without reading its bytes back: it is tens of gigabytes, and no domain is given it writable.

On the libvirt test driver nothing is uploaded: the store's file is attached by its path.
"""

from __future__ import annotations

from formarket.builder.manifest import Artifact, BuildManifest
from formarket.builder.store import DirectoryStore
from formarket.errors import FormarketError
from formarket.farm.images import _read_marker, _upload, _upload_lock, _write_marker
from formarket.farm.libvirt_conn import HostConnection, HostError

__all__ = ["ensure_data_disk"]


def _name(manifest: BuildManifest) -> str:
    disk = manifest.data_disk
    assert disk is not None
    return f"weights-{disk.id}-{disk.sha256[:16]}"


def ensure_data_disk(
    conn: HostConnection, store: DirectoryStore, manifest: BuildManifest, *, wait: float = 300.0
) -> str | None:
    """The path on the host of the build's data disk (None: the build has none), uploaded
    unless the host has it already; waits up to `wait` seconds for another worker uploading
    it (then ImageBusy)."""
    disk = manifest.data_disk
    if disk is None:
        return None
    path = store.data_disk(disk.id)
    if conn.is_test:
        return str(path)
    name = _name(manifest)
    volume = f"{name}.img"
    expected = {"data_disk": disk.sha256}
    conn.ensure_pool()
    if _read_marker(conn, name) != expected or conn.volume_path(volume) is None:
        with _upload_lock(conn, name, wait):
            if _read_marker(conn, name) != expected or conn.volume_path(volume) is None:
                conn.delete_volume(f"{name}.sha256")
                if store.data_disk_record(disk.id) != disk:
                    raise FormarketError(
                        f"{path}: the weights' data disk is missing from the artifact store"
                        " or differs from the build's",
                        hint=f"build {manifest.build_id} again: its weights are fetched from"
                        " the build host's cache",
                    )
                artifact = Artifact(name=volume, role="disk", size=disk.size, sha256=disk.sha256)
                _upload(conn, volume, path, artifact)
                _write_marker(conn, name, expected)
    found = conn.volume_path(volume)
    if found is None:
        raise HostError(conn.name, f"volume {volume} vanished")
    return found
