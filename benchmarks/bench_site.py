"""The static site's figures, side by side with plain mkdocs-material building the same pages.

`python -m benchmarks.bench_site [--quick]` prints a Markdown section; `section(quick)` returns
it for the benchmarks report. On a synthetic registry (`benchmarks/synthetic.py`) of 10,000
listings (1,000 with --quick):

1. full build: `formarket site build` into an empty folder with no cached validation, against
   `mkdocs build` of a plain mkdocs-material project holding one Markdown page per listing (the
   same README, tables and Formfile), listings kept out of the navigation as lab-notes advise;
2. rebuild after one listing changed (the synthetic `pr` branch: a new version and price),
   against the same plain mkdocs build: mkdocs has no correct partial rebuild (`--dirty`
   leaves the navigation, search index and catalogs stale);
3. the bytes a browser downloads to show the models catalog before the user searches (the page
   and every file it references), against the plain site's page, its files and Material's search
   index, which its search loads whole.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.harness import BenchmarkError, Timing, measure, run, tool
from benchmarks.synthetic import SOURCE, Synthetic, generate

__all__ = ["main", "section"]

TARGET_FULL = 30.0
TARGET_REBUILD = 5.0
TARGET_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class Row:
    figure: str
    ours: str
    baseline: str
    ratio: str
    target: str
    met: bool


def _registry(workdir: Path, listings: int) -> Synthetic:
    """The synthetic registry, generated once per size (it takes about two minutes at 10,000)."""
    root = workdir / f"site-registry-{listings}"
    stamp = root / ".bench-site-stamp"
    if stamp.is_file():
        fields = yaml.safe_load(stamp.read_text())
        run(["git", "-C", str(root), "checkout", "-q", "-f", "main"])
        return Synthetic(root=root, **fields)
    syn = generate(root, listings)
    fields = {k: getattr(syn, k) for k in syn.__dataclass_fields__ if k != "root"}
    stamp.write_text(yaml.safe_dump(fields))
    return syn


def _table(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def _plain_page(listing: Path, kind: str) -> str:
    """A listing as a Markdown page: what our page shows, in Markdown for mkdocs."""
    data = yaml.safe_load((listing / "listing.yaml").read_text())
    readme = (listing / "README.md").read_text() if (listing / "README.md").is_file() else ""
    formfile = (listing / "Formfile").read_text() if (listing / "Formfile").is_file() else ""
    pricing = data.get("pricing", {})
    minimum = data.get("resources", {}).get("minimum", {})
    rows = [["field", "value"], *[[str(k), str(v)] for k, v in pricing.items()]]
    res = [["vCPUs", "memory MiB", "disk GiB"]]
    res.append([str(minimum.get(k)) for k in ("vcpus", "memory_mib", "disk_gib")])
    return (
        f"# {data.get('name')}\n\n`{data.get('id')}` · {kind} · version {data.get('version')}"
        f" · {data.get('license')}\n\n{data.get('description')}\n\n"
        f"## Deploy\n\n```\nformarket deploy {data.get('id')}\n```\n\n"
        f"## Pricing\n\n{_table(rows)}\n\n## Resources\n\n{_table(res)}\n\n"
        f"## Readme\n\n{readme.replace('# ', '### ', 1)}\n\n## Formfile\n\n```\n{formfile}```\n"
    )


def _plain_project(syn: Synthetic, into: Path) -> Path:
    """A plain mkdocs-material project with a page per listing, kept out of the navigation."""
    if into.exists():
        shutil.rmtree(into)
    docs = into / "docs"
    (docs / "listings").mkdir(parents=True)
    (docs / "index.md").write_text("# Catalog\n\nEvery listing, as plain mkdocs pages.\n")
    for kind in ("models", "agents"):
        base = syn.root / "registry" / kind
        for listing in sorted(base.glob("*/*")):
            target = docs / "listings" / kind / listing.parent.name / f"{listing.name}.md"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_plain_page(listing, kind[:-1]))
    (into / "mkdocs.yml").write_text(
        "site_name: plain catalog\n"
        "theme:\n  name: material\n  font: false\n"
        "nav:\n  - Home: index.md\n"
        "not_in_nav: |\n  /listings/**\n"
        "plugins:\n  - search\n"
        "markdown_extensions:\n  - tables\n"
    )
    return into


def _page_bytes(site: Path, page: str, extra: tuple[str, ...] = ()) -> tuple[int, dict[str, int]]:
    """What a browser downloads for `page`: the page, every local file it references (styles,
    scripts, icons) and `extra` files it loads at start."""
    html_path = site / page
    html = html_path.read_text()
    sizes = {page: html_path.stat().st_size}
    for url in re.findall(r'(?:src|href)="([^"#?]+)"', html):
        if "://" in url or url.endswith("/") or url.startswith("mailto:"):
            continue
        target = (html_path.parent / url).resolve()
        if target.is_file() and target.suffix in (".css", ".js", ".png", ".svg", ".ico"):
            sizes[str(target.relative_to(site.resolve()))] = target.stat().st_size
    for rel in extra:
        if (site / rel).is_file():
            sizes[rel] = (site / rel).stat().st_size
    return sum(sizes.values()), sizes


def _restore(syn: Synthetic, out: Path) -> Callable[[], None]:
    """Before each rebuild run: main checked out and built, so the run sees one change."""

    def before() -> None:
        run(["git", "-C", str(syn.root), "checkout", "-q", "-f", "main"])
        run([*tool("formarket"), "site", "build", "--repo", str(syn.root), "--out", str(out)])
        run(["git", "-C", str(syn.root), "checkout", "-q", "-f", "pr"])

    return before


def _timed(
    label: str, command: list[str], runs: int, before: Callable[[], None], shown: str
) -> tuple[Timing, float]:
    """Like `harness.measure`, and the median CPU seconds (user + system) the command used:
    on a shared machine the wall clock also counts other people's work."""
    seconds: list[float] = []
    cpu: list[float] = []
    output = ""
    for _ in range(runs):
        before()
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        elapsed, output = run(command)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds.append(elapsed)
        cpu.append(after.ru_utime - used.ru_utime + after.ru_stime - used.ru_stime)
    timing = Timing(label, shown, tuple(seconds), output)
    print(f"  {label}: median {timing.median:.3f}s, cpu {statistics.median(cpu):.2f}s", flush=True)
    return timing, statistics.median(cpu)


