"""From Formfile text to logical instruction lines, and from arguments to words.

A logical line is one instruction after `\\` continuations are joined. It remembers where each of
its pieces came from, so an error found anywhere in it still names the right physical line and
column.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from formarket.formfile.codes import FormfileCode
from formarket.formfile.errors import FormfileError
from formarket.schemas.formfile import forbidden_character

__all__ = [
    "MAX_BYTES",
    "MAX_LINES",
    "LogicalLine",
    "UnterminatedQuoteError",
    "Word",
    "lex",
    "split_plain",
    "split_quoted",
    "too_large",
]

# Real Formfiles are a few dozen lines; the limits only keep hostile input cheap to reject.
MAX_BYTES = 1024 * 1024
MAX_LINES = 10_000

_BOM = "\ufeff"
_PLAIN_WORD = re.compile(r"[^ \t]+")


# Where a piece of a logical line comes from: where it starts in the logical text, its line,
# and the 1-based column of its first character there.
_Piece = tuple[int, int, int]

# Pieces, lines and words are tuples rather than frozen dataclasses: several of each are made
# for every Formfile of a registry, and a tuple is made in a fraction of the time.


class LogicalLine(NamedTuple):
    """One instruction's text (stripped, continuations joined) with its source positions."""

    text: str
    pieces: tuple[_Piece, ...]

    @property
    def line(self) -> int:
        return self.pieces[0][1]

    def position(self, offset: int) -> tuple[int, int]:
        """The physical (line, column) of the character at `offset` in `text`."""
        start, line, column = self.pieces[0]
        for candidate in self.pieces:
            if candidate[0] > offset:
                break
            start, line, column = candidate
        return line, column + offset - start


class Word(NamedTuple):
    """A word of an instruction's arguments, quotes removed, and where it starts in the line."""

    value: str
    offset: int


class UnterminatedQuoteError(Exception):
    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


def too_large(path: str, what: str) -> FormfileError:
    """The error for input over the limits; shared with callers that stop reading early."""
    return FormfileError(
        path,
        0,
        0,
        FormfileCode.TOO_LARGE,
        f"the file is too large ({what}); a Formfile may have at most "
        f"{MAX_BYTES} bytes and {MAX_LINES} lines",
        hint="put data in the build context and COPY it; keep the Formfile a short recipe",
    )


def _continues(text: str) -> bool:
    # "A line ending in a single `\`": a doubled backslash at the end is literal text.
    return text.endswith("\\") and not text.endswith("\\\\")


def _size_error(text: str, path: str) -> FormfileError | None:
    if len(text) > MAX_BYTES:
        return too_large(path, f"over {MAX_BYTES} characters")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        return too_large(path, f"{size} bytes")
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    if lines > MAX_LINES:
        return too_large(path, f"{lines} lines")
    return None


def _physical_lines(text: str) -> list[str]:
    text = text.removeprefix(_BOM)
    # Only `\n` ends a line (as in Formation); `str.splitlines` would also split on characters
    # such as U+2028 that the control-character check must see instead.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _control_errors(text: str, lines: list[str], path: str) -> list[FormfileError]:
    # One search of the whole text finds that there is nothing to report, the common case;
    # `\r` may end a line, so a text holding one is looked at line by line.
    if "\r" not in text and forbidden_character(text.replace("\n", " ")) is None:
        return []
    errors = []
    for number, line in enumerate(lines, 1):
        index = forbidden_character(line)
        if index is not None:
            errors.append(
                FormfileError(
                    path,
                    number,
                    index + 1,
                    FormfileCode.CONTROL_CHARACTER,
                    f"the control character U+{ord(line[index]):04X} is not allowed",
                    hint="a Formfile is plain UTF-8 text; remove the character or check the "
                    "file is not binary",
                )
            )
    return errors


def lex(text: str, path: str) -> tuple[list[LogicalLine], list[FormfileError]]:
    """Split `text` into logical lines; stop early on oversized or non-text input."""
    size = _size_error(text, path)
    if size is not None:
        return [], [size]
    lines = _physical_lines(text)
    # Control characters mean the input is not a text recipe; checking it further adds only noise.
    control = _control_errors(text, lines, path)
    if control:
        return [], control
    return _join(lines, path)


