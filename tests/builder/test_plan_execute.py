"""Plan, then execute: a plan is a value decided before anything is built, and executing it
builds exactly the image it announced."""

from __future__ import annotations

from pathlib import Path

from formarket.builder.build import Builder, BuildSettings
from tests.builder.conftest import TINY, write_context


def test_planning_twice_gives_the_same_planned_build(
    settings: BuildSettings, tmp_path: Path
) -> None:
    formfile = write_context(tmp_path / "ctx", TINY, {"www/index.html": "<h1>hi</h1>\n"})
    builder = Builder(settings)
    first, second = builder.plan(formfile), builder.plan(formfile)
    assert first == second
    assert first.build_id == first.plan.build_id
    assert [s.name for s in first.planning.steps] == ["parse", "base", "context", "plan"]
    # Nothing is built by planning: the store holds no image, no staging folder.
    assert not builder.published(first)
    assert not (tmp_path / "store" / "images").exists()
    # A changed copied byte is a different plan.
    (tmp_path / "ctx" / "www" / "index.html").write_text("<h1>ho</h1>\n")
    changed = builder.plan(formfile)
    assert changed != first
    assert changed.build_id != first.build_id


def test_executing_a_plan_builds_the_id_it_announced(
    settings: BuildSettings, tmp_path: Path
) -> None:
    formfile = write_context(tmp_path / "ctx", TINY, {"www/index.html": "x"})
    lines: list[str] = []
    builder = Builder(settings, lines.append)
    planned = builder.plan(formfile)
    steps = builder.steps(planned)
    names = [step.name for step in steps]
    assert names == ["01-copy", "02-env", "03-service", "disk", "kernel", "manifest", "publish"]

    result = builder.execute(planned)
    assert not result.whole_build_cached
    assert result.manifest.build_id == planned.build_id
    assert result.image_dir.name == planned.build_id
    assert builder.published(planned)
    # The manifest counts planning and execution as one build, in the order they ran; the
    # manifest and publish steps come after the manifest was written.
    recorded = [step.name for step in result.manifest.steps]
    assert recorded == ["parse", "base", "context", "plan", *names[:-2]]
    announced = [line.split()[0] for line in lines if line.startswith("  ") and line.strip()]
    assert announced[:4] == ["parse", "base", "context", "plan"]
    assert [name for name in announced[4:] if name in names] == names
    log = (result.image_dir / "build.log").read_text()
    assert log.index("== parse:") < log.index("== 01-copy:") < log.index("== kernel:")

    # The same plan executed again is answered from the store; so is a new plan of it.
    again = builder.execute(planned)
    assert again.whole_build_cached
    assert again.manifest == result.manifest
    assert builder.execute(builder.plan(formfile)).manifest == result.manifest
    assert all(step.cached for step in builder.steps(planned) if step.key)
