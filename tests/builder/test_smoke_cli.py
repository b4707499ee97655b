"""`formarket test` from the command line: a version as the commit that published it had it,
a VM answering garbage, a pull request's listings, and listings it refuses to run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from dulwich.repo import Repo

from formarket.cli import main
from formarket.market.writer import Identity, commit_changes, import_tree
from tests.builder.conftest import BASES, shared_cache
from tests.conftest import BASE, MAINTAINER

_TINY = "registry/models/acme/tiny-llm"
_LISTING = (BASE / _TINY / "listing.yaml").read_text()


def _listing(version: str, test: str) -> str:
    return _LISTING.replace("version: 1.0.0", f"version: {version}") + test


def _test_page(word: str) -> str:
    return f"test:\n  method: GET\n  path: /index.html\n  expect:\n    pattern: '{word}'\n"


def _invoke(*args: str, store: Path) -> Result:
    env = {**os.environ, "FORMARKET_BASE_CACHE": str(shared_cache())}
    return CliRunner().invoke(main, ["test", *args, "--store", str(store), "-q"], env=env)


def _repo(tmp_path: Path, commits: list[dict[str, Any]]) -> Path:
    """A repository whose `main` holds the corpus registry, then each of `commits`; its
    working tree is the last commit's."""
    work = tmp_path / "market"
    shutil.copytree(BASE, work)
    # The corpus's bases are for the check; a build needs the real ones.
    shutil.rmtree(work / "builder")
    shutil.copytree(BASES, work / "builder" / "bases")
    repo = Repo.init(str(work))
    files = import_tree(work, ("registry",))
    commit_changes(repo, "main", files, "base", MAINTAINER)
    for n, change in enumerate(commits):
        commit_changes(
            repo, "main", {k: v.encode() for k, v in change.items()}, f"c{n}", MAINTAINER
        )
        for path, text in change.items():
            (work / path).write_text(text)
    return work


@pytest.mark.slow
def test_a_version_is_tested_as_the_commit_that_published_it(tmp_path: Path) -> None:
    listing, page = f"{_TINY}/listing.yaml", f"{_TINY}/www/index.html"
    market = _repo(
        tmp_path,
        [
            # 1.1.0 is published with a test that cannot pass...
            {listing: _listing("1.1.0", _test_page("no such words")), page: "version one\n"},
            # ...then its test is mended, and its page rewritten without a new version: the
            # image tested is the one published, with the test as last written for 1.1.0.
            {listing: _listing("1.1.0", _test_page("(?m)^version one$")), page: "one, again\n"},
            {listing: _listing("1.2.0", _test_page("two")), page: "version two\n"},
        ],
    )
    store = tmp_path / "store"
    both = _invoke("acme/tiny-llm@1.1.0", "acme/tiny-llm", "--repo", str(market), store=store)
    assert both.exit_code == 0, both.output
    assert "passed: acme/tiny-llm 1.1.0" in both.output
    assert "passed: acme/tiny-llm 1.2.0" in both.output
    never = _invoke("acme/tiny-llm@9.9.9", "--repo", str(market), store=store)
    assert never.exit_code == 1
    assert "acme/tiny-llm 9.9.9 was never published on main" in never.output


@pytest.mark.slow
def test_a_vm_answering_garbage_fails_with_what_came_and_the_console(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-llm"
    shutil.copytree(BASE / _TINY, folder)
    (folder / "www" / "index.html").write_bytes(b"\x00\xff<not json>" * 50)
    test = "test:\n  method: GET\n  path: /index.html\n  expect: {present: [choices]}\n"
    (folder / "listing.yaml").write_text(_LISTING + test)
    result = _invoke(str(folder), store=tmp_path / "store")
    assert result.exit_code == 1
    out = result.output
    assert "FAILED: acme/tiny-llm 1.0.0" in out
    assert "body: expected JSON, got something JSON cannot read" in out
    assert "<not json>" in out
    assert "the VM's console ended with:" in out
    assert "FORMFILE-BOOT-OK" in out
    assert "0 of 1 smoke test(s) passed" in out


def test_changed_from_names_the_listings_a_pull_request_changes(tmp_path: Path) -> None:
    market = _repo(tmp_path, [])
    repo = Repo(str(market))
    base = repo.refs[b"refs/heads/main"].decode()
    changes = {
        f"{_TINY}/README.md": b"# Tiny LLM, better\n",
        "registry/agents/acme/helper-agent/listing.yaml": None,  # withdrawn: nothing to run
        "registry/publishers/acme.yaml": (market / "registry/publishers/acme.yaml").read_bytes(),
    }
    commit_changes(repo, "main", changes, "pr", Identity("acme-dev", "dev@example.org"))
    result = _invoke(
        "--changed-from",
        base,
        "--head",
        "main",
        "--list",
        "--repo",
        str(market),
        store=tmp_path / "store",
    )
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["acme/tiny-llm"]
    nothing = _invoke(
        "--changed-from", "main", "--head", "main", "--repo", str(market), store=tmp_path / "store"
    )
    assert nothing.exit_code == 0
    assert "no listing changed" in nothing.output


@pytest.mark.parametrize(
    ("test", "message"),
    [
        ("test:\n  expect: {pattern: '(a)\\1'}\n", "RE2 refuses the test's pattern"),
        ("test:\n  body: {text: " + "x" * 70_000 + "}\n", "the limit is 65536"),
        ("test:\n  port: 9999\n", "does not EXPOSE"),
    ],
)
def test_a_listing_with_a_broken_test_is_refused_before_a_vm_boots(
    tmp_path: Path, test: str, message: str
) -> None:
    folder = tmp_path / "tiny-llm"
    shutil.copytree(BASE / _TINY, folder)
    (folder / "listing.yaml").write_text(_LISTING + test)
    result = _invoke(str(folder), store=tmp_path / "store")
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_a_listing_without_a_test_is_built_and_booted_only(tmp_path: Path) -> None:
    result = _invoke(str(BASE / _TINY), store=tmp_path / "store")
    assert result.exit_code == 0, result.output
    assert "passed: acme/tiny-llm 1.0.0" in result.output
    assert "built and booted; it declares no smoke test" in result.output
