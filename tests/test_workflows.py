"""The GitHub Actions workflows are safe to run on pull requests from anyone.

A small lint of our own states the rules this repository keeps (no event data expanded into
scripts, no `pull_request_target`, actions pinned to commit shas, a read-only token on pull
requests), and zizmor, run offline, audits the workflows against its wider catalogue.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess  # noqa: TID251 - zizmor is run as a user runs it
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW_FILES = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])

EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
# Contexts whose values the person who triggers the event chooses (titles, bodies, comments,
# branch names, logins, commit messages). Expanded into a script, they become shell code.
EVENT_DATA = re.compile(
    r"\bgithub\s*\.\s*(?:event|head_ref)\b|\bgithub\s*\[|\btoJSON\(\s*github\s*\)",
    re.IGNORECASE,
)
PINNED_ACTION = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(?:/[^@\s]+)?@[0-9a-f]{40}$")
PINNED_IMAGE = re.compile(r"^docker://[^@\s]+@sha256:[0-9a-f]{64}$")
# Caches a run restores: on pull requests, ones that pull requests' own runs may have written.
CACHE_ACTION = re.compile(r"^actions/cache(?:/restore)?@")
PULL_REQUEST_EVENTS = frozenset({"pull_request", "pull_request_target"})
SEVERITIES = ("Unknown", "Informational", "Low", "Medium", "High")


@dataclass(frozen=True, order=True)
class Violation:
    rule: str  # injection, dangerous-trigger, unpinned, permissions, cache, syntax
    where: str  # dotted path in the workflow, such as jobs.check.steps[2].run
    detail: str


def triggers(workflow: dict[Any, Any]) -> set[str]:
    """The events a workflow runs on, whichever of the three `on:` forms it uses."""
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as true
    if isinstance(on, str):
        return {on}
    if isinstance(on, list):
        return {str(event) for event in on}
    if isinstance(on, dict):
        return {str(event) for event in on}
    return set()


def _mappings(node: Any, where: str = "") -> Iterator[tuple[str, dict[Any, Any]]]:
    """Every mapping of a parsed workflow, with its dotted path."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _mappings(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _mappings(value, f"{where}[{index}]")


def _grants_contents_write(permissions: Any) -> bool:
    if permissions == "write-all":
        return True
    return isinstance(permissions, dict) and permissions.get("contents") == "write"


def _injections(script: str, where: str) -> list[Violation]:
    return [
        Violation("injection", where, f"${{{{{expr}}}}} reads event data inside a script")
        for expr in EXPRESSION.findall(script)
        if EVENT_DATA.search(expr)
    ]


def lint_workflow(text: str) -> list[Violation]:
    """Everything in a workflow that breaks this repository's rules; empty when it is safe."""
    workflow = yaml.safe_load(text)
    if not isinstance(workflow, dict):
        return [Violation("syntax", "", "a workflow must be a mapping")]
    found: list[Violation] = []
    events = triggers(workflow)
    if "pull_request_target" in events:
        found.append(
            Violation(
                "dangerous-trigger",
                "on",
                "pull_request_target runs with a write token and secrets next to PR code",
            )
        )
    if "permissions" not in workflow:
        found.append(
            Violation(
                "permissions",
                "permissions",
                "no top-level permissions: the token gets the repository's defaults",
            )
        )
    on_pull_requests = bool(events & PULL_REQUEST_EVENTS)
    for where, node in _mappings(workflow):
        run = node.get("run")
        if isinstance(run, str):
            found.extend(_injections(run, f"{where}.run"))
        uses = node.get("uses")
        if isinstance(uses, str):
            uses = uses.strip()
            if not (uses.startswith("./") or PINNED_ACTION.match(uses) or PINNED_IMAGE.match(uses)):
                found.append(
                    Violation("unpinned", f"{where}.uses", f"{uses} is not pinned to a commit sha")
                )
            script = (node.get("with") or {}).get("script")
            if uses.startswith("actions/github-script@") and isinstance(script, str):
                found.extend(_injections(script, f"{where}.with.script"))
        if on_pull_requests and isinstance(uses, str) and CACHE_ACTION.match(uses):
            found.append(
                Violation(
                    "cache",
                    f"{where}.uses",
                    "a pull-request workflow restores no cache: a pull request can write one",
                )
            )
        if on_pull_requests and _grants_contents_write(node.get("permissions")):
            found.append(
                Violation(
                    "permissions",
                    f"{where}.permissions" if where else "permissions",
                    "a pull-request workflow must not get write access to contents",
                )
            )
    return sorted(found)


