"""The host inventory: outside input, so every mistake names its file, line and field."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.errors import InputError, LocatedError, NotFoundError
from formarket.farm.hosts import load_inventory, parse_inventory

ROOT = Path(__file__).parents[2]


def test_the_example_inventory_loads() -> None:
    inventory = load_inventory(ROOT / "builder" / "hosts.example.yaml")
    assert inventory.host("gpu-a1").gpus == {"H100": 8}
    with pytest.raises(NotFoundError):
        inventory.host("nowhere")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            "hosts:\n  - name: a\n    uri: test:///x\n    vcpus: -1\n    memory_mib: 512\n",
            4,
            "hosts.0.vcpus",
        ),
        (
            "hosts:\n  - name: a\n    uri: ftp://x\n    vcpus: 1\n    memory_mib: 512\n",
            3,
            "must be a libvirt URI",
        ),
        (
            "hosts:\n  - name: a\n    uri: test:///x\n    vcpus: 1\n    memory_mib: 512\n"
            "    gpus: {Z9000: 1}\n",
            6,
            "hosts.0.gpus",
        ),
        (
            "hosts:\n  - name: a\n    uri: test:///x\n    vcpus: 1\n    memory_mib: 512\n"
            "    cores: 4\n",
            6,
            "hosts.0.cores: Extra inputs",
        ),
        (
            "hosts:\n  - {name: a, uri: 'test:///x', vcpus: 1, memory_mib: 512}\n"
            "  - {name: a, uri: 'test:///y', vcpus: 1, memory_mib: 512}\n",
            1,
            "two hosts are named a",
        ),
        ("hosts: []\n", 1, "at least 1"),
        (
            "hosts:\n  - name: A B\n    uri: test:///x\n    vcpus: 1\n    memory_mib: 512\n",
            2,
            "hosts.0.name",
        ),
    ],
)
def test_mistakes_are_located(text: str, line: int, words: str) -> None:
    with pytest.raises(LocatedError) as caught:
        parse_inventory(text.encode(), "hosts.yaml")
    assert caught.value.location.path == "hosts.yaml"
    assert caught.value.location.line == line
    assert words in str(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        b"!!python/object/apply:os.system ['id']\n",
        b"hosts: &a [*a]\n",
        b"\xff\xfe",
        b"a: 1\na: 2\n",
    ],
)
def test_hostile_yaml_is_refused(data: bytes) -> None:
    with pytest.raises(InputError):
        parse_inventory(data, "hosts.yaml")


def test_a_missing_file_says_what_to_copy(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such host inventory"):
        load_inventory(tmp_path / "hosts.yaml")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_give_an_inventory_or_an_input_error(data: bytes) -> None:
    with contextlib.suppress(InputError):
        parse_inventory(data, "hosts.yaml")
