"""The committed JSON Schemas are the public contract; they must match the models."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from formarket.commands.schema import command
from formarket.schemas.export import render_schemas

ROOT = Path(__file__).parent.parent


def test_committed_schemas_match_the_models() -> None:
    stale = [
        name
        for name, content in render_schemas().items()
        if not (ROOT / "schemas" / name).exists()
        or (ROOT / "schemas" / name).read_bytes() != content
    ]
    assert not stale, f"schemas/ is out of date ({', '.join(stale)}): run `formarket schema export`"


def test_export_writes_then_reports_up_to_date(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(command, ["export", "--out", str(tmp_path)])
    assert first.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(render_schemas())
    check = runner.invoke(command, ["export", "--out", str(tmp_path), "--check"])
    assert check.exit_code == 0
    (tmp_path / "model.schema.json").write_text("{}")
    drift = runner.invoke(command, ["export", "--out", str(tmp_path), "--check"])
    assert drift.exit_code == 1
    assert "formarket schema export" in drift.output


def test_the_contract_covers_every_document_kind() -> None:
    from formarket.registry.contract import KINDS
    from formarket.schemas.export import DOCUMENT_KINDS

    assert set(KINDS) == set(DOCUMENT_KINDS)
