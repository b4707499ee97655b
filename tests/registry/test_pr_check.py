"""The pull-request check: ownership by the base commit, protected paths, versions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from dulwich.repo import Repo

from formarket.cli import main
from formarket.commands.check import command as check_command
from formarket.registry.cache import ResultCache
from formarket.registry.pr_check import check_pull_request

MakeRepo = Callable[..., tuple[Repo, str, str]]
TINY = "registry/models/acme/tiny-llm"
LISTING = f"{TINY}/listing.yaml"


def _listing(version: str = "1.0.0", royalty: str = "70", name: str = "Tiny LLM") -> str:
    return f"""id: acme/tiny-llm
name: {name}
version: {version}
description: A small chat model for tests and demos.
license: Apache-2.0
tags: [chat, small]
task: chat
capabilities: [chat, streaming]
context_length: 4096
resources:
  minimum: {{vcpus: 1, memory_mib: 512, disk_gib: 5}}
  recommended: {{vcpus: 2, memory_mib: 1024, disk_gib: 5}}
pricing:
  model: per_token
  currency: USD
  input_per_million: "0.10"
  output_per_million: "0.30"
monetization:
  metered: [requests, input_tokens, output_tokens]
  royalty_percent: "{royalty}"
"""


def _codes(repo: Repo, author: str) -> set[str]:
    report = check_pull_request(repo, "main", "pr", author, ResultCache(None, "t"))
    return {f.code for f in report.errors}


def test_an_owner_may_publish_a_new_version(git_registry: MakeRepo) -> None:
    repo, _, _ = git_registry({LISTING: _listing("1.1.0", royalty="75")}, author="acme-dev")
    assert _codes(repo, "acme-dev") == set()


def test_a_readme_fix_needs_no_new_version(git_registry: MakeRepo) -> None:
    repo, _, _ = git_registry({f"{TINY}/README.md": "# Tiny LLM\n\nBetter words.\n"})
    assert _codes(repo, "acme-dev") == set()


def test_a_published_version_cannot_be_rewritten(git_registry: MakeRepo) -> None:
    repo, _, _ = git_registry({LISTING: _listing("1.0.0", royalty="99")})
    assert _codes(repo, "acme-dev") == {"REG011"}


def test_a_changed_formfile_needs_a_new_version(git_registry: MakeRepo) -> None:
    formfile = "NAME tiny-llm\nFROM busybox\nVCPU 2\nMEMORY 512\nDISK 5\n"
    repo, _, _ = git_registry({f"{TINY}/Formfile": formfile})
    assert _codes(repo, "acme-dev") == {"REG011"}


def test_versions_only_go_up(git_registry: MakeRepo) -> None:
    repo, _, _ = git_registry({LISTING: _listing("0.9.0")})
    # The solution that pins 1.0.0 now points past the newest version, too.
    assert _codes(repo, "acme-dev") == {"REG012", "REG006"}


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [("1.0.0", "1.0.1", True), ("1.0.0", "1.0.0-rc.1", False), ("1.0.0", "2.0.0-rc.1", True)],
)
def test_pre_releases_sort_before_their_release(
    git_registry: MakeRepo, old: str, new: str, ok: bool
) -> None:
    repo, _, _ = git_registry({LISTING: _listing(new)}, base_overlay={LISTING: _listing(old)})
    assert (_codes(repo, "acme-dev") == set()) is ok


def test_another_publishers_listing_is_off_limits(git_registry: MakeRepo) -> None:
    repo, _, _ = git_registry({f"{TINY}/README.md": "# Mine now\n"}, author="zeta-dev")
    assert _codes(repo, "zeta-dev") == {"REG016"}


def test_ownership_comes_from_the_base_commit(git_registry: MakeRepo) -> None:
    """Adding yourself as an owner and using it in the same pull request does not work."""
    repo, _, _ = git_registry(
        {
            "registry/publishers/acme.yaml": (
                "id: acme\nname: Acme AI\nowners: [acme-dev, zeta-dev]\n"
            ),
            LISTING: _listing("1.1.0"),
        },
        author="zeta-dev",
    )
    assert _codes(repo, "zeta-dev") == {"REG016"}


def test_a_new_publisher_names_its_author(git_registry: MakeRepo) -> None:
    new = {
        "registry/publishers/newco.yaml": "id: newco\nname: NewCo\nowners: [newco-dev]\n",
    }
    repo, _, _ = git_registry(new, author="newco-dev")
    assert _codes(repo, "newco-dev") == set()


def test_a_new_publisher_for_someone_else_is_refused(git_registry: MakeRepo) -> None:
    new = {"registry/publishers/newco.yaml": "id: newco\nname: NewCo\nowners: [victim]\n"}
    repo, _, _ = git_registry(new, author="mallory")
    assert _codes(repo, "mallory") == {"REG019"}


@pytest.mark.parametrize(
    "path",
    [
        "registry/deployments/d-1.yaml",
        "registry/usage/2026/11/25/gw-1.jsonl.gz",
        "royalties/x.json",
    ],
)
def test_bot_paths_are_for_the_bot(git_registry: MakeRepo, path: str) -> None:
    repo, _, _ = git_registry({path: "forged: true\n"}, author="acme-dev")
    assert _codes(repo, "acme-dev") == {"REG017"}
    assert _codes(repo, "formarket-bot") == set()


@pytest.mark.parametrize(
    "path",
    [
        "schemas/model.schema.json",
        ".github/workflows/validate.yml",
        "builder/bases/x.yaml",
        "royalties/policy.yaml",
    ],
)
def test_everything_else_is_for_maintainers(git_registry: MakeRepo, path: str) -> None:
    repo, _, _ = git_registry({path: "name: changed\n"}, author="acme-dev")
    assert "REG018" in _codes(repo, "acme-dev")
    assert "REG018" not in _codes(repo, "mara-maintainer")


def test_findings_are_about_the_change(git_registry: MakeRepo) -> None:
    """An old problem elsewhere does not block an unrelated pull request."""
    broken_elsewhere = {"registry/models/acme/tiny-llm/README.md": None}
    publisher = "id: acme\nname: Acme AI Labs\nowners: [acme-dev]\nemail: dev@acme.example\n"
    repo, _, _ = git_registry(
        {"registry/publishers/acme.yaml": publisher}, base_overlay=broken_elsewhere
    )
    assert _codes(repo, "acme-dev") == set()


def test_a_broken_listing_in_the_change_is_reported(git_registry: MakeRepo) -> None:
    repo, _, _ = git_registry({LISTING: "id: acme/tiny-llm\nname: [\n"})
    assert _codes(repo, "acme-dev") == {"REG002"}


def test_the_command_speaks_github(git_registry: MakeRepo, tmp_path: Path) -> None:
    repo, _, _ = git_registry({LISTING: _listing("1.0.0", royalty="99")})
    result = CliRunner().invoke(
        check_command,
        [
            "--repo",
            repo.path,
            "--base",
            "main",
            "--head",
            "pr",
            "--author",
            "acme-dev",
            "--format",
            "github",
            "--no-cache",
        ],
    )
    assert result.exit_code == 1
    assert f"::error file={LISTING}" in result.output
    assert "title=REG011" in result.output


@pytest.mark.parametrize("rev", ["nope", "--upload-pack=x", "deadbeef", ""])
def test_bad_revisions_are_usage_errors(git_registry: MakeRepo, rev: str) -> None:
    repo, _, _ = git_registry({})
    result = CliRunner().invoke(
        main, ["check", "--repo", repo.path, "--base", rev, "--head", "pr", "--author", "a"]
    )
    assert result.exit_code in (1, 2)
    assert isinstance(result.exception, SystemExit)
    assert "error:" in result.output


def test_the_cache_gives_the_same_answer(git_registry: MakeRepo, tmp_path: Path) -> None:
    repo, _, _ = git_registry({LISTING: _listing("1.0.0", royalty="99")})
    cache_file = tmp_path / "cache.pickle"
    first = check_pull_request(repo, "main", "pr", "acme-dev", ResultCache(cache_file, "t"))
    second = check_pull_request(repo, "main", "pr", "acme-dev", ResultCache(cache_file, "t"))
    assert first.findings == second.findings
    assert second.checked == 0