# --- the rules hold for every workflow of the repository ------------------------------------


def test_there_are_workflows_to_check() -> None:
    assert WORKFLOWS / "validate.yml" in WORKFLOW_FILES


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_workflow_keeps_the_rules(path: Path) -> None:
    assert lint_workflow(path.read_text(encoding="utf-8")) == []


# --- the lint finds what it is meant to find ------------------------------------------------

BAD_WORKFLOW = """\
name: bad
on:
  pull_request_target:
  issue_comment:
    types: [created]
jobs:
  greet:
    runs-on: ubuntu-latest
    permissions:
      contents: write
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065 # v5.6.0
      - uses: ./.github/actions/local
      - uses: docker://alpine:3.20
      - run: echo "Thanks for ${{ github.event.pull_request.title }}"
      - run: |
          git checkout "${{ github.head_ref }}"
          echo "${{ github.event.comment.body }}" "${{ github.event.issue.title }}"
      - run: echo "${{ github.event.review.body }} ${{ toJSON(github) }}"
      - run: echo "${{ matrix.python }} ${{ env.SAFE }} ${{ github.sha }}"
      - uses: actions/github-script@60a0d83039c74a4aee543508d2ffcb1c3799cdea # v7.0.1
        with:
          script: console.log("${{ github.event.issue.body }}")
"""


def test_lint_reports_every_kind_of_violation() -> None:
    found = lint_workflow(BAD_WORKFLOW)

    assert [(v.rule, v.where) for v in found] == [
        ("dangerous-trigger", "on"),
        ("injection", "jobs.greet.steps[4].run"),
        ("injection", "jobs.greet.steps[5].run"),
        ("injection", "jobs.greet.steps[5].run"),
        ("injection", "jobs.greet.steps[5].run"),
        ("injection", "jobs.greet.steps[6].run"),
        ("injection", "jobs.greet.steps[6].run"),
        ("injection", "jobs.greet.steps[8].with.script"),
        ("permissions", "jobs.greet.permissions"),
        ("permissions", "permissions"),
        ("unpinned", "jobs.greet.steps[0].uses"),
        ("unpinned", "jobs.greet.steps[3].uses"),
    ]
    injected = " ".join(v.detail for v in found if v.rule == "injection")
    for context in (
        "github.event.pull_request.title",
        "github.head_ref",
        "github.event.comment.body",
        "github.event.issue.title",
        "github.event.review.body",
        "toJSON(github)",
        "github.event.issue.body",
    ):
        assert context in injected
    assert "matrix.python" not in injected


@pytest.mark.parametrize(
    "permissions",
    ["permissions: write-all", "permissions:\n  contents: write\n  pull-requests: read"],
)
def test_lint_refuses_a_write_token_on_pull_requests(permissions: str) -> None:
    text = f"on: [pull_request]\n{permissions}\njobs: {{}}\n"

    assert [(v.rule, v.where) for v in lint_workflow(text)] == [("permissions", "permissions")]


@pytest.mark.parametrize("action", ["actions/cache", "actions/cache/restore"])
def test_lint_refuses_a_cache_on_pull_requests(action: str) -> None:
    text = f"""\
on: [pull_request]
permissions:
  contents: read
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - uses: {action}@5a3ec84eff668545956fd18022155c47e93e2684
        with:
          path: .git/formarket-cache
          key: formarket-check
"""
    assert [(v.rule, v.where) for v in lint_workflow(text)] == [
        ("cache", "jobs.check.steps[0].uses")
    ]
    # The same step in a workflow that pull requests never run is no concern of this rule.
    assert lint_workflow(text.replace("[pull_request]", "[push]")) == []


