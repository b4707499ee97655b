"""How `formarket test` reads a hostile VM's answer: over a real socket, from a server that
misbehaves on purpose. Every read ends, within its size and time limits, with a finding."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from formarket.builder.smoke import (
    SmokeReport,
    call_until_answered,
    console_tail,
    read_answer,
    wait_for_marker,
)
from formarket.errors import FormarketError
from formarket.registry.smoke import SmokeCall

_GET = SmokeCall("GET", "/", 1, None)
_STOP = threading.Event()
_CALLS: dict[str, int] = {}


def _head(length: int | None = None, status: str = "200 OK") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else ""
    return f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{size}\r\n".encode()


class _Hostile(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        request = b""
        while b"\r\n\r\n" not in request:
            piece = sock.recv(4096)
            if not piece:
                return
            request += piece
        path = request.split(b" ", 2)[1].decode()
        _CALLS[path] = _CALLS.get(path, 0) + 1
        try:
            if path == "/garbage":
                junk = bytes(range(256)) * 4
                sock.sendall(_head(len(junk)) + junk)
            elif path == "/zeros":  # an endless answer, as fast as it can go
                sock.sendall(_head())
                while not _STOP.is_set():
                    sock.sendall(b"0" * 65536)
            elif path == "/trickle":  # an endless answer, a byte at a time
                sock.sendall(_head())
                while not _STOP.is_set():
                    sock.sendall(b"x")
                    time.sleep(0.05)
            elif path == "/silent":
                _STOP.wait(30)
            elif path == "/not-http":
                sock.sendall(b"\x00\xffnot an HTTP answer\r\n\r\n")
            elif path == "/starting":  # two 503s while the service starts, then an answer
                body = b'{"ok": true}'
                if _CALLS[path] <= 2:
                    sock.sendall(_head(0, "503 Service Unavailable"))
                else:
                    sock.sendall(_head(len(body)) + body)
            elif path == "/teapot":
                sock.sendall(_head(2, "418 I'm a teapot") + b"{}")
        except OSError:
            pass  # the reader hung up, as it should on an endless answer


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Hostile) as srv:
        srv.daemon_threads = True
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{srv.server_address[1]}"
        finally:
            _STOP.set()
            srv.shutdown()


def test_garbage_is_read_whole_and_left_to_the_judge(server: str) -> None:
    status, body, note = read_answer(f"{server}/garbage", _GET, timeout=5, max_bytes=1 << 20)
    assert (status, len(body), note) == (200, 1024, "")


def test_an_endless_answer_is_cut_at_the_size_limit(server: str) -> None:
    started = time.monotonic()
    status, body, note = read_answer(f"{server}/zeros", _GET, timeout=30, max_bytes=200_000)
    assert status == 200
    assert len(body) == 200_000
    assert "over 200000 bytes" in note
    assert time.monotonic() - started < 20


def test_an_answer_trickled_forever_is_cut_at_the_time_limit(server: str) -> None:
    started = time.monotonic()
    status, body, note = read_answer(f"{server}/trickle", _GET, timeout=1.5, max_bytes=1 << 20)
    took = time.monotonic() - started
    assert status == 200
    assert 0 < len(body) < 1000
    assert "still coming after 1.5s" in note
    assert took < 10


def test_a_service_that_never_answers_is_given_up_on(server: str) -> None:
    started = time.monotonic()
    status, body, note = call_until_answered(f"{server}/silent", _GET, 200, 2, 1 << 20)
    assert (status, body) == (None, b"")
    assert note.startswith("no answer within 2s")
    assert time.monotonic() - started < 10


def test_an_answer_that_is_not_http_is_no_answer(server: str) -> None:
    with pytest.raises(FormarketError):
        read_answer(f"{server}/not-http", _GET, timeout=2, max_bytes=1 << 20)
    status, _, note = call_until_answered(f"{server}/not-http", _GET, 200, 1.5, 1 << 20)
    assert status is None
    assert "no answer" in note


def test_a_starting_service_is_asked_again_and_a_wrong_status_is_final(server: str) -> None:
    status, body, _ = call_until_answered(f"{server}/starting", _GET, 200, 20, 1 << 20)
    assert (status, body, _CALLS["/starting"]) == (200, b'{"ok": true}', 3)
    status, _, _ = call_until_answered(f"{server}/teapot", _GET, 200, 20, 1 << 20)
    assert (status, _CALLS["/teapot"]) == (418, 1)


def _report(problems: tuple[str, ...], body: bytes) -> SmokeReport:
    call = SmokeCall("POST", "/v1/chat/completions", 8080, b"{}")
    return SmokeReport(
        "acme/echo",
        "1.0.0",
        "ab" * 32,
        call,
        200,
        body,
        problems,
        "FORMFILE-BOOT-OK\nlast line",
        {"build": 1.0, "boot": 4.5},
    )


def test_a_passed_report_is_one_line_and_a_failed_one_shows_what_came() -> None:
    passed = _report((), b"{}").render()
    assert passed == (
        "passed: acme/echo 1.0.0 (abababababababab): POST /v1/chat/completions"
        " (build 1.0s, boot 4.5s)"
    )
    failed = _report(("status: expected 201, got 200",), b"x" * 5000).render().splitlines()
    assert failed[0] == "FAILED: acme/echo 1.0.0 (abababababababab): POST /v1/chat/completions"
    assert failed[1] == "  status: expected 201, got 200"
    assert "  body (first 2000 of 5000 bytes):" in failed
    assert "    | " + "x" * 2000 in failed
    assert failed[-3:] == ["    | FORMFILE-BOOT-OK", "    | last line", "  (build 1.0s, boot 4.5s)"]


def test_the_json_report_holds_the_verdict_and_the_problems() -> None:
    from formarket.commands.test import _as_data

    data = _as_data(_report(("body: expected JSON",), b"\xff" * 3000))
    assert data["passed"] is False
    assert data["problems"] == ["body: expected JSON"]
    assert len(str(data["body"])) == 2000
    assert data["seconds"] == {"build": 1.0, "boot": 4.5}


def _writer(path: Path, pieces: list[bytes], pause: float) -> threading.Thread:
    def write() -> None:
        with path.open("ab") as out:
            for piece in pieces:
                out.write(piece)
                out.flush()
                time.sleep(pause)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_the_boot_marker_is_found_across_reads(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    # The marker arrives split over two writes, after the reader has seen its first half.
    _writer(console, [b"booting\nFORMFILE-BO", b"OT-OK 10.0.2.15/24\n"], 0.3)
    assert wait_for_marker(console, lambda: True, 10, 1 << 20) == ""


def test_a_console_flood_or_a_dead_qemu_ends_the_wait(tmp_path: Path) -> None:
    flood = tmp_path / "flood.log"
    _writer(flood, [b"y" * 65536] * 64, 0.0)
    started = time.monotonic()
    why = wait_for_marker(flood, lambda: True, 30, 1 << 20)
    assert why == f"the VM wrote over {1 << 20} bytes to its console before its boot marker"
    assert time.monotonic() - started < 20
    quiet = tmp_path / "quiet.log"
    quiet.write_bytes(b"Kernel panic\n")
    assert wait_for_marker(quiet, lambda: False, 30, 1 << 20) == (
        "qemu exited while the VM was booting"
    )
    assert wait_for_marker(quiet, lambda: True, 0.3, 1 << 20).startswith("no boot marker")


def test_the_console_tail_reads_only_the_end_of_a_large_console(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_bytes(b"x" * (8 << 20) + b"\n" + b"".join(b"line %d\n" % n for n in range(40)))
    tail = console_tail(console).splitlines()
    assert tail == [f"line {n}" for n in range(15, 40)]
    assert console_tail(tmp_path / "none.log") == ""


def test_a_console_flooded_during_the_call_stops_the_vm(tmp_path: Path) -> None:
    from formarket.builder.smoke import _ConsoleWatch

    flood, calm = tmp_path / "flood.log", tmp_path / "calm.log"
    calm.write_bytes(b"FORMFILE-BOOT-OK\n")
    stopped: list[str] = []
    with _ConsoleWatch(flood, 1 << 20, lambda: stopped.append("flood")) as flooded:
        _writer(flood, [b"y" * 65536] * 64, 0.0).join()
        time.sleep(1.5)
    with _ConsoleWatch(calm, 1 << 20, lambda: stopped.append("calm")) as quiet:
        time.sleep(1.0)
    assert flooded.flooded
    assert not quiet.flooded
    assert stopped == ["flood"]
