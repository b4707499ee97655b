"""A value that fits none of the forms a field allows, said in the terms of the document.

The JSON Schema says "0.1 is not valid under any of the schemas listed in the 'anyOf'
keyword"; the publisher wrote a price without quotes. Money and shares are quoted decimals (a
float's rounding would change what is charged) that also accept a whole number, so such a field
is an `anyOf` of a patterned string and a bounded integer: its message names the range and, for
a bare number, shows the value quoted.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["describe", "explain_choice", "explain_pattern", "fitting_branch"]

# What a version looks like, said once: its pattern is too long to show a publisher.
_SEMVER_START = "^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)"
_SEMVER_HINT = "a version is MAJOR.MINOR.PATCH, such as 1.0.0, or a pre-release such as 2.0.0-rc.1"

_TYPES = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing (null)",
    "array": "a list",
    "object": "a mapping of fields",
}


def _branches(root: dict[str, Any], node: Any) -> list[dict[str, Any]]:
    found = (node.get("anyOf") or node.get("oneOf") or []) if isinstance(node, dict) else []
    out: list[dict[str, Any]] = []
    for branch in found:
        if isinstance(branch, dict) and isinstance(branch.get("$ref"), str):
            target: Any = root
            for part in branch["$ref"].removeprefix("#/").split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            branch = target
        if (
            isinstance(branch, dict)
            and "type" not in branch
            and ("anyOf" in branch or "oneOf" in branch)
        ):
            out.extend(_branches(root, branch))  # Optional[Decimal]: a choice in a choice
        elif isinstance(branch, dict):
            out.append(branch)
    return out


def _is_decimal(branches: list[dict[str, Any]]) -> bool:
    """A quoted decimal that also takes a whole number: money, shares."""
    return any(b.get("type") == "string" and "pattern" in b for b in branches) and any(
        b.get("type") in ("integer", "number") for b in branches
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def fitting_branch(root: dict[str, Any], node: Any, instance: Any) -> dict[str, Any] | None:
    """The one form of a choice that a value's type fits (the mapping of an optional
    mapping, the text of an optional text), whose own errors then say what is wrong; None
    when no single one does, or for a decimal, which `explain_choice` words better."""
    branches = _branches(root, node)
    if _is_decimal(branches):
        return None
    kind = _json_type(instance)
    fits = [
        b
        for b in branches
        if b.get("type") == kind or (kind == "integer" and b.get("type") == "number")
    ]
    if len(fits) != 1:
        return None
    return {"$defs": root.get("$defs", {}), **fits[0]}


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def describe(branch: dict[str, Any]) -> str:
    """One form a value may take, in words."""
    if "const" in branch:
        return _shown(branch["const"])
    if isinstance(branch.get("enum"), list):
        return "one of " + ", ".join(_shown(v) for v in branch["enum"])
    kind = branch.get("type")
    text = _TYPES.get(kind, "a value") if isinstance(kind, str) else "a value"
    if isinstance(branch.get("title"), str) and kind == "object":
        text = f"a {branch['title']} mapping"
    low, high = branch.get("minimum"), branch.get("maximum")
    if low is not None and high is not None:
        text += f" from {low} to {high}"
    elif low is not None:
        text += f" of at least {low}"
    elif high is not None:
        text += f" of at most {high}"
    if kind == "string" and "pattern" in branch:
        text += " in the field's format"
    return text


def _quoted(value: float) -> str:
    """The number as the quoted decimal it should have been: at least two decimals, since
    most are prices (0.1 -> "0.10")."""
    exact = Decimal(repr(value))
    exponent = exact.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -1 and abs(exact) < 10**12:
        exact = exact.quantize(Decimal("0.01"))
    return f'"{exact}"'


def explain_choice(
    root: dict[str, Any], node: Any, instance: Any, where: tuple[str | int, ...]
) -> tuple[str, str, tuple[str | int, ...]]:
    """(message, hint, where) for `instance`, which fits none of `node`'s forms."""
    tag = node.get("discriminator") if isinstance(node, dict) else None
    if isinstance(tag, dict) and isinstance(tag.get("propertyName"), str):
        name = tag["propertyName"]
        known = ", ".join(sorted(tag.get("mapping", {})))
        if isinstance(instance, dict):
            given = instance.get(name)
            said = f"{_shown(given)} is not one" if name in instance else "is missing"
            return (
                f"{name} {said} of {known}",
                f"`{name}` says which kind this is; each kind takes its own fields",
                (*where, name),
            )
        hint = f"write it as fields, with {name}: ..."
        return f"{_shown(instance)} is not a mapping", hint, where
    branches = _branches(root, node)
    numbers = [b for b in branches if b.get("type") in ("integer", "number")]
    if _is_decimal(branches):
        low, high = numbers[0].get("minimum"), numbers[0].get("maximum")
        bounds = (
            f"between {low} and {high}"
            if low is not None and high is not None
            else f"at least {low}"
            if low is not None
            else "a plain decimal"
        )
        if isinstance(instance, float) and math.isfinite(instance):
            return (
                f"{instance} is a number, and this field is a decimal in quotes",
                f"quote it: {_quoted(instance)} (a number's binary rounding would change"
                " what is charged)",
                where,
            )
        try:
            value = Decimal(str(instance)) if isinstance(instance, str | int) else None
        except InvalidOperation:
            value = None
        if isinstance(instance, bool) or value is None or not value.is_finite():
            return (
                f"{_shown(instance)} is not a decimal {bounds}",
                'write a quoted decimal, such as "0.10"',
                where,
            )
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{_shown(instance)} is not {bounds}", f"the value must lie {bounds}", where
        return (
            f"{_shown(instance)} is not written as a plain decimal {bounds}",
            'write digits with a point and few decimals, quoted, such as "12.5"',
            where,
        )
    forms = " or ".join(dict.fromkeys(describe(b) for b in branches)) or "a value it allows"
    return f"{_shown(instance)} is not {forms}", "", where


def explain_pattern(node: Any, instance: Any) -> tuple[str, str]:
    """(message, hint) for text that breaks its field's pattern: the field's own description
    says the form, never the regular expression."""
    node = node if isinstance(node, dict) else {}
    pattern = node.get("pattern")
    if isinstance(pattern, str) and pattern.startswith(_SEMVER_START):
        hint = _SEMVER_HINT
    else:
        description = node.get("description")
        hint = description if isinstance(description, str) else ""
    return f"{_shown(instance)} is not in the form this field takes", hint
