"""Rules that span documents: unique ids, references, compatibility, look-alike names."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from formarket.registry.compatibility import incompatibilities
from formarket.registry.confusables import confusable_pairs, skeleton
from formarket.registry.findings import Finding, finding
from formarket.registry.index import RegistryIndex, Summary

__all__ = ["registry_findings"]


def _version_tuple(version: str) -> tuple[int, int, int]:
    core = version.split("-", 1)[0].split("+", 1)[0]
    major, minor, patch = (int(p) for p in core.split("."))
    return major, minor, patch


def registry_findings(index: RegistryIndex, focus: Collection[str] | None = None) -> list[Finding]:
    """Findings over the whole index. With `focus` (ids of changed documents), look-alike
    names are reported only where a focused id is involved."""
    out: list[Finding] = []
    if index.governance is None:
        out.append(
            finding(
                "REG027",
                "registry/governance.yaml",
                "the registry names no maintainers and no bot",
                hint="add registry/governance.yaml with `maintainers:` and `bot:`",
            )
        )
    for ident in sorted(set(index.models) & set(index.agents)):
        out.append(
            finding(
                "REG004",
                index.agents[ident].path,
                f"{ident} is both a model and an agent",
                where=("id",),
                hint="ids are shared by models and agents; rename one of them",
            )
        )
    listings = [*index.models.values(), *index.agents.values(), *index.solutions.values()]
    for summary in listings:
        publisher = summary.id.split("/", 1)[0]
        if publisher not in index.publishers:
            out.append(
                finding(
                    "REG005",
                    summary.path,
                    f"publisher {publisher!r} has no registry/publishers/{publisher}.yaml",
                    where=("id",),
                    hint="add the publisher file in the same pull request",
                )
            )
    for agent in index.agents.values():
        if agent.valid:
            out.extend(_agent_references(index, agent))
    for solution in index.solutions.values():
        if solution.valid:
            out.extend(_solution_findings(index, solution))
    looks = [
        (s.id, s.look or skeleton(s.id.partition("/")[2]))
        for s in (*index.models.values(), *index.agents.values())
    ]
    for a, b in confusable_pairs(looks, focus):
        for mine, other in ((a, b), (b, a)):
            if focus is not None and mine not in focus:
                continue
            found = index.listing(mine)
            assert found is not None
            out.append(
                finding(
                    "REG015",
                    found.path,
                    f"{mine} is easily mistaken for {other}",
                    hint="choose a name that cannot be taken for another publisher's listing",
                    where=("id",),
                )
            )
    return out


def _agent_references(index: RegistryIndex, agent: Summary) -> list[Finding]:
    out: list[Finding] = []
    compat = agent.data.get("compatibility") or {}
    required = compat.get("requires_model")
    if required and required not in index.models:
        out.append(
            finding(
                "REG006",
                agent.path,
                f"compatibility.requires_model names {required}, which is not a model listing",
                where=("compatibility", "requires_model"),
                hint="list the model first, or fix the id",
            )
        )
    for preferred in agent.data.get("preferred_models") or ():
        if preferred not in index.models:
            out.append(
                finding(
                    "REG026",
                    agent.path,
                    f"preferred model {preferred} is not a model listing",
                    where=("preferred_models",),
                )
            )
        elif required and preferred != required:
            out.append(
                finding(
                    "REG007",
                    agent.path,
                    f"preferred model {preferred} is not the required model {required}",
                    where=("preferred_models",),
                )
            )
    return out


def _solution_findings(index: RegistryIndex, solution: Summary) -> list[Finding]:
    out: list[Finding] = []
    data = solution.data
    agent_ref = data.get("agent") or {}
    model_ref = data.get("model") or {}
    agent_id, model_id = agent_ref.get("id"), model_ref.get("id")
    agent = index.agents.get(agent_id) if agent_id else None
    model = index.models.get(model_id) if model_id else None
    for ref, found, what in ((agent_ref, agent, "agent"), (model_ref, model, "model")):
        if found is None:
            out.append(
                finding(
                    "REG006",
                    solution.path,
                    f"{what}.id {ref.get('id')} is not {'an' if what == 'agent' else 'a'}"
                    f" {what} listing",
                    where=(what, "id"),
                )
            )
            continue
        pinned = ref.get("version")
        current = found.data.get("version")
        if pinned and current and _version_tuple(pinned) > _version_tuple(current):
            out.append(
                finding(
                    "REG006",
                    solution.path,
                    f"{what} {ref.get('id')} has no version {pinned} yet (newest: {current})",
                    where=(what, "version"),
                )
            )
    if agent is None or model is None or not agent.valid or not model.valid:
        return out
    # A pin on an older version is judged at that version, by the pull-request check, which
    # reads the version where it was published (REG032); here only the current ones are known.
    at_current = all(
        ref.get("version") in (None, found.data.get("version"))
        for ref, found in ((agent_ref, agent), (model_ref, model))
    )
    if at_current:
        for reason in incompatibilities(agent.id, agent.data, model.id, model.data):
            out.append(finding("REG007", solution.path, reason, where=("model", "id")))
    schema = agent.data.get("settings_schema")
    settings = data.get("settings") or {}
    validator = _settings_validator(schema) if schema else None
    if validator is not None:
        for error in validator.iter_errors(settings):
            where = ".".join(str(p) for p in error.instance_path) or "settings"
            out.append(
                finding(
                    "REG023",
                    solution.path,
                    f"settings.{where}: {error.message}"
                    if error.instance_path
                    else f"settings: {error.message}",
                    hint=f"see the settings_schema of {agent.id}",
                    where=("settings", *error.instance_path),
                )
            )
    elif settings and not schema:
        out.append(
            finding(
                "REG023",
                solution.path,
                f"{agent.id} takes no settings",
                hint="remove `settings`, or the agent must publish a settings_schema",
                where=("settings",),
            )
        )
    return out


def _settings_validator(schema: Any) -> Any:
    """The validator of an agent's settings schema, or None when the schema is not valid."""
    import jsonschema_rs  # start-up: solutions with settings only; a cached run never

    return jsonschema_rs.validator_for(schema) if jsonschema_rs.meta.is_valid(schema) else None
