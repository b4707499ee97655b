"""Bases are data: the shipped files load, and a broken one says where."""

from __future__ import annotations

from pathlib import Path

import pytest

from formarket.builder.bases import base_file_name, load_base, load_bases
from formarket.errors import InputError
from tests.builder.conftest import BASES


def test_the_shipped_bases_load() -> None:
    bases = load_bases(BASES)
    assert set(bases) >= {"busybox", "debian:bookworm"}
    busybox, debian = bases["busybox"][0], bases["debian:bookworm"][0]
    assert busybox.source.busybox is not None
    assert busybox.package_manager == "none"
    assert debian.source.mmdebstrap is not None
    assert debian.package_manager == "apt"
    assert debian.kernel.modules[0] == "virtio_ring"
    for name, (spec, path) in bases.items():
        assert path.name == base_file_name(name)
        assert spec.recipe_digest() == load_base(path).recipe_digest()


def test_a_base_with_two_sources_is_refused(tmp_path: Path) -> None:
    text = (
        (BASES / "busybox.yaml")
        .read_text()
        .replace("source:\n", "source:\n  mmdebstrap: {suite: bookworm, mirror: 'http://x'}\n")
    )
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(InputError, match="exactly one of busybox, mmdebstrap"):
        load_base(tmp_path / "bad.yaml")


def test_a_base_file_must_be_absolute(tmp_path: Path) -> None:
    text = (BASES / "busybox.yaml").read_text() + '  - {path: etc/x, content: ""}\n'
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(InputError, match="not an absolute path"):
        load_base(tmp_path / "bad.yaml")
