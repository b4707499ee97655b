"""`formarket rules`: every diagnostic code explained, from the one table in `formarket.rules`.

The same table gives docs/rules.md (`--format markdown`), which a test keeps fresh.
"""

from __future__ import annotations

import difflib
import json
import re
import textwrap
from collections.abc import Iterable

import click

from formarket.errors import NotFoundError
from formarket.rules import FAMILIES, RETIRED, RULES, Family, Rule, rules_of

__all__ = ["closest", "command", "render_markdown"]

_WIDTH = 88
_FAMILY = {family.prefix: family for family in FAMILIES}
_REGENERATE = "formarket rules --format markdown > docs/rules.md"


def closest(query: str) -> list[str]:
    """The ids nearest to `query`, best first: the same number written otherwise (REG11 for
    REG011), then ids that are spelled alike."""
    wanted = query.strip().upper()
    out: list[str] = []
    parts = re.fullmatch(r"([A-Z]+)0*([0-9]{1,6})", wanted)
    if parts is not None:
        prefix, number = parts[1], int(parts[2])
        out += [r.id for r in rules_of(prefix) if int(r.id[len(prefix) :]) == number]
    out += difflib.get_close_matches(wanted, list(RULES), n=3, cutoff=0.6)
    return list(dict.fromkeys(out))[:3]


def _lookup(query: str) -> Rule | Family:
    wanted = query.strip().upper()
    if wanted in RULES:
        return RULES[wanted]
    if wanted in _FAMILY:
        return _FAMILY[wanted]
    listing = "`formarket rules` lists every code"
    if wanted in RETIRED:
        raise NotFoundError(f"{wanted} is not a code ({RETIRED[wanted]})", hint=listing)
    near = closest(wanted)
    raise NotFoundError(
        f"{query!r} is not a diagnostic code",
        hint=(f"did you mean {', '.join(near)}? " if near else "") + listing,
    )


def _raised_by(rule: Rule) -> str:
    return rule.raised_by or _FAMILY[rule.family].raised_by


def _rule_json(rule: Rule) -> dict[str, str]:
    return {
        "id": rule.id,
        "family": rule.family,
        "severity": rule.severity.value,
        "title": rule.title,
        "explanation": rule.explanation,
        "example": rule.example,
        "fix": rule.fix,
        "raised_by": _raised_by(rule),
    }


def _families_json(families: Iterable[Family]) -> dict[str, object]:
    return {
        "families": [
            {
                "prefix": family.prefix,
                "title": family.title,
                "raised_by": family.raised_by,
                "severities": family.severities,
                "rules": [_rule_json(rule) for rule in rules_of(family.prefix)],
            }
            for family in families
        ],
        "retired": dict(RETIRED),
    }


def _fill(text: str, indent: str = "") -> str:
    return "\n\n".join(
        textwrap.fill(
            p, _WIDTH, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
        )
        for p in text.split("\n\n")
    )


def _text_list(families: Iterable[Family]) -> str:
    out: list[str] = []
    for family in families:
        out += [
            f"{family.title} ({family.prefix})",
            _fill(f"Raised by {family.raised_by}. {family.severities}", "  "),
            "",
        ]
        out += [
            f"  {rule.id:<7} {rule.severity.value:<10} {rule.title}"
            for rule in rules_of(family.prefix)
        ]
        out.append("")
    out.append("`formarket rules ID` explains a code, with an example and its fix.")
    return "\n".join(out)


def _text_rule(rule: Rule) -> str:
    family = _FAMILY[rule.family]
    return "\n".join(
        [
            f"{rule.id}  {rule.severity.value}  {rule.title}",
            "",
            _fill(f"{family.title}, raised by {_raised_by(rule)}. {family.severities}"),
            "",
            "Why",
            _fill(rule.explanation, "  "),
            "",
            "Breaks it",
            textwrap.indent(rule.example, "    "),
            "",
            "Fix",
            textwrap.indent(rule.fix, "    "),
        ]
    )


