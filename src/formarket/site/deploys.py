"""The deploy commands a page shows: each one that `formarket deploy` accepts as written.

A solution is deployed by its id (`--solution`), which brings its own settings; a model alone,
and behind each compatible agent; an agent with its model. An agent's required settings are
given with `--set`: its default where it has one, else the first value it allows, named so the
user can choose another; a setting with neither is named as a placeholder, and that command is
marked as one to complete. A version's marks (deprecated, yanked) are shown with the owner's
message, and a yanked version is not offered.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Command", "SettingArgs", "command_line", "mark_of", "setting_args"]


@dataclass(frozen=True, slots=True)
class SettingArgs:
    """`--set` arguments for an agent's required settings, and what the page says of them."""

    sets: tuple[str, ...] = ()
    # Settings filled with a value the user may want to change, with the values allowed.
    chosen: tuple[str, ...] = ()
    # Settings with no value to fill in: the command has a placeholder for each.
    supply: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Command:
    label: str
    line: str
    complete: bool = True  # False when the user must fill in a placeholder first
    notes: tuple[str, ...] = field(default=())

    def view(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "command": self.line,
            "complete": self.complete,
            "notes": list(self.notes),
        }


def _argument(value: Any) -> str:
    """A setting's value as `--set` reads it back: JSON for what is not a string, and for a
    string that would read as JSON (such as "true"), so that it stays a string."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, separators=(",", ":"))


def setting_args(schema: Any) -> SettingArgs:
    """What an agent's settings schema requires, as `--set KEY=VALUE` arguments."""
    if not isinstance(schema, Mapping):
        return SettingArgs()
    properties = schema.get("properties") or {}
    sets: list[str] = []
    chosen: list[str] = []
    supply: list[str] = []
    for name in schema.get("required") or ():
        prop = properties.get(name) if isinstance(properties, Mapping) else None
        prop = prop if isinstance(prop, Mapping) else {}
        choices = prop.get("enum") or prop.get("examples") or []
        if "default" in prop:
            sets.append(f"{name}={_argument(prop['default'])}")
        elif "const" in prop:
            sets.append(f"{name}={_argument(prop['const'])}")
        elif isinstance(choices, list) and choices:
            sets.append(f"{name}={_argument(choices[0])}")
            allowed = ", ".join(_argument(c) for c in choices)
            chosen.append(f"{name} (one of {allowed})" if prop.get("enum") else name)
        else:
            sets.append(f"{name}={str(name).upper()}")
            supply.append(str(name))
    return SettingArgs(tuple(sets), tuple(chosen), tuple(supply))


def command_line(
    agent: str | None = None,
    model: str | None = None,
    *,
    solution: str | None = None,
    sets: Sequence[str] = (),
) -> str:
    parts = ["formarket", "deploy"]
    if solution is not None:
        parts += ["--solution", solution]
    if agent is not None:
        parts.append(agent)
    if model is not None:
        parts += ["--model", model]
    for item in sets:
        parts += ["--set", item]
    return shlex.join(parts)


def mark_of(data: Mapping[str, Any], version: str) -> tuple[str, str] | None:
    """(status, message) of a version by the listing's marks (`data` is its current
    document, where the owners keep them), or None when it is in good standing."""
    marks = data.get("version_marks") or {}
    mark = marks.get(version) if isinstance(marks, Mapping) else None
    if not isinstance(mark, Mapping):
        return None
    return str(mark.get("status", "")), str(mark.get("message", ""))
