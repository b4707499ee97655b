"""Building a site from a registry in git: pages, API, versions from history, rebuilds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from click.testing import CliRunner

from formarket.cli import main
from formarket.errors import UsageError
from formarket.site.api import API_ROOT
from formarket.site.build import build_site
from formarket.site.links import check_links

from .conftest import BUMPED, REPOSITORY, Build, bump, commit, make_registry


def _json(out: Path, rel: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / rel).read_text())
    return data


def test_every_listing_and_publisher_has_a_page_and_an_api_file(
    registry: Path, build: Build
) -> None:
    report = build(registry)
    out = report.out

    api = _json(out, f"{API_ROOT}/index.json")
    assert api["counts"] == {"models": 9, "agents": 7, "solutions": 5, "publishers": 4}
    for kind in ("models", "agents", "solutions"):
        for item in _json(out, f"{API_ROOT}/{kind}.json")["items"]:
            assert (out / item["page"] / "index.html").is_file()
            assert (out / item["api"]).is_file()
    for publisher in ("lumen-labs", "northwind-ai", "openhearth", "tinyforge"):
        assert (out / "publishers" / publisher / "index.html").is_file()
    assert report.listings == 21
    assert report.skipped_documents == 0


def test_every_api_file_is_valid_against_its_published_schema(registry: Path, build: Build) -> None:
    out = build(registry).out
    schemas = {
        p.name.removesuffix(".schema.json"): jsonschema_rs.validator_for(json.loads(p.read_text()))
        for p in (out / API_ROOT / "schemas").glob("*.schema.json")
    }
    which = {
        "index.json": "index",
        "models.json": "summary-list",
        "agents.json": "summary-list",
        "solutions.json": "summary-list",
        "changes.json": "changes",
        "publishers.json": "publishers",
    }
    checked = 0
    for path in sorted((out / API_ROOT).rglob("*.json")):
        rel = path.relative_to(out / API_ROOT).as_posix()
        if rel.startswith("schemas/"):
            continue
        schema = which.get(rel, "listing")
        errors = [e.message for e in schemas[schema].iter_errors(json.loads(path.read_text()))]
        assert errors == [], (rel, errors)
        checked += 1
    assert checked == 6 + 21


def test_listing_files_hold_every_version_with_its_date_and_document(
    registry: Path, build: Build
) -> None:
    out = build(registry).out

    echo = _json(out, f"{API_ROOT}/models/tinyforge/echo-chat.json")

    assert echo["current"] == "1.1.0"
    assert echo["history"] is True
    assert [v["version"] for v in echo["versions"]] == ["1.0.0", "1.1.0"]
    assert echo["versions"][0]["document"]["version"] == "1.0.0"
    assert echo["versions"][1]["document"] == echo["listing"]
    assert all(len(v["commit"]) == 40 and v["date"].endswith("Z") for v in echo["versions"])
    page = (out / "models/tinyforge/echo-chat/index.html").read_text()
    assert "1.1.0 (current)" in page
    assert "1.0.0" in page
    assert f"https://github.com/{REPOSITORY}/commit/" in page


def test_the_change_feed_is_newest_first(registry: Path, build: Build) -> None:
    feed = _json(build(registry).out, f"{API_ROOT}/changes.json")

    first = feed["items"][0]
    assert (first["id"], first["change"], first["version"]) == (
        "tinyforge/echo-chat",
        "updated",
        "1.1.0",
    )
    assert feed["total"] == 22
    assert feed["history"] is True
    assert {i["change"] for i in feed["items"][1:]} == {"added"}


def test_a_registry_outside_git_says_it_has_no_history(tmp_path: Path, build: Build) -> None:
    root = make_registry(tmp_path / "market")
    import shutil

    shutil.rmtree(root / ".git")

    out = build(root).out

    feed = _json(out, f"{API_ROOT}/changes.json")
    assert feed == {"api_version": 1, "history": False, "total": 0, "items": []}
    page = (out / "models/tinyforge/echo-chat/index.html").read_text()
    assert "the registry is not a git repository" in page
    listing = _json(out, f"{API_ROOT}/models/tinyforge/echo-chat.json")
    assert [v["version"] for v in listing["versions"]] == ["1.1.0"]
    assert listing["versions"][0]["date"] is None


def test_the_built_site_has_no_broken_internal_link(registry: Path, build: Build) -> None:
    out = build(registry).out

    assert check_links(out) == []


def test_the_link_checker_finds_broken_links_and_fragments(registry: Path, build: Build) -> None:
    out = build(registry).out
    page = out / "models/index.html"
    page.write_text(
        page.read_text().replace(
            "</article>",
            '<a href="../nowhere/">x</a><a href="../agents/#no-such-id">y</a>'
            '<a href="javascript:alert(1)">z</a></article>',
        )
    )

    broken = {(b.url, b.reason.split(" ")[0]) for b in check_links(out)}

    assert broken == {
        ("../nowhere/", "no"),
        ("../agents/#no-such-id", "no"),
        ("javascript:alert(1)", "scheme"),
    }


def test_deploy_command_and_prefilled_issue(registry: Path, build: Build) -> None:
    out = build(registry).out

    page = (out / "agents/northwind-ai/support-desk/index.html").read_text()

    # language is required and has no default: filled with the first it allows, and named.
    command = (
        "formarket deploy northwind-ai/support-desk --model northwind-ai/northwind-chat-8b"
        " --set language=en"
    )
    assert f"<code>{command}</code>" in page
    assert f'data-clipboard-text="{command}"' in page
    issue = (
        f"https://github.com/{REPOSITORY}/issues/new?template=deploy.yml"
        "&amp;title=Deploy%20northwind-ai%2Fsupport-desk%20with%20northwind-ai%2Fnorthwind-chat-8b"
        "&amp;agent=northwind-ai%2Fsupport-desk&amp;model=northwind-ai%2Fnorthwind-chat-8b"
    )
    assert f'href="{issue}"' in page
    assert 'href="../../../compatibility/?agent=northwind-ai/support-desk"' in page


def test_no_usage_and_no_earnings_are_said_not_drawn(registry: Path, build: Build) -> None:
    out = build(registry).out

    publisher = (out / "publishers/tinyforge/index.html").read_text()
    listing = (out / "models/tinyforge/echo-chat/index.html").read_text()

    assert "No usage recorded yet" in publisher
    assert "No usage recorded yet" in listing
    assert "No earnings recorded yet" in publisher
    assert '<svg class="fm-chart"' not in publisher + listing


def test_refuses_to_write_into_a_folder_it_did_not_make(registry: Path, tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")

    with pytest.raises(UsageError, match="did not write"):
        build_site(registry, out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_cli_builds_and_reports(registry: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-out"

    result = CliRunner().invoke(
        main,
        [
            "site",
            "build",
            "--repo",
            str(registry),
            "--out",
            str(out),
            "--repository",
            REPOSITORY,
        ],
    )

    assert result.exit_code == 0, result.output
    assert "built 21 listings" in result.output
    assert (out / "index.html").is_file()


def test_cli_serve_needs_a_built_site(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["site", "serve", "--dir", str(tmp_path / "none")])

    assert result.exit_code == 1
    assert "formarket site build" in result.output


def test_cli_refuses_a_malformed_repository(registry: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "site",
            "build",
            "--repo",
            str(registry),
            "--out",
            str(tmp_path / "o"),
            "--repository",
            "not a repo",
        ],
    )

    assert result.exit_code == 2
    assert "OWNER/NAME" in result.output


def test_a_listing_bumped_again_adds_a_version(registry: Path, build: Build) -> None:
    build(registry)
    text = (registry / BUMPED).read_text()
    commit(registry, {BUMPED: bump(text, "1.1.0", "1.2.0")}, "echo-chat 1.2.0")

    echo = _json(build(registry).out, f"{API_ROOT}/models/tinyforge/echo-chat.json")

    assert [v["version"] for v in echo["versions"]] == ["1.0.0", "1.1.0", "1.2.0"]


def test_demo_hook_builds_and_says_where_to_look(registry: Path, tmp_path: Path) -> None:
    from formarket.demo.site import demo_site

    said: list[str] = []

    out = demo_site(registry, tmp_path / "demo-site", said.append)

    assert (out / "index.html").is_file()
    text = "\n".join(said)
    assert "0 broken internal links" in text
    assert f"formarket site serve --dir {out}" in text
    assert "http://127.0.0.1:8000/" in text


def test_api_files_are_what_their_models_say(registry: Path, build: Build) -> None:
    from formarket.site.api import ApiIndex, ChangeFeed, ListingFile, SummaryList

    out = build(registry).out / API_ROOT

    ApiIndex.model_validate_json((out / "index.json").read_bytes())
    ChangeFeed.model_validate_json((out / "changes.json").read_bytes())
    for kind in ("models", "agents", "solutions"):
        listed = SummaryList.model_validate_json((out / f"{kind}.json").read_bytes())
        for item in listed.items:
            ListingFile.model_validate_json((out.parent.parent / item.api).read_bytes())


def test_relative_paths_are_taken_from_the_current_folder(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .conftest import ROOT

    before = sorted(p.name for p in (ROOT / "site").iterdir())
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(
        main, ["site", "build", "--repo", "market", "--out", "relative-out"]
    )

    assert result.exit_code == 0, result.output
    assert (tmp_path / "relative-out" / ".formarket" / "mkdocs" / "index.html").is_file()
    assert sorted(p.name for p in (ROOT / "site").iterdir()) == before
