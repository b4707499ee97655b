"""Every deploy command the built site shows works: run as written, with `--dry-run`, against
the registry it was built from. Solutions deploy by their id, models alone and behind each
compatible agent, agents with their required settings; a yanked version is not offered."""

from __future__ import annotations

import html
import json
import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from formarket.cli import main
from formarket.site.api import API_ROOT

from .conftest import BUMPED, Build, commit

_COMMAND = re.compile(
    r'<div class="fm-command"( data-incomplete="true")?>\s*<pre><code>([^<]*)</code>'
)


def _commands(out: Path) -> dict[str, list[tuple[str, bool]]]:
    """page -> [(command, complete)] of every deploy command the site shows."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for page in sorted(out.rglob("index.html")):
        for incomplete, code in _COMMAND.findall(page.read_text(encoding="utf-8")):
            rel = page.parent.relative_to(out).as_posix()
            found.setdefault(rel, []).append((html.unescape(code), not incomplete))
    return found


def _dry_run(registry: Path, command: str) -> tuple[int, str]:
    argv = shlex.split(command)
    assert argv[:2] == ["formarket", "deploy"], command
    result = CliRunner().invoke(main, [*argv[1:], "--dry-run", "--repo", str(registry)])
    return result.exit_code, result.output


def test_every_deploy_command_the_site_shows_runs(registry: Path, build: Build) -> None:
    out = build(registry).out
    shown = _commands(out)
    every = [(page, c) for page, commands in shown.items() for c, complete in commands]
    # Every listing page offers at least one command, and every one is complete as shown.
    listings = {
        p.parent.relative_to(out).as_posix()
        for kind in ("models", "agents", "solutions")
        for p in (out / kind).glob("*/*/index.html")
    }
    assert listings <= set(shown), sorted(listings - set(shown))
    assert all(complete for commands in shown.values() for _, complete in commands)
    failed = []
    for page, command in every:
        code, output = _dry_run(registry, command)
        if code != 0 or "Dry run: nothing was committed." not in output:
            failed.append((page, command, output))
    assert not failed, failed
    lines = [c for _, c in every]
    assert "formarket deploy --solution tinyforge/faq-demo" in lines
    assert "formarket deploy --model tinyforge/echo-chat" in lines
    # A model page has one command behind each compatible agent.
    assert "formarket deploy tinyforge/faq-bot --model tinyforge/echo-chat" in lines
    assert any("--set language=en" in c for c in lines if "northwind-ai/support-desk" in c)


def test_a_model_no_agent_runs_on_offers_itself_alone(registry: Path, build: Build) -> None:
    out = build(registry).out
    shown = _commands(out)
    for page, commands in shown.items():
        if page.startswith("models/"):
            ident = page.removeprefix("models/")
            assert commands[0] == (f"formarket deploy --model {ident}", True)
            page_html = (out / page / "index.html").read_text()
            assert "AGENT-ID" not in page_html


def test_version_marks_are_shown_and_a_yanked_version_is_not_offered(
    registry: Path, build: Build
) -> None:
    listing = (registry / BUMPED).read_text()
    marks = (
        "version_marks:\n"
        "  1.0.0: {status: yanked, message: Answers were cut short.}\n"
        "  1.1.0: {status: deprecated, message: Use hearth-chat instead.}\n"
    )
    commit(registry, {BUMPED: (listing + marks).encode()}, "mark echo-chat's versions")
    out = build(registry).out
    page = (out / "models/tinyforge/echo-chat/index.html").read_text()
    assert "Use hearth-chat instead." in page
    assert "Answers were cut short." in page  # in the versions table
    assert 'class="admonition warning fm-mark"' in page
    # The agent that runs on it passes the warning on.
    agent_page = (out / "agents/tinyforge/faq-bot/index.html").read_text()
    assert "tinyforge/echo-chat 1.1.0 is deprecated: Use hearth-chat instead." in agent_page
    api = json.loads((out / API_ROOT / "models/tinyforge/echo-chat.json").read_text())
    marks_by_version = {v["version"]: (v["status"], v["message"]) for v in api["versions"]}
    assert marks_by_version["1.0.0"] == ("yanked", "Answers were cut short.")
    assert marks_by_version["1.1.0"] == ("deprecated", "Use hearth-chat instead.")
    # Now yank the current one: no command offers it, and agent pages pick another model.
    yanked = marks.replace("status: deprecated", "status: yanked")
    commit(registry, {BUMPED: (listing + yanked).encode()}, "yank echo-chat 1.1.0")
    out = build(registry).out
    shown = _commands(out)
    assert "models/tinyforge/echo-chat" not in shown
    page = (out / "models/tinyforge/echo-chat/index.html").read_text()
    assert 'class="admonition danger fm-mark"' in page
    for page_name, commands in shown.items():
        for command, _ in commands:
            assert "tinyforge/echo-chat" not in command, (page_name, command)
