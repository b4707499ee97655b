"""The one place where formarket starts processes.

Everything else receives a `Runner` and calls `run` (wait for a command, with a timeout) or
`start` (a long-running process such as a VM, stopped through its handle). Every command and the
tail of its output go to the runner's log, so a failed build says what ran and why it failed;
a command whose output may hold a secret is run with `quiet=True` and logs only its argv.

    ProcessError(FormarketError)    a command failed, timed out or could not be started
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess  # noqa: TID251 - this module is the one place that starts processes
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from formarket.errors import FormarketError

__all__ = ["Completed", "ProcessError", "Runner", "Started", "format_command"]

Log = Callable[[str], None]
_TAIL_LINES = 20


def format_command(argv: Sequence[str]) -> str:
    """A command as a shell would show it (for logs and error messages only)."""
    return shlex.join(str(arg) for arg in argv)


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class ProcessError(FormarketError):
    """A command failed: its argv, exit status and the tail of what it wrote to stderr."""

    def __init__(
        self, argv: Sequence[str], message: str, *, stderr: str = "", hint: str = ""
    ) -> None:
        shown = format_command(argv)
        super().__init__(f"`{shown}` {message}{self.quote(stderr)}", hint=hint)
        self.argv = tuple(argv)
        self.reason = message
        self.stderr = stderr

    @staticmethod
    def quote(stderr: str) -> str:
        """The tail of a command's stderr, indented, for an error message."""
        if not stderr.strip():
            return ""
        return "\n" + "\n".join(f"  | {line}" for line in _tail(stderr).splitlines())


@dataclass(frozen=True, slots=True)
class Completed:
    """A finished command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


class Started:
    """A process left running (a VM); stop it with `stop()`, or use it as a context manager."""

    def __init__(self, argv: Sequence[str], popen: subprocess.Popen[bytes], log: Log) -> None:
        self.argv = tuple(argv)
        self._popen = popen
        self._log = log

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        """The exit status, or None while it runs."""
        return self._popen.poll()

    def stop(self, grace: float = 5.0) -> int:
        """Terminate, then kill after `grace` seconds; the exit status."""
        if self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        self._log(f"stopped pid {self.pid}: {format_command(self.argv)}")
        return self._popen.returncode

    def __enter__(self) -> Started:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Runner:
    """Starts processes; `log` receives each command and the tail of its output."""

    def __init__(self, log: Log | None = None) -> None:
        self.log: Log = log or (lambda _line: None)

    def run(
        self,
        argv: Sequence[str | Path],
        *,
        timeout: float = 600.0,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        check: bool = True,
        quiet: bool = False,
        hint: str = "",
    ) -> Completed:
        """Run `argv` (never through a shell) and wait for it.

        `check` raises ProcessError on a non-zero exit; a timeout always raises, after killing
        the whole process group so that nothing it started lingers. `quiet` keeps the output
        out of the log and out of the error (it may hold a secret).
        """
        args = [str(arg) for arg in argv]
        self.log(f"$ {format_command(args)}")
        started = time.perf_counter()
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,  # a process group of its own, killed whole on timeout
            )
        except OSError as exc:
            raise ProcessError(
                args,
                f"could not be started: {exc.strerror or exc}",
                hint=hint or "is the program installed? `make` installs the Debian packages",
            ) from exc
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _kill_group(proc)
            proc.communicate()
            raise ProcessError(args, f"timed out after {timeout:.0f}s", hint=hint) from exc
        except BaseException:
            _kill_group(proc)
            proc.communicate()
            raise
        seconds = time.perf_counter() - started
        stdout = out.decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
        if not quiet:
            for line in _tail(stdout + stderr, 200).splitlines():
                self.log(f"  {line}")
        self.log(f"  (exit {proc.returncode}, {seconds:.2f}s)")
        if check and proc.returncode != 0:
            raise ProcessError(
                args,
                f"exited with status {proc.returncode}",
                stderr="" if quiet else (stderr or stdout),
                hint=hint,
            )
        return Completed(tuple(args), proc.returncode, stdout, stderr, seconds)

    def start(
        self,
        argv: Sequence[str | Path],
        *,
        output: IO[bytes] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Started:
        """Start `argv` in the background; its output goes to `output` (default: discarded)."""
        args = [str(arg) for arg in argv]
        self.log(f"$ {format_command(args)} &")
        try:
            popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=output if output is not None else subprocess.DEVNULL,
                stderr=subprocess.STDOUT if output is not None else subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        except OSError as exc:
            raise ProcessError(args, f"could not be started: {exc.strerror or exc}") from exc
        return Started(args, popen, self.log)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
