"""Walking a registry snapshot: which documents it holds, each checked once per content.

The walk reads only folder listings; a document is read and checked only when its key (git
object id, or size and mtime on disk) is not in the cache. Checks of many documents run on
all cores.
"""

from __future__ import annotations

import gc
import marshal
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from formarket.registry.confusables import skeleton
from formarket.registry.contract import Contract
from formarket.registry.findings import Finding, finding
from formarket.registry.index import Summary
from formarket.registry.snapshot import Item, Snapshot, WorkTreeSnapshot

__all__ = ["Task", "collector_paused", "layout", "run_tasks"]

REGISTRY = "registry"
LISTING_KINDS = {"models": "model", "agents": "agent"}
# Written by the bot and checked by their own parts of formarket, not as listings.
_OWN_CHECKS = {"deployments", "usage"}
_ALLOWED_TOP = {"publishers", "models", "agents", "solutions", "governance.yaml", "README.md"}


@dataclass(frozen=True, slots=True)
class Task:
    """One document to check: a listing folder, a publisher, a solution or governance."""

    kind: str
    path: str  # the folder of a listing, else the file
    ident: str
    key: str


def layout(
    snapshot: Snapshot, memo: Memo | None = None, *, keys: bool = True
) -> tuple[list[Task], list[Finding]]:
    """The documents of a registry and the findings of entries that break its layout.

    With a `memo`, what a publisher's folder holds is remembered by the folder's key (a git
    tree id), so that a commit is walked only where it differs from one seen before. Without
    `keys`, listing folders are not keyed here but by whoever checks them (`check_task`): with
    nothing cached, keying them first would only delay the parallel work.
    """
    tasks: list[Task] = []
    findings: list[Finding] = []

    def stray(path: str, why: str, hint: str) -> None:
        findings.append(finding("REG020", path, why, hint=hint))

    for top in snapshot.listdir(REGISTRY):
        path = f"{REGISTRY}/{top.name}"
        if top.name in _OWN_CHECKS and top.kind == "dir":
            continue
        if top.name not in _ALLOWED_TOP:
            stray(
                path,
                f"unexpected {top.kind} in registry/",
                "registry/ holds publishers/, models/, agents/, solutions/, deployments/, usage/",
            )
            continue
        if top.name == "governance.yaml":
            tasks.append(Task("governance", path, "governance", top.key))
        elif top.name == "publishers":
            for item in snapshot.listdir(path):
                stem, dot, ext = item.name.rpartition(".")
                if item.kind != "file" or ext != "yaml" or not dot:
                    stray(
                        f"{path}/{item.name}",
                        "publishers/ holds <publisher>.yaml files",
                        "name the file after the publisher's id",
                    )
                    continue
                tasks.append(Task("publisher", f"{path}/{item.name}", stem, item.key))
        elif top.name in LISTING_KINDS:
            kind = LISTING_KINDS[top.name]
            tasks.extend(_listing_tasks(snapshot, path, kind, stray, memo))
        elif top.name == "solutions":
            for pub in _dirs(snapshot, path, stray):
                for item in snapshot.listdir(f"{path}/{pub.name}"):
                    stem, dot, ext = item.name.rpartition(".")
                    file_path = f"{path}/{pub.name}/{item.name}"
                    if item.kind != "file" or ext != "yaml" or not dot:
                        stray(
                            file_path,
                            "solutions/<publisher>/ holds <slug>.yaml files",
                            "a solution is one YAML file",
                        )
                        continue
                    tasks.append(Task("solution", file_path, f"{pub.name}/{stem}", item.key))
    if keys and any(not t.key for t in tasks):
        tasks = _keyed(snapshot, tasks)
    return tasks, findings


def _keyed(snapshot: Snapshot, tasks: list[Task]) -> list[Task]:
    """Every task with its key. (Two threads made this slower: the walk is mostly Python.)"""
    out: list[Task] = []
    for task in tasks:
        if not task.key:
            name = task.path.rsplit("/", 1)[1]
            key = snapshot.folder_key(task.path, Item(name, "dir"))
            task = Task(task.kind, task.path, task.ident, key)
        out.append(task)
    return out


