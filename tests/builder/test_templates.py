"""`formarket new`: every template scaffolds a listing that validates untouched and builds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from formarket.builder.templates import load_templates, scaffold
from formarket.cli import main
from formarket.errors import InputError, UsageError
from formarket.registry.cache import ResultCache
from formarket.registry.snapshot import WorkTreeSnapshot
from formarket.registry.validate import validate_snapshot
from tests.builder.conftest import ROOT, TEMPLATES, Build

KINDS = {"openai-model": "model", "embeddings": "model", "agent": "agent"}


@pytest.fixture
def market(tmp_path: Path) -> Path:
    root = tmp_path / "market"
    for part in ("registry", "schemas", "builder"):
        shutil.copytree(ROOT / part, root / part)
    return root


def test_the_templates_are_the_documented_ones() -> None:
    templates = load_templates(TEMPLATES)
    assert {name: t.kind for name, (t, _files) in templates.items()} == KINDS


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_scaffold_validates_untouched(market: Path, name: str) -> None:
    result = CliRunner().invoke(
        main, ["new", KINDS[name], f"tinyforge/new-{name}", "-t", name, "--repo", str(market)]
    )
    assert result.exit_code == 0, result.output
    folder = market / "registry" / f"{KINDS[name]}s" / "tinyforge" / f"new-{name}"
    assert {"listing.yaml", "Formfile", "README.md"} <= {p.name for p in folder.iterdir()}
    text = "".join(p.read_text() for p in folder.rglob("*") if p.is_file())
    assert "{{" not in text
    assert f"tinyforge/new-{name}" in text
    report = validate_snapshot(WorkTreeSnapshot(market), ResultCache(None, "t"))
    assert report.findings == []


@pytest.mark.parametrize("name", ["openai-model", "embeddings"])
def test_a_busybox_template_builds(build: Build, tmp_path: Path, name: str) -> None:
    folder = scaffold(load_templates(TEMPLATES), name, "model", f"acme/{name}", tmp_path)
    result = build(folder / "Formfile")
    assert result.manifest.name == name
    assert result.manifest.expose == (8080,)


def test_the_wrong_kind_an_unknown_template_and_an_existing_folder_are_refused(
    tmp_path: Path,
) -> None:
    templates = load_templates(TEMPLATES)
    with pytest.raises(UsageError, match="makes model listings"):
        scaffold(templates, "openai-model", "agent", "acme/x", tmp_path)
    with pytest.raises(UsageError, match="templates: ") as caught:
        scaffold(templates, "nope", "model", "acme/x", tmp_path)
    assert "openai-model" in caught.value.hint
    for hostile in ("Acme/x y", "../../etc/x", "acme/../../x", "/abs/x", "acme/x;rm -rf /"):
        with pytest.raises(UsageError, match="not a listing id"):
            scaffold(templates, "openai-model", "model", hostile, tmp_path)
    assert not any(tmp_path.iterdir())
    scaffold(templates, "openai-model", "model", "acme/x", tmp_path)
    with pytest.raises(UsageError, match="exists already"):
        scaffold(templates, "openai-model", "model", "acme/x", tmp_path)


def test_an_unknown_placeholder_is_a_template_error(tmp_path: Path) -> None:
    broken = tmp_path / "templates" / "broken"
    (broken / "files").mkdir(parents=True)
    (broken / "template.yaml").write_text("name: broken\nkind: model\ndescription: d\n")
    (broken / "files" / "Formfile").write_text("NAME {{nmae}}\n")
    with pytest.raises(InputError, match="unknown placeholder"):
        scaffold(load_templates(tmp_path / "templates"), "broken", "model", "a/b", tmp_path / "r")
    assert not (tmp_path / "r" / "models" / "a" / "b").exists()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("kind", "listing_id", "expected"),
    [
        ("model", "ada/my-chat", "registry/publishers/ada.yaml"),
        ("model", "tinyforg/my-chat", "did you mean tinyforge/my-chat"),
        ("model", "tinyforge/faq-bot", "agent"),
        ("agent", "tinyforge/echo-chat", "model"),
        ("model", "tinyforge/faq-demo", "solution"),
        ("agent", "tinyforge/faq-bot", "agent"),
    ],
)
def test_new_refuses_an_unknown_publisher_or_a_taken_id_and_writes_nothing(
    market: Path, kind: str, listing_id: str, expected: str
) -> None:
    before = _tree(market)
    template = "agent" if kind == "agent" else "openai-model"
    result = CliRunner().invoke(
        main, ["new", kind, listing_id, "-t", template, "--repo", str(market)]
    )
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert expected in result.output
    assert _tree(market) == before
