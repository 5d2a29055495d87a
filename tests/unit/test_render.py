"""cli.render.render, in-process: one JSON-lines record of a job's log as a line for a person."""

from __future__ import annotations

from typing import Any

from aimedres_async.cli.render import render

TS = "2026-11-23T11:33:47.123456Z"


def output(**over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "ts": TS,
        "t": 1795433627.123456,
        "event": "job.output",
        "run": "20261123T113347Z-b31a",
        "job": "als",
        "attempt": 1,
        "stream": "stdout",
        "line": "epoch 1 loss=0.5",
    }
    return {**rec, **over}


def test_an_output_line_shows_time_attempt_and_text() -> None:
    assert render(output()) == "11:33:47.123 #1 | epoch 1 loss=0.5"


def test_stderr_is_marked() -> None:
    assert render(output(stream="stderr", attempt=2)) == "11:33:47.123 #2!| epoch 1 loss=0.5"


def test_a_partial_line_ends_with_an_ellipsis() -> None:
    assert render(output(line="x" * 5, partial=True)) == "11:33:47.123 #1 | xxxxx…"


def test_a_json_object_line_shows_its_fields() -> None:
    line = render(output(data={"epoch": 3, "acc": 0.9, "name": "resnet", "ok": True, "per": [1, 2], "n": None}))
    assert line == "11:33:47.123 #1 | epoch=3 acc=0.9 name=resnet ok=true per=[1,2] n=null"


def test_control_characters_in_output_are_shown_not_obeyed() -> None:
    assert render(output(line="\x1b[2Jwiped")) == "11:33:47.123 #1 | \\x1b[2Jwiped"
    assert "\x1b" not in render(output(data={"k": "\x1b]0;title\x07"}))


def test_a_lifecycle_record_shows_its_own_fields_as_json() -> None:
    rec = {
        "ts": TS,
        "t": 1.0,
        "schema": 1,
        "event": "job.exited",
        "run": "R",
        "job": "als",
        "attempt": 2,
        "outcome": "failed",
        "exit_code": 1,
        "signal": None,
        "gpus": ["0", "1"],
        "argv": ["python", "train.py"],
    }
    assert render(rec) == '11:33:47.123 == job.exited (attempt 2) outcome=failed exit_code=1 gpus=["0","1"]'


def test_a_record_without_an_attempt() -> None:
    assert render({"ts": TS, "event": "job.queued", "job": "als"}) == "11:33:47.123 == job.queued"


def test_job_started_opens_with_a_rule_naming_the_attempt() -> None:
    first, second = render({"ts": TS, "event": "job.started", "attempt": 3, "pid": 42}).split("\n")
    assert first == "-" * 20 + " attempt 3 " + "-" * 20
    assert second == "11:33:47.123 == job.started (attempt 3) pid=42"


def test_control_characters_in_lifecycle_fields_are_shown() -> None:
    line = render({"ts": TS, "event": "job.finished", "error": "bad\x1b[31m\nnext"})
    assert line == "11:33:47.123 == job.finished error=bad\\x1b[31m\\x0anext"