def _join(lines: list[str], path: str) -> tuple[list[LogicalLine], list[FormfileError]]:
    logical: list[LogicalLine] = []
    errors: list[FormfileError] = []
    parts: list[str] = []
    pieces: list[_Piece] = []
    length = 0  # of the joined parts so far
    backslash = (0, 0)  # where the pending continuation's `\` is

    def flush() -> None:
        nonlocal length
        length = 0
        text = "".join(parts).rstrip()
        # Only a dangling continuation can leave a trailing `\` here (`a\ \` at the end of the
        # file); it is reported already, and is dropped so every logical line is valid raw text.
        while _continues(text):
            text = text[:-1].rstrip()
        logical.append(LogicalLine(text, tuple(pieces)))
        parts.clear()
        pieces.clear()

    def dangling(reason: str) -> None:
        errors.append(
            FormfileError(
                path,
                backslash[0],
                backslash[1],
                FormfileCode.DANGLING_CONTINUATION,
                f"the line ends with `\\` but {reason}",
                hint="remove the trailing `\\` or put the rest of the instruction on the next line",
            )
        )

    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if pieces and not stripped:
            dangling(f"line {number} is blank")
            flush()
            continue
        if not stripped or stripped.startswith("#"):
            # A comment inside a continuation is skipped, as Docker does, so long RUN lines can
            # be annotated.
            continue
        if pieces:
            body = raw.rstrip()
            column = 1
        else:
            body = stripped
            column = len(raw) - len(raw.lstrip()) + 1 if raw[0].isspace() else 1
            if body[-1] != "\\" or not _continues(body):
                # A whole instruction on one line, as most are: what `flush` would make of it.
                logical.append(LogicalLine(body, ((0, number, column),)))
                continue
        pieces.append((length, number, column))
        continued = _continues(body)
        if continued:
            backslash = (number, column + len(body) - 1)
            body = body[:-1]
        parts.append(body)
        length += len(body)
        if not continued:
            flush()
    if pieces:
        dangling("the file ends there")
        flush()
    return logical, errors


def split_plain(text: str, start: int) -> list[Word]:
    """Words separated by spaces or tabs; quotes are ordinary characters."""
    return [Word(m.group(), m.start()) for m in _PLAIN_WORD.finditer(text, start)]


@functools.cache
def _quoted_patterns(quotes: str) -> tuple[re.Pattern[str], re.Pattern[str], str]:
    """For `split_quoted`: a word (runs of other characters and closed quotes, each quote
    literal inside the other) or else the one character it cannot start with, a quote never
    closed; a quoted part of a word; and what replaces that part (its contents). Patterns,
    not a loop over the characters, take half the time: the ENV lines of every Formfile of
    a registry pass here."""
    parts = [f"{re.escape(q)}([^{re.escape(q)}]*){re.escape(q)}" for q in quotes]
    others = "".join(re.escape(q) for q in quotes)
    token = re.compile(f"((?:[^ \\t{others}]+|" + "|".join(parts) + ")+)|([^ \\t])")
    unquote = "".join(f"\\{i}" for i in range(1, len(quotes) + 1))
    return token, re.compile("|".join(parts)), unquote


def split_quoted(text: str, start: int, quotes: str = "\"'") -> list[Word]:
    """Words separated by spaces or tabs; `quotes` group text and may start mid-word.

    Inside one kind of quote the other is literal; there are no backslash escapes (Formation
    has none). An empty word (`""`) is dropped, as Formation drops it.
    """
    if not any(quote in text for quote in quotes):
        return split_plain(text, start)
    token, quoted, unquote = _quoted_patterns(quotes)
    words: list[Word] = []
    for match in token.finditer(text, start):
        value = match.group(1)
        if value is None:
            raise UnterminatedQuoteError(match.start())
        present = [quote for quote in quotes if quote in value]
        if len(present) == 1:
            # Quotes of one kind only: each opens or closes, none is inside another kind.
            value = value.replace(present[0], "")
        elif present:
            value = quoted.sub(unquote, value)
        if value:
            words.append(Word(value, match.start()))
    return words
