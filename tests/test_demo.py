"""The demo runs end to end on the starter registry, and the starter registry is clean."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from formarket.cli import main
from formarket.registry.cache import ResultCache
from formarket.registry.snapshot import WorkTreeSnapshot
from formarket.registry.validate import validate_snapshot

ROOT = Path(__file__).parent.parent


def test_the_starter_registry_has_no_findings() -> None:
    report = validate_snapshot(WorkTreeSnapshot(ROOT), ResultCache(None, "t"))
    assert report.findings == []
    index = report.index
    assert len(index.publishers) >= 4
    assert len(index.models) >= 8
    assert len(index.agents) >= 6
    assert len(index.solutions) >= 3
    busybox = [
        s
        for s in (*index.models.values(), *index.agents.values())
        if b"FROM busybox" in (ROOT / s.path).with_name("Formfile").read_bytes()
    ]
    assert len(busybox) >= 3


def test_the_demo_refuses_the_bad_pull_request(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path), "--source", str(ROOT)])
    assert result.exit_code == 0, result.output
    assert "pr-1" in result.output
    assert "refused with REG011, REG016" in result.output
    assert (tmp_path / "marketplace" / ".git").is_dir()
