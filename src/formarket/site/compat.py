"""Which agents run with which models, for a whole catalog at once.

`registry.compatibility.incompatibilities` answers for one pair. Asking it for every pair costs
agents x models calls (12.75 million at 10,000 listings), but an agent without a required model
only looks at a model's task, context length and capabilities: models that agree on those three
form a group, and one question per agent and group answers for all its members. What the site
shows (and ships to the browser) is then groups and their members, never the full pair list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from formarket.registry.compatibility import incompatibilities

__all__ = ["Compatibility", "compatibility"]

Signature = tuple[str, int, tuple[str, ...]]


def _signature(model: Mapping[str, Any]) -> Signature:
    context = model.get("context_length")
    return (
        str(model.get("task") or ""),
        context if isinstance(context, int) else -1,
        tuple(sorted(str(c) for c in model.get("capabilities") or ())),
    )


def _needs_model(agent: Mapping[str, Any]) -> bool:
    compat: Mapping[str, Any] = agent.get("compatibility") or {}
    return any(
        compat.get(key)
        for key in ("requires_model", "model_tasks", "min_context_length", "capabilities")
    )


@dataclass(frozen=True, slots=True)
class Compatibility:
    """Groups of interchangeable models and, for each agent, the groups it runs with.

    `groups[i]` lists model ids in the order given to `compatibility` (the caller's ranking);
    an agent that requires one model has no groups but `required`; an agent in `standalone`
    needs no model at all."""

    groups: tuple[tuple[str, ...], ...]
    group_of: Mapping[str, int]
    agent_groups: Mapping[str, tuple[int, ...]]
    required: Mapping[str, str]
    standalone: frozenset[str]
    agents_by_group: tuple[tuple[str, ...], ...]
    requiring: Mapping[str, tuple[str, ...]]
    model_rank: Mapping[str, int]
    agent_rank: Mapping[str, int]

    def fits(self, agent: str, model: str) -> bool:
        if agent in self.required:
            return self.required[agent] == model
        group = self.group_of.get(model)
        return group is not None and group in self.agent_groups.get(agent, ())

    def model_count(self, agent: str) -> int:
        if agent in self.required:
            return 1
        return sum(len(self.groups[g]) for g in self.agent_groups.get(agent, ()))

    def models_for(self, agent: str, limit: int | None = None) -> list[str]:
        """Compatible models in the caller's order; each group is in that order already, so
        the first `limit` of all are among the first `limit` of each group."""
        if agent in self.required:
            return [self.required[agent]]
        heads = [self.groups[g][: limit or None] for g in self.agent_groups.get(agent, ())]
        return _merge(heads, self.model_rank, limit)

    def agent_count(self, model: str) -> int:
        group = self.group_of.get(model)
        found = len(self.agents_by_group[group]) if group is not None else 0
        return found + len(self.requiring.get(model, ()))

    def agents_for(self, model: str, limit: int | None = None) -> list[str]:
        group = self.group_of.get(model)
        heads = [self.requiring.get(model, ())[: limit or None]]
        if group is not None:
            heads.append(self.agents_by_group[group][: limit or None])
        return _merge(heads, self.agent_rank, limit)


def _merge(heads: Sequence[Sequence[str]], rank: Mapping[str, int], limit: int | None) -> list[str]:
    seen: dict[str, None] = {}
    for head in heads:
        for ident in head:
            seen.setdefault(ident)
    ordered = sorted(seen, key=lambda i: (rank.get(i, 0), i))
    return ordered[:limit] if limit is not None else ordered


def compatibility(
    agents: Mapping[str, Mapping[str, Any]], models: Mapping[str, Mapping[str, Any]]
) -> Compatibility:
    """Compatibility of every agent with every model. Both mappings are iterated in their
    order, which is kept inside each list (pass them best first)."""
    by_signature: dict[Signature, list[str]] = {}
    for ident, data in models.items():
        by_signature.setdefault(_signature(data), []).append(ident)
    signatures = list(by_signature)
    groups = tuple(tuple(by_signature[s]) for s in signatures)
    group_of = {ident: g for g, members in enumerate(groups) for ident in members}
    agent_groups: dict[str, tuple[int, ...]] = {}
    required: dict[str, str] = {}
    standalone: set[str] = set()
    in_group: list[list[str]] = [[] for _ in groups]
    requiring: dict[str, list[str]] = {}
    for ident, agent in agents.items():
        if not _needs_model(agent):
            standalone.add(ident)
            continue
        wanted = (agent.get("compatibility") or {}).get("requires_model")
        if wanted:
            model = models.get(wanted)
            if model is not None and not incompatibilities(ident, agent, wanted, model):
                required[ident] = wanted
                requiring.setdefault(wanted, []).append(ident)
            continue
        fits = tuple(
            g
            for g, members in enumerate(groups)
            if not incompatibilities(ident, agent, members[0], models[members[0]])
        )
        agent_groups[ident] = fits
        for g in fits:
            in_group[g].append(ident)
    return Compatibility(
        groups,
        group_of,
        agent_groups,
        required,
        frozenset(standalone),
        tuple(tuple(a) for a in in_group),
        {m: tuple(a) for m, a in requiring.items()},
        {ident: i for i, ident in enumerate(models)},
        {ident: i for i, ident in enumerate(agents)},
    )
