"""The one module that speaks to libvirt: an open connection per host, and a pool of them.

    FormarketError
    └── HostError               libvirt refused or failed an operation on a host
        ├── HostUnreachable     the host does not answer (also a TransientError: retried)
        └── VolumeExists        a volume to create is in the pool already

Every `libvirt.libvirtError` is translated here, so the rest of the farm never imports
libvirt. Connections live as long as the farm process: the test driver forgets its domains
and volumes when its connection closes, and reopening a remote connection per call is slow.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from xml.etree import ElementTree as ET

import libvirt

from formarket.errors import FormarketError
from formarket.farm.errors import TransientError
from formarket.farm.hosts import Host

__all__ = [
    "Connections",
    "DomainXml",
    "HostConnection",
    "HostError",
    "HostUnreachable",
    "Readable",
    "VolumeExists",
]

# libvirt prints every error to stderr by default; we translate them into exceptions instead.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

_UNREACHABLE_CODES = frozenset(
    {
        libvirt.VIR_ERR_NO_CONNECT,
        libvirt.VIR_ERR_SYSTEM_ERROR,
        libvirt.VIR_ERR_RPC,
        libvirt.VIR_ERR_AUTH_FAILED,
        libvirt.VIR_ERR_INVALID_CONN,
    }
)


class HostError(FormarketError):
    """libvirt refused or failed an operation on a host."""

    def __init__(self, host: str, message: str, *, hint: str = "") -> None:
        super().__init__(f"host {host}: {message}", hint=hint)
        self.host = host


class HostUnreachable(HostError, TransientError):
    """The host does not answer; the farm marks it down and tries again later."""


class VolumeExists(HostError):
    """A volume of that name is already in the pool (creation is atomic: a lock can use it)."""


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class DomainXml:
    """A domain as libvirt describes it."""

    name: str
    xml: str
    running: bool


def _code(exc: libvirt.libvirtError) -> int:
    code = exc.get_error_code()
    return int(code) if code is not None else 0


class HostConnection:
    """One open connection to one host's libvirt."""

    def __init__(self, host: Host, conn: libvirt.virConnect) -> None:
        self.host = host
        self._conn = conn
        self._lock = threading.RLock()  # libvirt connections are not safe across threads
        self._is_test: bool | None = None

    @classmethod
    def open(cls, host: Host) -> HostConnection:
        try:
            conn = libvirt.open(host.uri)
        except libvirt.libvirtError as exc:
            raise HostUnreachable(
                host.name,
                f"cannot connect to {host.uri}: {exc.get_error_message()}",
                hint="is libvirtd running there, and does the URI name its socket?",
            ) from exc
        return cls(host, conn)

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def is_test(self) -> bool:
        """The libvirt test driver: domains and volumes are records, with no disk or process."""
        if self._is_test is None:
            with self._call("ask the driver type"):
                self._is_test = bool(self._conn.getType() == "TEST")
        return self._is_test

    def close(self) -> None:
        # Closing a dead connection fails; nothing is left to release then.
        with self._lock, contextlib.suppress(libvirt.libvirtError):
            self._conn.close()

    def answers(self) -> bool:
        """Whether the host still answers on this connection."""
        with self._lock:
            try:
                return bool(self._conn.isAlive()) and self._conn.getLibVersion() > 0
            except libvirt.libvirtError:
                return False

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        with self._lock:
            try:
                yield
            except libvirt.libvirtError as exc:
                message = f"cannot {what}: {exc.get_error_message()}"
                alive = False
                try:
                    alive = bool(self._conn.isAlive())
                except libvirt.libvirtError:
                    alive = False
                if _code(exc) in _UNREACHABLE_CODES and not alive:
                    raise HostUnreachable(self.name, message) from exc
                raise HostError(self.name, message) from exc

    # Domains

    def domains(self) -> list[DomainXml]:
        """Every domain on the host, running or not (formarket's and any others)."""
        found = []
        with self._call("list domains"):
            for dom in self._conn.listAllDomains(0):
                try:
                    found.append(DomainXml(dom.name(), dom.XMLDesc(0), bool(dom.isActive())))
                except libvirt.libvirtError as exc:
                    if _code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
                        raise
                    # Undefined between the listing and the question: it is not there.
        return found

    def domain(self, name: str) -> DomainXml | None:
        with self._call(f"look up domain {name}"):
            dom = self._lookup(name)
            if dom is None:
                return None
            return DomainXml(dom.name(), dom.XMLDesc(0), bool(dom.isActive()))

    def _lookup(self, name: str) -> libvirt.virDomain | None:
        try:
            return self._conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if _code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def define_and_start(self, xml: str) -> None:
        with self._call("define and start a domain"):
            dom = self._conn.defineXML(xml)
            if not dom.isActive():
                dom.create()

    def power_off(self, name: str) -> bool:
        """Stop (hard) a running domain and keep its definition; False if it was not running."""
        with self._call(f"stop domain {name}"):
            dom = self._lookup(name)
            if dom is None or not dom.isActive():
                return False
            dom.destroy()
            return True

    def power_on(self, name: str) -> bool:
        """Start a defined domain that is not running; False if it already ran."""
        with self._call(f"start domain {name}"):
            dom = self._lookup(name)
            if dom is None:
                raise libvirt.libvirtError(f"no domain {name} to start")
            if dom.isActive():
                return False
            dom.create()
            return True

    def destroy(self, name: str) -> bool:
        """Stop (hard) and undefine a domain; False when there was none."""
        with self._call(f"remove domain {name}"):
            dom = self._lookup(name)
            if dom is None:
                return False
            if dom.isActive():
                dom.destroy()
            dom.undefine()
            return True

    # Node devices

    def node_devices(self) -> list[str]:
        """libvirt's names of the host's devices (`pci_0000_41_00_0`, `mdev_...`)."""
        with self._call("list node devices"):
            return sorted(device.name() for device in self._conn.listAllDevices(0))

    # Storage

    def _pool(self) -> libvirt.virStoragePool | None:
        try:
            return self._conn.storagePoolLookupByName(self.host.storage_pool)
        except libvirt.libvirtError as exc:
            if _code(exc) == libvirt.VIR_ERR_NO_STORAGE_POOL:
                return None
            raise

    def ensure_pool(self) -> str:
        """The host's storage pool, created (a dir pool at `pool_path`) and started if need be;
        the pool's folder on the host."""
        with self._call(f"prepare storage pool {self.host.storage_pool}"):
            pool = self._pool()
            if pool is None:
                path = self.host.pool_path
                if path is None and self.is_test:
                    path = "/formarket-pool"  # the test driver's pools are records, no folder
                if path is None:
                    raise HostError(
                        self.name,
                        f"there is no storage pool {self.host.storage_pool!r}",
                        hint="give the host a pool_path in the inventory, or create the pool",
                    )
                pool = self._conn.storagePoolDefineXML(_pool_xml(self.host.storage_pool, path), 0)
                pool.build(0)
                pool.setAutostart(1)
            if not pool.isActive():
                pool.create(0)
            pool.refresh(0)
            return _pool_path(pool.XMLDesc(0))

    def volumes(self, prefix: str = "") -> list[str]:
        """Names of the pool's volumes that start with `prefix` (none when there is no pool)."""
        with self._call("list volumes"):
            pool = self._pool()
            if pool is None or not pool.isActive():
                return []
            pool.refresh(0)
            return sorted(n for n in pool.listVolumes() if n.startswith(prefix))

    def _volume(self, name: str) -> libvirt.virStorageVol | None:
        pool = self._pool()
        if pool is None:
            return None
        try:
            return pool.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if _code(exc) == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise

    def volume_path(self, name: str) -> str | None:
        with self._call(f"look up volume {name}"):
            vol = self._volume(name)
            return None if vol is None else str(vol.path())

    def create_volume(
        self,
        name: str,
        capacity: int,
        *,
        fmt: str = "raw",
        backing: tuple[str, str] | None = None,
    ) -> str:
        """A new volume (`backing` is a backing file's path and format); its path."""
        with self._call(f"create volume {name}"):
            pool = self._pool()
            if pool is None:
                raise HostError(self.name, f"no storage pool {self.host.storage_pool!r}")
            try:
                return str(pool.createXML(_volume_xml(name, capacity, fmt, backing), 0).path())
            except libvirt.libvirtError as exc:
                if _code(exc) == libvirt.VIR_ERR_STORAGE_VOL_EXIST:
                    raise VolumeExists(self.name, f"volume {name} exists already") from exc
                raise

    def delete_volume(self, name: str) -> bool:
        with self._call(f"delete volume {name}"):
            vol = self._volume(name)
            if vol is None:
                return False
            vol.delete(0)
            return True

    def upload(self, name: str, source: Readable, length: int) -> None:
        """Write `length` bytes from `source` into a volume, over the connection."""
        with self._call(f"upload volume {name}"):
            vol = self._volume(name)
            if vol is None:
                raise HostError(self.name, f"no volume {name} to upload into")
            stream = self._conn.newStream(0)
            vol.upload(stream, 0, length, 0)
            try:
                stream.sendAll(_read_chunk, source)
                stream.finish()
            except BaseException:
                _abort(stream)
                raise

    def download(self, name: str, sink: Callable[[bytes], object], length: int = 0) -> bool:
        """Stream a volume's bytes (the first `length`, or all) to `sink`; False if absent."""
        with self._call(f"download volume {name}"):
            vol = self._volume(name)
            if vol is None:
                return False
            stream = self._conn.newStream(0)
            vol.download(stream, 0, length, 0)
            try:
                stream.recvAll(_write_chunk, sink)
                stream.finish()
            except BaseException:
                _abort(stream)
                raise
            return True


