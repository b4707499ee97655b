"""The pull-request check: ownership by the base commit, protected paths, versions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from dulwich.repo import Repo

from formarket.cli import main
from formarket.commands.check import command as check_command
from formarket.market.writer import Identity, commit_changes, import_tree
from formarket.registry.cache import ResultCache
from formarket.registry.findings import Finding, Severity
from formarket.registry.pr_check import check_pull_request
from tests.conftest import MAINTAINER, ROOT

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


# --- the listing lifecycle: version marks and what depends on a changed listing ---------------
# On the starter registry (the repository's own registry/), where tinyforge/faq-demo pairs
# tinyforge/faq-bot with tinyforge/echo-chat: the case of issue 17.

ECHO = "registry/models/tinyforge/echo-chat/listing.yaml"
FAQ_DEMO = "registry/solutions/tinyforge/faq-demo.yaml"


def _starter_text(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


def _echo(version: str, marks: str = "", replace: tuple[str, str] = ("", "")) -> bytes:
    text = _starter_text(ECHO).replace("version: 1.1.0", f"version: {version}")
    if replace[0]:
        assert replace[0] in text
        text = text.replace(*replace)
    return (text + marks).encode()


def _demo(model_pin: str | None) -> bytes:
    text = _starter_text(FAQ_DEMO)
    pinned = "  id: tinyforge/echo-chat\n  version: 1.1.0\n"
    assert pinned in text
    return text.replace(
        pinned, "  id: tinyforge/echo-chat\n" + (f"  version: {model_pin}\n" if model_pin else "")
    ).encode()


def _starter_repo(
    tmp_path: Path, *history: dict[str, bytes | None], first: dict[str, bytes] | None = None
) -> Repo:
    """`main`: the starter registry with echo-chat published at 1.0.0 and faq-demo pinned to
    it (or as `first` says), then each of `history` as a maintainer's commit; `pr` starts at
    `main`."""
    repo = Repo.init(str(tmp_path / "starter"), mkdir=True)
    files = import_tree(ROOT, ("registry", "schemas", "builder"))
    files.update({ECHO: _echo("1.0.0"), FAQ_DEMO: _demo("1.0.0"), **(first or {})})
    commit_changes(repo, "main", files, "base", MAINTAINER)
    for number, changes in enumerate(history):
        commit_changes(repo, "main", changes, f"change {number}", MAINTAINER)
    repo.refs[b"refs/heads/pr"] = repo.refs[b"refs/heads/main"]
    return repo


def _starter_pr(repo: Repo, changes: dict[str, bytes | None]) -> list[Finding]:
    commit_changes(repo, "pr", changes, "pull request", Identity("tf-sam", "sam@example.org"))
    return check_pull_request(repo, "main", "pr", "tf-sam", ResultCache(None, "t")).findings


def _by_code(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.code, []).append(f)
    return out


def _line_of(path: str, text: bytes, needle: str, after: str = "") -> int:
    lines = text.decode().splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines) if i >= start and needle in line) + 1


def test_a_model_bump_tells_the_pinned_solution_it_could_move(tmp_path: Path) -> None:
    """The issue's case: echo-chat goes to 1.1.0 while faq-demo pins 1.0.0. 1.0.0 stays
    deployable, so no error, but faq-demo's publisher hears of the new version."""
    repo = _starter_repo(tmp_path)
    found = _by_code(_starter_pr(repo, {ECHO: _echo("1.1.0")}))
    assert not [f for fs in found.values() for f in fs if f.severity == Severity.ERROR]
    (hint,) = found["REG033"]
    assert hint.message == "tinyforge/faq-demo could move to echo-chat 1.1.0"
    assert hint.path == FAQ_DEMO
    assert hint.line == _line_of(FAQ_DEMO, _demo("1.0.0"), "version: 1.0.0", after="model:")


def test_no_hint_when_the_newer_version_does_not_fit(tmp_path: Path) -> None:
    repo = _starter_repo(tmp_path)
    # faq-bot needs a context of 2048 tokens: a 1.1.0 with 1024 is not offered to faq-demo,
    # and faq-bot, which prefers echo-chat, would get it: an error on faq-bot's listing.
    small = _echo("1.1.0", replace=("context_length: 4096", "context_length: 1024"))
    found = _by_code(_starter_pr(repo, {ECHO: small}))
    assert "REG033" not in found
    (error,) = found["REG032"]
    assert error.path == "registry/agents/tinyforge/faq-bot/listing.yaml"
    assert error.line > 0


def test_yanking_a_pinned_version_strands_the_solution(tmp_path: Path) -> None:
    repo = _starter_repo(tmp_path, {ECHO: _echo("1.1.0")})
    marks = "version_marks:\n  1.0.0: {status: yanked, message: answers garbled}\n"
    found = _by_code(_starter_pr(repo, {ECHO: _echo("1.1.0", marks)}))
    # Marking is no rewrite of 1.1.0, whose file holds the marks.
    assert "REG011" not in found
    (error,) = found["REG031"]
    assert error.path == FAQ_DEMO
    assert error.line == _line_of(FAQ_DEMO, _demo("1.0.0"), "version: 1.0.0", after="model:")
    assert "1.1.0" in error.hint