def _fmt(seconds: float) -> str:
    return f"{seconds:.2f} s"


def _kb(size: int) -> str:
    return f"{size / 1000:,.0f} kB"


def section(quick: bool) -> str:
    listings = 1000 if quick else 10_000
    runs_full, runs_rebuild = (1, 2) if quick else (3, 5)
    workdir = SOURCE / "build" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"site: a synthetic registry of {listings} listings", flush=True)
    syn = _registry(workdir, listings)
    out = workdir / f"site-out-{listings}"
    cache = syn.root / ".git" / "formarket-cache"
    formarket = [*tool("formarket"), "site", "build", "--repo", str(syn.root), "--out"]

    def cold() -> None:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)

    load = os.getloadavg()[0]
    full, full_cpu = _timed(
        "formarket site build (empty output, no cache)",
        [*formarket, str(out)],
        runs_full,
        cold,
        "formarket site build --repo . --out build/site",
    )
    if f"built {syn.listings + syn.solutions} listings" not in full.output:
        raise BenchmarkError(f"the build did not list every listing:\n{full.output}")
    plain = _plain_project(syn, workdir / f"site-plain-{listings}")
    plain_out = workdir / f"site-plain-out-{listings}"
    baseline = measure(
        "mkdocs build (plain mkdocs-material, a page per listing)",
        [[*tool("mkdocs"), "build", "-q", "-f", str(plain / "mkdocs.yml"), "-d", str(plain_out)]],
        1,
        shown="mkdocs build (plain project, listings out of the nav)",
    )
    rebuild, rebuild_cpu = _timed(
        "formarket site build (one listing changed)",
        [*formarket, str(out)],
        runs_rebuild,
        _restore(syn, out),
        "formarket site build --repo . --out build/site (after git checkout pr)",
    )
    load = max(load, os.getloadavg()[0])
    run(["git", "-C", str(syn.root), "checkout", "-q", "-f", "main"])
    ours_bytes, ours_files = _page_bytes(out, "models/index.html")
    plain_bytes, plain_files = _page_bytes(plain_out, "index.html", ("search/search_index.json",))
    shipped = sorted(ours_files.items(), key=lambda kv: -kv[1])
    return _render(
        syn,
        (full, full_cpu),
        baseline,
        (rebuild, rebuild_cpu),
        (ours_bytes, plain_bytes),
        shipped,
        (plain_files.get("search/search_index.json", 0), load),
    )


