"""A published version never comes back with other content, and a publisher never falls
open: the pull-request check reads the base's first-parent history (issue 15's attacks)."""

from __future__ import annotations

import marshal
import re
from pathlib import Path

import pytest
from dulwich.objects import Blob, ObjectID, Tree
from dulwich.repo import MemoryRepo, Repo
from hypothesis import given
from hypothesis import strategies as st

from formarket.market.writer import Identity, commit_changes, import_tree
from formarket.registry.cache import ResultCache
from formarket.registry.history import folder_digest, version_history
from formarket.registry.pr_check import check_pull_request
from formarket.schemas._types import SEMVER_PATTERN
from tests.conftest import MAINTAINER

TINY = "registry/models/acme/tiny-llm"
LISTING = f"{TINY}/listing.yaml"
ACME = "registry/publishers/acme.yaml"


def _base(base_tree: Path) -> str:
    return (base_tree / LISTING).read_text()


def _repo(base_tree: Path, *history: dict[str, bytes | None]) -> Repo:
    """`main`: the corpus registry, then each of `history` as a maintainer's commit."""
    repo = Repo.init(str(base_tree.parent / "repo"), mkdir=True)
    commit_changes(
        repo, "main", import_tree(base_tree, ("registry", "schemas", "builder")), "base", MAINTAINER
    )
    for number, changes in enumerate(history):
        commit_changes(repo, "main", changes, f"change {number}", MAINTAINER)
    repo.refs[b"refs/heads/pr"] = repo.refs[b"refs/heads/main"]
    return repo


def _pr(repo: Repo, changes: dict[str, bytes | None], author: str) -> set[str]:
    commit_changes(repo, "pr", changes, "pull request", Identity(author, f"{author}@example.org"))
    report = check_pull_request(repo, "main", "pr", author, ResultCache(None, "t"))
    return {f.code for f in report.errors}


def _located(repo: Repo, author: str, code: str) -> list[str]:
    report = check_pull_request(repo, "main", "pr", author, ResultCache(None, "t"))
    return [f.location for f in report.errors if f.code == code]


# --- versions ------------------------------------------------------------------------------


def test_a_readme_the_build_copies_needs_a_new_version(base_tree: Path) -> None:
    formfile = (base_tree / TINY / "Formfile").read_text() + "COPY README.md /srv/www/\n"
    repo = _repo(
        base_tree,
        {
            f"{TINY}/Formfile": formfile.encode(),
            LISTING: _base(base_tree).replace("1.0.0", "1.0.1").encode(),
        },
    )
    assert _pr(repo, {f"{TINY}/README.md": b"# Tiny LLM\n\nOther words.\n"}, "acme-dev") == {
        "REG011"
    }
    assert _located(repo, "acme-dev", "REG011") == [f"{LISTING}:3:10"]


def test_a_readme_under_a_copied_folder_is_build_input(base_tree: Path) -> None:
    listing = _base(base_tree).replace("1.0.0", "1.0.1") + "readme: www/README.md\n"
    repo = _repo(base_tree, {LISTING: listing.encode(), f"{TINY}/www/README.md": b"# Tiny\n"})
    assert _pr(repo, {f"{TINY}/www/README.md": b"# Tiny\n\nrm -rf\n"}, "acme-dev") == {"REG011"}


def test_a_readme_the_build_does_not_read_stays_free(base_tree: Path) -> None:
    repo = _repo(base_tree)
    assert _pr(repo, {f"{TINY}/README.md": b"# Tiny LLM\n\nBetter words.\n"}, "acme-dev") == set()


def test_a_withdrawn_version_cannot_come_back_changed(base_tree: Path) -> None:
    """Withdrawn in one pull request, added again in the next with the same version, a 95%
    royalty and a new Formfile."""
    folder = {f"{TINY}/{p.name}": None for p in (base_tree / TINY).iterdir() if p.is_file()}
    folder[f"{TINY}/www/health.json"] = None
    repo = _repo(base_tree, folder)
    greedy = _base(base_tree).replace('royalty_percent: "70"', 'royalty_percent: "95"')
    formfile = "NAME tiny-llm\nFROM busybox\nVCPU 1\nMEMORY 512\nDISK 5\nRUN echo evil\n"
    readded = {
        LISTING: greedy.encode(),
        f"{TINY}/Formfile": formfile.encode(),
        f"{TINY}/README.md": b"# Tiny LLM\n",
    }
    assert "REG011" in _pr(repo, readded, "acme-dev")
    assert _located(repo, "acme-dev", "REG011") == [f"{LISTING}:3:10"]


def test_a_withdrawn_version_may_come_back_unchanged(base_tree: Path) -> None:
    files = {
        f"{TINY}/{p.relative_to(base_tree / TINY)}": p.read_bytes()
        for p in (base_tree / TINY).rglob("*")
        if p.is_file()
    }
    repo = _repo(base_tree, dict.fromkeys(files))
    assert "REG011" not in _pr(repo, dict(files), "acme-dev")


def test_a_version_rewritten_on_main_is_judged_by_its_first_publication(
    base_tree: Path,
) -> None:
    """1.0.0 rewritten on main (before this rule) does not make the rewrite the reference."""
    rewritten = _base(base_tree).replace('royalty_percent: "70"', 'royalty_percent: "90"')
    repo = _repo(base_tree, {LISTING: rewritten.encode()})
    again = rewritten.replace('royalty_percent: "90"', 'royalty_percent: "95"')
    assert _pr(repo, {LISTING: again.encode()}, "acme-dev") == {"REG011"}
    assert _pr(repo, {LISTING: _base(base_tree).encode()}, "acme-dev") == set()


