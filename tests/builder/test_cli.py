"""`formarket build`: targets, the summary, --json, and the quick whole-build cache hit."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from formarket.cli import main
from tests.builder.conftest import ROOT, TINY, shared_cache, write_context


def _build(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["build", *args])
    return result.exit_code, result.stdout, result.stderr


def _store_args(tmp_path: Path) -> list[str]:
    # The bases come from the shared test cache through --cache; layers stay per test.
    return ["--store", str(tmp_path / "store"), "--cache", str(shared_cache())]


def test_build_a_formfile_path_then_hit_the_cache(tmp_path: Path) -> None:
    formfile = write_context(tmp_path / "ctx", TINY, {"www/index.html": "hi"})
    code, out, err = _build(str(formfile), *_store_args(tmp_path))
    assert code == 0, err
    assert out.startswith("built hello-agent: ")
    assert re.search(r"cache hits  \d of 3 steps", out)
    assert "5 GiB ext4" in out
    assert "01-copy" in err  # progress goes to stderr
    build_id = out.split()[2]
    code, out, err = _build(str(tmp_path / "ctx"), *_store_args(tmp_path), "--json")
    assert code == 0, err
    manifest = json.loads(out)
    assert manifest["build_id"] == build_id
    assert manifest["expose"] == [8080]
    code, out, _err = _build(str(formfile), *_store_args(tmp_path))
    assert out.startswith(f"cached hello-agent: {build_id}")
    assert "the whole build" in out


def test_plan_shows_the_build_id_and_steps_without_building(tmp_path: Path) -> None:
    formfile = write_context(tmp_path / "ctx", TINY, {"www/index.html": "planned"})
    code, out, err = _build(str(formfile), *_store_args(tmp_path), "--plan")
    assert code == 0, err
    assert out.startswith("plan hello-agent: ")
    build_id = out.split()[2]
    assert "not built" in out
    assert [line.split()[0] for line in out.splitlines()[3:]] == [
        "01-copy",
        "02-env",
        "03-service",
        "disk",
        "kernel",
        "manifest",
        "publish",
    ]
    assert not (tmp_path / "store" / "images").exists()
    code, out, err = _build(str(formfile), *_store_args(tmp_path), "--json", "-q")
    assert code == 0, err
    assert json.loads(out)["build_id"] == build_id
    code, out, err = _build(str(formfile), *_store_args(tmp_path), "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert (plan["build_id"], plan["published"]) == (build_id, True)
    assert all(step["cached"] for step in plan["steps"] if step["key"])


def test_a_changed_file_is_noticed_by_the_quick_path(tmp_path: Path) -> None:
    formfile = write_context(tmp_path / "ctx", TINY, {"www/index.html": "one"})
    first = json.loads(_build(str(formfile), *_store_args(tmp_path), "--json", "-q")[1])
    (tmp_path / "ctx" / "www" / "index.html").write_text("two")
    second = json.loads(_build(str(formfile), *_store_args(tmp_path), "--json", "-q")[1])
    assert first["build_id"] != second["build_id"]
    (tmp_path / "ctx" / "www" / "index.html").write_text("one")
    third = json.loads(_build(str(formfile), *_store_args(tmp_path), "--json", "-q")[1])
    assert third["build_id"] == first["build_id"]


def test_build_a_listing_by_id(tmp_path: Path) -> None:
    code, out, err = _build("tinyforge/tiny-embed", "--repo", str(ROOT), *_store_args(tmp_path))
    assert code == 0, err
    assert out.startswith("built tiny-embed: ")


def test_an_unknown_target_is_a_readable_error(tmp_path: Path) -> None:
    code, _out, err = _build("acme/nothing-here", "--repo", str(ROOT), *_store_args(tmp_path))
    assert code == 1
    assert "no listing acme/nothing-here" in err
    assert "Traceback" not in err
    code, _out, err = _build(str(tmp_path / "missing"), *_store_args(tmp_path))
    assert code == 1
    assert "no such Formfile or listing" in err


def test_a_broken_formfile_points_at_its_line(tmp_path: Path) -> None:
    formfile = write_context(tmp_path / "ctx", "NAME x\nFROM busybox\nMEMROY 512\n")
    code, _out, err = _build(str(formfile), *_store_args(tmp_path))
    assert code == 1
    assert f"{formfile}:3:1" in err
    assert "did you mean `MEMORY`" in err
