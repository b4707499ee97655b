"""Reading the body GitHub renders from the deployment issue form, strictly.

GitHub writes each field as `### Label`, a blank line and the value (`_No response_` when
left empty). Anything else is refused: a body over GitHub's own limit, text outside the
fields, a field the form does not have or one given twice, a value that does not match its
pattern. Values are data: ids are matched against patterns, settings are read with the safe
YAML loader; nothing is evaluated, so `$(...)` or `${{ }}` is just text that fails a pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from formarket.deploy.values import parse_listing, parse_resources, quote
from formarket.errors import FormarketError, InputError
from formarket.schemas.deployment import GpuRequest, RequestedListing
from formarket.yamldoc import Limits, load_yaml

__all__ = ["FIELDS", "MAX_BODY_BYTES", "FormError", "IssueForm", "parse_issue_body"]

# GitHub's own limit for an issue body, in characters; a longer one did not come from the form.
MAX_BODY_BYTES = 65536
# Label in the form -> field.
FIELDS: dict[str, str] = {
    "agent": "agent",
    "model": "model",
    "solution": "solution",
    "resources": "resources",
    "settings": "settings",
}
_NO_RESPONSE = "_No response_"
_HEADING = re.compile(r"^### (.*)$", re.MULTILINE)
_FENCE = re.compile(r"^```[A-Za-z0-9]*\n(.*?)\n?```$", re.DOTALL)
_SETTINGS_LIMITS = Limits(max_bytes=MAX_BODY_BYTES, max_depth=16, max_nodes=5000)


class FormError(InputError):
    """An issue body that is not a valid deployment request; `reasons` lists every problem."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(
            "; ".join(reasons),
            hint="edit the issue with the deployment form's fields (agent, model, solution,"
            " resources, settings)",
        )
        self.reasons = tuple(reasons)


@dataclass(frozen=True, slots=True)
class IssueForm:
    agent: RequestedListing | None = None
    model: RequestedListing | None = None
    solution: RequestedListing | None = None
    vcpus: int | None = None
    memory_mib: int | None = None
    gpu: GpuRequest | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def _sections(body: str) -> tuple[dict[str, str], list[str]]:
    problems: list[str] = []
    found: dict[str, str] = {}
    headings = list(_HEADING.finditer(body))
    lead = body[: headings[0].start()] if headings else body
    if lead.strip():
        problems.append("the body has text outside the form's fields")
    for index, heading in enumerate(headings):
        end = headings[index + 1].start() if index + 1 < len(headings) else len(body)
        label = heading[1].strip()
        key = FIELDS.get(label.lower())
        if key is None:
            problems.append(
                f"the form has no field {quote(label, 40)} (it has Agent, Model, Solution,"
                " Resources and Settings)"
            )
            continue
        if key in found:
            problems.append(f"the field {label} is given twice")
            continue
        value = body[heading.end() : end].strip()
        found[key] = "" if value == _NO_RESPONSE else value
    return found, problems


def _settings(text: str) -> dict[str, Any]:
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced[1]
    try:
        data = load_yaml(text.encode("utf-8", "surrogatepass"), "settings", _SETTINGS_LIMITS).data
    except FormarketError as exc:
        raise InputError(f"settings cannot be read as YAML or JSON: {exc.message}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError("settings must be a mapping of names to values, such as `language: en`")
    return data


def parse_issue_body(body: str) -> IssueForm:
    """The request an issue body holds; FormError lists everything wrong with it."""
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > MAX_BODY_BYTES:
        raise FormError(
            [f"the body is {size:,} bytes; a deployment request is at most {MAX_BODY_BYTES:,}"]
        )
    body = body.replace("\r\n", "\n")
    sections, problems = _sections(body)
    values: dict[str, Any] = {}
    for key in ("agent", "model", "solution"):
        if sections.get(key):
            try:
                values[key] = parse_listing(sections[key], key)
            except InputError as exc:
                problems.append(exc.message)
    if sections.get("resources"):
        try:
            res = parse_resources(sections["resources"])
            values.update(vcpus=res.vcpus, memory_mib=res.memory_mib, gpu=res.gpu)
        except InputError as exc:
            problems.append(exc.message)
    if sections.get("settings"):
        try:
            values["settings"] = _settings(sections["settings"])
        except InputError as exc:
            problems.append(exc.message)
    if not problems and not any(k in values for k in ("agent", "model", "solution")):
        problems.append("the request names no agent, model or solution")
    if problems:
        raise FormError(problems)
    return IssueForm(**values)
