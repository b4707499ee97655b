"""Timing whole commands, as a user or CI runs them: a new process each time, wall clock.

A command that does not exit as expected stops the benchmarks with its output: the time of a
failing command says nothing.
"""

from __future__ import annotations

import compileall
import os
import shutil
import statistics
import subprocess  # noqa: TID251 - the benchmarks time whole commands
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import formarket

__all__ = [
    "BenchmarkError",
    "Timing",
    "bench_env",
    "measure",
    "run",
    "source_digest",
    "tool",
]


class BenchmarkError(RuntimeError):
    """A command under measurement failed; its output is in the message."""


@dataclass(frozen=True, slots=True)
class Timing:
    """The wall-clock seconds of several runs of one command."""

    label: str
    shown: str  # the command as the report shows it
    seconds: tuple[float, ...]
    output: str = field(default="", compare=False)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def runs(self) -> int:
        return len(self.seconds)


def source_digest() -> str:
    """The digest that salts formarket's cached results, computed afresh (not memoised)."""
    from formarket.registry.cache import code_digest

    digest: str = code_digest.__wrapped__()
    return digest


def tool(name: str) -> list[str]:
    """A console script of this virtualenv (the one running the benchmarks)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return [str(beside)]
    found = shutil.which(name)
    if found is None:
        if name == "formarket":
            return [sys.executable, "-m", "formarket"]
        raise BenchmarkError(f"{name} is not installed; run `make bench`, which installs it")
    return [found]


def bench_env() -> dict[str, str]:
    """The environment of every measured command: no cache directory from the caller's
    environment, so results are cached where the command's own rules say; and Python's
    compiled modules used, as an installed formarket has them (pip compiles a package when it
    installs it), whatever the caller's PYTHONDONTWRITEBYTECODE says."""
    env = dict(os.environ)
    env.pop("FORMARKET_CACHE_DIR", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_sources() -> None:
    """Compile formarket's modules before anything is timed, so that no measured command pays
    for compiling them (a checkout installed in editable mode has no compiled modules until a
    process writes them)."""
    compileall.compile_dir(str(Path(formarket.__file__).parent), quiet=1)


def run(command: Sequence[str], *, cwd: Path | None = None, expect: int = 0) -> tuple[float, str]:
    """Run `command` once; its wall-clock seconds and its output."""
    started = time.perf_counter()
    proc = subprocess.run(
        list(command), cwd=cwd, env=bench_env(), capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    output = proc.stdout + proc.stderr
    if proc.returncode != expect:
        shown = " ".join(command)
        raise BenchmarkError(
            f"`{shown}` exited with {proc.returncode}, not {expect}; the time of a failing"
            f" command means nothing. Its output:\n{output[-6000:]}"
        )
    return elapsed, output


def measure(
    label: str,
    commands: Sequence[Sequence[str]],
    runs: int,
    *,
    cwd: Path | None = None,
    before: Callable[[], None] | None = None,
    shown: str | None = None,
) -> Timing:
    """Time `runs` runs of a step made of one or more commands run one after the other (a
    run's time is their sum); `before` runs untimed before each run."""
    seconds: list[float] = []
    output = ""
    for _ in range(runs):
        if before is not None:
            before()
        total = 0.0
        for command in commands:
            elapsed, output = run(command, cwd=cwd)
            total += elapsed
        seconds.append(total)
    text = shown or " && ".join(" ".join(_short(c) for c in command) for command in commands)
    timing = Timing(label, text, tuple(seconds), output)
    print(
        f"  {label}: median {timing.median:.3f}s, best {timing.best:.3f}s ({runs} runs)", flush=True
    )
    return timing


def _short(arg: str) -> str:
    """An argument as the report shows it: tools by name, not by their virtualenv path."""
    path = Path(arg)
    if path.is_absolute() and path.parent == Path(sys.executable).parent:
        return path.name
    return arg
