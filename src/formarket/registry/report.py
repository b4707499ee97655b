"""Printing findings for people (text), programs (json) and GitHub Actions (annotations)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from formarket.registry.findings import Finding, Severity

__all__ = ["FORMATS", "render_findings"]

FORMATS = ("text", "json", "github")


def _github_escape(text: str, *, property_value: bool = False) -> str:
    # GitHub's workflow-command escaping; a message must not be able to start a new command.
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_value:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render_findings(
    findings: Sequence[Finding], fmt: str, *, summary: str, extra: dict[str, object] | None = None
) -> str:
    errors = sum(f.severity is Severity.ERROR for f in findings)
    warnings = len(findings) - errors
    if fmt == "json":
        document = {
            "ok": errors == 0,
            "errors": errors,
            "warnings": warnings,
            "findings": [f.to_json() for f in findings],
            **(extra or {}),
        }
        return json.dumps(document, indent=2, ensure_ascii=False)
    lines: list[str] = []
    for f in findings:
        if fmt == "github":
            level = "error" if f.severity is Severity.ERROR else "warning"
            props = [f"file={_github_escape(f.path, property_value=True)}"]
            if f.line:
                props.append(f"line={f.line}")
            if f.column:
                props.append(f"col={f.column}")
            props.append(f"title={f.code}")
            message = f.message + (f" (hint: {f.hint})" if f.hint else "")
            lines.append(f"::{level} {','.join(props)}::{_github_escape(message)}")
        else:
            lines.append(f"{f.location}: {f.severity.value} {f.code}: {f.message}")
            if f.hint:
                lines.append(f"  hint: {f.hint}")
    lines.append(f"{summary}: {errors} error(s), {warnings} warning(s)")
    return "\n".join(lines)
