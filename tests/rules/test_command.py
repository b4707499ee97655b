"""`formarket rules`: every code by family, one code explained, a clear error for a wrong id."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from formarket.cli import main
from formarket.commands.rules import closest
from formarket.rules import FAMILIES, RULES, rules_of


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["rules", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def test_without_an_id_every_code_is_listed_by_family() -> None:
    code, out = _run()
    assert code == 0
    for ident, rule in RULES.items():
        assert ident in out
        assert rule.title in out
    headings = [out.index(f"({family.prefix})") for family in FAMILIES]
    assert headings == sorted(headings)
    # Each code sits under its own family's heading.
    assert headings[0] < out.index("REG027") < headings[1] < out.index("FF029") < headings[2]


@pytest.mark.parametrize("given", ["REG011", "reg011", " Reg011 "])
def test_an_id_in_any_case_is_explained(given: str) -> None:
    code, out = _run(given)
    assert code == 0
    rule = RULES["REG011"]
    assert out.startswith("REG011")
    assert "Why" in out
    assert "Breaks it" in out
    assert "Fix" in out
    assert rule.example.splitlines()[0] in out
    assert rule.fix.splitlines()[0] in out
    assert "formarket check" in out  # it says which command raises it


def test_a_family_lists_only_its_codes() -> None:
    code, out = _run("usg")
    assert code == 0
    assert all(rule.id in out for rule in rules_of("USG"))
    assert "REG001" not in out
    assert "FF001" not in out


@pytest.mark.parametrize(
    ("given", "suggested"), [("REG11", "REG011"), ("RGE011", "REG011"), ("ff1", "FF001")]
)
def test_an_unknown_id_is_an_error_that_suggests_the_closest(given: str, suggested: str) -> None:
    code, out = _run(given)
    assert code == 1
    assert out.startswith("error:")
    assert "Traceback" not in out
    assert suggested in out
    assert closest(given)[0] == suggested


def test_an_id_far_from_any_code_still_says_where_to_look() -> None:
    code, out = _run("nothing-like-it")
    assert code == 1
    assert "formarket rules" in out


def test_a_retired_id_says_so() -> None:
    code, out = _run("USG002")
    assert code == 1
    assert "USG002 is not a code" in out


def test_json_for_one_code_and_for_all() -> None:
    code, out = _run("FF028", "--format", "json")
    assert code == 0
    one = json.loads(out)
    assert one["id"] == "FF028"
    assert one["family"] == "FF"
    assert one["severity"] == "error"
    assert {"title", "explanation", "example", "fix", "raised_by"} <= set(one)
    code, out = _run("--format", "json")
    assert code == 0
    everything = json.loads(out)
    listed = [r["id"] for family in everything["families"] for r in family["rules"]]
    assert listed == list(RULES)
    assert "USG002" in everything["retired"]


def test_markdown_for_one_code_is_its_section() -> None:
    code, out = _run("REG004", "--format", "markdown")
    assert code == 0
    assert out.startswith("### REG004\n")


def test_the_help_teaches() -> None:
    code, out = _run("--help")
    assert code == 0
    for word in ("REG", "FF", "USG", "error", "warning", "set-aside", "formarket rules reg011"):
        assert word in out
