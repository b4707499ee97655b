"""The state of one parse: the draft being filled in and the line being read.

Handlers of instructions receive a `LineContext`; they report mistakes through it (`error` keeps
going, `fail` abandons the rest of the line) and write what they understood into the `Draft`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NoReturn

from formarket.formfile.codes import FormfileCode
from formarket.formfile.errors import FormfileError
from formarket.formfile.lexer import (
    LogicalLine,
    UnterminatedQuoteError,
    Word,
    split_plain,
    split_quoted,
)
from formarket.schemas.formfile import FormfileUser, GpuRequest, Step

__all__ = ["Draft", "LineAbandoned", "LineContext", "Settings", "show", "suggest"]

_NUMBER = re.compile(r"\+?[0-9]+")
_MAX_DIGITS = 12  # beyond any limit, and short enough that int() stays cheap
_SHOWN = 40


def show(text: str) -> str:
    """`text` for a message: backticked and cut short, so hostile input cannot flood the output."""
    cut = text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"
    return f"`{cut}`"


def suggest(word: str, choices: Iterable[str]) -> str:
    """A "did you mean" phrase for `word`, or ""."""
    if len(word) > _SHOWN:
        return ""
    options = sorted(choices)
    upper = {option.upper(): option for option in options}
    if word.upper() in upper:
        return f"did you mean `{upper[word.upper()]}`?"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(word.upper(), options, n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else ""


@dataclass(frozen=True, slots=True)
class Settings:
    """The farm's configuration that the parser checks against."""

    bases: frozenset[str]
    gpus: frozenset[str]


@dataclass(slots=True)
class Draft:
    """What the instructions read so far say; becomes a `Formfile` when there are no errors."""

    name: str | None = None
    description: str | None = None
    base: str | None = None
    vcpus: int = 1
    memory_mib: int = 512
    disk_gib: int | None = None
    gpus: list[GpuRequest] = field(default_factory=list)
    model_required: list[str] = field(default_factory=list)
    model_preferred: list[str] = field(default_factory=list)
    users: list[FormfileUser] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    step_lines: list[int] = field(default_factory=list)
    entrypoint: tuple[str, ...] | None = None
    expose: list[int] = field(default_factory=list)
    # Values that must be unique across lines, with the line they first appeared on.
    seen_values: dict[tuple[str, str], int] = field(default_factory=dict)

    def add_step(self, step: Step, line: int) -> None:
        self.steps.append(step)
        self.step_lines.append(line)


class LineAbandoned(Exception):
    """The rest of the line cannot be understood; its error is already recorded."""


class LineContext:
    """One logical line being handled: its arguments, and where to report what is wrong."""

    __slots__ = ("_errors", "_path", "args_offset", "draft", "keyword", "line", "settings")

    def __init__(
        self,
        line: LogicalLine,
        keyword: str,
        args_offset: int,
        draft: Draft,
        settings: Settings,
        path: str,
        errors: list[FormfileError],
    ) -> None:
        self.line = line
        self.keyword = keyword
        self.args_offset = args_offset
        self.draft = draft
        self.settings = settings
        self._path = path
        self._errors = errors

    @property
    def args(self) -> str:
        return self.line.text[self.args_offset :]

    @property
    def number(self) -> int:
        return self.line.line

    def error(
        self, code: FormfileCode, message: str, *, at: int | None = None, hint: str = ""
    ) -> None:
        line, column = self.line.position(self.args_offset if at is None else at)
        self._errors.append(FormfileError(self._path, line, column, code, message, hint))

    def fail(
        self, code: FormfileCode, message: str, *, at: int | None = None, hint: str = ""
    ) -> NoReturn:
        self.error(code, message, at=at, hint=hint)
        raise LineAbandoned

    def words(self, quotes: str = "\"'") -> list[Word]:
        try:
            return split_quoted(self.line.text, self.args_offset, quotes)
        except UnterminatedQuoteError as exc:
            self.fail(
                FormfileCode.UNTERMINATED_QUOTE,
                f"{self.keyword}: a quote is opened here and never closed",
                at=exc.offset,
                hint="close the quote on the same instruction (use `\\` to continue a line)",
            )

    def plain_words(self) -> list[Word]:
        return split_plain(self.line.text, self.args_offset)

    def one_word(self, what: str) -> Word:
        args = self.args
        if " " not in args and "\t" not in args:
            # The arguments of a logical line are stripped and not empty: one word, as most
            # lines with one argument are.
            return Word(args, self.args_offset)
        words = self.plain_words()
        if len(words) != 1:
            self.fail(
                FormfileCode.WRONG_ARGUMENT_COUNT,
                f"{self.keyword} takes one {what}, got {len(words)} words",
                at=words[1].offset if len(words) > 1 else None,
                hint=f"write `{self.keyword} <{what}>` on its own line",
            )
        return words[0]

    def number_in(self, text: str, at: int, low: int, high: int, unit: str) -> int | None:
        """`text` (found at offset `at`) as an integer in [low, high], or None after reporting."""
        if not _NUMBER.fullmatch(text):
            self.error(
                FormfileCode.BAD_NUMBER,
                f"{self.keyword}: {show(text)} is not a whole number",
                at=at,
                hint=f"write a plain number of {unit} from {low} to {high}, without a unit suffix",
            )
            return None
        digits = text.lstrip("+").lstrip("0") or "0"
        value = int(digits) if len(digits) <= _MAX_DIGITS else high + 1
        if not low <= value <= high:
            self.error(
                FormfileCode.OUT_OF_RANGE,
                f"{self.keyword}: {show(text)} is out of range",
                at=at,
                hint=f"{self.keyword} takes {low} to {high} {unit}",
            )
            return None
        return value

    def unique(self, kind: str, value: str, at: int) -> bool:
        """Record `value` of `kind`; False (after reporting) when it was already given."""
        key = (kind, value)
        first = self.draft.seen_values.get(key)
        if first is None:
            self.draft.seen_values[key] = self.number
            return True
        self.error(
            FormfileCode.DUPLICATE_VALUE,
            f"{self.keyword}: the {kind} {show(value)} is given twice",
            at=at,
            hint=f"it was first given on line {first}; give each {kind} once",
        )
        return False
