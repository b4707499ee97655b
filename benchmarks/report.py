"""BENCHMARKS.md: where and with what the figures were measured, and the figures."""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from benchmarks.figures import Figure
from benchmarks.harness import Timing, run
from benchmarks.synthetic import Synthetic

__all__ = ["machine", "render", "versions"]

_PACKAGES = (
    "formarket",
    "check-jsonschema",
    "jsonschema-rs",
    "PyYAML",
    "yaml-rs",
    "pydantic",
    "dulwich",
)


def machine() -> str:
    cores = len(os.sched_getaffinity(0))
    model = "unknown CPU"
    memory = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / (1 << 20):.0f} GiB"
                break
    except OSError:
        pass
    return f"{cores} cores ({model}){memory}, {platform.system()} {platform.release()}"


def versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for name in _PACKAGES:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    _, git = run(["git", "--version"])
    parts.append("git " + git.strip().removeprefix("git version "))
    return ", ".join(parts)


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 10 else f"{seconds:.3f} s"


def _row(timing: Timing) -> str:
    return (
        f"| {timing.label} | `{timing.shown}` | {timing.runs} | {_s(timing.median)} |"
        f" {_s(timing.best)} |"
    )


def _figure(number: int, figure: Figure) -> list[str]:
    verdict = "met" if figure.met else "**not met**"
    return [
        f"## {number}. {figure.title}",
        "",
        f"formarket {_s(figure.ours.best)}, baseline {_s(figure.baseline.best)}:"
        f" {figure.ratio:.1f}× the baseline's speed. Target: {figure.target}: {verdict}.",
        "",
        "| | command | runs | median | best |",
        "|---|---|---|---|---|",
        _row(figure.ours),
        _row(figure.baseline),
        *(_row(t) for t in figure.context),
        "",
        figure.note,
        "",
    ]


def render(syn: Synthetic, generated: float, figures: Sequence[Figure], total: float) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python -m benchmarks --listings {syn.listings}`) on {now};"
        f" the registry's figures took {total:.0f} s (the whole run's time is at the end).",
        "",
        f"- Machine: {machine()}.",
        f"- Versions: {versions()}.",
        f"- Registry: a synthetic one of {syn.listings:,} listings ({syn.models:,} models,"
        f" {syn.agents:,} agents; a listing.yaml of about 40 lines, a Formfile and a README"
        f" each), {syn.publishers} publishers, {syn.solutions} solutions, {syn.files:,} files;"
        f" generated with its git repository in {generated:.1f} s (`benchmarks/synthetic.py`).",
        "- Every time is the wall clock of a whole command in a new process, as a user or CI"
        " runs it, with formarket's modules compiled as an installed package has them; a"
        " command that does not exit 0 stops the benchmarks. Figures, ratios and"
        " targets use the best of the runs (other work on a shared machine only ever adds"
        " time; the medians are in each figure's table); ratios compare commands measured in"
        " the same `make bench`, because these machines are noisy: trust the ratios more than"
        " the seconds.",
        "",
        "| figure | formarket | baseline | ratio | target | |",
        "|---|---|---|---|---|---|",
    ]
    for figure in figures:
        lines.append(
            f"| {figure.title} | {_s(figure.ours.best)} | {_s(figure.baseline.best)}"
            f" ({figure.baseline.label}) | {figure.ratio:.1f}× | {figure.target} |"
            f" {'met' if figure.met else '**not met**'} |"
        )
    lines.append("")
    for number, figure in enumerate(figures, 1):
        lines.extend(_figure(number, figure))
    return "\n".join(lines) + "\n"
