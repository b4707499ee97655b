"""The listing lifecycle in the pull-request check: version marks, and everything that names
a changed listing checked again at the versions it would deploy.

Every published version that is not yanked can be deployed, so a solution is judged at the
versions it would get: its pins, or the newest versions not yanked. A listing's data at an
older version is read at the commit that first published it (`history`), since that is the
version a deployment builds.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from formarket.registry.compatibility import incompatibilities
from formarket.registry.findings import Finding, finding
from formarket.registry.history import VersionHistory
from formarket.registry.index import RegistryIndex, Summary

__all__ = [
    "ReadAt",
    "dependent_findings",
    "mark_findings",
    "marks_of",
    "published_versions",
    "version_key",
]

# (commit, path) -> the file's bytes at that commit, or None.
ReadAt = Callable[[str, str], bytes | None]
_Key = tuple[tuple[int, int, int], int, tuple[tuple[int, str], ...]]


def version_key(version: str) -> _Key:
    """SemVer precedence as a sort key: a release after its pre-releases, whose fields
    compare numerically first."""
    core, _, rest = version.partition("+")[0].partition("-")
    major, minor, patch = (int(p) for p in core.split("."))
    pre = (
        tuple((0, f"{int(p):020d}") if p.isdigit() else (1, p) for p in rest.split("."))
        if rest
        else ()
    )
    return (major, minor, patch), 0 if rest else 1, pre


def marks_of(data: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """version -> (status, message) of a listing's `version_marks`."""
    marks = data.get("version_marks") or {}
    out: dict[str, tuple[str, str]] = {}
    if isinstance(marks, Mapping):
        for version, mark in marks.items():
            if isinstance(mark, Mapping):
                out[str(version)] = (str(mark.get("status", "")), str(mark.get("message", "")))
    return out


def published_versions(summary: Summary, history: VersionHistory) -> list[str]:
    """The listing's published versions, oldest first; its current one counts as published
    (it is, once the change is merged)."""
    found = set(history.published(summary.id))
    current = summary.data.get("version")
    if isinstance(current, str):
        found.add(current)
    return sorted(found, key=version_key)


def mark_findings(
    idents: Collection[str], index: RegistryIndex, history: VersionHistory
) -> list[Finding]:
    """REG030: a mark names a version of its listing that was never published."""
    out: list[Finding] = []
    for ident in sorted(idents):
        summary = index.listing(ident)
        if summary is None or not summary.valid:
            continue
        published = published_versions(summary, history)
        for version in sorted(marks_of(summary.data)):
            if version not in published:
                out.append(
                    finding(
                        "REG030",
                        summary.path,
                        f"version_marks names {ident} {version}, which was never published"
                        f" (published: {', '.join(published)})",
                        where=("version_marks", version),
                        hint="mark only versions on the main branch; check the version number",
                    )
                )
    return out


class _Versions:
    """What the check knows of listings' versions: which exist, their marks, their data."""

    def __init__(self, index: RegistryIndex, history: VersionHistory, read_at: ReadAt) -> None:
        self.index = index
        self.history = history
        self.read_at = read_at
        self._data: dict[tuple[str, str], Mapping[str, Any] | None] = {}

    def deployable(self, summary: Summary) -> list[str]:
        marks = marks_of(summary.data)
        return [
            v
            for v in published_versions(summary, self.history)
            if marks.get(v, ("", ""))[0] != "yanked"
        ]

    def data(self, summary: Summary, version: str) -> Mapping[str, Any] | None:
        if summary.data.get("version") == version:
            return summary.data
        key = (summary.id, version)
        if key not in self._data:
            first = self.history.first(summary.id, version)
            raw = self.read_at(first.commit, summary.path) if first is not None else None
            self._data[key] = _parse(raw, summary.path) if raw is not None else None
        return self._data[key]


def _parse(raw: bytes, path: str) -> Mapping[str, Any] | None:
    from formarket.yamldoc import YamlError, load_yaml  # start-up: older versions only

    try:
        data = load_yaml(raw, path).data
    except YamlError:
        return None
    return data if isinstance(data, dict) else None


def dependent_findings(
    changed: Collection[str], index: RegistryIndex, history: VersionHistory, read_at: ReadAt
) -> list[Finding]:
    """REG031 to REG034 for every solution and agent that names a listing in `changed`."""
    versions = _Versions(index, history, read_at)
    wanted = set(changed)
    out: list[Finding] = []
    for solution in sorted(index.solutions.values(), key=lambda s: s.id):
        if solution.valid:
            out.extend(_solution(solution, wanted, versions))
    for agent in sorted(index.agents.values(), key=lambda s: s.id):
        if agent.valid:
            out.extend(_agent(agent, wanted, versions))
    return out


def _slug(ident: str) -> str:
    return ident.partition("/")[2]


