"""The YAML loader: hostile input is refused with a location; the fast and the reference
readers agree on everything the fast one is trusted with."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formarket import yamldoc
from formarket.yamldoc import Limits, YamlError, load_yaml, load_yaml_strict


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a: yes", "yes"),
        ("a: no", "no"),
        ("a: on", "on"),
        ("a: 1.10", 1.1),
        ("a: '1.10'", "1.10"),
        ("a: 0o17", 15),
        ("a: 0x1F", 31),
        ("a: 017", 17),
        ("a: ~", None),
        ("a: true", True),
        ("a: 2024-01-01", "2024-01-01"),
        ("a: 1_000", "1_000"),
        ("a: 12:30", "12:30"),
        ("a: !!str 12", "12"),
        ("a: !!int '12'", 12),
    ],
)
def test_plain_scalars_follow_the_yaml_1_2_core_schema(text: str, value: Any) -> None:
    assert load_yaml(text.encode(), "f.yaml").data == {"a": value}


@pytest.mark.parametrize(
    ("raw", "code", "line"),
    [
        (b"a: 1\nb: 2\na: 3\n", yamldoc.DUPLICATE_KEY, 3),
        (b"a: !!python/object/apply:os.system ['id']\n", yamldoc.TAG, 1),
        (b"a: !!binary aGVsbG8=\n", yamldoc.TAG, 1),
        (b"a: !!set {x}\n", yamldoc.TAG, 1),
        (b"a: !custom 1\n", yamldoc.TAG, 1),
        (b"a: 1\n<<: {b: 2}\n", yamldoc.TAG, 2),
        (b"? [x]\n: 1\n", yamldoc.KEY_TYPE, 1),
        (b"1: one\n", yamldoc.KEY_TYPE, 1),
        (b"a: &x [*x]\n", yamldoc.BOMB, 1),
        (b"a: 1\n---\nb: 2\n", yamldoc.DOCUMENTS, 2),
        (b"a: [1, 2\n", yamldoc.SYNTAX, 2),
        (b"a:\n\tb: 1\n", yamldoc.SYNTAX, 2),
        (b"a: \xe9t\xe9\n", yamldoc.ENCODING, 1),
        (b"a: b\x00c\n", yamldoc.SYNTAX, 1),
        (b"%YAML 1.1\n%YAML 1.1\n---\na: 1\n", yamldoc.SYNTAX, 2),
    ],
)
def test_hostile_input_is_refused_where_it_is(raw: bytes, code: str, line: int) -> None:
    with pytest.raises(YamlError) as info:
        load_yaml(raw, "f.yaml")
    assert info.value.code == code
    assert info.value.location.path == "f.yaml"
    assert info.value.location.line == line


def test_a_billion_laughs_stops_at_the_node_budget() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    with pytest.raises(YamlError) as info:
        load_yaml("\n".join(lines).encode(), "bomb.yaml", Limits(max_nodes=10_000))
    assert info.value.code == yamldoc.BOMB


def test_size_limit() -> None:
    with pytest.raises(YamlError) as info:
        load_yaml(b"a: 1\n" + b"#" * 100, "big.yaml", Limits(max_bytes=64))
    assert info.value.code == yamldoc.TOO_LARGE


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(YamlError) as info:
        load_yaml(b"a: " + b"[" * 100 + b"]" * 100, "deep.yaml")
    assert info.value.code in (yamldoc.BOMB, yamldoc.SYNTAX)


def test_locations_of_values_are_found_lazily() -> None:
    doc = load_yaml(b"a: 1\nb:\n  c: [x, y]\n", "f.yaml")
    assert doc.locate(("b", "c", 1)).line == 3
    assert doc.locate(("b", "missing")).line == 3
    assert doc.locate(()).line == 1


# --- properties ---------------------------------------------------------------------------

_KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
# Scalars as they are written in listings, and the awkward ones around them.
_PLAIN = st.one_of(
    st.from_regex(r"[-+]?[0-9_.]{1,8}(e[-+]?[0-9]{1,2})?", fullmatch=True),
    st.from_regex(r"0[xob][0-9a-fA-F_]{1,6}", fullmatch=True),
    st.sampled_from(
        [
            "yes",
            "no",
            "on",
            "off",
            "~",
            "null",
            "True",
            "FALSE",
            ".inf",
            "-.Inf",
            ".NaN",
            "2024-01-01",
            "12:30",
            "q4_k_m",
            "v1.2.3",
            "1.0.0-rc.1",
            "a b c",
            "http://x.y/z?q=1",
        ]
    ),
    st.from_regex(r"[A-Za-z][A-Za-z0-9 ._/-]{0,20}[A-Za-z0-9]", fullmatch=True),
)


@st.composite
def _documents(draw: st.DrawFn) -> str:
    lines = []
    for key in draw(st.lists(_KEYS, min_size=1, max_size=8, unique=True)):
        shape = draw(st.sampled_from(["scalar", "list", "map"]))
        if shape == "scalar":
            lines.append(f"{key}: {draw(_PLAIN)}")
        elif shape == "list":
            lines.append(f"{key}: [{', '.join(draw(st.lists(_PLAIN, max_size=4)))}]")
        else:
            lines.append(f"{key}:")
            for sub in draw(st.lists(_KEYS, min_size=1, max_size=3, unique=True)):
                lines.append(f"  {sub}: {draw(_PLAIN)}")
    return "\n".join(lines) + "\n"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents())
def test_the_fast_reader_agrees_with_the_reference(text: str) -> None:
    raw = text.encode()
    try:
        reference, _ = load_yaml_strict(raw, "f.yaml")
    except YamlError:
        with pytest.raises(YamlError):
            load_yaml(raw, "f.yaml")
        return
    assert _same(load_yaml(raw, "f.yaml").data, reference)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_data_or_a_located_error(raw: bytes) -> None:
    try:
        doc = load_yaml(raw, "f.yaml")
    except YamlError as exc:
        assert exc.location.path == "f.yaml"
        assert exc.code.startswith("YAML")
        return
    assert doc.data is None or isinstance(doc.data, dict | list | str | int | float | bool)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_arbitrary_text_gives_data_or_a_located_error(text: str) -> None:
    try:
        load_yaml(text.encode(), "f.yaml")
    except YamlError as exc:
        assert exc.location.line >= 0


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=10), _JSONISH, max_size=6))
def test_data_dumped_by_pyyaml_reads_back_the_same(data: dict[str, Any]) -> None:
    raw = yaml.safe_dump(data, allow_unicode=True).encode()
    try:
        loaded = load_yaml(raw, "f.yaml").data
    except YamlError as exc:
        # PyYAML writes some strings in forms only YAML 1.1 reads back: never silently wrong.
        assert exc.code in (yamldoc.SYNTAX, yamldoc.KEY_TYPE, yamldoc.ENCODING)
        return
    assert _same(loaded, data) or _yaml11_only(data)


def _yaml11_only(data: Any) -> bool:
    """PyYAML quotes only what YAML 1.1 would misread; YAML 1.2 reads a few more plain
    scalars (0o7, 0x1, 1e3) as numbers, so strings like those may come back as numbers."""
    if isinstance(data, str):
        return not isinstance(yamldoc._resolve_plain(data), str)
    if isinstance(data, dict):
        return any(_yaml11_only(k) or _yaml11_only(v) for k, v in data.items())
    if isinstance(data, list):
        return any(_yaml11_only(v) for v in data)
    return False


def _wide_number_by_scanning(data: bytes) -> bool:
    """Every `_` beside a digit or a dot and every `0b`/`0o`/`0x`, one by one: what the
    pattern that finds them stands for."""
    numberish = set(b"0123456789.")
    suspects = [
        at
        for at, byte in enumerate(data)
        if byte == ord("_")
        and (
            (at > 0 and data[at - 1] in numberish)
            or (at + 1 < len(data) and data[at + 1] in numberish)
        )
    ]
    suspects += [at for at in range(len(data) - 1) if data[at : at + 2] in (b"0b", b"0o", b"0x")]
    return any(yamldoc._wide_number_at(data, at) for at in suspects)


@settings(max_examples=400, deadline=None)
@given(st.text(st.sampled_from(list("0123456789._-+ebox:, \n\"'#[]{}a")), max_size=30))
def test_numbers_the_fast_reader_reads_otherwise_are_found(text: str) -> None:
    data = text.encode()
    assert yamldoc._has_wide_number(data) == _wide_number_by_scanning(data)
