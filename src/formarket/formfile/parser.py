"""The Formfile parser (docs/formfile.md): text in, a `Formfile` model or every mistake out.

Pure: no I/O, no clock, no randomness; the farm's known bases and GPU models are parameters.

    check_formfile(text)   -> FormfileResult   every error, never raises for bad input
    parse_formfile(text)   -> Formfile         raises LocatedError for the first error
    render_formfile(model) -> str              canonical text that parses back to an equal model
    canonical_json(model)  -> bytes            the deterministic form a build id is made from
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from formarket.errors import LocatedError
from formarket.formfile.codes import FormfileCode
from formarket.formfile.context import (
    Draft,
    LineAbandoned,
    LineContext,
    Settings,
    show,
    suggest,
)
from formarket.formfile.errors import FormfileError, FormfileResult
from formarket.formfile.instructions import INSTRUCTIONS, KEYWORDS, Instruction
from formarket.formfile.lexer import MAX_BYTES, MAX_LINES, LogicalLine, lex, too_large
from formarket.formfile.render import canonical_json, render_formfile
from formarket.schemas.formfile import (
    BASE_PATTERN,
    DEFAULT_BASES,
    DEFAULT_GPUS,
    GPU_MODEL_PATTERN,
    CopyStep,
    Formfile,
    FormfileSourceMap,
    WorkdirStep,
)

__all__ = [
    "DEFAULT_BASES",
    "DEFAULT_GPUS",
    "MAX_BYTES",
    "MAX_LINES",
    "FormfileCode",
    "FormfileError",
    "FormfileResult",
    "canonical_json",
    "check_formfile",
    "parse_formfile",
    "render_formfile",
    "too_large",
]

_KEYWORD = re.compile(r"([^ \t]+)\s*")


def _settings(known_bases: Iterable[str], known_gpus: Iterable[str]) -> Settings:
    return _checked_settings(frozenset(known_bases), frozenset(known_gpus))


# A registry check parses thousands of Formfiles with the same farm configuration.
@functools.cache
def _checked_settings(bases: frozenset[str], gpus: frozenset[str]) -> Settings:
    settings = Settings(bases, gpus)
    # A farm name the model cannot hold would turn a valid Formfile into a crash; refuse it here.
    for names, pattern in ((settings.bases, BASE_PATTERN), (settings.gpus, GPU_MODEL_PATTERN)):
        for name in sorted(names):
            if not re.fullmatch(pattern, name):
                raise ValueError(f"farm configuration: {name!r} does not match {pattern}")
    return settings


class _Reader:
    """Feeds logical lines to their instruction handlers; remembers which came where."""

    def __init__(self, settings: Settings, path: str, errors: list[FormfileError]) -> None:
        self.settings = settings
        self.path = path
        self.errors = errors
        self.draft = Draft()
        self.line_of: list[tuple[str, int]] = []
        self.first_line: dict[str, int] = {}  # of instructions that were read
        self.mentioned: set[str] = set()  # instructions present at all, even if broken

    def read(self, line: LogicalLine) -> None:
        keyword_match = _KEYWORD.match(line.text)
        if keyword_match is None:
            return  # only a dangling `\` was on this line; that is reported already
        keyword = keyword_match.group(1)
        # The arguments start after the blanks that follow the keyword (`\s`: what
        # `str.strip` removes, so a line holding only a keyword has none).
        args_offset = keyword_match.end()
        ctx = LineContext(
            line, keyword, args_offset, self.draft, self.settings, self.path, self.errors
        )
        row = KEYWORDS.get(keyword) or self._miscased(ctx)
        if row is None:
            return
        ctx.keyword = row.keyword
        self.mentioned.add(row.keyword)
        if args_offset == len(line.text):
            ctx.error(
                FormfileCode.MISSING_ARGUMENT,
                f"{row.keyword} needs an argument",
                at=len(keyword),
                hint=f"write `{row.keyword} {row.summary}`",
            )
            return
        if row.once and row.keyword in self.first_line:
            ctx.error(
                FormfileCode.REPEATED_INSTRUCTION,
                f"{row.keyword} is given a second time",
                at=0,
                hint=f"the first is on line {self.first_line[row.keyword]}; keep only one",
            )
            return
        number = line.line
        self.first_line.setdefault(row.keyword, number)
        self.line_of.append((row.keyword, number))
        # try/except rather than `contextlib.suppress`: a context manager per line of every
        # Formfile of a registry was a measurable part of reading them.
        try:
            row.handle(ctx)
        except LineAbandoned:
            return  # its error is recorded already

    def _miscased(self, ctx: LineContext) -> Instruction | None:
        keyword = ctx.keyword
        row = KEYWORDS.get(keyword.upper())
        if row is not None:
            ctx.error(
                FormfileCode.KEYWORD_CASE,
                f"instruction `{keyword}` must be upper case",
                at=0,
                hint=f"write `{keyword.upper()}`",
            )
            return row
        did_you_mean = suggest(keyword, KEYWORDS)
        ctx.error(
            FormfileCode.UNKNOWN_INSTRUCTION,
            f"unknown instruction {show(keyword)}" + (f"; {did_you_mean}" if did_you_mean else ""),
            at=0,
            hint="instructions: " + ", ".join(row.keyword for row in INSTRUCTIONS),
        )
        return None

    def formfile(self) -> tuple[Formfile, FormfileSourceMap]:
        """The model of what was read, which must hold no error.

        Built without validating it again: every value was checked as it was read, against
        the same patterns, ranges and uniqueness rules as the model's (the steps, users and
        GPUs are models, validated when made), and the fields the model derives from the
        steps are derived here the same way. The property tests check that validating the
        result accepts it unchanged. (Validating it again cost about twice as much as this,
        for every Formfile of a registry.)"""
        draft = self.draft
        assert draft.name is not None  # a missing NAME is an error, so no model is built
        steps = tuple(draft.steps)
        values: dict[str, Any] = {
            "name": draft.name,
            "description": draft.description,
            "base": draft.base,
            "vcpus": draft.vcpus,
            "memory_mib": draft.memory_mib,
            "disk_gib": draft.disk_gib,
            "gpus": tuple(draft.gpus),
            "model_required": tuple(draft.model_required),
            "model_preferred": tuple(draft.model_preferred),
            "users": tuple(draft.users),
            "steps": steps,
            "entrypoint": draft.entrypoint,
            "expose": tuple(draft.expose),
            # What `Formfile`'s own derivation fills in from the steps.
            "copies_whole_context": not any(isinstance(step, CopyStep) for step in steps),
        }
        for step in steps:
            if isinstance(step, WorkdirStep):
                values["workdir"] = step.path
        formfile = Formfile.model_construct(set(values), **values)
        source_map = FormfileSourceMap(
            line_of=tuple(self.line_of), step_lines=tuple(draft.step_lines)
        )
        return formfile, source_map


def check_formfile(
    text: str,
    *,
    path: str = "Formfile",
    known_bases: Iterable[str] = DEFAULT_BASES,
    known_gpus: Iterable[str] = DEFAULT_GPUS,
) -> FormfileResult:
    """Parse `text`, collecting every error instead of stopping at the first.

    Raises only ValueError, for a farm configuration the model cannot represent; any text, however
    broken, gives a result.
    """
    settings = _settings(known_bases, known_gpus)
    lines, errors = lex(text, path)
    reader = _Reader(settings, path, errors)
    for line in lines:
        reader.read(line)
    stopped_early = not lines and errors
    if "NAME" not in reader.mentioned and not stopped_early:
        errors.append(
            FormfileError(
                path,
                0,
                0,
                FormfileCode.MISSING_NAME,
                "the Formfile has no NAME",
                hint="add a line such as `NAME my-agent` (lower-case letters, digits, `._-`)",
            )
        )
    if errors:
        ordered = sorted(errors, key=lambda error: (error.line, error.column))
        return FormfileResult(None, None, tuple(ordered))
    formfile, source_map = reader.formfile()
    return FormfileResult(formfile, source_map, ())


def parse_formfile(
    text: str,
    *,
    path: str = "Formfile",
    known_bases: Iterable[str] = DEFAULT_BASES,
    known_gpus: Iterable[str] = DEFAULT_GPUS,
) -> Formfile:
    """Parse `text` into a `Formfile`; raise `LocatedError` for its first error."""
    result = check_formfile(text, path=path, known_bases=known_bases, known_gpus=known_gpus)
    if result.errors:
        first = result.errors[0]
        hint = first.hint
        if len(result.errors) > 1:
            more = f"{len(result.errors) - 1} more error(s); `formarket formfile parse` lists all"
            hint = f"{hint}; {more}" if hint else more
        raise LocatedError(first.location, f"{first.code} {first.message}", hint=hint)
    assert result.formfile is not None
    return result.formfile
