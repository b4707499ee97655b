"""Broken Formfiles give the documented codes at the right lines, and nothing else escapes.

Each file in tests/corpus/formfile/ starts with `# expect: FFnnn@LINE ...`: the exact errors, in
order (line 0 is the whole file). Tests compare codes and lines, never message wording.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from formarket.errors import LocatedError
from formarket.formfile.parser import (
    MAX_BYTES,
    MAX_LINES,
    FormfileCode,
    check_formfile,
    parse_formfile,
)

CORPUS = Path(__file__).parent.parent / "corpus" / "formfile"
CASES = sorted(CORPUS.glob("*.Formfile"))


def _expected(text: str) -> list[tuple[str, int]]:
    header = text.splitlines()[0]
    assert header.startswith("# expect: "), "each corpus file starts with its expectations"
    pairs = [item.split("@") for item in header.removeprefix("# expect: ").split()]
    return [(code, int(line)) for code, line in pairs]


def test_corpus_is_large_enough_and_covers_every_code() -> None:
    assert len(CASES) >= 20
    seen = {code for case in CASES for code, _ in _expected(case.read_text(encoding="utf-8"))}
    assert seen == {code.value for code in FormfileCode}


@pytest.mark.parametrize("case", CASES, ids=[case.stem for case in CASES])
def test_corpus_case(case: Path) -> None:
    text = case.read_text(encoding="utf-8")
    path = str(case)
    result = check_formfile(text, path=path)
    assert result.formfile is None
    assert result.source_map is None
    assert [(error.code, error.line) for error in result.errors] == _expected(text)
    assert all(error.path == path and error.message for error in result.errors)
    with pytest.raises(LocatedError) as raised:
        parse_formfile(text, path=path)
    first = result.errors[0]
    assert raised.value.location == first.location
    assert raised.value.message.startswith(first.code)


def test_columns_point_at_the_mistake() -> None:
    text = "NAME cols\nCOPY ./ok ../../etc/passwd\n  VCPU 1000\nINSTALL curl Bad_Pkg\n"
    errors = check_formfile(text).errors
    assert [(e.code, e.line, e.column) for e in errors] == [
        (FormfileCode.BAD_COPY_DESTINATION, 2, 11),
        (FormfileCode.OUT_OF_RANGE, 3, 8),
        (FormfileCode.BAD_PACKAGE, 4, 14),
    ]


def test_errors_inside_a_continuation_name_the_physical_line() -> None:
    text = "NAME cont\nUSER username:agent \\\n     passwd:x \\\n     sudo:perhaps\n"
    (error,) = check_formfile(text).errors
    assert (error.code, error.line, error.column) == (FormfileCode.BAD_BOOLEAN, 4, 6)


def test_did_you_mean_names_the_instruction() -> None:
    (error,) = check_formfile("NAME typo\nMEMROY 1024\n").errors
    assert error.code == FormfileCode.UNKNOWN_INSTRUCTION
    assert "`MEMORY`" in error.message


def test_unknown_base_hint_lists_the_known_bases() -> None:
    (error,) = check_formfile("NAME b\nFROM alpine\n", known_bases={"busybox", "x:1"}).errors
    assert "busybox" in error.hint
    assert "x:1" in error.hint


def test_passwords_never_appear_in_errors() -> None:
    text = (
        "NAME p\n"
        "USER username:Bad passwd:hunter2-secret sudo:perhaps shell:bin/sh\n"
        "USER username:b hunter2-secret\n"
    )
    errors = check_formfile(text).errors
    assert len(errors) == 5
    assert all("hunter2" not in str(error) for error in errors)


def test_file_over_the_byte_limit() -> None:
    text = "NAME big\n" + "# padding\n" * (2 * 1024 * 1024 // 10)
    assert len(text.encode()) > MAX_BYTES
    (error,) = check_formfile(text).errors
    assert (error.code, error.line) == (FormfileCode.TOO_LARGE, 0)


def test_multibyte_text_is_measured_in_bytes() -> None:
    text = "NAME big\nDESCRIPTION " + "é" * (MAX_BYTES // 2) + "\n"
    assert len(text) < MAX_BYTES < len(text.encode())
    assert [e.code for e in check_formfile(text).errors] == [FormfileCode.TOO_LARGE]


def test_file_over_the_line_limit() -> None:
    text = "NAME long\n" + "\n" * MAX_LINES
    assert [e.code for e in check_formfile(text).errors] == [FormfileCode.TOO_LARGE]


def test_deeply_nested_json_entrypoint() -> None:
    text = "NAME deep\nENTRYPOINT " + "[" * 100_000 + "\n"
    assert [e.code for e in check_formfile(text).errors] == [FormfileCode.BAD_ENTRYPOINT]


def test_huge_unknown_keyword_is_cut_short() -> None:
    (error,) = check_formfile("NAME k\n" + "X" * 500_000 + " 1\n").errors
    assert error.code == FormfileCode.UNKNOWN_INSTRUCTION
    assert len(str(error)) < 1000


def test_empty_text_misses_only_the_name() -> None:
    assert [e.code for e in check_formfile("").errors] == [FormfileCode.MISSING_NAME]


def test_unknown_farm_configuration_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="farm configuration"):
        check_formfile("NAME x\n", known_gpus={"has space"})
