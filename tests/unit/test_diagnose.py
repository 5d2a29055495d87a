"""report.diagnose, in-process: the line that says why a job failed, its last output lines, the
interpreter hint for an import error, and the `logs` command that shows the rest."""

from __future__ import annotations

import shlex

from aimedres_async.records.framing import ATTEMPT_MARK
from aimedres_async.report.diagnose import error_line, error_tail, failure_fields, is_import_error, logs_hint

TRACEBACK = b'Traceback (most recent call last):\n  File "train.py", line 3, in <module>\nValueError: bad label 7\n'


def test_error_line_is_the_last_non_empty_stderr_line() -> None:
    tail = [("stdout", b"epoch 1\n"), ("stderr", TRACEBACK + b"\n   \n"), ("stdout", b"cleanup done\n")]
    assert error_line(tail) == "ValueError: bad label 7"


def test_error_line_ignores_stdout() -> None:
    assert error_line([("stdout", b"Error: this is stdout\n")]) is None
    assert error_line([]) is None


def test_error_line_is_the_latest_attempts_only() -> None:
    tail = [(ATTEMPT_MARK, b"1"), ("stderr", TRACEBACK), (ATTEMPT_MARK, b"2"), ("stdout", b"ok so far\n")]
    assert error_line(tail) is None  # attempt 2 wrote nothing to stderr
    assert error_line([*tail, ("stderr", b"KeyError: 'x'\n")]) == "KeyError: 'x'"


def test_error_line_splits_at_every_line_end_and_strips() -> None:
    assert error_line([("stderr", b"first\r\n  second  \rthird\r")]) == "third"
    assert error_line([("stderr", b"first\r\n  second  \n")]) == "second"


def test_error_line_keeps_undecodable_bytes_visible_and_is_bounded() -> None:
    assert error_line([("stderr", b"bad byte \xff here\n")]) == "bad byte \\xff here"
    assert len(error_line([("stderr", b"x" * 5000 + b"\n")]) or "") == 1000


def test_error_tail_is_the_last_lines_of_both_streams_of_the_latest_attempt() -> None:
    tail = [
        (ATTEMPT_MARK, b"1"),
        ("stderr", b"old error\n"),
        (ATTEMPT_MARK, b"2"),
        ("stdout", b"a\n\nb\n"),
        ("stderr", b"c\r\nd\n"),
    ]
    assert error_tail(tail) == ["a", "b", "c", "d"]
    assert error_tail(tail, n=2) == ["c", "d"]


def test_error_tail_default_is_twenty_lines() -> None:
    tail = [("stdout", b"".join(b"line %d\n" % i for i in range(100)))]
    lines = error_tail(tail)
    assert len(lines) == 20 and lines[0] == "line 80" and lines[-1] == "line 99"


def test_import_errors_are_recognised() -> None:
    assert is_import_error("ModuleNotFoundError: No module named 'torch'")
    assert is_import_error("ImportError: cannot import name 'x' from 'y'")
    assert not is_import_error("ValueError: MyImportErrorish")
    assert not is_import_error(None) and not is_import_error("")


def test_failure_fields_of_a_plain_error() -> None:
    assert failure_fields([("stderr", TRACEBACK)], python="/usr/bin/python3") == {"error": "ValueError: bad label 7"}
    assert failure_fields([("stdout", b"nothing on stderr\n")], python="/usr/bin/python3") == {}


def test_failure_fields_of_an_import_error_name_the_interpreter_and_how_to_choose_another() -> None:
    fields = failure_fields(
        [("stderr", b"ModuleNotFoundError: No module named 'torch'\n")], python="/opt/py/bin/python"
    )
    assert fields["error"] == "ModuleNotFoundError: No module named 'torch'"
    assert fields["interpreter"] == "/opt/py/bin/python"
    assert "/opt/py/bin/python" in fields["hint"] and "--python PATH" in fields["hint"]
    assert "interpreter" not in failure_fields([("stderr", b"ImportError: x\n")], python=None)


def job(id: str, status: str) -> dict[str, str]:
    return {"id": id, "status": status}


def test_logs_hint_is_empty_when_nothing_failed() -> None:
    jobs = [job("a", "succeeded"), job("b", "skipped"), job("c", "cancelled"), job("d", "queued")]
    assert logs_hint(jobs, "20261123T114430Z-b31a", None) == ""


def test_logs_hint_names_the_command_for_the_first_failed_job() -> None:
    jobs = [job("a", "succeeded"), job("b", "timed_out"), job("c", "failed")]
    hint = logs_hint(jobs, "20261123T114430Z-b31a", None)
    assert hint == "why b failed: aimedres-async logs b --run 20261123T114430Z-b31a (1 more failed: c)\n"


def test_logs_hint_quotes_the_config_path_so_the_command_can_be_pasted() -> None:
    hint = logs_hint([job("b", "failed")], "R", "my configs/a.toml", prog="tool")
    command = hint.removeprefix("why b failed: ").rstrip("\n")
    assert shlex.split(command) == ["tool", "--config", "my configs/a.toml", "logs", "b", "--run", "R"]


def test_logs_hint_lists_at_most_three_more() -> None:
    jobs = [job(f"j{i}", "failed") for i in range(6)]
    assert logs_hint(jobs, "R", None).endswith("(5 more failed: j1, j2, j3, ...)\n")
    assert logs_hint(jobs[:4], "R", None).endswith("(3 more failed: j1, j2, j3)\n")
