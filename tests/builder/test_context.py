"""The build context: only what COPY names, links kept inside, limits enforced early."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from formarket.builder.context import ContextError, ContextLimits, scan_context
from formarket.errors import NotFoundError


def test_only_the_copy_sources_are_read_and_hashed(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("hi")
    (tmp_path / "secret.key").write_text("not copied")
    context = scan_context(tmp_path, ["./www"])
    assert [(e.path, e.kind) for e in context.entries] == [
        ("www", "dir"),
        ("www/index.html", "file"),
    ]
    assert context.entries[1].digest == (
        "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"
    )


def test_executable_bits_are_kept_and_other_mode_bits_are_not(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o700)
    (tmp_path / "data").write_text("x")
    (tmp_path / "data").chmod(0o600)
    modes = {e.path: e.mode for e in scan_context(tmp_path, ["."]).entries}
    assert modes == {"run.sh": 0o755, "data": 0o644}


def test_a_link_inside_the_context_is_kept_as_a_link(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "real").write_text("x")
    (tmp_path / "a" / "alias").symlink_to("real")
    entries = {e.path: e for e in scan_context(tmp_path, ["a"]).entries}
    assert entries["a/alias"].kind == "link"
    assert entries["a/alias"].digest == "real"


@pytest.mark.parametrize("target", ["/etc/passwd", "../../etc/passwd", "../../outside"])
def test_a_link_that_points_outside_the_context_is_refused(tmp_path: Path, target: str) -> None:
    context = tmp_path / "ctx"
    (context / "www").mkdir(parents=True)
    (tmp_path / "outside").write_text("secret")
    (context / "www" / "leak").symlink_to(target)
    with pytest.raises(ContextError, match="outside the context"):
        scan_context(context, ["./www"])


def test_a_link_chain_that_ends_outside_is_refused(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "hop").symlink_to("/")
    (context / "leak").symlink_to("hop/etc/passwd")
    with pytest.raises(ContextError, match="outside the context"):
        scan_context(context, ["leak"])


def test_a_copy_through_a_linked_folder_is_refused(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "etc").symlink_to("/etc")
    with pytest.raises(ContextError):
        scan_context(context, ["etc/passwd"])


def test_a_source_that_leaves_the_context_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="leaves the build context"):
        scan_context(tmp_path, ["a/../../etc/passwd"])


def test_special_files_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ContextError, match="not a file, folder or link"):
        scan_context(tmp_path, ["."])


def test_a_missing_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="'www' does not exist"):
        scan_context(tmp_path, ["www"])


@pytest.mark.slow
def test_a_context_of_100000_files_fails_quickly_with_the_limit(tmp_path: Path) -> None:
    files = tmp_path / "many"
    for folder in range(100):
        sub = files / f"d{folder:02d}"
        sub.mkdir(parents=True)
        for index in range(1000):
            os.close(os.open(sub / f"f{index:03d}", os.O_CREAT | os.O_WRONLY, 0o644))
    started = time.perf_counter()
    with pytest.raises(ContextError, match="more than 20000 files and folders") as caught:
        scan_context(tmp_path, ["many"])
    assert time.perf_counter() - started < 5
    assert caught.value.hint


def test_the_size_limit_is_checked_too(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 2000)
    with pytest.raises(ContextError, match="larger than 1000 bytes"):
        scan_context(tmp_path, ["big"], ContextLimits(max_bytes=1000))


def test_the_formfile_is_never_part_of_its_context(tmp_path: Path) -> None:
    (tmp_path / "Formfile").write_text('NAME x\nUSER username:a passwd:"clear"\n')
    (tmp_path / "app.sh").write_text("echo hi\n")
    paths = [e.path for e in scan_context(tmp_path, ["."], exclude=["Formfile"]).entries]
    assert paths == ["app.sh"]
    with pytest.raises(ContextError, match="not part of its build context"):
        scan_context(tmp_path, ["./Formfile"], exclude=["Formfile"])
