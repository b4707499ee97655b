"""Validating a whole registry snapshot: documents, then the rules that span them."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from formarket.registry.cache import ResultCache
from formarket.registry.contract import load_contract
from formarket.registry.findings import Finding, Severity, with_lines
from formarket.registry.index import RegistryIndex, Summary
from formarket.registry.invariants import registry_findings
from formarket.registry.scan import CheckEnv, Task, layout, run_tasks
from formarket.registry.snapshot import Snapshot
from formarket.registry.yaml_loader import YamlError, load_yaml
from formarket.schemas.farm import DEFAULT_BASES, DEFAULT_GPUS

__all__ = ["Report", "check_env", "scan_snapshot", "validate_snapshot"]


@dataclass
class Report:
    findings: list[Finding]
    index: RegistryIndex
    documents: int = 0
    checked: int = 0
    seconds: float = 0.0
    tasks: list[Task] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]


def check_env(snapshot: Snapshot) -> tuple[CheckEnv, str]:
    """The contract and farm configuration of a snapshot, and a digest of them."""
    schema_files = {
        item.name: snapshot.read(f"schemas/{item.name}")
        for item in snapshot.listdir("schemas")
        if item.name.endswith(".schema.json")
    }
    contract = load_contract(schema_files)
    bases = set()
    for item in snapshot.listdir("builder/bases"):
        if not item.name.endswith(".yaml"):
            continue
        raw = snapshot.read(f"builder/bases/{item.name}")
        try:
            data = load_yaml(raw or b"", f"builder/bases/{item.name}").data
        except YamlError:
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            bases.add(data["name"])
    env = CheckEnv(contract, frozenset(bases) or DEFAULT_BASES, DEFAULT_GPUS)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(contract.digest.encode())
    digest.update("\0".join(sorted(env.known_bases)).encode())
    digest.update("\0".join(sorted(env.known_gpus)).encode())
    return env, digest.hexdigest()


def scan_snapshot(
    snapshot: Snapshot, cache: ResultCache, env: CheckEnv, env_digest: str, jobs: int | None
) -> tuple[list[Task], list[Summary], list[Finding], int]:
    """Every document of a snapshot checked (or taken from the cache), and layout findings."""
    tasks, findings = layout(snapshot)
    results: dict[str, tuple[Summary, tuple[Finding, ...]]] = {}
    missing: list[Task] = []
    for task in tasks:
        cached = cache.get(f"{env_digest}:{task.key}:{task.path}")
        if cached is None:
            missing.append(task)
        else:
            results[task.path] = cached
    for task, result in run_tasks(snapshot, env, missing, jobs):
        cache.put(f"{env_digest}:{task.key}:{task.path}", result)
        results[task.path] = result
    summaries: list[Summary] = []
    for task in tasks:
        summary, found = results[task.path]
        summaries.append(summary)
        findings.extend(found)
    return tasks, summaries, findings, len(missing)


def validate_snapshot(snapshot: Snapshot, cache: ResultCache, *, jobs: int | None = None) -> Report:
    """Check every document of a registry and the rules that span them."""
    started = time.perf_counter()
    env, env_digest = check_env(snapshot)
    tasks, summaries, findings, checked = scan_snapshot(snapshot, cache, env, env_digest, jobs)
    index = RegistryIndex.build(summaries)
    findings.extend(registry_findings(index))
    cache.retain({f"{env_digest}:{t.key}:{t.path}" for t in tasks})
    cache.save()
    return Report(
        sorted(set(with_lines(findings, snapshot.read))),
        index,
        documents=len(tasks),
        checked=checked,
        seconds=time.perf_counter() - started,
        tasks=tasks,
    )
