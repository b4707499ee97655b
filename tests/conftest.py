"""Shared fixtures: a small registry to break, and git repositories built from it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from dulwich.repo import Repo
from hypothesis import HealthCheck, settings

from formarket.market.writer import Identity, commit_changes, import_tree
from tests.redis_server import RedisServer

CORPUS = Path(__file__).parent / "corpus"
BASE = CORPUS / "base"
ROOT = Path(__file__).parent.parent

Overlay = Mapping[str, Any]

# `HYPOTHESIS_PROFILE=thorough pytest -k ...` searches much harder than the suite's default run.
# No deadlines and no complaint about slow generation: speed is measured by the benchmarks,
# and a busy machine stretches any example.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True, scope="session")
def _cache_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite signs its caches with a key of its own, not the user's (made on first use)."""
    if os.environ.get("FORMARKET_CACHE_KEY"):
        yield
        return
    os.environ["FORMARKET_CACHE_KEY"] = str(tmp_path_factory.mktemp("state") / "cache.key")
    try:
        yield
    finally:
        os.environ.pop("FORMARKET_CACHE_KEY", None)


def overlay_bytes(value: Any) -> bytes | None:
    """A corpus file's content: text, null (delete), {hex: ...} or {repeat: ..., times: n}."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if "hex" in value:
        return bytes.fromhex(value["hex"])
    if "repeat" in value:
        return str(value["repeat"]).encode() * int(value["times"])
    raise ValueError(f"unknown overlay value {value!r}")


def apply_overlay(root: Path, overlay: Overlay) -> None:
    for rel, value in overlay.items():
        target = root / rel
        content = overlay_bytes(value)
        if content is None:
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


@pytest.fixture
def base_tree(tmp_path: Path) -> Path:
    """A copy of the small corpus registry, with the exported schemas, to change freely."""
    root = tmp_path / "market"
    shutil.copytree(BASE, root)
    shutil.copytree(ROOT / "schemas", root / "schemas")
    return root


MAINTAINER = Identity("mara-maintainer", "mara@example.org")


@pytest.fixture
def git_registry(base_tree: Path) -> Callable[..., tuple[Repo, str, str]]:
    """Make a repository whose `main` holds the corpus registry and whose `pr` branch adds
    the given overlay, committed by `author`."""

    def make(overlay: Overlay, author: str = "acme-dev", base_overlay: Overlay | None = None):
        if base_overlay:
            apply_overlay(base_tree, base_overlay)
        repo = Repo.init(str(base_tree.parent / "repo"), mkdir=True)
        files = import_tree(base_tree, ("registry", "schemas", "builder"))
        commit_changes(repo, "main", files, "base", MAINTAINER)
        repo.refs[b"refs/heads/pr"] = repo.refs[b"refs/heads/main"]
        changes = {path: overlay_bytes(value) for path, value in overlay.items()}
        commit_changes(repo, "pr", changes, "change", Identity(author, f"{author}@example.org"))
        return repo, "main", "pr"

    return make


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis of this test's own (never the machine's shared one)."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def libvirt_workdir() -> Iterator[Path]:
    """A folder for a private libvirtd, stopped afterwards. Not under tmp_path: the daemon
    runs unprivileged and must reach its folder."""
    from formarket.farm.libvirtd import stop_libvirtd

    workdir = Path(tempfile.mkdtemp(prefix="fm-libvirtd-", dir="/tmp"))
    try:
        yield workdir
    finally:
        stop_libvirtd(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make `--dist loadgroup` group again: pytest-xdist 3.8 marks a grouped test by writing
    `<id>@<group>` to `item._nodeid`, which pytest 9 no longer reads (the id lives in
    `item._id`), so tests of one `xdist_group` were spread over workers."""
    from _pytest.nodeid import coerce_node_id

    for item in items:
        suffixed = item.__dict__.get("_nodeid")
        if isinstance(suffixed, str) and "@" in suffixed and suffixed != item.nodeid:
            item._id = coerce_node_id(suffixed)
