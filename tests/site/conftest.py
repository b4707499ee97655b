"""Registries to build sites from: the starter registry in a git repository with some history,
and a builder that returns where the site went."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from dulwich.refs import Ref
from dulwich.repo import Repo

from formarket.market.writer import Identity, commit_changes, import_tree
from formarket.site.build import BuildReport, build_site

from .browser import browser  # noqa: F401 - the browser tests' shared fixture

ROOT = Path(__file__).resolve().parents[2]
MAINTAINER = Identity("mara-maintainer", "mara@example.org")
REPOSITORY = "example-org/marketplace"
BUMPED = "registry/models/tinyforge/echo-chat/listing.yaml"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives headless Chromium against a built site (select with -m)"
    )


def commit(root: Path, changes: Mapping[str, bytes | None], message: str) -> None:
    """Commit `changes` on main and update the working tree to match."""
    repo = Repo(str(root))
    try:
        commit_changes(repo, "main", dict(changes), message, MAINTAINER)
        for path, content in changes.items():
            target = root / path
            if content is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
        repo.get_worktree().reset_index()
    finally:
        repo.close()


def bump(text: str, old: str, new: str) -> bytes:
    assert f"version: {old}\n" in text
    return text.replace(f"version: {old}\n", f"version: {new}\n", 1).encode()


def make_registry(root: Path, extra: Mapping[str, bytes] | None = None) -> Path:
    """The starter registry as a git repository on `main`, with a second commit that
    publishes a new version of tinyforge/echo-chat."""
    files = import_tree(ROOT, ("registry", "schemas", "builder"))
    # History starts at 1.0.0, whatever the starter listing's own version is.
    start = files[BUMPED].decode()
    version = next(line for line in start.splitlines() if line.startswith("version: "))
    files[BUMPED] = bump(start, version.removeprefix("version: "), "1.0.0")
    files.update(extra or {})
    repo = Repo.init(str(root), mkdir=True)
    repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/main"))
    commit_changes(repo, "main", files, "Start the marketplace", MAINTAINER)
    repo.get_worktree().reset_index()
    repo.close()
    listing = (root / BUMPED).read_text()
    commit(root, {BUMPED: bump(listing, "1.0.0", "1.1.0")}, "echo-chat 1.1.0")
    return root


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return make_registry(tmp_path / "market")


Build = Callable[..., BuildReport]


@pytest.fixture
def build(tmp_path: Path) -> Build:
    """Build a registry's site into tmp_path/out (or `out`)."""

    def run(root: Path, out: Path | None = None) -> BuildReport:
        return build_site(root, out or tmp_path / "out", repository=REPOSITORY)

    return run


def copy_site_project(into: Path) -> Path:
    target = into / "site"
    shutil.copytree(ROOT / "site", target)
    return target
