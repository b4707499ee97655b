"""The pull-request workflow smoke-tests the listings a pull request changes, in a job of its
own, with formarket from the base commit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

WORKFLOW = Path(__file__).parents[2] / ".github" / "workflows" / "validate.yml"


def _jobs() -> dict[str, Any]:
    jobs: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    return jobs


def test_the_smoke_job_is_apart_from_the_check() -> None:
    jobs = _jobs()
    assert "smoke" in jobs
    assert "needs" not in jobs["smoke"]
    assert all("smoke" not in str(job.get("needs", "")) for job in jobs.values())
    assert not any("formarket test" in str(step.get("run", "")) for step in jobs["check"]["steps"])


def test_the_smoke_job_runs_formarket_from_the_base_commit_on_the_changed_listings() -> None:
    steps = _jobs()["smoke"]["steps"]
    runs = [str(step.get("run", "")) for step in steps]
    install = next(n for n, run in enumerate(runs) if 'git archive "$BASE_SHA"' in run)
    test = next(n for n, run in enumerate(runs) if "formarket test" in run and "--list" not in run)
    assert install < test
    assert '--changed-from "$BASE_SHA"' in runs[test]
    assert "pip install" not in runs[test]
    assert not any("pip install ." in run or "pip install -e" in run for run in runs)