def _solution(solution: Summary, changed: set[str], versions: _Versions) -> list[Finding]:
    refs: dict[str, Mapping[str, Any]] = {
        "agent": solution.data.get("agent") or {},
        "model": solution.data.get("model") or {},
    }
    if solution.id not in changed and not any(ref.get("id") in changed for ref in refs.values()):
        return []
    out: list[Finding] = []
    targets: dict[str, Summary] = {}
    resolved: dict[str, str] = {}
    for what, ref in refs.items():
        ident = ref.get("id")
        table = versions.index.agents if what == "agent" else versions.index.models
        target = table.get(ident) if isinstance(ident, str) else None
        if target is None or not target.valid:
            continue  # REG006 says the reference does not resolve
        targets[what] = target
        deployable = versions.deployable(target)
        pinned = ref.get("version")
        current = target.data.get("version")
        if isinstance(pinned, str):
            published = published_versions(target, versions.history)
            marks = marks_of(target.data)
            status, message = marks.get(pinned, ("", ""))
            move = f"; move to {deployable[-1]}" if deployable else ""
            if pinned not in published:
                if isinstance(current, str) and version_key(pinned) > version_key(current):
                    continue  # REG006: a version that does not exist yet
                out.append(
                    finding(
                        "REG031",
                        solution.path,
                        f"{what} {ident} {pinned} was never published"
                        f" (published: {', '.join(published)})",
                        where=(what, "version"),
                        hint=f"pin a published version{move}",
                    )
                )
            elif status == "yanked":
                out.append(
                    finding(
                        "REG031",
                        solution.path,
                        f"{what} {ident} {pinned} is yanked: {message}",
                        where=(what, "version"),
                        hint=f"a yanked version takes no new deployments{move}",
                    )
                )
            else:
                if status == "deprecated":
                    out.append(
                        finding(
                            "REG034",
                            solution.path,
                            f"{what} {ident} {pinned} is deprecated: {message}",
                            where=(what, "version"),
                            hint=f"users who deploy {solution.id} are warned{move}",
                        )
                    )
                resolved[what] = pinned
        elif deployable:
            resolved[what] = deployable[-1]
        else:
            out.append(
                finding(
                    "REG031",
                    solution.path,
                    f"every published version of {what} {ident} is yanked",
                    where=(what, "id"),
                    hint=f"pair {solution.id} with another {what}",
                )
            )
    if len(resolved) < 2:
        return out
    agent, model = targets["agent"], targets["model"]
    agent_data = versions.data(agent, resolved["agent"])
    model_data = versions.data(model, resolved["model"])
    if agent_data is None or model_data is None:
        return out
    at_current = all(resolved[w] == targets[w].data.get("version") for w in resolved)
    # At the current versions REG007 reports the same reasons.
    if not at_current:
        for reason in incompatibilities(agent.id, agent_data, model.id, model_data):
            out.append(
                finding(
                    "REG032",
                    solution.path,
                    f"at {agent.id} {resolved['agent']} and {model.id} {resolved['model']}:"
                    f" {reason}",
                    where=("model", "version" if refs["model"].get("version") else "id"),
                    hint="pin versions that fit, or pair the solution with another listing",
                )
            )
    for what, other in (("agent", "model"), ("model", "agent")):
        pinned = refs[what].get("version")
        if not isinstance(pinned, str) or what not in resolved:
            continue
        target = targets[what]
        other_data = versions.data(targets[other], resolved[other])
        for newer in reversed(versions.deployable(target)):
            if version_key(newer) <= version_key(pinned) or other_data is None:
                break
            newer_data = versions.data(target, newer)
            if newer_data is None:
                continue
            pair = (newer_data, other_data) if what == "agent" else (other_data, newer_data)
            if not incompatibilities(agent.id, pair[0], model.id, pair[1]):
                out.append(
                    finding(
                        "REG033",
                        solution.path,
                        f"{solution.id} could move to {_slug(target.id)} {newer}",
                        where=(what, "version"),
                        hint=f"{target.id} {newer} fits {targets[other].id}"
                        f" {resolved[other]}; pin it with `version: {newer}`",
                    )
                )
                break
    return out


def _agent(agent: Summary, changed: set[str], versions: _Versions) -> list[Finding]:
    compat = agent.data.get("compatibility") or {}
    named: list[tuple[str, tuple[str | int, ...]]] = []
    required = compat.get("requires_model")
    if isinstance(required, str):
        named.append((required, ("compatibility", "requires_model")))
    for i, preferred in enumerate(agent.data.get("preferred_models") or ()):
        if isinstance(preferred, str) and preferred != required:
            named.append((preferred, ("preferred_models", i)))
    out: list[Finding] = []
    for ident, where in named:
        model = versions.index.models.get(ident)
        if ident not in changed or model is None or not model.valid:
            continue
        deployable = versions.deployable(model)
        if not deployable:
            out.append(
                finding(
                    "REG031",
                    agent.path,
                    f"{agent.id} names {ident}, every published version of which is yanked",
                    where=where,
                    hint="name another model",
                )
            )
            continue
        data = versions.data(model, deployable[-1])
        if data is None:
            continue
        for reason in incompatibilities(agent.id, agent.data, ident, data):
            out.append(
                finding(
                    "REG032",
                    agent.path,
                    f"at {ident} {deployable[-1]}: {reason}",
                    where=where,
                    hint=f"the newest version of {ident} that is not yanked must fit {agent.id}",
                )
            )
    return out
