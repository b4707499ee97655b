"""Hostile recipes are refused, or run confined to the image."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from formarket.builder.context import ContextError
from formarket.builder.plan import PlanError
from formarket.errors import LocatedError
from tests.builder.conftest import Build, image_file, write_context


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"host service")

    def log_message(self, *args: object) -> None:
        pass


def test_a_run_that_writes_outside_the_root_stays_in_the_image(
    build: Build, tmp_path: Path
) -> None:
    host_dir = tmp_path / "host-only"
    host_dir.mkdir()
    server = HTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    hostname = socket.gethostname()
    recipe = f"""\
NAME hostile
FROM busybox
RUN mkdir -p {host_dir} && echo pwned > {host_dir}/escaped && echo pwned > /../../..{host_dir}/up
RUN mkdir -p /jail/bin && cp /bin/busybox /jail/bin/sh && cd /jail \\
  && chroot . /bin/sh -c 'cd ../../..; echo out > {host_dir}/chroot' || true
RUN hostname evil-host; hostname > /hostname-inside
RUN (mount -t tmpfs none /mnt && echo mounted || echo refused) > /mount-result
RUN (mknod /dev/disk b 8 0 && echo made || echo refused) > /mknod-result
RUN ls /proc | grep -c '^[0-9]' > /processes
RUN (wget -q -T 3 -O - http://127.0.0.1:{port}/ || echo refused) > /network-result
RUN (echo x > /sys/kernel/uevent_helper) > /sys-result 2>&1 || true
"""
    try:
        result = build(write_context(tmp_path / "ctx", recipe))
    finally:
        server.shutdown()
        server.server_close()
    assert list(host_dir.iterdir()) == []
    assert socket.gethostname() == hostname
    image = result.image_dir

    def read(path: str) -> str:
        return (image_file(image, path, tmp_path) or b"").decode().strip()

    assert read(f"{host_dir}/escaped") == "pwned"
    assert read(f"{host_dir}/up") == "pwned"
    assert read("/hostname-inside") == "formarket"  # renaming needs CAP_SYS_ADMIN: dropped
    assert read("/mount-result") == "refused"
    assert read("/mknod-result") == "refused"
    assert int(read("/processes")) <= 5  # the sandbox's own, never the host's
    assert read("/network-result") == "refused"
    assert "Read-only file system" in read("/sys-result")


def test_copy_from_outside_the_context_is_refused(build: Build, tmp_path: Path) -> None:
    formfile = write_context(tmp_path / "ctx", "NAME x\nFROM busybox\nCOPY ../../etc/passwd /x\n")
    with pytest.raises(LocatedError, match="leaves the build context"):
        build(formfile)


def test_a_context_link_to_outside_is_refused_before_anything_runs(
    build: Build, tmp_path: Path
) -> None:
    formfile = write_context(tmp_path / "ctx", "NAME x\nFROM busybox\nCOPY ./www /srv/www\n")
    (tmp_path / "ctx" / "www").mkdir()
    (tmp_path / "ctx" / "www" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(ContextError, match="outside the context"):
        build(formfile)
    assert not (tmp_path / "store" / "staging").exists()


@pytest.mark.parametrize(
    "packages",
    ["curl;rm -rf /", "curl$(reboot)", "curl`id`", "curl|sh", "-o=APT::x", "curl&&true"],
)
def test_install_names_with_shell_metacharacters_are_refused(
    build: Build, tmp_path: Path, packages: str
) -> None:
    formfile = write_context(
        tmp_path / "ctx", f"NAME x\nFROM debian:bookworm\nINSTALL {packages}\n"
    )
    with pytest.raises(LocatedError):
        build(formfile)


def test_install_on_busybox_is_refused(build: Build, tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="no package manager"):
        build(write_context(tmp_path / "ctx", "NAME x\nFROM busybox\nINSTALL curl\n"))


def test_user_passwords_never_reach_the_image_or_the_log(build: Build, tmp_path: Path) -> None:
    recipe = (
        "NAME accounts\nFROM busybox\n"
        'USER username:agent passwd:"Tr0ub4dor&3 clear" groups:staff sudo:true'
        ' ssh_authorized_keys:"ssh-ed25519 AAAAC3Nz agent@laptop" shell:/bin/sh\n'
    )
    result = build(write_context(tmp_path / "ctx", recipe))
    image = result.image_dir
    assert b"Tr0ub4dor" not in (image / "build.log").read_bytes()
    assert b"Tr0ub4dor" not in (image / "disk.qcow2").read_bytes()
    assert b"Tr0ub4dor" not in (image / "manifest.json").read_bytes()
    shadow = (image_file(image, "/etc/shadow", tmp_path) or b"").decode()
    line = next(row for row in shadow.splitlines() if row.startswith("agent:"))
    assert line.split(":")[1].startswith("$6$")
    assert line.split(":")[2] == "0"  # chpasswd_expire: change at first login
    passwd = (image_file(image, "/etc/passwd", tmp_path) or b"").decode()
    assert "agent:x:1000:1000::/home/agent:/bin/sh" in passwd or "/home/agent:/bin/sh" in passwd
    group = (image_file(image, "/etc/group", tmp_path) or b"").decode()
    assert any(row.startswith("staff:") and "agent" in row for row in group.splitlines())
    assert any(row.startswith("sudo:") and "agent" in row for row in group.splitlines())
    keys = image_file(image, "/home/agent/.ssh/authorized_keys", tmp_path)
    assert keys == b"ssh-ed25519 AAAAC3Nz agent@laptop\n"
