"""`python -m benchmarks [--listings N] [--quick] [--only AREAS]`: time every part of formarket
side by side with its baseline and write BENCHMARKS.md.

The registry checks come first (a synthetic registry, validation and the pull-request check);
then each other area's module `benchmarks/bench_<area>.py` adds its section.

`--quick` runs a smaller registry with fewer repetitions and writes its figures under build/, so
that a trial run never replaces the real figures.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from benchmarks.figures import Runs, cold_validation, pr_check, revalidation
from benchmarks.harness import BenchmarkError, compile_sources, source_digest
from benchmarks.report import render
from benchmarks.synthetic import SOURCE, generate

# The other areas, each a module `benchmarks/bench_<area>.py` with `section(quick) -> str`.
AREAS = ("build", "royalties", "site", "gateway", "litellm", "farm", "coldstart")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--listings",
        type=int,
        default=None,
        help="listings in the synthetic registry (default 10000; 1000 quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small registry, fewer runs, figures written under build/",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=SOURCE / "build" / "bench",
        help="where the synthetic registry is written (default build/bench)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="the report (default BENCHMARKS.md; build/bench/BENCHMARKS.md quick)",
    )
    parser.add_argument(
        "--only",
        default=",".join(("registry", *AREAS)),
        help=f"comma-separated areas to run (default all: registry,{','.join(AREAS)})",
    )
    args = parser.parse_args(argv)
    compile_sources()
    only = [a.strip() for a in args.only.split(",") if a.strip()]
    unknown = sorted(set(only) - {"registry", *AREAS})
    if unknown:
        parser.error(f"unknown areas: {', '.join(unknown)}")
    listings = args.listings or (1000 if args.quick else 10_000)
    if listings < 10:
        parser.error("--listings must be at least 10")
    output = args.output or (
        args.workdir / "BENCHMARKS.md" if args.quick else SOURCE / "BENCHMARKS.md"
    )
    runs = (
        Runs(fast=3, slow=1, baseline=1)
        if args.quick
        else Runs(fast=7, slow=5, baseline=1 if listings >= 5000 else 3)
    )
    started = time.perf_counter()
    sections: list[str] = []
    if "registry" in only:
        text = _registry(args, listings, runs, started)
        if text is None:
            return 1
        sections.append(text)
    else:
        sections.append(f"# Benchmarks\n\nWritten by `python -m benchmarks --only {args.only}`.\n")
    for area in AREAS:
        if area not in only:
            continue
        print(f"\n== {area}", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{area}")
        try:
            sections.append(module.section(args.quick))
        except Exception as exc:  # one area failing must not lose the others
            print(f"benchmark {area} failed: {exc}", file=sys.stderr)
            sections.append(f"## {area}\n\nThe benchmark failed: {exc}\n")
    whole = time.perf_counter() - started
    sections.append(f"The whole run took {whole / 60:.0f} min {whole % 60:.0f} s.\n")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(sections))
    print(f"\nwrote {output}")
    return 0


def _registry(args: argparse.Namespace, listings: int, runs: Runs, started: float) -> str | None:
    root = args.workdir / f"registry-{listings}"
    print(f"generating a registry of {listings} listings in {root}", flush=True)
    syn = generate(root, listings)
    generated = time.perf_counter() - started
    print(f"  {syn.files} files in {generated:.1f}s", flush=True)
    source = source_digest()
    try:
        print("1. cold full validation", flush=True)
        cold = cold_validation(syn, runs)
        print("2. re-validation with nothing changed", flush=True)
        again = revalidation(syn, runs, cold.ours)
        print("3. pull-request check with one listing changed", flush=True)
        pr = pr_check(syn, runs)
        if source_digest() != source:
            # Cached results are salted with the code: an edit midway empties the cache.
            raise BenchmarkError("formarket's source changed during the benchmarks; run again")
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return None
    figures = (cold, again, pr)
    for figure in figures:
        verdict = "met" if figure.met else "NOT MET"
        print(
            f"  {figure.title}: {figure.ours.best:.3f}s vs {figure.baseline.best:.3f}s"
            f" ({figure.ratio:.1f}x); target {figure.target}: {verdict}"
        )
    return render(syn, generated, figures, time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
