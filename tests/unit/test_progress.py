"""records.progress, in-process: the live display's rows and lines at a narrow width."""

from __future__ import annotations

import io
from collections import deque

from aimedres_async.records.framing import ATTEMPT_MARK
from aimedres_async.records.progress import ProgressDisplay


def display(width: int = 60) -> tuple[ProgressDisplay, io.StringIO]:
    out = io.StringIO()
    d = ProgressDisplay(out, color="never")
    d.console.width = width
    return d, out


def test_a_running_job_shows_its_last_stdout_line_over_a_stderr_progress_bar() -> None:
    d, _ = display()
    tail = deque(
        [
            (ATTEMPT_MARK, b"1"),
            ("stdout", b"epoch 3/10 loss=0.512\n"),
            ("stderr", b"\r 30%|###       | 3/10\r 40%|####      | 4/10"),
        ]
    )
    d.tail_of = lambda job: tail
    assert d._last_line("j") == "epoch 3/10 loss=0.512"
    tail.append(("stdout", b"epoch 4/10 loss=0.498\n"))
    assert d._last_line("j") == "epoch 4/10 loss=0.498"


def test_a_job_that_prints_only_to_stderr_shows_its_last_stderr_line() -> None:
    d, _ = display()
    d.tail_of = lambda job: deque([(ATTEMPT_MARK, b"1"), ("stderr", b"\r 10%|#   |\r 20%|##  |")])
    assert d._last_line("j") == " 20%|##  |"


def test_an_earlier_attempts_output_is_not_the_running_attempts() -> None:
    d, _ = display()
    d.tail_of = lambda job: deque([("stdout", b"attempt one's line\n"), (ATTEMPT_MARK, b"2")])
    assert d._last_line("j") == ""


def test_a_finished_line_at_60_columns_wraps_between_words_and_shows_a_swept_id_as_it_is() -> None:
    d, out = display(60)
    d.event({"event": "run.started", "job_ids": ["mlp[lr=0.1,seed=0]"]})
    d.event({"event": "job.started", "job": "mlp[lr=0.1,seed=0]", "attempt": 1})
    d.event(
        {
            "event": "job.finished",
            "job": "mlp[lr=0.1,seed=0]",
            "status": "succeeded",
            "attempts": 1,
            "metrics": {"accuracy": 0.9789, "roc_auc": 0.9952, "f1": 0.9834, "macro_f1": 0.9686},
        }
    )
    d.stop()
    text = out.getvalue()
    assert "succeeded mlp[lr=0.1,seed=0] (attempts 1)" in text, text
    words = "succeeded mlp[lr=0.1,seed=0] (attempts 1) accuracy=0.9789 roc_auc=0.9952 f1=0.9834 macro_f1=0.9686"
    printed = [line.rstrip() for line in text.splitlines() if line.strip()]
    assert all(len(line) <= 60 for line in printed), printed
    assert " ".join(" ".join(printed).split()) == words  # cut only between words


def test_the_header_counts_a_finished_job_as_done_and_not_running() -> None:
    d, _ = display()
    d.event({"event": "run.started", "job_ids": ["a", "b"]})
    d.event({"event": "job.started", "job": "a", "attempt": 1})
    d.event({"event": "job.finished", "job": "a", "status": "succeeded", "attempts": 1})
    header = d._frame().renderables[0].plain
    d.stop()
    assert "1/2 done · 0 running · 0 failed" in header, header
