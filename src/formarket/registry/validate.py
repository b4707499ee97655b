"""Validating a whole registry snapshot: documents, then the rules that span them."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from formarket.registry.cache import ResultCache
from formarket.registry.contract import compile_contract, contract_files, schemas_digest
from formarket.registry.findings import Finding, Severity, with_lines
from formarket.registry.index import RegistryIndex, Summary
from formarket.registry.invariants import registry_findings
from formarket.registry.scan import CheckEnv, Task, collector_paused, layout, run_tasks
from formarket.registry.snapshot import Snapshot
from formarket.schemas.farm import DEFAULT_BASES, DEFAULT_GPUS

__all__ = ["EnvFiles", "Report", "check_env", "env_files", "scan_snapshot", "validate_snapshot"]


class Report:
    """The outcome of a check: findings, counts, and the index of what was checked (built on
    first use: a run answered whole from the cache never needs it)."""

    def __init__(
        self,
        findings: list[Finding],
        index: RegistryIndex | Callable[[], RegistryIndex],
        *,
        documents: int = 0,
        checked: int = 0,
        seconds: float = 0.0,
        tasks: list[Task] | None = None,
    ) -> None:
        self.findings = findings
        self._index = index
        self.documents = documents
        self.checked = checked
        self.seconds = seconds
        self.tasks = tasks or []

    @property
    def index(self) -> RegistryIndex:
        if not isinstance(self._index, RegistryIndex):
            self._index = self._index()
        return self._index

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]


@dataclass(frozen=True, slots=True)
class EnvFiles:
    """The files a check's environment is made of (the contract's schemas, the farm's bases),
    read but not yet compiled: a run answered whole from the cache needs only their digest."""

    schemas: dict[str, bytes]
    bases: tuple[tuple[str, bytes | None], ...]
    digest: str

    def env(self) -> CheckEnv:
        from formarket.yamldoc import YamlError, load_yaml  # start-up: cached runs read no YAML

        contract = compile_contract(self.schemas)
        bases = set()
        for name, raw in self.bases:
            try:
                data = load_yaml(raw or b"", f"builder/bases/{name}").data
            except YamlError:
                continue
            if isinstance(data, dict) and isinstance(data.get("name"), str):
                bases.add(data["name"])
        return CheckEnv(contract, frozenset(bases) or DEFAULT_BASES, DEFAULT_GPUS)


def env_files(snapshot: Snapshot) -> EnvFiles:
    """The schemas and farm bases of a snapshot, and a digest that changes with any of them."""
    schemas = contract_files(
        {
            item.name: snapshot.read(f"schemas/{item.name}")
            for item in snapshot.listdir("schemas")
            if item.name.endswith(".schema.json")
        }
    )
    bases = tuple(
        (item.name, snapshot.read(f"builder/bases/{item.name}"))
        for item in snapshot.listdir("builder/bases")
        if item.name.endswith(".yaml")
    )
    digest = hashlib.blake2b(digest_size=16)
    digest.update(schemas_digest(schemas).encode())
    for name, raw in bases:
        digest.update(f"\0{name}\0{-1 if raw is None else len(raw)}\0".encode())
        digest.update(raw or b"")
    digest.update("\0".join(sorted(DEFAULT_BASES)).encode())
    digest.update("\0".join(sorted(DEFAULT_GPUS)).encode())
    return EnvFiles(schemas, bases, digest.hexdigest())


def check_env(snapshot: Snapshot) -> tuple[CheckEnv, str]:
    """The contract and farm configuration of a snapshot, and a digest of them."""
    files = env_files(snapshot)
    return files.env(), files.digest


# A document's task (with its key), summary and findings.
Checked = tuple[Task, Summary, tuple[Finding, ...]]


def _entry_key(env_digest: str, task: Task) -> str:
    return f"{env_digest}:{task.key}:{task.path}"


def _run_key(env_digest: str, tasks: list[Task], layout_findings: list[Finding]) -> str:
    """A key for a whole run: the same documents in the same places under the same rules."""
    digest = hashlib.blake2b(env_digest.encode(), digest_size=16)
    digest.update("".join([f"{task.path}\0{task.key}\n" for task in tasks]).encode())
    for f in layout_findings:
        digest.update(repr(f.to_plain()).encode())
    return "run:" + digest.hexdigest()


def scan_snapshot(
    snapshot: Snapshot,
    cache: ResultCache,
    env: CheckEnv,
    env_digest: str,
    jobs: int | None,
    tasks_and_layout: tuple[list[Task], list[Finding]] | None = None,
    known: dict[str, Checked] | None = None,
) -> tuple[list[Task], list[Summary], list[Finding], int]:
    """Every document of a snapshot checked (or taken from the cache), and layout findings.
    The tasks returned all have their keys, even those that came without.

    `known` holds results by path from the scan of another snapshot under the same
    environment (the other side of a pull request): a document at the same path with the same
    key is the same document, taken from there without a cache lookup. Results of this scan
    are added to it."""
    tasks, findings = tasks_and_layout or layout(snapshot, cache)
    findings = list(findings)
    results: dict[str, Checked] = {}
    missing: list[Task] = []
    for task in tasks:
        if known is not None and task.key:
            same = known.get(task.path)
            if same is not None and same[0].key == task.key:
                results[task.path] = same
                continue
        cached = cache.get(_entry_key(env_digest, task)) if task.key else None
        if cached is None:
            missing.append(task)
        else:
            summary, found = cached
            results[task.path] = (
                task,
                Summary.from_plain(summary),
                tuple(Finding.from_plain(f) for f in found),
            )
    for task, plain in run_tasks(snapshot, env, missing, jobs):
        cache.put(_entry_key(env_digest, task), plain)
        summary, found = plain
        results[task.path] = (
            task,
            Summary.from_plain(summary),
            tuple(Finding.from_plain(f) for f in found),
        )
    keyed: list[Task] = []
    summaries: list[Summary] = []
    for task in tasks:
        keyed_task, summary, found = results[task.path]
        keyed.append(keyed_task)
        summaries.append(summary)
        findings.extend(found)
    if known is not None:
        known.update(results)
    return keyed, summaries, findings, len(missing)


def validate_snapshot(snapshot: Snapshot, cache: ResultCache, *, jobs: int | None = None) -> Report:
    """Check every document of a registry and the rules that span them.

    A run whose documents are all as the last run saw them is answered from the cache whole,
    without reading any document or building the index.
    """
    started = time.perf_counter()
    with collector_paused(for_command=cache.for_command):
        return _validate(snapshot, cache, jobs, started)


def _validate(snapshot: Snapshot, cache: ResultCache, jobs: int | None, started: float) -> Report:
    files = env_files(snapshot)
    env_digest = files.digest
    # With nothing cached there is nothing to look up: folders are keyed by the workers.
    tasks, layout_findings = layout(snapshot, cache, keys=not cache.empty())

    def build_index() -> RegistryIndex:
        _, summaries, _, _ = scan_snapshot(
            snapshot, cache, files.env(), env_digest, jobs, (tasks, layout_findings)
        )
        return RegistryIndex.build(summaries)

    # Unkeyed tasks come only from a cache with nothing in it: no whole run to look up.
    keyed = all(t.key for t in tasks)
    whole = cache.get(_run_key(env_digest, tasks, layout_findings)) if keyed else None
    if whole is not None:
        return Report(
            [Finding.from_plain(f) for f in whole],
            build_index,
            documents=len(tasks),
            checked=0,
            seconds=time.perf_counter() - started,
            tasks=tasks,
        )
    tasks, summaries, findings, checked = scan_snapshot(
        snapshot, cache, files.env(), env_digest, jobs, (tasks, layout_findings)
    )
    run_key = _run_key(env_digest, tasks, layout_findings)
    index = RegistryIndex.build(summaries)
    findings.extend(registry_findings(index))
    findings = sorted(set(with_lines(findings, snapshot.read)))
    cache.retain({_entry_key(env_digest, t) for t in tasks})
    cache.put(run_key, tuple(f.to_plain() for f in findings))
    cache.save()
    return Report(
        findings,
        index,
        documents=len(tasks),
        checked=checked,
        seconds=time.perf_counter() - started,
        tasks=tasks,
    )
