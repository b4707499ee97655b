"""Every broken input in tests/corpus/registry/ is reported with its rule id and location,
and nothing else goes wrong: no traceback, no other error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from formarket.commands.validate import command as validate_command
from formarket.registry.cache import ResultCache
from formarket.registry.findings import Severity
from formarket.registry.snapshot import WorkTreeSnapshot
from formarket.registry.validate import validate_snapshot
from tests.conftest import CORPUS, apply_overlay

CASES = sorted((CORPUS / "registry").glob("*.yaml"))


def _load(case: Path) -> dict[str, Any]:
    data = yaml.safe_load(case.read_text())
    assert isinstance(data, dict)
    assert data.get("expect"), f"{case.name} expects nothing"
    return data


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


def test_the_base_registry_is_clean(base_tree: Path) -> None:
    report = validate_snapshot(WorkTreeSnapshot(base_tree), ResultCache(None, "t"))
    assert report.findings == []
    assert report.documents == 6


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_broken_input_is_reported_where_it_is(case: Path, base_tree: Path) -> None:
    data = _load(case)
    apply_overlay(base_tree, data["files"])
    report = validate_snapshot(WorkTreeSnapshot(base_tree), ResultCache(None, "t"))
    got = {(f.code, f.path, f.line) for f in report.findings}
    for expected in data["expect"]:
        key = (expected["code"], expected["path"], expected["line"])
        assert key in got, f"{case.stem}: expected {key}, got {sorted(got)}"
    # Only what the case is about: every error found is one the case expects.
    expected_codes = {e["code"] for e in data["expect"]}
    unexpected = {f.code for f in report.errors} - expected_codes
    assert not unexpected, f"{case.stem}: unexpected errors {unexpected}"


@pytest.mark.parametrize("case", CASES[:12], ids=[c.stem for c in CASES[:12]])
def test_the_command_reports_broken_input_without_a_traceback(case: Path, base_tree: Path) -> None:
    data = _load(case)
    apply_overlay(base_tree, data["files"])
    result = CliRunner().invoke(
        validate_command, [str(base_tree), "--format", "json", "--no-cache"]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit)
    blocking = any(
        e["code"].startswith("REG") and _severity(e["code"]) is Severity.ERROR
        for e in data["expect"]
    )
    assert result.exit_code == (1 if blocking else 0), result.output
    assert "Traceback" not in result.output


def _severity(code: str) -> Severity:
    from formarket.registry.findings import RULES

    return RULES[code].severity


def test_a_link_in_a_listing_folder_is_refused(base_tree: Path) -> None:
    folder = base_tree / "registry/models/acme/tiny-llm/www"
    os.symlink("/etc/passwd", folder / "passwd")
    report = validate_snapshot(WorkTreeSnapshot(base_tree), ResultCache(None, "t"))
    assert ("REG024", "registry/models/acme/tiny-llm/www/passwd") in {
        (f.code, f.path) for f in report.findings
    }


def test_a_linked_listing_file_is_not_followed(base_tree: Path) -> None:
    listing = base_tree / "registry/models/acme/tiny-llm/listing.yaml"
    listing.unlink()
    os.symlink("/etc/hostname", listing)
    report = validate_snapshot(WorkTreeSnapshot(base_tree), ResultCache(None, "t"))
    codes = {f.code for f in report.errors}
    assert "REG024" in codes
