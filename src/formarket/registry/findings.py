"""Findings are values: a rule's stable id, a severity, a location, a message and a hint.

Errors block a pull request; warnings advise. Tests assert on rule ids, never on wording.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

__all__ = ["RULES", "Finding", "Rule", "Severity", "finding", "with_lines"]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    severity: Severity
    title: str


# The one table of rules: ids are stable forever; a retired id is never reused.
RULES: dict[str, Rule] = {
    r.code: r
    for r in (
        Rule("REG001", Severity.ERROR, "document does not match its JSON Schema"),
        Rule("REG002", Severity.ERROR, "file cannot be read as YAML data"),
        Rule("REG003", Severity.ERROR, "id does not match the file's path"),
        Rule("REG004", Severity.ERROR, "id is not unique"),
        Rule("REG005", Severity.ERROR, "publisher is not registered"),
        Rule("REG006", Severity.ERROR, "reference does not resolve"),
        Rule("REG007", Severity.ERROR, "agent and model are not compatible"),
        Rule("REG008", Severity.ERROR, "Formfile is missing or does not parse"),
        Rule("REG009", Severity.ERROR, "Formfile disagrees with the listing"),
        Rule("REG010", Severity.ERROR, "README is missing"),
        Rule("REG011", Severity.ERROR, "a published version was rewritten"),
        Rule("REG012", Severity.ERROR, "version does not increase"),
        Rule("REG013", Severity.WARNING, "pricing looks wrong"),
        Rule("REG014", Severity.ERROR, "pricing charges for a metric that is not metered"),
        Rule("REG015", Severity.WARNING, "name is confusingly close to another listing's"),
        Rule("REG016", Severity.ERROR, "change to a publisher the author does not own"),
        Rule("REG017", Severity.ERROR, "change to a path only the bot may write"),
        Rule("REG018", Severity.ERROR, "change to a path only maintainers may write"),
        Rule("REG019", Severity.ERROR, "new publisher does not name its author as owner"),
        Rule("REG020", Severity.ERROR, "file is not where the registry layout allows"),
        Rule("REG021", Severity.WARNING, "license is not a known SPDX identifier"),
        Rule("REG022", Severity.ERROR, "settings schema is not a valid JSON Schema"),
        Rule("REG023", Severity.ERROR, "settings do not match the agent's settings schema"),
        Rule("REG024", Severity.ERROR, "unsafe file in a listing (link, or too large)"),
        Rule("REG025", Severity.WARNING, "Formfile NAME differs from the listing's slug"),
        Rule("REG026", Severity.WARNING, "preferred model does not resolve"),
        Rule("REG027", Severity.ERROR, "governance file is missing or invalid"),
    )
}


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    path: str
    line: int
    column: int
    code: str
    severity: Severity
    message: str
    hint: str = ""
    # Where in the document the finding points (keys and indexes), for rules that work on
    # summaries and learn the line only when the finding is reported: see `with_lines`.
    where: tuple[str | int, ...] = field(default=(), compare=False, repr=False)

    @property
    def location(self) -> str:
        if self.line and self.column:
            return f"{self.path}:{self.line}:{self.column}"
        if self.line:
            return f"{self.path}:{self.line}"
        return self.path

    def to_plain(self) -> tuple[Any, ...]:
        return (
            self.path,
            self.line,
            self.column,
            self.code,
            self.severity.value,
            self.message,
            self.hint,
            self.where,
        )

    @classmethod
    def from_plain(cls, plain: tuple[Any, ...]) -> Finding:
        path, line, column, code, severity, message, hint, where = plain
        return cls(path, line, column, code, Severity(severity), message, hint, tuple(where))

    def to_json(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "hint": self.hint,
        }


def finding(
    code: str,
    path: str,
    message: str,
    *,
    line: int = 0,
    column: int = 0,
    hint: str = "",
    where: tuple[str | int, ...] = (),
) -> Finding:
    """A finding of rule `code`, with the rule's severity."""
    return Finding(path, line, column, code, RULES[code].severity, message, hint, where)


def with_lines(findings: list[Finding], read: Callable[[str], bytes | None]) -> list[Finding]:
    """Fill in the line of findings that know only where in their document they point."""
    from formarket.yamldoc import YamlError, load_yaml

    docs: dict[str, Any] = {}
    out: list[Finding] = []
    for f in findings:
        if f.line or not f.where:
            out.append(f)
            continue
        if f.path not in docs:
            raw = read(f.path)
            try:
                docs[f.path] = load_yaml(raw, f.path) if raw is not None else None
            except YamlError:
                docs[f.path] = None
        doc = docs[f.path]
        if doc is None:
            out.append(f)
            continue
        loc = doc.locate(f.where)
        out.append(replace(f, line=loc.line, column=loc.column))
    return out
