"""A real agent VM (qemu under TCG, a private libvirtd) reaches the gateway it is forwarded to
and nothing else: not another port of the host, not the gateway's own port directly."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx  # noqa: TID251 - the deployment is called as a user calls it
import pytest

from formarket.builder.store import DirectoryStore
from formarket.farm import deployer
from formarket.farm.domain import GUEST_GATEWAY
from formarket.farm.hosts import Host
from formarket.farm.libvirt_conn import Connections
from tests.builder.conftest import write_context
from tests.farm_libvirt.factories import deployment
from tests.farm_libvirt.real import build, qemu_processes

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("libvirtd"),
    pytest.mark.skipif(os.geteuid() != 0, reason="building images needs root"),
]

PROBE = """\
NAME net-probe
FROM busybox
MEMORY 512
DISK 5
COPY ./probe.sh /srv/probe.sh
EXPOSE 8080
ENTRYPOINT sh /srv/probe.sh
"""
# Each probe tries to fetch a page and says what it got; the results are served once done.
SCRIPT = """\
mkdir -p /srv/www
probe() {
  # busybox's own `wget -T` crashes: `timeout` bounds a probe instead.
  if out=$(timeout 8 wget -q -O - "$1" 2>/dev/null); then
    printf 'ok:%s' "$out"
  else
    printf 'no'
  fi
}
{
  printf 'gateway=%s\\n' "$(probe "$MODEL_ENDPOINT/")"
  printf 'other=%s\\n' "$(probe "http://10.0.2.2:$OTHER_PORT/")"
  printf 'direct=%s\\n' "$(probe "http://10.0.2.2:$GATEWAY_PORT/")"
} > /srv/www/probe.txt.tmp
mv /srv/www/probe.txt.tmp /srv/www/probe.txt
exec httpd -f -p 8080 -h /srv/www
"""


@contextlib.contextmanager
def serving(text: str) -> Iterator[int]:
    """An HTTP server on a free loopback port that answers every GET with `text`."""

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_an_agent_vm_reaches_the_gateway_and_no_other_port_of_the_host(
    host: Host, conns: Connections, tmp_path: Path
) -> None:
    result = build(write_context(tmp_path / "ctx", PROBE, {"probe.sh": SCRIPT}), tmp_path)
    conn = conns.get(host)
    agent = deployment(
        "dep-net000000001",
        kind="agent",
        listing="tinyforge/net-probe",
        model_deployment="dep-net000000002",
    )
    store = DirectoryStore(tmp_path / "store")
    with serving("the gateway") as gateway_port, serving("another service") as other_port:
        env = {
            "MODEL_ENDPOINT": f"http://{GUEST_GATEWAY}",
            "OTHER_PORT": str(other_port),
            "GATEWAY_PORT": str(gateway_port),
        }
        gateway = f"http://127.0.0.1:{gateway_port}"
        started = deployer.start(conn, host, agent, result.manifest, store, env, gateway=gateway)
        try:
            assert started.endpoint is not None
            deployer.wait_healthy(started.endpoint, timeout=120)
            found = httpx.get(started.endpoint + "/probe.txt", timeout=30)
        finally:
            deployer.stop(conn, agent.id)
    assert found.status_code == 200
    results = dict(line.split("=", 1) for line in found.text.splitlines())
    assert results == {"gateway": "ok:the gateway", "other": "no", "direct": "no"}
    assert qemu_processes([agent.id]) == []
