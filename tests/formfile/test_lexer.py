"""The lexer's quick paths against the plain definitions they stand for."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formarket.formfile.errors import FormfileError
from formarket.formfile.lexer import (
    UnterminatedQuoteError,
    Word,
    _control_errors,
    _physical_lines,
    split_quoted,
)
from formarket.schemas.formfile import forbidden_character

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _split_by_character(text: str, start: int, quotes: str) -> list[Word]:
    """What `split_quoted` means, one character at a time: blanks separate words outside
    quotes, a quote groups up to the next one of its kind, an empty word is dropped."""
    words: list[Word] = []
    current: list[str] = []
    word_start = -1
    quote = ""
    quote_start = 0
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if char == quote:
                quote = ""
            else:
                current.append(char)
            continue
        if char in " \t":
            if current:
                words.append(Word("".join(current), word_start))
            current = []
            word_start = -1
            continue
        if word_start < 0:
            word_start = index
        if char in quotes:
            quote = char
            quote_start = index
        else:
            current.append(char)
    if quote:
        raise UnterminatedQuoteError(quote_start)
    if current:
        words.append(Word("".join(current), word_start))
    return words


Split = Callable[[str, int, str], list[Word]]


def _outcome(split: Split, text: str, start: int, quotes: str) -> object:
    try:
        return split(text, start, quotes)
    except UnterminatedQuoteError as exc:
        return ("unterminated", exc.offset)


_QUOTY = st.text(st.sampled_from(list(" \t\"'ab=\\\u00a0é")), max_size=16)


@PROPERTY
@given(_QUOTY, st.data(), st.sampled_from(["\"'", '"', "'"]))
def test_split_quoted_is_the_character_by_character_definition(
    text: str, data: st.DataObject, quotes: str
) -> None:
    start = data.draw(st.integers(0, len(text)))
    expected = _outcome(_split_by_character, text, start, quotes)
    assert _outcome(split_quoted, text, start, quotes) == expected


def _control_errors_by_line(lines: list[str]) -> list[tuple[int, int]]:
    found = []
    for number, line in enumerate(lines, 1):
        index = forbidden_character(line)
        if index is not None:
            found.append((number, index + 1))
    return found


_LINES = st.text(
    st.one_of(
        st.sampled_from(list("ab \t\n\r\x00\x1f\x7f\u2028\u202e\ufeff")),
        st.characters(),
    ),
    max_size=40,
)


@PROPERTY
@given(_LINES)
def test_control_characters_are_found_on_every_line(text: str) -> None:
    lines = _physical_lines(text)
    errors: list[FormfileError] = _control_errors(text, lines, "Formfile")
    assert [(e.line, e.column) for e in errors] == _control_errors_by_line(lines)