def _dirs(snapshot: Snapshot, path: str, stray: Any) -> Iterator[Item]:
    for item in snapshot.listdir(path):
        if item.kind == "dir":
            yield item
        else:
            stray(
                f"{path}/{item.name}",
                f"only folders belong in {path}/",
                "listings live in <kind>/<publisher>/<slug>/",
            )


class Memo(Protocol):
    def get(self, key: str) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...


def _listing_tasks(
    snapshot: Snapshot, path: str, kind: str, stray: Any, memo: Memo | None
) -> Iterator[Task]:
    for pub in _dirs(snapshot, path, stray):
        pub_path = f"{path}/{pub.name}"
        memo_key = f"tree:{pub_path}:{pub.key}" if memo is not None and pub.key else ""
        known = memo.get(memo_key) if memo is not None and memo_key else None
        if known is not None:
            tasks, strays = known
            for slug, key in tasks:
                yield Task(kind, f"{pub_path}/{slug}", f"{pub.name}/{slug}", key)
            for where, why, hint in strays:
                stray(where, why, hint)
            continue
        seen: list[tuple[str, str]] = []
        lost: list[tuple[str, str, str]] = []

        def note(where: str, why: str, hint: str, lost: list[tuple[str, str, str]] = lost) -> None:
            lost.append((where, why, hint))
            stray(where, why, hint)

        for item in _dirs(snapshot, pub_path, note):
            folder = f"{pub_path}/{item.name}"
            # Keys that cost a walk (a working tree's) are made afterwards, all at once.
            key = snapshot.folder_key(folder, item) if item.key else ""
            seen.append((item.name, key))
            yield Task(kind, folder, f"{pub.name}/{item.name}", key)
        if memo is not None and memo_key and all(key for _, key in seen):
            memo.put(memo_key, (tuple(seen), tuple(lost)))


@dataclass(frozen=True, slots=True)
class CheckEnv:
    """Everything a check needs besides the document: shared by every task of a run."""

    contract: Contract
    known_bases: frozenset[str]
    known_gpus: frozenset[str]


Result = tuple[Summary, tuple[Finding, ...]]
# A result as plain data (`Summary.to_plain`, `Finding.to_plain`): what the cache stores, and
# what worker processes send back, since pickling it is far cheaper than the objects.
PlainResult = tuple[tuple[Any, ...], tuple[tuple[Any, ...], ...]]
# A task (keyed, if it came without a key) and its result.
Checked = tuple[Task, PlainResult]


def check_task(snapshot: Snapshot, env: CheckEnv, task: Task) -> Checked:
    if not task.key:
        name = task.path.rsplit("/", 1)[1]
        key = snapshot.folder_key(task.path, Item(name, "dir"))
        task = Task(task.kind, task.path, task.ident, key)
    summary, found = _check(snapshot, env, task)
    return task, (summary.to_plain(), tuple(f.to_plain() for f in found))


def _check(snapshot: Snapshot, env: CheckEnv, task: Task) -> Result:
    from formarket.registry import entries  # start-up: a cached run checks nothing

    if task.kind in LISTING_KINDS.values():
        files = snapshot.files_under(task.path)
        summary, found = entries.check_listing(
            task.kind,
            task.path,
            task.ident,
            files,
            snapshot.read,
            env.contract,
            env.known_bases,
            env.known_gpus,
        )
        look = skeleton(task.ident.partition("/")[2])
        keyed = Summary(summary.kind, summary.id, summary.path, summary.valid, summary.data, look)
        return keyed, tuple(found)
    raw = snapshot.read(task.path)
    if raw is None:
        return Summary(task.kind, task.ident, task.path, False), (
            finding("REG020", task.path, "not a regular file"),
        )
    if task.kind == "publisher":
        summary, found = entries.check_publisher(raw, task.path, task.ident, env.contract)
    elif task.kind == "solution":
        summary, found = entries.check_solution(raw, task.path, task.ident, env.contract)
    else:
        summary, found = entries.check_governance(raw, task.path, env.contract)
    return summary, tuple(found)


# Worker processes rebuild the snapshot and environment once, from these, and find the tasks
# of a run there too (forked after they were made).
_worker: tuple[Snapshot, CheckEnv, list[list[Task]]] | None = None


