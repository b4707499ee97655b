"""Image build benchmarks: each figure is the wall time of a whole `formarket build` command.

    python -m benchmarks.bench_build [--quick]

1. whole-build cache hit on the tiny base (target under 0.3 s);
2. a tiny-base build with the base cached, every step run (target under 1 s), side by side with
   the lab's shell sketch (`shared/lab/build-tiny.sh`), which builds a similar image in one go;
3. on the Debian base, a Formfile whose first steps install packages: rebuilding after changing
   only the last RUN, against the same build with the step cache off (target at least 5x).

Bases are kept in `build/bench-build/cache` between runs (the Debian base takes a minute once);
stores are fresh for every measured command that must not hit them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from formarket.process import Runner

__all__ = ["main", "section"]

SOURCE = Path(__file__).resolve().parent.parent
WORK = SOURCE / "build" / "bench-build"
LAB_SKETCH = SOURCE.parent / "shared" / "lab" / "build-tiny.sh"

TINY = """\
NAME bench-tiny
FROM busybox
DISK 5
COPY ./www /srv/www
ENV GREETING="hello from a formfile"
RUN echo "<h1>$GREETING</h1>" > /srv/www/greeting.html
EXPOSE 8080
ENTRYPOINT httpd -f -p 8080 -h /srv/www
"""

DEBIAN = """\
NAME bench-debian
FROM debian:bookworm
DISK 5
INSTALL python3-minimal
INSTALL jq
COPY ./app /app
WORKDIR /app
RUN echo {marker} > /app/last-run
EXPOSE 8000
ENTRYPOINT ["python3", "-m", "http.server", "8000"]
"""


@dataclass(frozen=True, slots=True)
class Figure:
    title: str
    ours: float
    baseline: float | None
    baseline_label: str
    target: str
    met: bool

    @property
    def ratio(self) -> str:
        if self.baseline is None or self.ours <= 0:
            return "n/a"
        return f"{self.baseline / self.ours:.1f}x"


def _formarket() -> list[str]:
    beside = Path(sys.executable).parent / "formarket"
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "formarket"]


def _timed(runner: Runner, argv: list[str], **kwargs: object) -> float:
    started = time.perf_counter()
    runner.run(argv, timeout=3600, **kwargs)  # type: ignore[arg-type]
    return time.perf_counter() - started


def _context(folder: Path, formfile: str, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    (folder / "Formfile").write_text(formfile)
    return folder / "Formfile"


def _build_argv(formfile: Path, store: Path, *extra: str) -> list[str]:
    cache = WORK / "cache"
    return [
        *_formarket(),
        "build",
        str(formfile),
        "--store",
        str(store),
        "--cache",
        str(cache),
        "-q",
        *extra,
    ]


def cache_hit(runner: Runner, runs: int, sketch: float | None) -> Figure:
    formfile = _context(WORK / "tiny-hit", TINY, {"www/index.html": "<h1>hi</h1>\n"})
    store = WORK / "store-hit"
    runner.run(_build_argv(formfile, store), timeout=3600)  # the build the hits then reuse
    times = [_timed(runner, _build_argv(formfile, store)) for _ in range(runs)]
    ours = statistics.median(times)
    return Figure(
        "whole-build cache hit, tiny base",
        ours,
        sketch,
        "lab shell sketch, which has no cache",
        "< 0.3 s",
        ours < 0.3,
    )


def tiny_build(runner: Runner, runs: int, sketch: float | None) -> Figure:
    times = []
    for _ in range(runs):
        # A changed file makes every step run; a fresh store rules out a whole-build hit.
        marker = uuid.uuid4().hex
        formfile = _context(WORK / "tiny-build", TINY, {"www/index.html": f"<p>{marker}</p>\n"})
        store = WORK / f"store-{marker[:8]}"
        times.append(_timed(runner, _build_argv(formfile, store)))
        shutil.rmtree(store, ignore_errors=True)
    ours = statistics.median(times)
    return Figure(
        "tiny-base build, base cached, every step run",
        ours,
        sketch,
        "lab shell sketch (build-tiny.sh)",
        "< 1 s",
        ours < 1.0,
    )


def lab_sketch(runner: Runner, runs: int) -> float | None:
    """The lab's shell sketch, run as written (it needs $LAB/tiny); None when it is absent."""
    if not LAB_SKETCH.is_file():
        return None
    lab = WORK / "lab"
    (lab / "tiny").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LAB": str(lab)}
    out = lab / "sketch.qcow2"
    argv = ["bash", str(LAB_SKETCH), str(out), 'echo "<h1>$GREETING</h1>" > /srv/www/index.html']
    times = [_timed(runner, argv, env=env) for _ in range(runs)]
    return statistics.median(times)


def debian_rebuild(runner: Runner, runs: int) -> Figure:
    files = {"app/index.html": "<p>bench</p>\n"}
    store = WORK / "store-debian"
    formfile = _context(WORK / "debian", DEBIAN.format(marker="warm"), files)
    runner.run(_build_argv(formfile, store), timeout=3600)  # the base and the step layers
    cached, uncached = [], []
    for _ in range(runs):
        marker = uuid.uuid4().hex
        _context(WORK / "debian", DEBIAN.format(marker=marker), files)
        cached.append(_timed(runner, _build_argv(formfile, store)))
        marker = uuid.uuid4().hex
        _context(WORK / "debian", DEBIAN.format(marker=marker), files)
        uncached.append(_timed(runner, _build_argv(formfile, store, "--no-step-cache")))
    ours, baseline = statistics.median(cached), statistics.median(uncached)
    return Figure(
        "Debian base: rebuild after changing only the last RUN",
        ours,
        baseline,
        "the same build with the step cache off",
        ">= 5x faster",
        baseline / ours >= 5,
    )


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def section(quick: bool) -> str:
    """The benchmarks' Markdown section: a table of figures with their targets."""
    runner = Runner()
    runs = 3 if quick else 7
    WORK.mkdir(parents=True, exist_ok=True)
    sketch = lab_sketch(runner, 1 if quick else 3)
    try:
        figures = [
            cache_hit(runner, runs, sketch),
            tiny_build(runner, runs, sketch),
            debian_rebuild(runner, 1 if quick else 3),
        ]
    finally:
        # Bases stay for the next run; images and layers (300 MB per Debian image) do not.
        for leftover in [*WORK.glob("store-*"), WORK / "cache" / "layers", WORK / "lab"]:
            shutil.rmtree(leftover, ignore_errors=True)
    lines = [
        "## Image builds",
        "",
        "Each figure is the median wall time of a whole `formarket build` command (a new process,"
        f" {runs} runs; the Debian rebuild {1 if quick else 3}), on bases already in the cache.",
        "",
        "| figure | ours | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for fig in figures:
        lines.append(
            f"| {fig.title} | {_seconds(fig.ours)} | {_seconds(fig.baseline)}"
            f" ({fig.baseline_label}) | {fig.ratio} | {fig.target} | {'yes' if fig.met else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_build", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    args = parser.parse_args(argv)
    print(section(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