def _markdown_rule(rule: Rule) -> str:
    raised = f"Raised by {rule.raised_by}.\n\n" if rule.raised_by else ""
    return (
        f"### {rule.id}\n\n**{rule.title}** · {rule.severity.value}\n\n"
        f"{raised}{rule.explanation}\n\n"
        f"Breaks it:\n\n```\n{rule.example}\n```\n\n"
        f"Fix:\n\n```\n{rule.fix}\n```\n"
    )


def _markdown_family(family: Family) -> str:
    rules = rules_of(family.prefix)
    out = [
        f'<a id="{family.prefix.lower()}"></a>',
        "",
        f"## {family.title} ({family.prefix})",
        "",
        f"Raised by {family.raised_by}. {family.severities}",
        "",
        "| Id | Severity | Title |",
        "|---|---|---|",
    ]
    out += [f"| [{r.id}](#{r.id.lower()}) | {r.severity.value} | {r.title} |" for r in rules]
    out += [f"\n{_markdown_rule(rule).rstrip()}" for rule in rules]
    return "\n".join(out) + "\n"


def render_markdown() -> str:
    """docs/rules.md: every code, each under its own anchor."""
    out = [
        "# Diagnostic codes",
        "",
        f"<!-- Generated from src/formarket/rules.py by `{_REGENERATE}`"
        " (or `make schemas`): edit the table, not this page. -->",
        "",
        "Every problem formarket reports carries a stable id, which tools and tests match on"
        " and which is never given to another problem. `formarket rules ID` prints any of"
        " these explanations in a terminal.",
        "",
        "| Family | Raised by | What it does |",
        "|---|---|---|",
    ]
    out += [
        f"| [{f.prefix}](#{f.prefix.lower()}): {f.title} | {f.raised_by} | {f.severities} |"
        for f in FAMILIES
    ]
    out += [f"\n{_markdown_family(family).rstrip()}" for family in FAMILIES]
    out += ["", "## Ids not in use", "", "These are never given to a code:", ""]
    out += [f"- {ident}: {why}" for ident, why in sorted(RETIRED.items())]
    return "\n".join(out) + "\n"


@click.command("rules")
@click.argument("ident", metavar="[ID]", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="text for people, json for programs, markdown for docs/rules.md.",
)
def command(ident: str | None, fmt: str) -> None:
    """Explain formarket's diagnostic codes: what each means, why it exists, and how to fix
    what breaks it.

    Every problem formarket reports carries a stable id: REG for the registry's rules
    (`formarket validate`, `formarket check`), FF for Formfile errors, USG for usage that a
    royalty close sets aside. Without ID, every code is listed with its severity and title,
    by family; with a family (REG, FF, USG), that family; with a code, in any case, its
    explanation, an example that breaks it and the fix.

    \b
    Severity:  error      blocks: the pull request (REG), the build (FF)
               warning    advises; never blocks
               set-aside  the usage is not counted, and stays in git (USG)
    \b
    Examples:  formarket rules                   every code
               formarket rules reg011            one code, explained
               formarket rules FF --format json  the Formfile codes, for programs
               formarket rules --format markdown > docs/rules.md
    \b
    Exit status: 0; 1 for an id that is not a code (the closest ones are suggested).
    """
    found = _lookup(ident) if ident is not None else None
    if fmt == "markdown":
        if found is None:
            click.echo(render_markdown(), nl=False)
        elif isinstance(found, Rule):
            click.echo(_markdown_rule(found), nl=False)
        else:
            click.echo(_markdown_family(found), nl=False)
    elif fmt == "json":
        document = (
            _rule_json(found)
            if isinstance(found, Rule)
            else _families_json(FAMILIES if found is None else (found,))
        )
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
    elif isinstance(found, Rule):
        click.echo(_text_rule(found))
    else:
        click.echo(_text_list(FAMILIES if found is None else (found,)))
