"""No workflow under .github/ expands issue, comment or pull-request text into a shell.

tests/test_workflows.py lints for every kind of event data; this states the four contexts the
deployment issue flow cares about by name, scans every workflow file under .github/ (a
`run:` anywhere, at any depth), and shows the scan catching a bad workflow.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from formarket.deploy.issue_form import FIELDS

ROOT = Path(__file__).resolve().parent.parent.parent
GITHUB = ROOT / ".github"
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
FORBIDDEN = re.compile(
    r"\bgithub\s*\.\s*(?:event\s*\.\s*(?:issue|comment|pull_request)\b|head_ref\b)"
    r"|\bgithub\s*\.\s*event\s*\[",
    re.IGNORECASE,
)


def _runs(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}" if where else str(key)
            if key == "run" and isinstance(value, str):
                yield here, value
            else:
                yield from _runs(value, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _runs(value, f"{where}[{index}]")


def interpolations(text: str) -> list[tuple[str, str]]:
    """(where, expression) for every forbidden context expanded into a `run:` line."""
    return [
        (where, expr.strip())
        for where, script in _runs(yaml.safe_load(text))
        for expr in EXPRESSION.findall(script)
        if FORBIDDEN.search(expr)
    ]


def workflow_files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.suffix in (".yml", ".yaml") and "workflows" in p.parts
    )


def test_no_workflow_interpolates_event_text_into_a_run_line() -> None:
    files = workflow_files(GITHUB)

    assert GITHUB / "workflows" / "deploy-request.yml" in files
    assert {str(p): interpolations(p.read_text(encoding="utf-8")) for p in files} == {
        str(p): [] for p in files
    }


def test_the_lint_catches_a_bad_workflow(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        """\
on: {issues: {types: [opened]}}
permissions: {}
jobs:
  deploy:
    runs-on: ubuntu-latest
    steps:
      - run: formarket deploy "${{ github.event.issue.title }}"
      - run: |
          echo ${{github.event.comment.body}}
          echo "${{ github.event.pull_request.head.ref }}" "${{ github.head_ref }}"
      - run: echo "${{ github.event['issue']['body'] }}"
      - env:
          BODY: ${{ github.event.issue.body }}
        run: echo "$BODY ${{ github.sha }} ${{ github.event_name }}"
""",
        encoding="utf-8",
    )

    found = [
        found for path in workflow_files(tmp_path) for found in interpolations(path.read_text())
    ]

    assert found == [
        ("jobs.deploy.steps[0].run", "github.event.issue.title"),
        ("jobs.deploy.steps[1].run", "github.event.comment.body"),
        ("jobs.deploy.steps[1].run", "github.event.pull_request.head.ref"),
        ("jobs.deploy.steps[1].run", "github.head_ref"),
        ("jobs.deploy.steps[2].run", "github.event['issue']['body']"),
    ]


def test_the_deploy_workflow_hands_over_the_payload_file_only() -> None:
    workflow = yaml.safe_load((GITHUB / "workflows" / "deploy-request.yml").read_text())
    on = workflow.get("on", workflow.get(True))

    assert set(on) == {"issues"}
    assert set(on["issues"]["types"]) == {"opened", "edited", "labeled", "closed"}
    assert workflow["permissions"] == {}
    assert "github.event.issue.number" in workflow["concurrency"]["group"]
    (job,) = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "write", "issues": "write"}
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert any('formarket issue-deploy --event "$GITHUB_EVENT_PATH"' in run for run in runs)


def test_the_issue_form_has_the_fields_the_parser_reads() -> None:
    template = yaml.safe_load((GITHUB / "ISSUE_TEMPLATE" / "deploy.yml").read_text())
    labels = [
        item["attributes"]["label"] for item in template["body"] if item["type"] != "markdown"
    ]

    assert [label.lower() for label in labels] == list(FIELDS)
    assert "deployment" in template["labels"]
