"""A required setting's value on a deploy command survives the shell and `--set`'s reader:
whatever an agent's schema gives as its default (a publisher writes it), the user's shell
reads back the words shown, and `formarket deploy` the value itself."""

from __future__ import annotations

import shlex
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from formarket.deploy.values import parse_set
from formarket.site.deploys import command_line, setting_args

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@given(default=_JSON, name=st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True))
def test_a_default_reaches_deploy_as_it_was(default: Any, name: str) -> None:
    schema = {"type": "object", "required": [name], "properties": {name: {"default": default}}}
    args = setting_args(schema)
    line = command_line("acme/agent", "acme/model", sets=args.sets)
    words = shlex.split(line)
    assert words[:5] == ["formarket", "deploy", "acme/agent", "--model", "acme/model"]
    assert words[5] == "--set"
    assert parse_set([words[6]]) == {name: default}
    assert args.supply == ()


def test_a_required_setting_without_a_value_is_named() -> None:
    schema = {"required": ["api_base", "language"], "properties": {"language": {"enum": ["nl"]}}}
    args = setting_args(schema)
    assert args.sets == ("api_base=API_BASE", "language=nl")
    assert args.supply == ("api_base",)
    assert args.chosen == ("language (one of nl)",)