@pytest.mark.parametrize("version", ["1.0.0+x", "1.0.1+build.7"])
def test_build_metadata_is_refused(base_tree: Path, version: str) -> None:
    repo = _repo(base_tree)
    listing = _base(base_tree).replace("version: 1.0.0", f"version: {version}")
    assert _pr(repo, {LISTING: listing.encode()}, "acme-dev") == {"REG001"}


# --- ownership -----------------------------------------------------------------------------


def test_an_invalid_publisher_file_keeps_its_last_owners(base_tree: Path) -> None:
    repo = _repo(base_tree, {ACME: b"id: acme\nname: [\n"})
    takeover = b"id: acme\nname: Acme AI\nowners: [mallory]\n"
    assert _pr(repo, {ACME: takeover}, "mallory") == {"REG016"}
    assert _located(repo, "mallory", "REG016") == [ACME]


def test_the_last_owner_may_repair_it(base_tree: Path) -> None:
    repo = _repo(base_tree, {ACME: b"id: acme\nname: [\n"})
    repaired = b"id: acme\nname: Acme AI\nowners: [acme-dev]\n"
    assert _pr(repo, {ACME: repaired}, "acme-dev") == set()


def test_a_removed_publisher_is_not_free_for_the_taking(base_tree: Path) -> None:
    repo = _repo(base_tree, {ACME: None})
    takeover = b"id: acme\nname: Acme AI\nowners: [mallory]\n"
    assert "REG016" in _pr(repo, {ACME: takeover}, "mallory")


def test_a_publisher_never_valid_is_for_maintainers_only(base_tree: Path) -> None:
    broken = {"registry/publishers/nova.yaml": b"id: nova\nowners: not-a-list\n"}
    repo = _repo(base_tree, broken)
    claim = {"registry/publishers/nova.yaml": b"id: nova\nname: Nova\nowners: [mallory]\n"}
    assert _pr(repo, claim, "mallory") == {"REG016"}
    repo.refs[b"refs/heads/pr"] = repo.refs[b"refs/heads/main"]
    assert _pr(repo, claim, MAINTAINER.name) == set()


# --- the index is kept, signed, and walked only where it is new ------------------------------


def test_the_index_is_kept_and_extended(base_tree: Path, tmp_path: Path) -> None:
    repo = _repo(base_tree)
    cache = ResultCache(tmp_path / "cache" / "git.cache", "t")
    first = version_history(repo, repo.refs[b"refs/heads/main"], cache)
    assert first.first("acme/tiny-llm", "1.0.0") is not None
    # Mark the kept state: a later run that starts from it carries the mark, one that
    # walked the whole history again would not.
    raw = cache.read_signed("history", b"formarket-history-2")
    assert raw is not None
    states = marshal.loads(raw)
    for versions, _ in states.values():
        versions["acme/marker@9.9.9"] = ("d", "c")
    cache.write_signed("history", b"formarket-history-2", marshal.dumps(states))
    newer = _base(base_tree).replace("1.0.0", "1.1.0")
    tip = commit_changes(repo, "main", {LISTING: newer.encode()}, "1.1.0", MAINTAINER)
    second = version_history(repo, tip, ResultCache(tmp_path / "cache" / "git.cache", "t"))
    assert second.first("acme/marker", "9.9.9") is not None
    published = second.first("acme/tiny-llm", "1.1.0")
    assert published is not None
    assert published.commit == tip.decode()
    # A forged index (signed with another key) is not read: the walk starts over.
    other = ResultCache(tmp_path / "cache" / "git.cache", "t", key=b"o" * 32)
    assert version_history(repo, tip, other).first("acme/marker", "9.9.9") is None


_NUMBER = st.integers(min_value=0, max_value=10**6).map(str)
_IDENT = st.from_regex(r"[0-9A-Za-z-]{1,8}", fullmatch=True)


@given(
    core=st.tuples(_NUMBER, _NUMBER, _NUMBER).map(".".join),
    pre=st.lists(_IDENT, max_size=3),
    build=st.lists(_IDENT, max_size=3),
)
def test_a_version_is_semver_without_build_metadata(
    core: str, pre: list[str], build: list[str]
) -> None:
    pre_ok = all(not (p.isdigit() and len(p) > 1 and p.startswith("0")) for p in pre)
    version = core + ("-" + ".".join(pre) if pre else "") + ("+" + ".".join(build) if build else "")
    accepted = re.fullmatch(SEMVER_PATTERN, version) is not None
    assert accepted == (not build and pre_ok)


# --- version marks -------------------------------------------------------------------------

_MARK = st.fixed_dictionaries(
    {"status": st.sampled_from(["deprecated", "yanked"]), "message": st.text(min_size=1)}
)
_SEMVERS = st.tuples(*(st.integers(0, 20),) * 3).map(lambda v: ".".join(map(str, v)))


def _folder_repo() -> tuple[MemoryRepo, ObjectID]:
    repo = MemoryRepo()
    blob = Blob.from_string(b"id: acme/tiny-llm\n")
    folder = Tree()
    folder.add(b"listing.yaml", 0o100644, blob.id)
    repo.object_store.add_objects([(blob, None), (folder, None)])
    return repo, folder.id


@given(marks=st.dictionaries(_SEMVERS, _MARK, max_size=5), key=st.sampled_from(["name", "x"]))
def test_marks_never_change_a_versions_digest_and_other_fields_do(
    marks: dict[str, dict[str, str]], key: str
) -> None:
    repo, folder = _folder_repo()
    data = {"id": "acme/tiny-llm", "version": "1.1.0", "name": "Tiny", "x": "0.10"}
    plain = folder_digest(repo, folder, data)
    assert folder_digest(repo, folder, {**data, "version_marks": marks}) == plain
    changed = {**data, key: data[key] + "!", "version_marks": marks}
    assert folder_digest(repo, folder, changed) != plain
