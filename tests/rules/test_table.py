"""The one table of diagnostic codes: ids that hold forever, complete entries, and the views
that the registry, the Formfile parser and the usage reader keep using."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from formarket import rules
from formarket.formfile.codes import FormfileCode
from formarket.registry import findings
from formarket.rules import FAMILIES, RETIRED, RULES, Severity, rules_of
from formarket.usage import wire

PREFIXES = [family.prefix for family in FAMILIES]
# What each family's codes do: the registry's block or advise, the rest do one thing each.
SEVERITIES = {
    "REG": {Severity.ERROR, Severity.WARNING},
    "FF": {Severity.ERROR},
    "USG": {Severity.SET_ASIDE},
}


def test_every_id_belongs_to_a_family_and_is_well_formed() -> None:
    assert set(SEVERITIES) == set(PREFIXES)
    for ident, rule in RULES.items():
        assert ident == rule.id
        assert re.fullmatch(r"[A-Z]+[0-9]{3}", ident), ident
        assert rule.family in PREFIXES, ident


@pytest.mark.parametrize("prefix", PREFIXES)
def test_numbers_run_in_order_and_every_gap_is_explained(prefix: str) -> None:
    numbers = [int(rule.id[len(prefix) :]) for rule in rules_of(prefix)]
    assert numbers == sorted(numbers), f"{prefix} codes are not in id order"
    retired = {int(i[len(prefix) :]) for i in RETIRED if i.rstrip("0123456789") == prefix}
    unexplained = set(range(1, max(numbers) + 1)) - set(numbers) - retired
    assert not unexplained, (
        f"{prefix} skips {sorted(unexplained)}: a new code takes the next number, and an id"
        " that is withdrawn moves to RETIRED"
    )


def test_a_retired_id_is_never_given_again() -> None:
    assert not set(RETIRED) & set(RULES)
    assert all(why for why in RETIRED.values())


def test_a_duplicate_id_is_refused() -> None:
    rule = RULES["REG001"]
    with pytest.raises(ValueError, match="REG001"):
        rules._by_id((rule, rule))


@pytest.mark.parametrize("ident", sorted(RULES))
def test_every_rule_is_explained_with_an_example_and_a_fix(ident: str) -> None:
    rule = RULES[ident]
    assert rule.severity in SEVERITIES[rule.family]
    assert rule.title
    assert not rule.title.endswith(".")
    assert rule.explanation.endswith((".", ".)", '."')), "write the explanation in sentences"
    assert len(rule.explanation) > 80
    assert rule.example.strip()
    assert rule.fix.strip()
    assert rule.example != rule.fix


def test_the_registry_rules_are_the_reg_rows() -> None:
    assert {rule.id: rule for rule in rules_of("REG")} == findings.RULES
    assert findings.RULES["REG013"].severity is Severity.WARNING
    assert findings.RULES["REG011"].title == "a published version was rewritten"
    assert findings.finding("REG026", "x", "m").severity is Severity.WARNING


def test_formfile_codes_are_the_ff_rows_by_name() -> None:
    assert [(code.name, code.value) for code in FormfileCode] == [
        (rule.name, rule.id) for rule in rules_of("FF")
    ]
    # The strings callers and corpus files match on.
    assert FormfileCode.UNKNOWN_INSTRUCTION == "FF001"
    assert FormfileCode.TOO_LARGE == "FF028"
    assert FormfileCode.DUPLICATE_VALUE == "FF029"


def test_usage_codes_are_the_usg_rows() -> None:
    assert {rule.id: rule.title for rule in rules_of("USG")} == wire.CODES
    assert "USG002" not in wire.CODES


def test_the_table_imports_nothing_of_formarket() -> None:
    """It sits on the lowest floor, and `formarket validate` loads it on every run."""
    tree = ast.parse(Path(rules.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "enum", "typing"}, imported
