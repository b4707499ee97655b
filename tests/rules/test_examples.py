"""The Formfile examples of the rule table are real: each breaks its rule, and its fix parses."""

from __future__ import annotations

import pytest

from formarket.formfile.parser import MAX_BYTES, check_formfile
from formarket.rules import Rule, rules_of

# What the page writes as a placeholder, since the real text cannot be shown: a bidirectional
# override would reorder the page it is shown on, and a megabyte would not fit on it.
PLACEHOLDERS = {"<U+202E>": "\u202e", "<a megabyte of text>": "x" * MAX_BYTES}


def _codes(rule: Rule, snippet: str) -> list[str]:
    for shown, real in PLACEHOLDERS.items():
        snippet = snippet.replace(shown, real)
    if "NAME" not in snippet and rule.name != "MISSING_NAME":
        snippet = "NAME example\n" + snippet
    return [error.code.value for error in check_formfile(snippet + "\n").errors]


@pytest.mark.parametrize("rule", rules_of("FF"), ids=lambda rule: rule.id)
def test_the_example_breaks_the_rule_and_the_fix_parses(rule: Rule) -> None:
    assert rule.id in _codes(rule, rule.example)
    assert _codes(rule, rule.fix) == []
