"""docs/rules.md is generated from the rule table and must not drift from it."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from formarket.commands.rules import command, render_markdown
from formarket.rules import FAMILIES, RETIRED, RULES

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "rules.md"
REGENERATE = "formarket rules --format markdown > docs/rules.md"


def test_the_committed_page_matches_the_table() -> None:
    current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    assert current == render_markdown(), (
        f"docs/rules.md is out of date: run `{REGENERATE}` (or `make schemas`)"
    )


def test_the_page_is_what_the_command_prints() -> None:
    result = CliRunner().invoke(command, ["--format", "markdown"])
    assert result.exit_code == 0
    assert result.output == render_markdown()


def test_every_code_has_its_anchor_and_every_retired_id_its_line() -> None:
    page = render_markdown()
    for ident, rule in RULES.items():
        assert f"\n### {ident}\n" in page
        assert f"[{ident}](#{ident.lower()})" in page
        assert rule.example in page
        assert rule.fix in page
    for ident in RETIRED:
        assert f"- {ident}: " in page


def test_the_page_is_linked_where_people_check_their_work() -> None:
    assert "(docs/rules.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(../docs/rules.md)" in (ROOT / "registry" / "README.md").read_text(encoding="utf-8")


def test_placeholders_in_prose_are_code_so_the_page_shows_them() -> None:
    """`<publisher>` outside backticks is an HTML tag to a Markdown reader, and vanishes."""
    prose = [(r.id, text) for r in RULES.values() for text in (r.title, r.explanation)]
    prose += [(f.prefix, text) for f in FAMILIES for text in (f.raised_by, f.severities)]
    for where, text in prose:
        assert not re.search(r"<[^>]*>", re.sub(r"`[^`]*`", "", text)), where