def _snapshot_spec(snapshot: Snapshot) -> tuple[str, str, str]:
    if isinstance(snapshot, WorkTreeSnapshot):
        return ("worktree", str(snapshot.root), "")
    from formarket.registry.git_snapshot import GitSnapshot  # start-up: no dulwich for a tree

    assert isinstance(snapshot, GitSnapshot)
    return ("git", str(snapshot.repo.path), snapshot.commit_id.decode())


def _init_worker(spec: tuple[str, str, str], env: CheckEnv, chunks: list[list[Task]]) -> None:
    global _worker
    kind, where, commit = spec
    snapshot: Snapshot
    if kind == "git":
        # start-up: checking a working tree never loads dulwich.
        from dulwich.objects import ObjectID  # start-up

        from formarket.market.repository import open_repository  # start-up
        from formarket.registry.git_snapshot import GitSnapshot  # start-up

        repo = open_repository(where, search_up=False)
        snapshot = GitSnapshot(repo, ObjectID(commit.encode()), commit)
    else:
        snapshot = WorkTreeSnapshot(Path(where))
    _worker = (snapshot, env, chunks)
    # The parent may have forked with the collector paused (`collector_paused`).
    gc.enable()
    # What the fork inherited lives as long as the worker: collections need not walk it, and
    # the checks allocate many short-lived objects, which the default thresholds collect far
    # more often than they need to.
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def _run_chunk(index: int) -> bytes:
    """The keys and results of a chunk of tasks, as `marshal` bytes: the tasks are not sent
    back and forth, and plain results are several times quicker to marshal than to pickle
    (the parent reads the results of every worker)."""
    assert _worker is not None
    snapshot, env, chunks = _worker
    out = []
    for task in chunks[index]:
        keyed, plain = check_task(snapshot, env, task)
        out.append((keyed.key, plain))
    return marshal.dumps(out)


_SMALLEST_CHUNK = 25


def _chunks(tasks: list[Task], jobs: int) -> list[list[Task]]:
    """Chunks that shrink as fewer tasks remain, so that large ones keep the overhead low and
    small ones at the end leave no worker alone with a long one."""
    chunks = []
    start = 0
    while start < len(tasks):
        size = max(_SMALLEST_CHUNK, (len(tasks) - start) // (jobs * 4))
        chunks.append(tasks[start : start + size])
        start += size
    return chunks


@contextmanager
def collector_paused(*, for_command: bool = False) -> Iterator[None]:
    """The cycle collector off for a while. A check of a large registry makes tens of thousands
    of objects that are never in a cycle (results, summaries, the index); each collection
    walked them all again, and in the registry-wide rules that came after, most of their time
    went there. Whatever cycles are made meanwhile are collected once it is back on.

    `for_command`: the process ends soon after (see `ResultCache`); what was made is kept out
    of the collector for good rather than walked once more when it is back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if for_command:
            gc.freeze()
        if enabled:
            gc.enable()


# Below this many documents a process pool costs more than it saves.
_PARALLEL_FROM = 400


def run_tasks(
    snapshot: Snapshot, env: CheckEnv, tasks: list[Task], jobs: int | None = None
) -> Iterable[Checked]:
    """Check every task, on all cores when there are many."""
    jobs = jobs or os.cpu_count() or 1
    if jobs <= 1 or len(tasks) < _PARALLEL_FROM:
        for task in tasks:
            yield check_task(snapshot, env, task)
        return
    from concurrent.futures import ProcessPoolExecutor  # start-up: large runs only
    from multiprocessing import get_context  # start-up: large runs only

    # The first document is checked here: that imports and loads what every check needs (the
    # models, the Formfile parser, the license list) once, and the workers inherit it instead
    # of each paying for it.
    yield check_task(snapshot, env, tasks[0])
    chunks = _chunks(tasks[1:], jobs)
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=get_context("fork"),
        initializer=_init_worker,
        initargs=(_snapshot_spec(snapshot), env, chunks),
    ) as pool:
        for chunk, results in zip(chunks, pool.map(_run_chunk, range(len(chunks))), strict=True):
            checked = marshal.loads(results)  # noqa: S302 - made by our own worker
            for task, (key, plain) in zip(chunk, checked, strict=True):
                if key != task.key:
                    task = Task(task.kind, task.path, task.ident, key)
                yield task, plain
