"""`formarket formfile parse`, driven through click's test runner on the command group itself.

Errors that the command raises (a missing file, bytes that are not UTF-8) are printed by the root
CLI; here they surface as `result.exception`, which is what the root catches.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from formarket.commands.formfile import command
from formarket.errors import InputError, LocatedError, NotFoundError
from formarket.formfile.parser import MAX_BYTES

GOOD = """\
NAME research-agent
DESCRIPTION Answers questions with citations
MODEL required:acme/tiny-llm
USER username:agent passwd:"correct horse battery" sudo:true
VCPU 2
MEMORY 2048
COPY ./agent /app
WORKDIR /app
EXPOSE 8000
ENTRYPOINT ["python3", "agent.py"]
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "Formfile"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_good_file_prints_a_summary(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(command, ["parse", str(_write(tmp_path, GOOD))])
    assert result.exit_code == 0, result.output
    assert "research-agent" in result.stdout
    assert "line 4" in result.stdout  # the USER step, with where it came from
    assert "correct horse" not in result.output


def test_good_file_as_json(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(command, ["parse", "--json", str(_write(tmp_path, GOOD))])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "research-agent"
    assert data["users"][0]["username"] == "agent"
    assert data["memory_mib"] == 2048
    assert "correct horse" not in result.output


def test_broken_file_lists_every_error(runner: CliRunner, tmp_path: Path) -> None:
    path = _write(tmp_path, "NAME broken\nMEMROY 1024\nVCPU 500\n")
    result = runner.invoke(command, ["parse", str(path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    located = re.findall(r"^(.+):(\d+):(\d+): (FF\d{3}) ", result.stderr, flags=re.MULTILINE)
    assert [(line, code) for _, line, _, code in located] == [("2", "FF001"), ("3", "FF005")]
    assert all(found == str(path) for found, *_ in located)
    assert "  hint: " in result.stderr


def test_missing_name_is_reported_for_the_whole_file(runner: CliRunner, tmp_path: Path) -> None:
    path = _write(tmp_path, "VCPU 2\n")
    result = runner.invoke(command, ["parse", str(path)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{path}: FF007 ")


def test_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(command, ["parse", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert isinstance(result.exception, NotFoundError)
    assert str(tmp_path / "nope") in str(result.exception)


def test_directory(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(command, ["parse", str(tmp_path)])
    assert result.exit_code == 1
    assert isinstance(result.exception, InputError)


def test_bytes_that_are_not_utf8(runner: CliRunner, tmp_path: Path) -> None:
    path = _write(tmp_path, b"NAME ok\nDESCRIPTION caf\xe9\n")
    result = runner.invoke(command, ["parse", str(path)])
    assert result.exit_code == 1
    assert isinstance(result.exception, LocatedError)
    assert (result.exception.location.line, result.exception.location.column) == (2, 16)


def test_oversized_file_is_not_read_to_the_end(runner: CliRunner, tmp_path: Path) -> None:
    path = _write(tmp_path, b"NAME big\n" + b"#" * (MAX_BYTES + 10))
    result = runner.invoke(command, ["parse", str(path)])
    assert result.exit_code == 1
    assert "FF028" in result.stderr


def test_help_has_an_example(runner: CliRunner) -> None:
    result = runner.invoke(command, ["parse", "--help"])
    assert result.exit_code == 0
    assert "formarket formfile parse" in result.stdout
