"""The pull-request check: what changed between two commits, who changed it, and whether the
registry still holds together.

Ownership is judged by the base commit (a pull request cannot make its author an owner and use
that in the same breath), and where the base's publisher file is invalid or gone, by its last
valid version in history; documents by the head commit; versions by their first publication in
the base's first-parent history (`history`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dulwich.objects import ObjectID
from dulwich.repo import Repo

from formarket.market import trees
from formarket.market.layout import BOT_PATHS, bot_writes
from formarket.registry.cache import ResultCache
from formarket.registry.findings import Finding, finding, with_lines
from formarket.registry.git_snapshot import GitSnapshot, open_git_snapshot
from formarket.registry.history import VersionHistory, folder_digest, version_history
from formarket.registry.index import RegistryIndex
from formarket.registry.invariants import registry_findings
from formarket.registry.lifecycle import dependent_findings, mark_findings, version_key
from formarket.registry.scan import LISTING_KINDS
from formarket.registry.validate import Checked, Report, check_env, scan_snapshot

__all__ = ["Roles", "changed_paths", "check_pull_request", "ownership_findings"]


@dataclass(frozen=True, slots=True)
class Roles:
    maintainers: frozenset[str]
    bot: str | None


def changed_paths(repo: Repo, base: GitSnapshot, head: GitSnapshot) -> list[str]:
    """Every file path added, removed or modified between the two commits, sorted."""
    return trees.changed_paths(repo, base.root_tree, head.root_tree)


def _area(path: str) -> str:
    return next(prefix for prefix in BOT_PATHS if path.startswith(prefix))


def _owner_of(path: str) -> tuple[str, str] | None:
    """(publisher, area) for paths inside a publisher's space, else None."""
    parts = path.split("/")
    if len(parts) >= 4 and parts[0] == "registry" and parts[1] in (*LISTING_KINDS, "solutions"):
        return parts[2], parts[1]
    if len(parts) == 3 and parts[:2] == ["registry", "publishers"] and parts[2].endswith(".yaml"):
        return parts[2].removesuffix(".yaml"), "publishers"
    return None


def ownership_findings(
    paths: Iterable[str],
    author: str,
    roles: Roles,
    base_index: RegistryIndex,
    head_index: RegistryIndex,
    history: VersionHistory | None = None,
) -> list[Finding]:
    out: list[Finding] = []
    maintainer = author in roles.maintainers
    history = history or VersionHistory()
    for path in paths:
        if bot_writes(path):
            if author != roles.bot:
                out.append(
                    finding(
                        "REG017",
                        path,
                        f"only the bot ({roles.bot or 'not configured'}) writes {_area(path)};"
                        f" {author} may not",
                        hint="deployments, usage and royalties are written by the farm; ask for"
                        " a deployment with `formarket deploy` or a deployment issue instead",
                    )
                )
            continue
        owned = _owner_of(path)
        if owned is None:
            if not maintainer:
                out.append(
                    finding(
                        "REG018",
                        path,
                        f"only maintainers may change {path}; {author} is not one",
                        hint="a pull request from a publisher may only touch its own listings",
                    )
                )
            continue
        if maintainer:
            continue
        publisher, area = owned
        owners = base_index.owners(publisher)
        if not owners:
            # An invalid or removed file never frees a publisher for the taking: its owners
            # are those of its last valid version.
            owners = history.last_owners(publisher) or frozenset()
            if not owners and publisher in base_index.publishers:
                out.append(
                    finding(
                        "REG016",
                        path,
                        f"registry/publishers/{publisher}.yaml is invalid and never was valid;"
                        f" only maintainers may change publisher {publisher!r}",
                        hint="ask a maintainer to repair the publisher's file first",
                    )
                )
                continue
        if owners:
            if author not in owners:
                out.append(
                    finding(
                        "REG016",
                        path,
                        f"{author} does not own publisher {publisher!r}"
                        f" (owners: {', '.join(sorted(owners))})",
                        hint="ask an owner to add you to registry/publishers/"
                        f"{publisher}.yaml in a pull request of its own",
                    )
                )
            continue
        # A publisher that does not exist yet: created in this pull request by its author.
        new_owners = head_index.owners(publisher)
        if author not in new_owners:
            out.append(
                finding(
                    "REG019" if area == "publishers" else "REG016",
                    path,
                    f"publisher {publisher!r} is new; its file must name {author} as an owner",
                    hint=f"add registry/publishers/{publisher}.yaml with owners: [{author}]",
                )
            )
    return out