def _render(
    syn: Synthetic,
    full_cpu: tuple[Timing, float],
    baseline: Timing,
    rebuild_cpu: tuple[Timing, float],
    sizes: tuple[int, int],
    shipped: list[tuple[str, int]],
    index_load: tuple[int, float],
) -> str:
    full, full_seconds = full_cpu
    rebuild, rebuild_seconds = rebuild_cpu
    search_index, load = index_load
    ours_bytes, plain_bytes = sizes
    rows = [
        Row(
            f"Full build, {syn.listings:,} listings",
            _fmt(full.median),
            _fmt(baseline.median),
            f"{baseline.median / full.median:.1f}×",
            f"under {TARGET_FULL:.0f} s",
            full.median < TARGET_FULL,
        ),
        Row(
            "Rebuild after one listing changed",
            _fmt(rebuild.median),
            _fmt(baseline.median),
            f"{baseline.median / rebuild.median:.1f}×",
            f"under {TARGET_REBUILD:.0f} s",
            rebuild.median < TARGET_REBUILD,
        ),
        Row(
            "Catalog data shipped before a search",
            _kb(ours_bytes),
            _kb(plain_bytes),
            f"{plain_bytes / ours_bytes:.1f}×",
            f"under {TARGET_BYTES / 1e6:.0f} MB",
            ours_bytes < TARGET_BYTES,
        ),
    ]
    lines = [
        "## Static site",
        "",
        f"A synthetic registry of {syn.listings:,} listings ({syn.models:,} models,"
        f" {syn.agents:,} agents, {syn.solutions} solutions, {syn.publishers} publishers);"
        " medians of whole commands, each in a new process. The baseline is plain"
        " mkdocs-material building one Markdown page per listing (README, pricing and"
        " resources tables, Formfile), listings out of the navigation, search plugin on.",
        "",
        "| figure | ours | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.figure} | {r.ours} | {r.baseline} | {r.ratio} | {r.target} |"
        f" {'yes' if r.met else '**no**'} |"
        for r in rows
    ]
    lines += [
        "",
        "| command | runs | median | best |",
        "|---|---|---|---|",
    ]
    for t in (full, rebuild, baseline):
        lines.append(f"| `{t.shown}` | {t.runs} | {_fmt(t.median)} | {_fmt(t.best)} |")
    lines += [
        "",
        f"CPU time (user + system, all processes) of our median runs: full build"
        f" {full_seconds:.1f} s, rebuild {rebuild_seconds:.1f} s, on 2 cores. The highest"
        f" one-minute load average seen during the runs was {load:.1f}; above 2 the wall"
        " clock also counts other processes' work.",
        "",
        "The rebuild's baseline is the plain full build: `mkdocs build --dirty` is faster but"
        " leaves the navigation, the search index and any catalog page stale. Our rebuild checks"
        " the registry (reusing cached results), reads the new commit, renders the changed"
        " listing's page and API file and the aggregate files, and writes only what differs.",
        "",
        "Bytes for the models catalog before a search (ours): "
        + ", ".join(f"`{name}` {_kb(size)}" for name, size in shipped[:8])
        + f". The plain site's search index alone is {_kb(search_index)}, fetched when its"
        " search starts; ours loads a few shards of a few kB when the user types or filters.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_site", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 listings, fewer runs")
    args = parser.parse_args(argv)
    try:
        print(section(args.quick))
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
