"""Real processes for the crash tests: a gateway, a flusher and a stand-in, each startable
again after a SIGKILL."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from formarket.process import Runner, Started

PYTHON = [sys.executable, "-m", "formarket"]


class Proc:
    """A command run again and again: `start` it, `kill` it (SIGKILL, no goodbye), `stop` it
    (SIGTERM, a clean exit). Its output goes to a log file, which `url` reads."""

    def __init__(self, name: str, argv: list[str], logs: Path) -> None:
        self.name = name
        self.argv = argv
        self.logs = logs
        self.runs = 0
        self.started: Started | None = None
        self.log: Path | None = None

    def start(self) -> None:
        self.runs += 1
        self.log = self.logs / f"{self.name}-{self.runs}.log"
        with self.log.open("wb") as output:
            self.started = Runner().start(self.argv, output=output)

    def alive(self) -> bool:
        return self.started is not None and self.started.poll() is None

    def kill(self) -> None:
        assert self.started is not None
        os.kill(self.started.pid, signal.SIGKILL)
        self.started.stop(grace=5)

    def stop(self) -> int:
        assert self.started is not None
        return self.started.stop(grace=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""

    def url(self, timeout: float = 30) -> str:
        """The first http:// URL the process printed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for word in self.output().split():
                if word.startswith("http://"):
                    return word
            if not self.alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"{self.name} printed no URL:\n{self.output()}")
