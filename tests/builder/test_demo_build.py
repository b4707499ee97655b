"""The demo hook builds a starter listing, boots it and gets an answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from formarket.demo.build import DEMO_LISTING, demo_build
from tests.builder.conftest import ROOT


@pytest.mark.slow
def test_demo_build_boots_the_echo_model_and_prints_its_answer(tmp_path: Path) -> None:
    lines: list[str] = []
    manifest = demo_build(ROOT, tmp_path / "store", lines.append)
    assert manifest.name == DEMO_LISTING.split("/")[1]
    assert "answer: You said: Is the marketplace working?" in lines
    assert lines[-1] == "the VM is stopped"