def version_findings(
    paths: Iterable[str],
    base_index: RegistryIndex,
    head_index: RegistryIndex,
    history: VersionHistory | None = None,
    digest: Callable[[str, str], str | None] | None = None,
) -> list[Finding]:
    """A published version is never rewritten, and versions only go up.

    `digest(side, path)` is the content digest of the listing or solution at `path` on the
    "head" or the "base"; versions are compared with their first publication in
    `history`, else with the base."""
    changed: dict[str, set[str]] = {}
    for path in paths:
        parts = path.split("/")
        if len(parts) >= 5 and parts[0] == "registry" and parts[1] in LISTING_KINDS:
            ident = f"{parts[2]}/{parts[3]}"
            changed.setdefault(ident, set()).add("/".join(parts[4:]))
        elif len(parts) == 4 and parts[:2] == ["registry", "solutions"]:
            changed.setdefault(f"{parts[2]}/{parts[3].removesuffix('.yaml')}", set()).add("*")
    history = history or VersionHistory()
    out: list[Finding] = []
    for ident, files in sorted(changed.items()):
        before = base_index.listing(ident) or base_index.solutions.get(ident)
        after = head_index.listing(ident) or head_index.solutions.get(ident)
        if after is None or not after.valid:
            continue
        new = after.data.get("version")
        if not isinstance(new, str):
            continue
        mine = digest("head", after.path) if digest is not None else None
        first = history.first(ident, new)
        old = before.data.get("version") if before is not None and before.valid else None
        if first is not None and mine is not None:
            rewritten = first.digest != mine
            since = f"was published in commit {first.commit[:12]}"
        elif isinstance(old, str) and new == old and before is not None and digest is not None:
            # Not in the history (an in-memory check without one): the base is the reference.
            rewritten = digest("base", before.path) != mine
            since = "is published"
        else:
            rewritten = False
        if rewritten:
            out.append(
                finding(
                    "REG011",
                    after.path,
                    f"version {new} of {ident} {since} and cannot change"
                    + _what_changed(files, before, after, same=old == new),
                    where=("version",),
                    hint="bump `version` (semver) for any change to what is built or sold;"
                    " a version once published keeps its content, even after a withdrawal",
                )
            )
            continue
        if isinstance(old, str) and new != old and version_key(new) < version_key(old):
            out.append(
                finding(
                    "REG012",
                    after.path,
                    f"version goes back from {old} to {new}",
                    hint="a new version must be greater than the published one",
                )
            )
    return out


def _what_changed(files: set[str], before: Any, after: Any, *, same: bool) -> str:
    if not same or before is None:
        return ""
    # Marks are no rewrite (see `history`), so they are not named among the changes.
    fields = [
        f for f in _changed_fields(before.data, after.data) if not f.startswith("version_marks")
    ]
    what = ", ".join(fields[:5]) + (" ..." if len(fields) > 5 else "")
    shown = ", ".join(sorted(files - {"*"})) or after.path.rsplit("/", 1)[1]
    return f" ({shown} changed" + (f": {what}" if fields else "") + ")"


