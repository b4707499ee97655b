"""Grafting layers onto a disk gives what overlayfs shows, for any steps: property-based, on
real overlay mounts (`graft_scenario.py`, in a mount namespace of its own)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formarket.process import Runner

SCENARIO = Path(__file__).with_name("graft_scenario.py")

# A small namespace, so that steps keep running into each other's paths.
_PATHS = ("a", "a/b", "a/b/c", "a/d", "e", "e/f", "g")
_path = st.sampled_from(_PATHS)
_op = st.one_of(
    st.tuples(st.just("write"), _path, st.sampled_from(["1", "22", ""])),
    st.tuples(st.just("append"), _path, st.just("+")),
    st.tuples(st.just("mkdir"), _path),
    st.tuples(st.just("remove"), _path),
    st.tuples(st.just("symlink"), _path, st.sampled_from(["a", "/nowhere", "../e"])),
    st.tuples(st.just("chmod"), _path, st.sampled_from([0o700, 0o4755, 0o640])),
    st.tuples(st.just("chown"), _path, st.sampled_from([0, 1000])),
    st.tuples(st.just("link"), _path, _path),
    st.tuples(st.just("rename"), _path, _path),
    st.tuples(st.just("xattr"), _path, st.sampled_from(["x", "y"])),
    st.tuples(st.just("touch"), _path, st.sampled_from([100, 2_000_000_000])),
).map(list)
_layer = st.lists(_op, max_size=6)


def run_scenario(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="graft-") as work:
        spec = Path(work) / "scenario.json"
        spec.write_text(json.dumps(scenario))
        argv = ["unshare", "--mount", "--propagation", "private", sys.executable, SCENARIO]
        done = Runner().run([*argv, spec, Path(work) / "w"], timeout=120)
    differences: list[dict[str, Any]] = json.loads(done.stdout)
    return differences


# Each example mounts a dozen overlays in a new process: a tenth of what the profile asks for
# (25 by default, 500 with HYPOTHESIS_PROFILE=thorough).
_EXAMPLES = max(25, settings().max_examples // 10)


@settings(max_examples=_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=_layer,
    shared=st.lists(_layer, max_size=2),
    old=st.lists(_layer, max_size=2),
    new=st.lists(_layer, max_size=2),
)
def test_a_grafted_disk_shows_what_the_new_stack_shows(
    base: list[Any], shared: list[Any], old: list[Any], new: list[Any]
) -> None:
    scenario = {"base": base, "shared": shared, "old": old, "new": new}
    assert run_scenario(scenario) == []


_BASE = [
    ["write", "a/b/c", "1"],
    ["write", "e", "1"],
    ["link", "e", "g"],
    ["chmod", "e", 0o4755],
    ["mkdir", "a/d"],
]
_CASES = {
    # A name of a hard-linked file changed by the old layers: restored, it is one file again.
    "hard link taken back": ([], [[["chown", "e", 1000]]], [[["write", "a/x", "1"]]]),
    "hard link split by a new layer": ([], [], [[["append", "g", "+"]]]),
    # A folder removed and made again in one step is opaque: nothing below it shows through.
    "opaque folder put on": ([], [], [[["remove", "a"], ["mkdir", "a"], ["write", "a/x", "1"]]]),
    "opaque folder taken back": ([], [[["remove", "a"], ["mkdir", "a"]]], []),
    "whiteouts both ways": ([], [[["remove", "e"]]], [[["remove", "a/b/c"], ["remove", "g"]]]),
    "a file becomes a folder and back": (
        [[["write", "a/d", "x"]]],
        [[["remove", "a/d"], ["mkdir", "a/d"], ["write", "a/d/f", "1"]]],
        [[["symlink", "a/b/c", "/nowhere"]]],
    ),
    "a folder moved away": ([], [[["rename", "a", "e/f"]]], [[["rename", "a/b", "g2"]]]),
    "metadata only": (
        [],
        [[["touch", "a", 100], ["xattr", "a/b", "x"]]],
        [[["chmod", "a", 0o700]]],
    ),
}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_the_cases_that_need_care(case: str) -> None:
    shared, old, new = _CASES[case]
    assert run_scenario({"base": _BASE, "shared": shared, "old": old, "new": new}) == []
