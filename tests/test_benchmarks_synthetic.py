"""The benchmarks' synthetic registry is valid, and so is its pull request: a benchmark of a
command that fails measures nothing."""

from __future__ import annotations

import json
import subprocess  # noqa: TID251 - the CLI is run as a user runs it
import sys
from pathlib import Path
from typing import Any

from benchmarks.synthetic import Synthetic, generate
from dulwich.refs import Ref
from dulwich.repo import Repo


def _formarket(*args: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "formarket", *args, "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _documents(syn: Synthetic) -> int:
    return syn.listings + syn.publishers + syn.solutions + 1


def test_synthetic_registry_validates_without_findings(tmp_path: Path) -> None:
    syn = generate(tmp_path / "market", 60)
    assert (syn.models, syn.agents) == (51, 9)

    code, report = _formarket("validate", str(syn.root), "--no-cache")

    assert report["findings"] == []
    assert code == 0
    assert report["documents"] == _documents(syn)


def test_pull_request_branch_passes_the_check(tmp_path: Path) -> None:
    syn = generate(tmp_path / "market", 60)

    code, report = _formarket(
        "check",
        "--repo",
        str(syn.root),
        "--base",
        "main",
        "--head",
        "pr",
        "--author",
        syn.pr_author,
    )

    assert report["findings"] == []
    assert code == 0
    assert report["documents"] == _documents(syn)


def test_same_size_gives_the_same_commits(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", 20)
    second = generate(tmp_path / "b", 20)
    ids = []
    for syn in (first, second):
        repo = Repo(str(syn.root))
        ids.append((repo.refs[Ref(b"refs/heads/main")], repo.refs[Ref(b"refs/heads/pr")]))
        repo.close()
    assert ids[0] == ids[1]