def _changed_fields(before: Any, after: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ, as `a.b: old -> new` for scalars."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out: list[str] = []
        for key in sorted(set(before) | set(after), key=str):
            out.extend(_changed_fields(before.get(key), after.get(key), f"{prefix}{key}."))
        return out
    if before == after:
        return []
    name = prefix.rstrip(".")
    if isinstance(before, Mapping | list) or isinstance(after, Mapping | list):
        return [name]
    return [f"{name}: {before!r} -> {after!r}"]


def check_pull_request(
    repo: Repo,
    base_rev: str,
    head_rev: str,
    author: str,
    cache: ResultCache,
    *,
    maintainers: frozenset[str] = frozenset(),
    bot: str | None = None,
    jobs: int | None = None,
) -> Report:
    started = time.perf_counter()
    base = open_git_snapshot(repo, base_rev)
    head = open_git_snapshot(repo, head_rev)
    paths = changed_paths(repo, base, head)

    env, env_digest = check_env(base)
    # The head is the base but for the pull request's changes: what both hold is taken from
    # the base's scan, and only what changed is looked up or checked again.
    known: dict[str, Checked] = {}
    base_tasks, base_summaries, _, _ = scan_snapshot(
        base, cache, env, env_digest, jobs, known=known
    )
    head_tasks, head_summaries, head_found, checked = scan_snapshot(
        head, cache, env, env_digest, jobs, known=known
    )
    base_index = RegistryIndex.build(base_summaries)
    head_index = RegistryIndex.build(head_summaries)
    roles = Roles(
        maintainers | base_index.maintainers(), bot if bot is not None else base_index.bot()
    )

    touched = set(paths)
    findings = [f for f in head_found if f.path in touched or _in_changed_folder(f.path, touched)]
    changed_ids = {t.ident for t in head_tasks if _task_touched(t.path, touched)}
    spanning = registry_findings(head_index, focus=changed_ids)
    if spanning:
        # Only what this change brings: problems the base had already are not its doing.
        known_before = set(registry_findings(base_index, focus=changed_ids))
        spanning = [f for f in spanning if f not in known_before]
    findings.extend(spanning)
    history = version_history(repo, base.commit_id, cache)

    def digest(side: str, path: str) -> str | None:
        return _content_digest(repo, base if side == "base" else head, path)

    findings.extend(ownership_findings(paths, author, roles, base_index, head_index, history))
    findings.extend(version_findings(paths, base_index, head_index, history, digest))
    findings.extend(mark_findings(changed_ids, head_index, history))

    def read_at(commit: str, path: str) -> bytes | None:
        return trees.read_path(repo, trees.commit_tree(repo, ObjectID(commit.encode())), path)

    # Everything that names a changed listing, at the versions it would deploy; as with the
    # spanning rules, only what this change brings.
    dependents = dependent_findings(changed_ids, head_index, history, read_at)
    if dependents:
        before = set(dependent_findings(changed_ids, base_index, history, read_at))
        findings.extend(f for f in dependents if f not in before)
    cache.retain({f"{env_digest}:{t.key}:{t.path}" for t in (*base_tasks, *head_tasks)})
    cache.save()
    return Report(
        sorted(set(with_lines(findings, head.read))),
        head_index,
        documents=len(head_tasks),
        checked=checked,
        seconds=time.perf_counter() - started,
        tasks=head_tasks,
    )


def _content_digest(repo: Repo, side: GitSnapshot, path: str) -> str | None:
    """What `history` records of a listing (its folder's digest) or a solution (its blob)."""
    if path.startswith("registry/solutions/"):
        blob = side.blob_id(path)
        return blob.decode() if blob is not None else None
    folder = path.rsplit("/", 1)[0]
    folder_id = trees.find(repo, side.root_tree, folder, folder=True)
    raw = side.read(path)
    if folder_id is None or raw is None:
        return None
    from formarket.yamldoc import YamlError, load_yaml  # start-up: changed listings only

    try:
        data = load_yaml(raw, path).data
    except YamlError:
        return None
    return folder_digest(repo, folder_id, data if isinstance(data, dict) else {})


def _task_touched(task_path: str, touched: set[str]) -> bool:
    if task_path in touched:
        return True
    prefix = task_path + "/"
    return any(p.startswith(prefix) for p in touched)


def _in_changed_folder(path: str, touched: set[str]) -> bool:
    parts = path.split("/")
    if len(parts) >= 4 and parts[0] == "registry" and parts[1] in LISTING_KINDS:
        prefix = "/".join(parts[:4]) + "/"
        return any(p.startswith(prefix) for p in touched)
    return False
