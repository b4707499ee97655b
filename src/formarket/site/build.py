"""`build_site`: the driver around the pure core. It reads (registry, git history, usage logs,
royalty statements, the mkdocs project), calls `render_site`, and writes what changed.

State kept between builds lives in the output's `.formarket/` folder: the manifest of output
keys, the git history read so far, the totals of usage files already read, and the mkdocs build
of the hand-written pages. Any of it may be deleted; the next build is then a full one.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dulwich.repo import Repo

from formarket.atomicfile import write_atomically
from formarket.errors import NotFoundError, UsageError
from formarket.market.repository import open_repository
from formarket.registry.cache import ResultCache, code_digest, default_cache_dir
from formarket.registry.index import RegistryIndex
from formarket.registry.snapshot import Item, WorkTreeSnapshot
from formarket.registry.validate import validate_snapshot
from formarket.site.catalog import Catalog, Entry, Settings
from formarket.site.history import History, listing_key, no_history, read_blob, read_history
from formarket.site.output import STATE, check_output, previous_keys, write_outputs
from formarket.site.render import render_site
from formarket.site.theme import find_project, load_theme
from formarket.site.usage import earnings_from_statements, file_totals, merge_totals
from formarket.usage.files import USAGE_ROOT
from formarket.usage.reader import reading_spec
from formarket.yamldoc import YamlError, load_yaml

__all__ = ["BuildReport", "build_site", "detect_repository"]

Echo = Callable[[str], None]
_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_GITHUB_REMOTE = re.compile(
    r"^(?:https://github\.com/|git@github\.com:|ssh://git@github\.com/)"
    r"([A-Za-z0-9-]+/[A-Za-z0-9._-]+?)(?:\.git)?/?$"
)
_PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
_READERS = 4


@dataclass(frozen=True, slots=True)
class BuildReport:
    out: Path
    listings: int
    written: int
    unchanged: int
    removed: int
    rendered: int  # outputs rendered
    reused: int  # pages and listing files not rendered: unchanged since the previous build
    skipped_documents: int
    seconds: float
    steps: Mapping[str, float] = field(default_factory=dict)


def detect_repository(root: Path, given: str | None) -> str | None:
    """The GitHub repository (`owner/name`) the site links to: the option, else
    GITHUB_REPOSITORY (set in GitHub Actions), else a github.com `origin` remote."""
    for candidate in (given, os.environ.get("GITHUB_REPOSITORY")):
        if candidate:
            if not _REPOSITORY.match(candidate):
                raise UsageError(
                    f"{candidate!r} is not a GitHub repository", hint="write it as OWNER/NAME"
                )
            return candidate
    try:
        repo = open_repository(root, search_up=False)
    except NotFoundError:
        return None
    try:
        url = repo.get_config().get((b"remote", b"origin"), b"url").decode()
    except KeyError:
        return None
    finally:
        repo.close()
    found = _GITHUB_REMOTE.match(url)
    return found.group(1) if found else None


def _load_state(state: Path, name: str) -> Any:
    try:
        return json.loads((state / name).read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _save_state(state: Path, name: str, value: Any) -> None:
    data = json.dumps(value, separators=(",", ":")).encode()
    write_atomically(state / name, data, durable=False, mode=0o644)


def _history(root: Path, state: Path) -> tuple[History, Repo | None]:
    try:
        repo = open_repository(root, search_up=False)
    except NotFoundError:
        return no_history("the registry is not a git repository"), None
    previous = History.from_json(_load_state(state, "history.json"))
    history = read_history(repo, previous)
    if history.available:
        _save_state(state, "history.json", history.to_json())
    return history, repo


def _usage_files(snapshot: WorkTreeSnapshot, day: str) -> list[tuple[str, Item]]:
    """A day's usage files: `<source>-<seq>.jsonl.gz`, where a source such as gateway/gw-1
    puts its files in a folder of its kind."""
    found: list[tuple[str, Item]] = []
    for item in snapshot.listdir(day):
        if item.kind == "dir":
            found += [
                (f"{day}/{item.name}", inner)
                for inner in snapshot.listdir(f"{day}/{item.name}")
                if inner.kind == "file" and inner.name.endswith(".jsonl.gz")
            ]
        elif item.kind == "file" and item.name.endswith(".jsonl.gz"):
            found.append((day, item))
    return found


def _usage(snapshot: WorkTreeSnapshot, state: Path) -> tuple[dict[str, Any], bool]:
    """Monthly usage by listing, reading only files not read by an earlier build."""
    spec = reading_spec(snapshot.read("royalties/policy.yaml"))
    # Totals depend on the code that read them and on the terms' clock skew.
    salt = f"{code_digest()}/{spec.new.skew.total_seconds():.0f}"
    kept = _load_state(state, "usage.json")
    cache: dict[str, Any] = kept if isinstance(kept, dict) and kept.get("code") == salt else {}
    files = cache.get("files", {}) if isinstance(cache.get("files"), dict) else {}
    seen: dict[str, Any] = {}
    base = USAGE_ROOT
    for year in snapshot.listdir(base):
        for month in snapshot.listdir(f"{base}/{year.name}"):
            for day in snapshot.listdir(f"{base}/{year.name}/{month.name}"):
                for folder, item in _usage_files(
                    snapshot, f"{base}/{year.name}/{month.name}/{day.name}"
                ):
                    path = f"{folder}/{item.name}"
                    old = files.get(path)
                    if isinstance(old, dict) and old.get("key") == item.key:
                        seen[path] = old
                        continue
                    raw = snapshot.read(path)
                    seen[path] = {"key": item.key, "totals": file_totals(path, raw or b"", spec)}
    _save_state(state, "usage.json", {"code": salt, "files": seen})
    return merge_totals(v["totals"] for v in seen.values()), bool(seen)


def _earnings(snapshot: WorkTreeSnapshot) -> tuple[dict[str, Any], tuple[str, ...]]:
    documents: list[bytes] = []
    periods: list[str] = []
    for item in snapshot.listdir("royalties"):
        if item.kind != "dir" or not _PERIOD.match(item.name):
            continue
        files = snapshot.files_under(f"royalties/{item.name}")
        if files:
            periods.append(item.name)
        for rel, size in sorted(files.items()):
            if rel.endswith(".json") and 0 <= size <= 64 << 20:
                raw = snapshot.read(f"royalties/{item.name}/{rel}")
                if raw is not None:
                    documents.append(raw)
    return earnings_from_statements(documents), tuple(periods)


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", "replace") if raw is not None else ""


def _refused(index: RegistryIndex, errors: set[str]) -> frozenset[str]:
    """The paths of the documents the check refused: an error in a listing's folder or in a
    document itself, and what depends on a refused listing (an agent that requires a refused
    model, a solution made of one), whose page would link to nothing."""
    # A finding's path inside a listing folder (registry/<kind>/<publisher>/<slug>/...) names
    # the folder by its first four parts.
    folders = {"/".join(path.split("/")[:4]) for path in errors}
    refused_ids = {
        s.id
        for s in (*index.models.values(), *index.agents.values())
        if s.path in errors or s.path.rsplit("/", 1)[0] in folders
    }
    for agent in index.agents.values():
        compat = agent.data.get("compatibility") if agent.valid else None
        if isinstance(compat, Mapping) and compat.get("requires_model") in refused_ids:
            refused_ids.add(agent.id)
    refused = {
        s.path for s in (*index.models.values(), *index.agents.values()) if s.id in refused_ids
    }
    for solution in index.solutions.values():
        parts = (solution.data.get("agent"), solution.data.get("model")) if solution.valid else ()
        uses = {part.get("id") for part in parts if isinstance(part, Mapping)}
        if solution.path in errors or uses & refused_ids:
            refused.add(solution.path)
    return frozenset(refused)


def _entries(
    index: RegistryIndex,
    snapshot: WorkTreeSnapshot,
    history: History,
    usage: Mapping[str, Any],
    folder_keys: Mapping[str, str],
    state: Path,
    refused: frozenset[str] = frozenset(),
) -> tuple[dict[str, dict[str, Entry]], list[str]]:
    """The entries of the catalog: every listing and solution the check accepted; the paths
    of the others are returned as skipped."""
    tables: dict[str, dict[str, Entry]] = {"model": {}, "agent": {}, "solution": {}}
    skipped: list[str] = []
    sources = (("model", index.models), ("agent", index.agents), ("solution", index.solutions))
    valid = []
    for kind, summaries in sources:
        for ident, summary in summaries.items():
            if summary.valid and summary.path not in refused:
                valid.append((kind, ident, summary.path, dict(summary.data)))
            else:
                skipped.append(summary.path)
    # The README and Formfile of every listing, kept from the last build for folders whose
    # key (from the validation, which walked them) did not change; the rest are read, with
    # threads overlapping the reads.
    kept = _load_state(state, "texts.json")
    cached: dict[str, Any] = kept if isinstance(kept, dict) else {}
    texts: dict[str, str] = {}
    fresh: dict[str, list[str]] = {}
    wanted: list[str] = []
    for kind, _, path, data in valid:
        if kind == "solution":
            continue
        folder = path.rsplit("/", 1)[0]
        names = (
            f"{folder}/{data.get('readme', 'README.md')}",
            f"{folder}/{data.get('formfile', 'Formfile')}",
        )
        old = cached.get(folder)
        key = folder_keys.get(folder)
        if (
            key
            and isinstance(old, list)
            and len(old) == 5
            and old[0] == key
            and old[1:3] == list(names)
        ):
            texts.update(zip(names, old[3:], strict=True))
            fresh[folder] = old
        else:
            wanted.extend(names)
    with ThreadPoolExecutor(_READERS) as pool:
        texts.update(zip(wanted, pool.map(lambda p: _text(snapshot.read(p)), wanted), strict=True))
    for kind, _, path, data in valid:
        folder = path.rsplit("/", 1)[0]
        if kind != "solution" and folder not in fresh and folder_keys.get(folder):
            names = (
                f"{folder}/{data.get('readme', 'README.md')}",
                f"{folder}/{data.get('formfile', 'Formfile')}",
            )
            fresh[folder] = [folder_keys[folder], *names, texts[names[0]], texts[names[1]]]
    if fresh != cached:
        _save_state(state, "texts.json", fresh)
    found: dict[str, list[Entry]] = {"model": [], "agent": [], "solution": []}
    for kind, ident, path, data in valid:
        folder = path.rsplit("/", 1)[0]
        found[kind].append(
            Entry(
                kind,
                ident,
                data,
                path,
                texts.get(f"{folder}/{data.get('readme', 'README.md')}", ""),
                texts.get(f"{folder}/{data.get('formfile', 'Formfile')}", ""),
                history.versions.get(listing_key(kind, ident), ()),
                usage.get(ident, ()),
            )
        )
    for kind, entries in found.items():
        entries.sort(key=lambda e: (e.name.casefold(), e.id))
        tables[kind] = {e.id: e for e in entries}
    return tables, skipped


def _reader(repo: Repo | None) -> Callable[[str], Mapping[str, Any] | None]:
    def read(blob: str) -> Mapping[str, Any] | None:
        raw = read_blob(repo, blob) if repo is not None else None
        if raw is None:
            return None
        try:
            data = load_yaml(raw, blob).data
        except YamlError:
            return None
        return data if isinstance(data, dict) else None

    return read


def build_site(
    root: Path,
    out: Path,
    *,
    project: Path | None = None,
    repository: str | None = None,
    echo: Echo | None = None,
    jobs: int | None = None,
) -> BuildReport:
    """Build the catalog of the registry at `root` (the repository's top folder) into `out`;
    `jobs` processes render pages (default: one per core for large catalogs)."""
    say = echo or (lambda _: None)
    started = time.perf_counter()
    steps: dict[str, float] = {}

    def step(name: str, since: float) -> float:
        now = time.perf_counter()
        steps[name] = now - since
        return now

    root, out = root.resolve(), out.resolve()
    if not (root / "registry").is_dir():
        raise UsageError(f"{root} has no registry/ folder", hint="pass --repo PATH")
    check_output(out)
    state = out / STATE
    site_project = find_project(root, project)
    settings = Settings(detect_repository(root, repository))
    snapshot = WorkTreeSnapshot(root)
    cache = ResultCache(default_cache_dir(root) / "results.pickle", code_digest())
    report = validate_snapshot(snapshot, cache)
    now = step("validate", started)
    history, repo = _history(root, state)
    now = step("history", now)
    try:
        usage, recorded = _usage(snapshot, state)
        earnings, periods = _earnings(snapshot)
        folder_keys = {t.path: t.key for t in report.tasks if t.kind in ("model", "agent")}
        refused = _refused(report.index, {f.path for f in report.errors})
        tables, skipped = _entries(
            report.index, snapshot, history, usage, folder_keys, state, refused
        )
        publishers = {
            ident: dict(s.data) for ident, s in sorted(report.index.publishers.items()) if s.valid
        }
        catalog = Catalog(
            tables["model"],
            tables["agent"],
            tables["solution"],
            publishers,
            earnings,
            history,
            recorded,
            periods,
            settings,
            tuple(skipped),
        )
        now = step("read", now)
        theme = load_theme(site_project, state)
        now = step("mkdocs", now)
        previous = previous_keys(out)
        rendered = render_site(catalog, theme, previous, _reader(repo), jobs)
        now = step("render", now)
    finally:
        if repo is not None:
            repo.close()
    stats = write_outputs(out, rendered, previous)
    step("write", now)
    if skipped:
        say(
            f"warning: {len(skipped)} document(s) with errors left out;"
            " `formarket validate` says why"
        )
    return BuildReport(
        out,
        len(catalog.all_entries()),
        stats.written,
        stats.unchanged,
        stats.removed,
        len(rendered.files),
        rendered.skipped,
        len(skipped),
        time.perf_counter() - started,
        steps,
    )