def _read_chunk(_stream: Any, nbytes: int, source: Readable) -> bytes:
    return source.read(nbytes)


def _write_chunk(_stream: Any, data: bytes, sink: Callable[[bytes], object]) -> int:
    sink(data)
    return len(data)


def _abort(stream: libvirt.virStream) -> None:
    # The stream may be gone already; the original error is the one to report.
    with contextlib.suppress(libvirt.libvirtError):
        stream.abort()


def _pool_xml(name: str, path: str) -> str:
    pool = ET.Element("pool", type="dir")
    ET.SubElement(pool, "name").text = name
    target = ET.SubElement(pool, "target")
    ET.SubElement(target, "path").text = str(Path(path).absolute())
    return ET.tostring(pool, encoding="unicode")


def _pool_path(xml: str) -> str:
    path = ET.fromstring(xml).findtext("target/path")  # noqa: S314 - XML from libvirt
    return path or ""


def _volume_xml(name: str, capacity: int, fmt: str, backing: tuple[str, str] | None) -> str:
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(capacity)
    ET.SubElement(vol, "allocation", unit="bytes").text = "0"
    target = ET.SubElement(vol, "target")
    ET.SubElement(target, "format", type=fmt)
    if backing is not None:
        store = ET.SubElement(vol, "backingStore")
        ET.SubElement(store, "path").text = backing[0]
        ET.SubElement(store, "format", type=backing[1])
    return ET.tostring(vol, encoding="unicode")