def test_lint_accepts_event_data_passed_through_env() -> None:
    text = """\
on:
  pull_request:
permissions:
  contents: read
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - uses: docker://alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
      - env:
          TITLE: ${{ github.event.pull_request.title }}
        run: echo "$TITLE"
"""
    assert lint_workflow(text) == []


def test_lint_allows_write_tokens_outside_pull_requests() -> None:
    text = "on:\n  push:\n    branches: [main]\npermissions:\n  contents: write\njobs: {}\n"

    assert lint_workflow(text) == []


# --- what the pull-request check must do ----------------------------------------------------


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps = job.get("steps") or []
    assert isinstance(steps, list)
    return steps


def _uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).startswith(f"{action}@")


def test_validate_workflow_runs_the_pull_request_check() -> None:
    workflow = yaml.safe_load((WORKFLOWS / "validate.yml").read_text(encoding="utf-8"))

    assert triggers(workflow) == {"pull_request"}
    assert workflow["permissions"] == {"contents": "read"}
    jobs = workflow["jobs"]
    check = _steps(jobs["check"])
    checkout = next(s for s in check if _uses(s, "actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    # No check result comes from a cache a pull request can write.
    assert not any(str(s.get("uses", "")).startswith("actions/cache") for s in check)
    command = (
        'formarket check --repo . --base "$BASE_SHA" --head "$HEAD_SHA" --author "$AUTHOR"'
        " --format github"
    )
    step = next(s for s in check if command in " ".join(str(s.get("run", "")).split()))
    assert step["env"] == {
        "BASE_SHA": "${{ github.event.pull_request.base.sha }}",
        "HEAD_SHA": "${{ github.event.pull_request.head.sha }}",
        "AUTHOR": "${{ github.event.pull_request.user.login }}",
    }
    assert any("pip install ." in str(s.get("run", "")) for s in check)
    validate = _steps(jobs["validate"])
    assert any(s.get("run", "").strip() == "formarket validate . --format github" for s in validate)
    for job in jobs.values():
        for s in _steps(job):
            if _uses(s, "actions/checkout"):
                assert s["with"]["persist-credentials"] is False


# --- zizmor ---------------------------------------------------------------------------------


def _zizmor(*inputs: Path) -> list[dict[str, Any]]:
    """zizmor's findings on the inputs, offline: severity Medium or higher only."""
    beside = Path(sys.executable).parent / "zizmor"
    exe = str(beside) if beside.exists() else shutil.which("zizmor")
    assert exe, "zizmor is not installed: pip install -e '.[dev]'"
    proc = subprocess.run(
        [exe, "--offline", "--format", "json", "--min-severity", "medium", *map(str, inputs)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.stdout.strip(), proc.stderr
    findings = json.loads(proc.stdout)
    assert isinstance(findings, list)
    # zizmor exits non-zero exactly when it reports findings; anything else is a tool failure.
    assert (proc.returncode == 0) == (findings == []), proc.stderr
    return findings


def _summary(findings: list[dict[str, Any]]) -> list[str]:
    return sorted(
        f"{f['ident']} ({f['determinations']['severity']}): {f['locations'][0]['symbolic']['key']}"
        for f in findings
    )


def test_zizmor_finds_nothing_of_medium_severity_or_higher() -> None:
    findings = _zizmor(WORKFLOWS)

    serious = [f for f in findings if SEVERITIES.index(f["determinations"]["severity"]) >= 3]
    assert serious == [], _summary(serious)


def test_zizmor_runs_offline_and_would_catch_a_bad_workflow(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(BAD_WORKFLOW, encoding="utf-8")

    idents = {f["ident"] for f in _zizmor(bad.parent)}

    assert {"template-injection", "unpinned-uses", "dangerous-triggers"} <= idents
