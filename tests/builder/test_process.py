"""The one module that starts processes: timeouts, clear errors, secrets kept out of logs."""

from __future__ import annotations

import time

import pytest

from formarket.process import ProcessError, Runner


def test_a_command_runs_with_its_input_and_output_logged() -> None:
    lines: list[str] = []
    done = Runner(lines.append).run(["cat"], input=b"hello\n")
    assert done.stdout == "hello\n"
    assert done.returncode == 0
    assert lines[0] == "$ cat"
    assert "  hello" in lines


def test_a_failure_names_the_command_its_status_and_the_tail_of_stderr() -> None:
    with pytest.raises(ProcessError) as caught:
        Runner().run(["sh", "-c", "echo first >&2; echo 'last words' >&2; exit 3"])
    message = str(caught.value)
    assert "sh -c" in message
    assert "status 3" in message
    assert "last words" in message


def test_a_missing_program_says_so() -> None:
    with pytest.raises(ProcessError, match="could not be started"):
        Runner().run(["formarket-no-such-program"])


def test_a_timeout_kills_the_whole_process_group() -> None:
    started = time.perf_counter()
    with pytest.raises(ProcessError, match="timed out"):
        Runner().run(["sh", "-c", "sleep 30 & sleep 30"], timeout=0.5)
    assert time.perf_counter() - started < 5


def test_quiet_keeps_output_out_of_the_log_and_the_error() -> None:
    lines: list[str] = []
    with pytest.raises(ProcessError) as caught:
        Runner(lines.append).run(["sh", "-c", "cat; exit 1"], input=b"SECRET", quiet=True)
    assert "SECRET" not in "\n".join(lines)
    assert "SECRET" not in str(caught.value)


def test_a_started_process_is_stopped() -> None:
    with Runner().start(["sleep", "30"]) as proc:
        assert proc.poll() is None
    assert proc.poll() is not None
