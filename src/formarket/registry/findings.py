"""Findings are values: a rule's stable id, a severity, a location, a message and a hint.

Errors block a pull request; warnings advise. Tests assert on rule ids, never on wording. The
rules themselves (severity, title, why, an example and its fix) are in `formarket.rules`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from formarket.rules import Rule, Severity, rules_of

__all__ = ["RULES", "Finding", "Rule", "Severity", "finding", "with_lines"]


# The registry's rules: the REG rows of the one table of codes, by id.
RULES: dict[str, Rule] = {rule.id: rule for rule in rules_of("REG")}


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
    from formarket.yamldoc import YamlError, load_yaml  # start-up: only to locate findings

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
