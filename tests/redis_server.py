"""A private redis-server for tests: a free port, a temp folder, nothing kept on disk.

    with RedisServer(tmp_path) as redis:
        redis.url                  # redis://127.0.0.1:PORT/0
        redis.restart(wipe=True)   # Redis comes back empty, as after a crash without disk

Never the machine's own Redis on 6379: tests running in parallel each start their own.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import redis as redis_py

from formarket.process import Runner, Started

__all__ = ["RedisServer", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server on 127.0.0.1 and a free port, its files in `folder`."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.runner = Runner()
        self._process: Started | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis_py.Redis:
        return redis_py.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self, timeout: float = 10.0) -> RedisServer:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.folder), "--save", "", "--appendonly", "no"]
        argv += ["--protected-mode", "no", "--loglevel", "warning"]
        with (self.folder / "redis.log").open("ab") as log:
            self._process = self.runner.start(argv, output=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = (self.folder / "redis.log").read_text()
                raise RuntimeError(f"redis-server exited: {log}")
            try:
                with self.client() as client:
                    client.ping()
                return self
            except redis_py.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer in {timeout}s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(grace=5)
            self._process = None

    def restart(self, wipe: bool = True) -> None:
        """Stop and start again on the same port; with `wipe` it comes back empty (nothing is
        saved to disk, so a restart always loses the data: wipe=False keeps it by SAVE)."""
        if not wipe:
            with self.client() as client:
                client.config_set("dbfilename", "dump.rdb")
                client.save()
        self.stop()
        if wipe:
            (self.folder / "dump.rdb").unlink(missing_ok=True)
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