Opener = Callable[[Host], HostConnection]


class Connections:
    """One open connection per host for the life of the process; hosts that stop answering
    are marked down (and asked again on the next `get`)."""

    def __init__(self, opener: Opener = HostConnection.open) -> None:
        self._opener = opener
        self._open: dict[str, HostConnection] = {}
        self._down: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, host: Host) -> HostConnection:
        """An answering connection to `host`; HostUnreachable (and the host marked down) if not."""
        with self._lock:
            conn = self._open.get(host.name)
            if conn is not None and conn.host.uri == host.uri and conn.answers():
                self._down.pop(host.name, None)
                return conn
            if conn is not None:
                conn.close()
                del self._open[host.name]
            try:
                conn = self._opener(host)
            except HostUnreachable as exc:
                self._down[host.name] = exc.message
                raise
            self._open[host.name] = conn
            self._down.pop(host.name, None)
            return conn

    def mark_down(self, host: str, reason: str) -> None:
        """Forget a host's connection after it failed mid-operation."""
        with self._lock:
            self._down[host] = reason
            conn = self._open.pop(host, None)
        if conn is not None:
            conn.close()

    def down(self) -> dict[str, str]:
        """Hosts last seen not answering, with why."""
        with self._lock:
            return dict(self._down)

    def close(self) -> None:
        with self._lock:
            conns = list(self._open.values())
            self._open.clear()
        for conn in conns:
            conn.close()
