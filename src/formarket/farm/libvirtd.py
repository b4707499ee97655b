"""A private libvirtd for the test suite and `formarket demo`: qemu under TCG, no systemd.

It is libvirt's per-user ("session") daemon with every folder of its own under a work dir (its
XDG folders: socket, configuration, logs, domain state), so it touches nothing of the system's
libvirt: no /etc/libvirt, no /run/libvirt, no users to create. A session daemon must not run
as root (libvirtd as root ignores the XDG folders and becomes the system daemon), so when
formarket runs as root the daemon runs as an unprivileged user (`nobody` by default) through
`setpriv`, and its work dir belongs to that user. Everything a VM needs (images, overlays,
config disks, console logs) reaches it through libvirt's storage pool under the work dir, so
the daemon never reads formarket's own files.

Reach it at `qemu+unix:///session?socket=<workdir>/run/libvirt/libvirt-sock`.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import pwd
import shutil
import signal
import stat
import time
from pathlib import Path

from formarket.errors import FormarketError, NotFoundError
from formarket.farm.hosts import Host
from formarket.farm.libvirt_conn import HostConnection, HostUnreachable
from formarket.process import Runner

__all__ = ["LibvirtdError", "ensure_libvirtd", "libvirtd_uri", "local_host", "stop_libvirtd"]

DAEMON_USER = "nobody"
_SOCKET_MAX = 107  # sun_path holds 108 bytes with the final NUL
_PACKAGES = "libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86"


class LibvirtdError(FormarketError):
    """The private libvirtd could not be started."""


def _socket(workdir: Path) -> Path:
    return workdir.absolute() / "run" / "libvirt" / "libvirt-sock"


def libvirtd_uri(workdir: Path) -> str:
    """The URI of the private libvirtd kept in `workdir`."""
    return f"qemu+unix:///session?socket={_socket(workdir)}"


def local_host(
    workdir: Path, name: str = "local", *, vcpus: int = 2, memory_mib: int = 4096
) -> Host:
    """The inventory entry of the private libvirtd in `workdir`: software emulation, ports
    forwarded on 127.0.0.1, a storage pool in `workdir/pool`."""
    return Host(
        name=name,
        uri=libvirtd_uri(workdir),
        vcpus=vcpus,
        memory_mib=memory_mib,
        domain_type="qemu",
        address="127.0.0.1",
        storage_pool="formarket",
        pool_path=str(workdir.absolute() / "pool"),
    )


def _require_installed() -> str:
    daemon = shutil.which("libvirtd") or shutil.which("libvirtd", path="/usr/sbin:/sbin")
    if daemon is None:
        raise NotFoundError(
            "libvirtd is not installed",
            hint=f"apt-get install --no-install-recommends {_PACKAGES}",
        )
    if not glob.glob("/usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so"):
        raise NotFoundError(
            "libvirt's qemu driver is not installed",
            hint="apt-get install --no-install-recommends libvirt-daemon-driver-qemu",
        )
    if shutil.which("qemu-system-x86_64") is None:
        raise NotFoundError(
            "qemu-system-x86_64 is not installed",
            hint="apt-get install --no-install-recommends qemu-system-x86",
        )
    return daemon


def _pid(workdir: Path) -> int | None:
    """The daemon's pid if it runs (a stale pid file names another program or none)."""
    try:
        pid = int((workdir / "libvirtd.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"libvirtd" in cmdline else None


def _answers(uri: str) -> bool:
    probe = Host(name="libvirtd", uri=uri, vcpus=1, memory_mib=128)
    try:
        conn = HostConnection.open(probe)
    except HostUnreachable:
        return False
    try:
        return conn.answers()
    finally:
        conn.close()


def _unreachable_parent(path: Path, uid: int) -> Path | None:
    """The first folder above `path` that user `uid` cannot pass through, if any."""
    for parent in path.absolute().parents:
        mode = parent.stat()
        allowed = stat.S_IXOTH | (stat.S_IXUSR if mode.st_uid == uid else 0)
        if not mode.st_mode & allowed:
            return parent
    return None


def _prepare(workdir: Path, uid: int, gid: int) -> None:
    for sub in ("run", "config/libvirt", "cache", "data", "home", "pool"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    (workdir / "run").chmod(0o700)
    (workdir / "config/libvirt/libvirtd.conf").write_text(
        f'log_outputs = "3:file:{workdir / "libvirtd.log"}"\n'
    )
    # qemu's own output goes to a file, so no virtlogd is needed. libvirt's seccomp sandbox
    # forbids qemu to start processes, which an agent's forward to the gateway needs: each
    # domain brings its own sandbox instead (formarket.farm.domain).
    (workdir / "config/libvirt/qemu.conf").write_text(
        'stdio_handler = "file"\nseccomp_sandbox = 0\n'
    )
    if os.geteuid() == 0:
        for folder, dirs, files in os.walk(workdir):
            for name in (folder, *(os.path.join(folder, f) for f in dirs + files)):
                os.lchown(name, uid, gid)


def ensure_libvirtd(
    workdir: Path,
    *,
    runner: Runner | None = None,
    user: str = DAEMON_USER,
    timeout: float = 20.0,
) -> str:
    """The URI of a private libvirtd kept in `workdir`, started unless it already runs."""
    workdir = workdir.absolute()
    uri = libvirtd_uri(workdir)
    if _pid(workdir) is not None and _answers(uri):
        return uri
    daemon = _require_installed()
    if len(str(_socket(workdir))) > _SOCKET_MAX:
        raise LibvirtdError(
            f"{workdir}: too deep for a unix socket path ({len(str(_socket(workdir)))} bytes)",
            hint="use a shorter work dir, for example under /tmp",
        )
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        try:
            account = pwd.getpwnam(user)
        except KeyError as exc:
            raise LibvirtdError(f"there is no user {user!r} to run libvirtd as") from exc
        uid, gid = account.pw_uid, account.pw_gid
    workdir.mkdir(parents=True, exist_ok=True)
    blocked = _unreachable_parent(workdir, uid)
    if blocked is not None:
        raise LibvirtdError(
            f"libvirtd runs as {user!r}, who cannot enter {blocked}",
            hint="put its work dir somewhere every user can reach, for example under /tmp",
        )
    # Two processes (the demo and a worker) may ask at once: one starts it, the other waits.
    with (workdir / "libvirtd.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _pid(workdir) is not None and _answers(uri):
            return uri
        _prepare(workdir, uid, gid)
        argv = [daemon, "--daemon", "--pid-file", str(workdir / "libvirtd.pid")]
        if uid != os.geteuid():
            argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv]
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "XDG_RUNTIME_DIR": str(workdir / "run"),
            "XDG_CONFIG_HOME": str(workdir / "config"),
            "XDG_CACHE_HOME": str(workdir / "cache"),
            "XDG_DATA_HOME": str(workdir / "data"),
            "HOME": str(workdir / "home"),
        }
        hint = "see libvirtd.log in the work dir"
        (runner or Runner()).run(argv, env=env, timeout=timeout, hint=hint)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _socket(workdir).exists() and _answers(uri):
                return uri
            time.sleep(0.1)
    log = workdir / "libvirtd.log"
    tail = log.read_text(errors="replace").splitlines()[-10:] if log.exists() else []
    raise LibvirtdError(
        f"libvirtd in {workdir} did not answer within {timeout:.0f}s",
        hint=("its log ends with:\n" + "\n".join(tail)) if tail else "see libvirtd.log",
    )


def stop_libvirtd(workdir: Path, *, timeout: float = 10.0) -> bool:
    """Stop the private libvirtd in `workdir` and the VMs it runs; False if none ran."""
    workdir = workdir.absolute()
    pid = _pid(workdir)
    if pid is None:
        return False
    uri = libvirtd_uri(workdir)
    if _answers(uri):
        conn = HostConnection.open(Host(name="libvirtd", uri=uri, vcpus=1, memory_mib=128))
        try:
            # The daemon leaves its qemu processes running when it exits: stop them first.
            for dom in conn.domains():
                conn.power_off(dom.name)
        finally:
            conn.close()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid(workdir) == pid:
        time.sleep(0.05)
    if _pid(workdir) == pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True
