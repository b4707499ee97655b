"""Schema errors in the publisher's terms: a bare number where a quoted decimal goes, a share
out of its range, an unknown key with the keys allowed at that place, never the schema's own
"anyOf" wording; each at the line of the value."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import BaseModel

from formarket.registry.contract import load_contract
from formarket.registry.entries import check_yaml_document
from formarket.registry.findings import Finding
from formarket.schemas.listing import AgentListing, ModelListing
from formarket.schemas.publisher import Publisher
from formarket.schemas.solution import Solution
from formarket.yamldoc import YamlError, load_yaml
from tests.conftest import ROOT

CONTRACT = load_contract({p.name: p.read_bytes() for p in (ROOT / "schemas").glob("*.json")})
ECHO = "registry/models/tinyforge/echo-chat/listing.yaml"
AGENT = "registry/agents/northwind-ai/support-desk/listing.yaml"
SOLUTION = "registry/solutions/northwind-ai/helpdesk-in-a-box.yaml"
PUBLISHER = "registry/publishers/tinyforge.yaml"
PRICED = (
    (ROOT / ECHO)
    .read_text()
    .replace(
        "pricing:\n  model: free\n",
        'pricing:\n  model: per_request\n  currency: USD\n  per_request: "0.10"\n',
    )
)
RAW_WORDING = re.compile(r"anyOf|oneOf|allOf|schemas listed|is not valid under|does not match")


def _kind(path: str) -> tuple[str, type[BaseModel]]:
    kinds: dict[str, tuple[str, type[BaseModel]]] = {
        "agents": ("agent", AgentListing),
        "models": ("model", ModelListing),
        "solutions": ("solution", Solution),
        "publishers": ("publisher", Publisher),
    }
    return kinds[path.split("/")[1]]


def _check(text: str, path: str = ECHO) -> list[Finding]:
    kind, model = _kind(path)
    return check_yaml_document(text.encode(), path, kind, CONTRACT, model)[2]


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_priced_listing_is_valid() -> None:
    assert _check(PRICED) == []


def test_an_unquoted_price_says_quote_it() -> None:
    text = PRICED.replace('per_request: "0.10"', "per_request: 0.10")
    (error,) = _check(text)
    assert error.code == "REG001"
    assert error.line == _line(text, "per_request: 0.10")
    assert 'quote it: "0.10"' in error.hint


def test_a_share_out_of_range_says_its_range() -> None:
    text = PRICED.replace('royalty_percent: "0"', 'royalty_percent: "150"')
    (error,) = _check(text)
    assert error.line == _line(text, "royalty_percent")
    assert "between 0 and 100" in error.message


def test_an_unknown_key_in_pricing_lists_the_keys_of_pricing() -> None:
    text = PRICED.replace("  currency: USD\n", "  currency: USD\n  per_call: 1\n")
    (error,) = _check(text)
    assert error.line == _line(text, "per_call")
    assert error.hint.endswith("allowed here: currency, model, per_request")


def test_an_unknown_pricing_model_names_the_known_ones() -> None:
    text = PRICED.replace("model: per_request", "model: per_call")
    (error,) = _check(text)
    assert error.line == _line(text, "model: per_call")
    assert "per_token" in error.message


_LEAF = re.compile(r"^(\s*(?:- )?)([a-z_]+): (\S.*)$")
_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(min_value=-(10**15), max_value=10**15).map(str),
    st.sampled_from(["true", "false", "null", "[1, 2]", "{a: 1}", "[]", "{}", ".nan"]),
    st.text(st.characters(codec="ascii", categories=("L", "N", "P", "Zs")), max_size=30).map(
        json.dumps
    ),
)


@pytest.mark.parametrize("path", [ECHO, AGENT, SOLUTION, PUBLISHER])
@given(data=st.data(), value=_VALUES)
def test_any_mistyped_value_is_reported_at_its_line_in_plain_words(
    path: str, data: st.DataObject, value: str
) -> None:
    text = PRICED if path == ECHO else (ROOT / path).read_text()
    lines = text.splitlines()
    leaves = [i for i, line in enumerate(lines) if _LEAF.match(line)]
    at = data.draw(st.sampled_from(leaves))
    indent, key, _ = _LEAF.match(lines[at]).groups()  # type: ignore[union-attr]
    lines[at] = f"{indent}{key}: {value}"
    raw = ("\n".join(lines) + "\n").encode()
    try:
        doc = load_yaml(raw, path)
    except YamlError:
        assume(False)
    for f in _check(raw.decode(), path):
        assert not RAW_WORDING.search(f.message), f.message
        assert not RAW_WORDING.search(f.hint), f.hint
    # What the schema refuses is at the line of the value (the model's checks across fields,
    # such as a minimum above a recommendation, are at the mapping that holds both).
    schema = CONTRACT.check(_kind(path)[0], doc)
    if schema and "required" not in " ".join(f.message for f in schema):
        assert at + 1 in {f.line for f in schema}, (lines[at], schema)


def test_a_bare_number_in_any_decimal_field_says_quote_it() -> None:
    agent = (ROOT / AGENT).read_text()
    quoted = re.findall(r'^\s*([a-z_]+): "(\d+(?:\.\d+)?)"$', agent, re.M)
    assert quoted, "the agent has quoted decimals"
    for key, number in quoted:
        text = agent.replace(f'{key}: "{number}"', f"{key}: {float(number) + 0.5}")
        found = [f for f in _check(text, AGENT) if "quote it" in f.hint]
        assert found, key
        assert found[0].line == _line(text, f"{key}: {float(number) + 0.5}")


def test_a_version_that_is_no_semver_says_what_one_is() -> None:
    text = PRICED.replace("version: 1.1.0", 'version: "1.1"')
    (error,) = _check(text)
    assert error.line == _line(text, 'version: "1.1"')
    assert "1.0.0" in error.hint
    assert "^" not in error.message