def test_un_yanking_is_allowed(tmp_path: Path) -> None:
    marks = "version_marks:\n  1.0.0: {status: yanked, message: answers garbled}\n"
    repo = _starter_repo(tmp_path, {ECHO: _echo("1.1.0"), FAQ_DEMO: _demo("1.1.0")})
    commit_changes(repo, "main", {ECHO: _echo("1.1.0", marks)}, "yank", MAINTAINER)
    repo.refs[b"refs/heads/pr"] = repo.refs[b"refs/heads/main"]
    found = _by_code(_starter_pr(repo, {ECHO: _echo("1.1.0")}))
    assert not [f for fs in found.values() for f in fs if f.severity == Severity.ERROR]


def test_a_deprecated_pin_is_a_warning(tmp_path: Path) -> None:
    repo = _starter_repo(tmp_path, {ECHO: _echo("1.1.0")})
    marks = "version_marks:\n  1.0.0: {status: deprecated, message: use 1.1.0}\n"
    found = _by_code(_starter_pr(repo, {ECHO: _echo("1.1.0", marks)}))
    assert {"REG011", "REG031"}.isdisjoint(found)
    (warning,) = found["REG034"]
    assert warning.severity == Severity.WARNING
    assert "use 1.1.0" in warning.message


def test_a_mark_names_a_published_version(tmp_path: Path) -> None:
    repo = _starter_repo(tmp_path, {ECHO: _echo("1.1.0")})
    marks = "\nversion_marks:\n  1.0.1: {status: yanked, message: typo}\n"
    text = _echo("1.1.0", marks)
    found = _by_code(_starter_pr(repo, {ECHO: text}))
    (error,) = found["REG030"]
    assert error.location.startswith(f"{ECHO}:{_line_of(ECHO, text, '1.0.1:')}:")
    assert "1.0.0, 1.1.0" in error.message


def test_marking_the_version_of_the_same_change_is_allowed(tmp_path: Path) -> None:
    repo = _starter_repo(tmp_path)
    marks = "version_marks:\n  1.1.0: {status: deprecated, message: try 1.0.0}\n"
    found = _by_code(_starter_pr(repo, {ECHO: _echo("1.1.0", marks)}))
    assert "REG030" not in found


def test_marks_are_no_rewrite_but_other_edits_are(tmp_path: Path) -> None:
    repo = _starter_repo(tmp_path, {ECHO: _echo("1.1.0")})
    marks = "version_marks:\n  1.0.0: {status: deprecated, message: use 1.1.0}\n"
    assert "REG011" not in _by_code(_starter_pr(repo, {ECHO: _echo("1.1.0", marks)}))
    pricier = _echo("1.1.0", marks, ('royalty_percent: "0"', 'royalty_percent: "5"'))
    assert "REG011" in _by_code(_starter_pr(repo, {ECHO: pricier}))


def test_a_pin_on_a_version_never_published_is_refused(tmp_path: Path) -> None:
    repo = _starter_repo(tmp_path, {ECHO: _echo("1.2.0")})
    found = _by_code(_starter_pr(repo, {FAQ_DEMO: _demo("1.1.0")}))
    (error,) = found["REG031"]
    assert error.path == FAQ_DEMO
    assert "never published" in error.message


def test_an_unpinned_solution_is_checked_with_the_newest_version(tmp_path: Path) -> None:
    repo = _starter_repo(tmp_path, {FAQ_DEMO: _demo(None)})
    small = _echo("1.1.0", replace=("context_length: 4096", "context_length: 1024"))
    found = _by_code(_starter_pr(repo, {ECHO: small}))
    assert [f.path for f in found["REG007"]] == [FAQ_DEMO]


def test_an_unpinned_solution_falls_back_from_a_yanked_newest(tmp_path: Path) -> None:
    """Yanking the newest version leaves an unpinned solution the one before it, judged by
    its listing as it was published: echo-chat 1.0.0 had too short a context for faq-bot."""
    short = _echo("1.0.0", replace=("context_length: 4096", "context_length: 1024"))
    repo = _starter_repo(
        tmp_path, {ECHO: _echo("1.1.0")}, first={ECHO: short, FAQ_DEMO: _demo(None)}
    )
    marks = "version_marks:\n  1.1.0: {status: yanked, message: broken}\n"
    found = _by_code(_starter_pr(repo, {ECHO: _echo("1.1.0", marks)}))
    by_path = {f.path: f for f in found["REG032"]}
    # faq-bot prefers echo-chat, which it would now get at 1.0.0 too.
    assert set(by_path) == {FAQ_DEMO, "registry/agents/tinyforge/faq-bot/listing.yaml"}
    assert "tinyforge/echo-chat 1.0.0" in by_path[FAQ_DEMO].message
