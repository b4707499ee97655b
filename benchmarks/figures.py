"""The three figures the issue asks for, each formarket side by side with its baseline.

1. Cold full validation of the registry, against check-jsonschema on the same listing files and
   schemas (and a plain C-YAML + compiled-validator loop for scale).
2. Re-validation when nothing changed, against the same command cold.
3. The pull-request check with one listing changed, against check-jsonschema on that one file.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import BenchmarkError, Timing, measure, run, tool
from benchmarks.plain_loop import listing_files
from benchmarks.synthetic import MAINTAINER, Synthetic

__all__ = ["Figure", "Runs", "cold_validation", "pr_check", "revalidation"]


@dataclass(frozen=True, slots=True)
class Runs:
    """How many times each kind of command runs."""

    fast: int  # commands of about a second or less
    slow: int  # formarket commands that check every document
    baseline: int  # check-jsonschema over the whole registry


@dataclass(frozen=True, slots=True)
class Figure:
    title: str
    ours: Timing
    baseline: Timing
    target: str
    met: bool
    context: tuple[Timing, ...] = ()
    note: str = ""

    @property
    def ratio(self) -> float:
        """How many times faster than the baseline (best runs)."""
        return self.baseline.best / self.ours.best


def _cache_dir(repo: Path) -> Path:
    return repo / ".git" / "formarket-cache"


def _drop_cache(repo: Path) -> None:
    shutil.rmtree(_cache_dir(repo), ignore_errors=True)


def _expect_documents(timing: Timing, documents: int) -> None:
    """A command that passes over fewer documents than the registry holds measures nothing."""
    if f"{documents} documents" not in timing.output:
        raise BenchmarkError(
            f"{timing.label} did not report {documents} documents:\n{timing.output[-3000:]}"
        )


def _restore(path: Path, content: bytes) -> None:
    path.write_bytes(content)


def documents(syn: Synthetic) -> int:
    """What formarket counts as documents: listings, publishers, solutions and governance."""
    return syn.listings + syn.publishers + syn.solutions + 1


def cold_validation(syn: Synthetic, runs: Runs) -> Figure:
    repo = syn.root
    fm = tool("formarket")
    _drop_cache(repo)
    ours = measure(
        "formarket validate --no-cache",
        [[*fm, "validate", ".", "--no-cache"]],
        runs.slow,
        cwd=repo,
    )
    _expect_documents(ours, documents(syn))
    plain = measure(
        "plain loop: CSafeLoader + jsonschema_rs, 2 processes",
        [[sys.executable, str(Path(__file__).with_name("plain_loop.py")), ".", "--jobs", "2"]],
        runs.slow,
        cwd=repo,
        shown="python benchmarks/plain_loop.py . --jobs 2",
    )
    cj = tool("check-jsonschema")
    files = listing_files(repo)
    commands = [
        [
            *cj,
            "--schemafile",
            f"schemas/{kind}.schema.json",
            *(p.relative_to(repo).as_posix() for p in paths),
        ]
        for kind, paths in files.items()
    ]
    baseline = measure(
        "check-jsonschema (models + agents)",
        commands,
        runs.baseline,
        cwd=repo,
        shown="check-jsonschema --schemafile schemas/model.schema.json"
        " registry/models/*/*/listing.yaml && check-jsonschema --schemafile"
        " schemas/agent.schema.json registry/agents/*/*/listing.yaml",
    )
    ratio = baseline.best / ours.best
    return Figure(
        "Cold full validation",
        ours,
        baseline,
        "at least 20× faster than check-jsonschema",
        ratio >= 20,
        (plain,),
        "formarket checks more than the baseline: Formfiles, READMEs, publishers, solutions,"
        " governance and the rules across documents; check-jsonschema and the plain loop check"
        " only each listing.yaml against its schema. Cold means no result cache; the"
        " operating system's file cache is warm (the files were just written).",
    )


def revalidation(syn: Synthetic, runs: Runs, cold: Timing) -> Figure:
    repo = syn.root
    fm = tool("formarket")
    _drop_cache(repo)
    warmup = measure(
        "formarket validate (first run, fills the cache)", [[*fm, "validate", "."]], 1, cwd=repo
    )
    _expect_documents(warmup, documents(syn))
    ours = measure(
        "formarket validate (nothing changed)", [[*fm, "validate", "."]], runs.fast, cwd=repo
    )
    if f"({documents(syn)} checked" in ours.output or "(0 checked" not in ours.output:
        raise BenchmarkError(f"the re-validation checked documents again:\n{ours.output}")
    floor = (
        measure("true", [["true"]], runs.fast),
        measure(
            "python -c pass", [[sys.executable, "-c", "pass"]], runs.fast, shown="python -c pass"
        ),
        measure("formarket --version", [[*fm, "--version"]], runs.fast),
    )
    return Figure(
        "Re-validation with nothing changed",
        ours,
        cold,
        "under 0.5 s",
        ours.best < 0.5,
        (warmup, *floor),
        "The baseline is the same command cold (`--no-cache`, figure 1); check-jsonschema"
        " keeps no results, so for it a re-validation costs a full run. `true`, `python -c"
        " pass` and `formarket --version` show the floor that starting a process, Python"
        " and the CLI puts under any command.",
    )


def pr_check(syn: Synthetic, runs: Runs) -> Figure:
    repo = syn.root
    fm = tool("formarket")

    def command(head: str, author: str) -> list[str]:
        return [*fm, "check", "--repo", ".", "--base", "main", "--head", head, "--author", author]

    check = command("pr", syn.pr_author)
    # The cache as CI leaves it after checking main: every document of main, none of pr.
    _drop_cache(repo)
    warmup = measure(
        "formarket check main..main (fills the cache with main)",
        [command("main", MAINTAINER)],
        1,
        cwd=repo,
    )
    _expect_documents(warmup, documents(syn))
    # Every file of the cache as the check of main left it, put back before each timed run.
    saved = {path: path.read_bytes() for path in _cache_dir(repo).iterdir() if path.is_file()}

    def restore() -> None:
        for path, content in saved.items():
            _restore(path, content)

    ours = measure(
        "formarket check (one listing changed)",
        [check],
        runs.fast,
        cwd=repo,
        before=restore,
    )
    if "(1 checked" not in ours.output:
        raise BenchmarkError(f"the check did not check exactly one document:\n{ours.output}")
    uncached = measure("formarket check --no-cache", [[*check, "--no-cache"]], runs.slow, cwd=repo)
    changed = f"registry/models/{syn.pr_listing}/listing.yaml"
    _, text = run(["git", "-C", str(repo), "show", f"pr:{changed}"])
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "listing.yaml").write_text(text)
        baseline = measure(
            "check-jsonschema on the changed listing",
            [
                [
                    *tool("check-jsonschema"),
                    "--schemafile",
                    str(repo / "schemas/model.schema.json"),
                    "listing.yaml",
                ]
            ],
            runs.fast,
            cwd=Path(scratch),
            shown="check-jsonschema --schemafile schemas/model.schema.json"
            f" {changed} (as the pr branch has it)",
        )
    return Figure(
        "Pull-request check, one listing changed",
        ours,
        baseline,
        "under 0.5 s",
        ours.best < 0.5,
        (warmup, uncached),
        f"`formarket check --base main --head pr --author {syn.pr_author}` reads both commits"
        " from git objects (no checkout); the pull request bumps the version and price of"
        f" {syn.pr_listing}. It checks the changed listing and the rules across the whole"
        " registry (ownership, versions, references, look-alike names); the baseline only"
        " checks the one changed file against its schema, the least a schema-only CI would do."
        " Versions are compared with their first publication in main's history, through the"
        " history index the check keeps in its cache. Before each run the cache (results and"
        " history index, signed with this machine's key) is put back as a check of main left it"
        " (every document of main, so the changed listing is the one document checked);"
        " `formarket validate` on the working tree does not fill it for the check, which keys"
        " folders by git tree id where validate keys them by file metadata.",
    )
