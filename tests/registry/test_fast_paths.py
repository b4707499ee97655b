"""The shortcuts that make validation and the pull-request check fast give the answers of the
long way round: the registry's own contract, whole runs from the cache, work on all cores, and
look-alike names of the changed listings only."""

from __future__ import annotations

import gc
import json
from pathlib import Path

from benchmarks.synthetic import registry_files

from formarket.registry.cache import ResultCache
from formarket.registry.confusables import confusable_pairs, skeleton
from formarket.registry.scan import _SMALLEST_CHUNK, Task, _chunks, collector_paused
from formarket.registry.snapshot import WorkTreeSnapshot
from formarket.registry.validate import validate_snapshot

LISTING = "registry/models/acme/tiny-llm/listing.yaml"


def _tighten_model_names(root: Path, longest: int) -> None:
    """The registry's published contract, stricter than the one built into formarket."""
    path = root / "schemas/model.schema.json"
    schema = json.loads(path.read_text())
    schema["properties"]["name"]["maxLength"] = longest
    path.write_text(json.dumps(schema))


def test_the_registrys_own_schemas_are_its_contract(base_tree: Path) -> None:
    _tighten_model_names(base_tree, 3)
    report = validate_snapshot(WorkTreeSnapshot(base_tree), ResultCache(None, "t"))
    assert {(f.code, f.path) for f in report.errors} == {("REG001", LISTING)}


def test_a_changed_contract_is_not_answered_from_the_cache(base_tree: Path) -> None:
    cache_path = base_tree / ".formarket-cache" / "worktree.cache"
    assert validate_snapshot(WorkTreeSnapshot(base_tree), ResultCache(cache_path, "t")).errors == []
    _tighten_model_names(base_tree, 3)
    report = validate_snapshot(WorkTreeSnapshot(base_tree), ResultCache(cache_path, "t"))
    assert [f.code for f in report.errors] == ["REG001"]
    assert report.checked == report.documents


def test_nothing_changed_is_answered_from_the_small_file_alone(base_tree: Path) -> None:
    cache_path = base_tree / ".formarket-cache" / "worktree.cache"
    (base_tree / LISTING).write_text(
        (base_tree / LISTING).read_text().replace("version: 1.0.0", "version: one")
    )
    first = validate_snapshot(WorkTreeSnapshot(base_tree), ResultCache(cache_path, "t"))
    assert [f.code for f in first.errors] == ["REG001"]
    # The per-document results are no longer readable: only the whole run's can answer.
    cache_path.write_bytes(b"not a cache")
    again = validate_snapshot(WorkTreeSnapshot(base_tree), ResultCache(cache_path, "t"))
    assert again.checked == 0
    assert again.findings == first.findings


def test_all_cores_find_what_one_finds(tmp_path: Path) -> None:
    files, syn = registry_files(450)
    listing = f"registry/models/{syn.pr_listing}/listing.yaml"
    for rel, content in files.items():
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    broken = (tmp_path / listing).read_text().replace("version:", "version: [", 1)
    (tmp_path / listing).write_text(broken)
    (tmp_path / "registry/models/stray.txt").write_text("")

    def findings(jobs: int) -> tuple[list[tuple[str, str, int]], list[Task]]:
        report = validate_snapshot(WorkTreeSnapshot(tmp_path), ResultCache(None, "t"), jobs=jobs)
        assert report.documents > 450
        return [(f.code, f.path, f.line) for f in report.findings], report.tasks

    alone, tasks = findings(1)
    assert {code for code, _, _ in alone} >= {"REG002", "REG020"}
    assert all(task.key for task in tasks)
    # The workers key the folders they check: the keys come back with the results.
    assert findings(2) == (alone, tasks)


def test_chunks_hold_every_task_once_in_order_and_shrink() -> None:
    tasks = [Task("model", f"registry/models/p/{i}", f"p/{i}", "") for i in range(5000)]
    chunks = _chunks(tasks, 2)
    assert [task for chunk in chunks for task in chunk] == tasks
    sizes = [len(chunk) for chunk in chunks]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-2] == _SMALLEST_CHUNK
    assert sizes[0] > 10 * _SMALLEST_CHUNK


def test_the_collector_is_paused_and_then_as_it_was() -> None:
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            with collector_paused():
                assert not gc.isenabled()
            assert gc.isenabled() == enabled
        finally:
            gc.enable()


def test_look_alikes_of_the_changed_listings_are_those_of_the_whole_registry() -> None:
    ids = [
        "acme/llama",
        "acrne/llama",
        "acme/iiama",
        "other/llama",
        "acme/mistral",
        "acme/rnistral",
        "zeta/unique",
    ]
    looks = [(i, skeleton(i.partition("/")[2])) for i in ids]
    every = confusable_pairs(looks)
    assert ("acme/mistral", "acme/rnistral") in every
    for focus in ({"acme/llama"}, {"acme/rnistral", "zeta/unique"}, set()):
        expected = [pair for pair in every if set(pair) & focus]
        assert confusable_pairs(looks, focus) == expected


def test_a_change_rewrites_one_shard_of_the_cache(base_tree: Path, tmp_path: Path) -> None:
    cache_path = tmp_path / "cache.bin"
    validate_snapshot(WorkTreeSnapshot(base_tree), ResultCache(cache_path, "t"))
    shards = {p: p.stat().st_mtime_ns for p in tmp_path.glob("cache.bin.*")}
    assert len(shards) > 1
    readme = base_tree / "registry/models/acme/tiny-llm/README.md"
    readme.write_text(readme.read_text() + "\nMore words.\n")
    report = validate_snapshot(WorkTreeSnapshot(base_tree), ResultCache(cache_path, "t"))
    assert report.checked == 1
    rewritten = [p for p, mtime in shards.items() if p.stat().st_mtime_ns != mtime]
    # The changed document's shard, and the one that forgets its old result.
    assert 1 <= len(rewritten) <= 2
    again = validate_snapshot(WorkTreeSnapshot(base_tree), ResultCache(cache_path, "t"))
    assert again.checked == 0
