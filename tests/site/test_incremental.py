"""After one listing changes, only its pages and the small aggregate files are rewritten."""

from __future__ import annotations

from pathlib import Path

from .conftest import BUMPED, REPOSITORY, Build, bump, commit

ECHO_PAGE = "models/tinyforge/echo-chat/index.html"
ECHO_API = "api/v1/models/tinyforge/echo-chat.json"
OTHER_PAGES = (
    "models/tinyforge/tiny-embed/index.html",
    "agents/lumen-labs/meeting-scribe/index.html",
    "publishers/lumen-labs/index.html",
    "api/v1/models/tinyforge/tiny-embed.json",
)


def _stamps(out: Path) -> dict[str, int]:
    return {
        p.relative_to(out).as_posix(): p.stat().st_mtime_ns
        for p in out.rglob("*")
        if p.is_file() and ".formarket" not in p.parts
    }


def test_nothing_changed_nothing_rewritten(registry: Path, build: Build) -> None:
    first = build(registry)
    before = _stamps(first.out)

    again = build(registry)

    assert again.written == 0
    assert again.removed == 0
    assert _stamps(again.out) == before


def test_one_listing_changed_rewrites_its_pages_only(registry: Path, build: Build) -> None:
    first = build(registry)
    before = _stamps(first.out)
    text = (registry / BUMPED).read_text()
    changed = bump(text, "1.1.0", "1.2.0").replace(
        b"description: >-\n", b"description: >-\n  Now faster.\n", 1
    )
    commit(registry, {BUMPED: changed}, "echo-chat 1.2.0")

    second = build(registry)
    after = _stamps(second.out)

    rewritten = {path for path in after if after[path] != before.get(path)}
    assert {ECHO_PAGE, ECHO_API} <= rewritten
    assert not rewritten & set(OTHER_PAGES)
    # Pages that name echo-chat (agents that run on it, its publisher) are re-rendered only if
    # what they show of it changed; its version is not on them.
    listing_pages = {p for p in rewritten if p.count("/") >= 3 and p.endswith("index.html")}
    assert listing_pages == {ECHO_PAGE}
    assert first.reused == 0
    assert second.reused == 2 * 21 + 4 - 2  # every page and listing file but echo-chat's two
    assert "1.2.0 (current)" in (second.out / ECHO_PAGE).read_text()


def test_a_renamed_listing_rewrites_the_pages_that_name_it(registry: Path, build: Build) -> None:
    build(registry)
    text = (registry / BUMPED).read_text()
    renamed = bump(text, "1.1.0", "1.2.0").replace(b"name: Echo Chat", b"name: Echo Chat Two")
    commit(registry, {BUMPED: renamed}, "rename")

    out = build(registry).out

    faq = (out / "agents/tinyforge/faq-bot/index.html").read_text()
    assert "Echo Chat Two" in faq


def test_a_removed_listing_loses_its_files(registry: Path, build: Build) -> None:
    out = build(registry).out
    folder = registry / "registry/models/tinyforge/tiny-rerank"
    commit(
        registry,
        {
            f"registry/models/tinyforge/tiny-rerank/{p.name}": None
            for p in folder.rglob("*")
            if p.is_file() and p.parent == folder
        }
        | {
            f"registry/models/tinyforge/tiny-rerank/{p.relative_to(folder).as_posix()}": None
            for p in folder.rglob("*")
            if p.is_file()
        },
        "withdraw tiny-rerank",
    )

    report = build(registry)

    assert report.removed >= 2
    assert not (out / "models/tinyforge/tiny-rerank").exists()
    assert not (out / "api/v1/models/tinyforge/tiny-rerank.json").exists()
    feed = (out / "api/v1/changes.json").read_text()
    assert '"id":"tinyforge/tiny-rerank","change":"removed"' in feed


def test_deleted_outputs_are_written_again(registry: Path, build: Build) -> None:
    out = build(registry).out
    (out / ECHO_PAGE).unlink()

    report = build(registry)

    assert report.written == 1
    assert (out / ECHO_PAGE).is_file()


def test_a_readme_change_alone_reaches_the_page(registry: Path, build: Build) -> None:
    build(registry)
    readme = "registry/models/tinyforge/echo-chat/README.md"
    text = (registry / readme).read_text() + "\n## A new section\n\nFresh words.\n"
    commit(registry, {readme: text.encode()}, "echo-chat: README")

    out = build(registry).out

    assert "Fresh words." in (out / ECHO_PAGE).read_text()


def test_pages_rendered_by_worker_processes_are_the_same(
    registry: Path, build: Build, tmp_path: Path
) -> None:
    from formarket.site.build import build_site

    one = build_site(registry, tmp_path / "one", repository=REPOSITORY, jobs=1).out
    two = build_site(registry, tmp_path / "two", repository=REPOSITORY, jobs=2).out

    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    differ = [
        f
        for f in files
        if ".formarket" not in f.parts and (one / f).read_bytes() != (two / f).read_bytes()
    ]
    assert differ == []
