"""Booting a built image under qemu for a quick look: tests, the demo and `formarket build`
users who want to try their image. (The farm deploys through libvirt; this is the same direct
kernel boot without a daemon.)

Software emulation (TCG) by default: these machines have no usable KVM. The published disk is
never written: qemu keeps the VM's writes in a temporary overlay (`snapshot=on`). User-mode
networking forwards each EXPOSEd port from 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path
from types import TracebackType

from formarket.builder.manifest import BuildManifest
from formarket.errors import FormarketError
from formarket.httpclient import Client, HTTPError
from formarket.process import Runner, Started

__all__ = ["BOOT_MARKER", "BootError", "RunningVM", "boot", "free_port"]

BOOT_MARKER = b"FORMFILE-BOOT-OK"


class BootError(FormarketError):
    """The VM did not boot or its service did not answer; the hint holds the console's tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (qemu binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RunningVM:
    """A booted image; `ports` maps each guest port to its 127.0.0.1 port."""

    def __init__(self, process: Started, console: Path, ports: dict[int, int]) -> None:
        self.process = process
        self.console = console
        self.ports = ports

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _fail(self, message: str) -> BootError:
        tail = "\n".join(self.console_text().splitlines()[-15:])
        return BootError(message, hint=f"the VM's console ended with:\n{tail}")

    def wait_booted(self, timeout: float = 120.0) -> float:
        """Seconds until the image's init printed its boot marker on the console."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if BOOT_MARKER in self.console_text().encode():
                return time.monotonic() - started
            if self.process.poll() is not None:
                raise self._fail(f"qemu exited with status {self.process.poll()} while booting")
            time.sleep(0.1)
        raise self._fail(f"no boot marker on the console after {timeout:.0f}s")

    def request(
        self,
        guest_port: int,
        path: str = "/",
        *,
        body: bytes | None = None,
        timeout: float = 60.0,
    ) -> bytes:
        """An HTTP request to a forwarded port (a POST when there is a body), retried until
        the service answers with a success."""
        url = f"http://127.0.0.1:{self.ports[guest_port]}{path}"
        method, headers = (
            ("GET", {}) if body is None else ("POST", {"Content-Type": "application/json"})
        )
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with Client(timeout=10.0) as client:
            while time.monotonic() < deadline:
                try:
                    response = client.request(method, url, content=body, headers=headers)
                except HTTPError as exc:
                    last = exc.message
                else:
                    if response.is_success:
                        return response.content
                    # A service still starting may answer with an error before it is ready.
                    last = f"status {response.status_code}"
                time.sleep(0.3)
        raise self._fail(f"{url} did not answer within {timeout:.0f}s ({last})")

    def stop(self) -> None:
        self.process.stop(grace=2.0)

    def __enter__(self) -> RunningVM:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def boot(
    runner: Runner,
    image_dir: Path,
    manifest: BuildManifest,
    *,
    console: Path | None = None,
    accel: str = "tcg",
    memory_mib: int | None = None,
    data_disk: Path | None = None,
) -> RunningVM:
    """Start qemu on a published image with direct kernel boot; ports forwarded on 127.0.0.1.
    `data_disk`: a weights' data disk, attached read-only as the farm attaches it."""
    console = console or Path(tempfile.mkdtemp(prefix="formarket-vm-")) / "console.log"
    ports = {guest: free_port() for guest in manifest.expose}
    forwards = "".join(f",hostfwd=tcp:127.0.0.1:{host}-:{guest}" for guest, host in ports.items())
    disk = image_dir / manifest.artifact("disk").name
    argv: list[str | Path] = [
        "qemu-system-x86_64",
        "-accel",
        accel,
        "-m",
        str(memory_mib or manifest.memory_mib),
        "-smp",
        str(manifest.vcpus),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        f"file:{console}",
        "-kernel",
        image_dir / manifest.artifact("kernel").name,
        "-initrd",
        image_dir / manifest.artifact("initrd").name,
        "-append",
        manifest.kernel_cmdline,
        "-drive",
        f"file={disk},if=virtio,format=qcow2,snapshot=on",
        "-netdev",
        f"user,id=net0{forwards}",
        "-device",
        "virtio-net-pci,netdev=net0",
    ]
    if data_disk is not None:
        # After an empty config disk, as the farm orders them: the base's init reads vdb as
        # the config disk, and finds the data disk by its label.
        blank = console.with_name(console.name + ".config.img")
        blank.write_bytes(bytes(4096))
        argv += ["-drive", f"file={blank},if=virtio,format=raw,readonly=on"]
        argv += ["-drive", f"file={data_disk},if=virtio,format=raw,readonly=on"]
    return RunningVM(runner.start(argv), console, ports)
