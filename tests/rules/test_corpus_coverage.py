"""Every code in the rule table has a case in the test corpus that raises it.

Registry rules: tests/corpus/registry/*.yaml, by their `expect` lists. Formfile errors:
tests/corpus/formfile/*.Formfile, by their `# expect:` lines. Usage set aside: the tests of the
usage reader and the royalty close, which assert each code they set aside.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import yaml

from formarket.rules import RULES

TESTS = Path(__file__).parents[1]
CORPUS = TESTS / "corpus"
PR_CHECK_TESTS = TESTS / "registry" / "test_pr_check.py"

# Codes that only the pull-request check raises: they need a base commit, a head commit and an
# author, where a corpus case is one working tree. PR_CHECK_TESTS tests each of them.
PR_CHECK_ONLY = frozenset(
    {
        *("REG011", "REG012", "REG016", "REG017", "REG018", "REG019"),
        *("REG030", "REG031", "REG032", "REG033", "REG034"),
    }
)


def _registry_cases() -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for case in sorted((CORPUS / "registry").glob("*.yaml")):
        for expected in yaml.safe_load(case.read_text(encoding="utf-8"))["expect"]:
            found[expected["code"]].add(case.name)
    return found


def _formfile_cases() -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for case in sorted((CORPUS / "formfile").glob("*.Formfile")):
        header = case.read_text(encoding="utf-8").split("\n", 1)[0]
        for item in header.removeprefix("# expect: ").split():
            found[item.split("@")[0]].add(case.name)
    return found


def _usage_cases() -> dict[str, set[str]]:
    """Codes the usage tests name as a string, such as `("USG004", b"not JSON")`."""
    found: dict[str, set[str]] = defaultdict(set)
    for folder in ("royalties", "usage"):
        for test in sorted((TESTS / folder).glob("**/test_*.py")):
            for code in re.findall(r"[\"'](USG[0-9]{3})[\"']", test.read_text(encoding="utf-8")):
                found[code].add(test.name)
    return found


def test_every_code_has_a_corpus_case() -> None:
    cases = {**_registry_cases(), **_formfile_cases(), **_usage_cases()}
    missing = sorted(set(RULES) - set(cases) - PR_CHECK_ONLY)
    assert not missing, (
        f"no corpus case raises {', '.join(missing)}: add one (tests/corpus/registry/*.yaml,"
        " tests/corpus/formfile/*.Formfile, or a set-aside case in tests/royalties/)"
    )
    unknown = sorted(set(cases) - set(RULES))
    assert not unknown, f"the corpus expects codes the table does not have: {unknown}"


def test_codes_only_the_pull_request_check_raises_are_tested_there() -> None:
    text = PR_CHECK_TESTS.read_text(encoding="utf-8")
    untested = sorted(code for code in PR_CHECK_ONLY if f'"{code}"' not in text)
    assert not untested, f"{PR_CHECK_TESTS.name} asserts nothing about {', '.join(untested)}"
    # The exceptions are exactly the rules the docs say only `formarket check` raises.
    documented = {r.id for r in RULES.values() if r.raised_by.startswith("`formarket check` only")}
    assert documented == PR_CHECK_ONLY
    # A code that gains a corpus case no longer needs to be an exception.
    assert not PR_CHECK_ONLY & set(_registry_cases())
