"""The issue form and `--set` parsers: strict, and never anything but FormarketError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.deploy.issue_form import FormError, parse_issue_body
from formarket.deploy.values import (
    parse_gpu,
    parse_listing,
    parse_resources,
    parse_secret,
    parse_set,
)
from formarket.errors import FormarketError, InputError
from tests.deploy.conftest import GOOD_BODY, form

LABELS = ["Agent", "Model", "Solution", "Resources", "Settings", "Command", "agent"]
VALUES = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "tinyforge/faq-bot",
            "tinyforge/faq-bot@1.0.0",
            "_No response_",
            "vcpus=2 memory=1024 gpu=H100:1",
            "```yaml\nmin_match: 0.5\n```",
            "{a: [1, 2, {b: c}]}",
            "&a [*a]",
            "!!python/object:os.system ls",
            "${{ github.token }}",
            "$(reboot)",
            "a: 1\na: 2",
        ]
    ),
)


@st.composite
def bodies(draw: st.DrawFn) -> str:
    sections = draw(st.lists(st.tuples(st.sampled_from(LABELS), VALUES), max_size=7))
    lead = draw(st.sampled_from(["", "\n", "hello\n"]))
    sep = draw(st.sampled_from(["\n\n", "\r\n\r\n", "\n"]))
    return lead + sep.join(f"### {label}{sep}{value}" for label, value in sections)


@settings(max_examples=300, deadline=None)
@given(st.one_of(bodies(), st.text(max_size=300)))
def test_issue_form_parsing_never_crashes(body: str) -> None:
    try:
        parsed = parse_issue_body(body)
    except FormarketError:
        return
    assert parsed.agent or parsed.model or parsed.solution
    assert isinstance(parsed.settings, dict)


def test_the_form_as_github_renders_it() -> None:
    parsed = parse_issue_body(
        form(
            agent="tinyforge/faq-bot@1.0.0",
            resources="vcpus=1, memory=512 gpu=L4",
            settings='{"min_match": 0.5}',
        )
    )

    assert parsed.agent is not None
    assert parsed.agent.version == "1.0.0"
    assert parsed.model is None
    assert parsed.solution is None
    assert (parsed.vcpus, parsed.memory_mib) == (1, 512)
    assert parsed.gpu is not None
    assert (parsed.gpu.model, parsed.gpu.count) == ("L4", 1)
    assert parsed.settings == {"min_match": 0.5}
    assert parse_issue_body(GOOD_BODY).settings == {"handoff_message": "A person will reply."}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("hello\n\n" + form(agent="tinyforge/faq-bot"), "text outside the form's fields"),
        (form(agent="tinyforge/faq-bot") + "\n\n### Agent\n\nacme/x", "given twice"),
        (form(agent="tinyforge/faq-bot", settings="- a\n- b"), "settings must be a mapping"),
        (form(agent="tinyforge/faq-bot", settings="a: 1\na: 2"), "cannot be read as YAML"),
        (form(agent="tinyforge/faq-bot", settings="!!python/object:os.system x"), "YAML"),
        (form(agent="tinyforge/faq-bot", resources="vcpus=1 vcpus=2"), "given twice"),
        (form(agent="tinyforge/faq-bot", resources="gpu=X999:1"), "is not MODEL:COUNT"),
        (form(), "names no agent, model or solution"),
        ("x" * 70000, "at most 65,536"),
    ],
)
def test_malformed_bodies_are_refused(body: str, fragment: str) -> None:
    with pytest.raises(FormError) as caught:
        parse_issue_body(body)

    assert any(fragment in reason for reason in caught.value.reasons), caught.value.reasons


def test_every_problem_is_reported_not_only_the_first() -> None:
    with pytest.raises(FormError) as caught:
        parse_issue_body(form(agent="$(id)", model="`id`", resources="cpus=2"))

    assert len(caught.value.reasons) == 3


# --- values shared with the CLI ------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=6))
def test_set_parsing_never_crashes(items: list[str]) -> None:
    try:
        parsed = parse_set(items)
    except FormarketError:
        return
    assert list(parsed) == [item.partition("=")[0] for item in items]


def _not_json(constant: str) -> object:
    raise ValueError(constant)


@given(
    st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True),
        st.one_of(st.integers(), st.booleans(), st.text(max_size=20)),
        max_size=5,
    )
)
def test_set_reads_json_values_and_keeps_other_text(values: dict[str, object]) -> None:
    items = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in values.items()]
    parsed = parse_set(items)
    for key, value in values.items():
        if isinstance(value, str):
            try:
                # NaN and Infinity are not JSON values: such text stays text.
                expected = json.loads(value, parse_constant=_not_json)
            except ValueError:
                expected = value
            assert parsed[key] == expected
        else:
            assert parsed[key] == value


@pytest.mark.parametrize(
    "items", [["novalue"], ["=x"], ["a b=1"], ["a=1", "a=2"], ["$(id)=1"], ["x=NaN", "x=1"]]
)
def test_bad_set_items_are_refused(items: list[str]) -> None:
    with pytest.raises(InputError):
        parse_set(items)


def test_set_examples() -> None:
    assert parse_set(["min_match=0.5", "language=en", "on=true", "msg=a: b", "n=NaN"]) == {
        "min_match": 0.5,
        "language": "en",
        "on": True,
        "msg": "a: b",
        "n": "NaN",
    }


def test_a_secret_given_by_value_is_refused_without_echoing_it() -> None:
    with pytest.raises(InputError) as caught:
        parse_secret("API_KEY=sk-live-1234567890")

    assert "sk-live" not in str(caught.value)
    assert parse_secret("API_KEY=env:SUPPORT_KEY").ref == "env:SUPPORT_KEY"


@pytest.mark.parametrize(
    "text", ["acme", "acme/x@1", "acme/x@1.0.0 x", "../etc/passwd", "acme/x; rm -rf /", "${{ x }}"]
)
def test_listing_ids_are_matched_strictly(text: str) -> None:
    with pytest.raises(InputError):
        parse_listing(text)


def test_resources_and_gpus() -> None:
    res = parse_resources("vcpus=2 memory=1024 gpu=H100:2")
    assert (res.vcpus, res.memory_mib) == (2, 1024)
    assert res.gpu is not None
    assert res.gpu.count == 2
    for bad in ("H100:0", "H100:9", "h100", "H100:1:2"):
        with pytest.raises(InputError):
            parse_gpu(bad)
