"""Whether an agent can run with a model: a pure function of their listings' data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["incompatibilities"]


def incompatibilities(
    agent_id: str, agent: Mapping[str, Any], model_id: str, model: Mapping[str, Any]
) -> list[str]:
    """Reasons why `model` cannot serve `agent`; empty when they fit."""
    compat: Mapping[str, Any] = agent.get("compatibility") or {}
    reasons: list[str] = []
    required = compat.get("requires_model")
    if required and required != model_id:
        reasons.append(f"{agent_id} requires the model {required}, not {model_id}")
    tasks = compat.get("model_tasks") or []
    if tasks and model.get("task") not in tasks:
        reasons.append(
            f"{agent_id} needs a model for {' or '.join(tasks)}; {model_id} does"
            f" {model.get('task')}"
        )
    min_context = compat.get("min_context_length")
    context = model.get("context_length")
    if min_context and (context is None or context < min_context):
        reasons.append(
            f"{agent_id} needs a context of at least {min_context} tokens; {model_id} has"
            f" {context if context is not None else 'no stated context length'}"
        )
    needed = set(compat.get("capabilities") or [])
    missing = sorted(needed - set(model.get("capabilities") or []))
    if missing:
        reasons.append(f"{model_id} lacks the capabilities {', '.join(missing)}")
    return reasons
