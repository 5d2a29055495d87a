"""records.scan, in-process: warning-level lines counted once each (the first kept), `fail_on`
patterns found in chunks of complete lines, and what the framer hands the scan."""

from __future__ import annotations

from collections import deque

import pytest

from aimedres_async.records.framing import Framer
from aimedres_async.records.scan import LINE_CHARS, OutputScan


@pytest.mark.parametrize(
    "line",
    [
        b"WARNING:root:data path not found",
        b"[WARNING] falling back",
        b"2026-12-07 WARN low disk",
        b"/x/train.py:3: UserWarning: creating sample dataset",
        b"FutureWarning: the default will change",
        b"Warning: ParkinsonDatasets not found, creating a sample dataset",
        b"warning: using CPU",
    ],
)
def test_warning_level_lines(line: bytes) -> None:
    scan = OutputScan()
    scan(b"epoch 1\n" + line + b"\nepoch 2\n")
    assert scan.warnings == 1 and scan.first_warning == line.decode()


@pytest.mark.parametrize("line", [b"no warnings here", b"WARNINGS", b"forewarned", b"Warnings are off", b"warn me"])
def test_lines_that_are_not_warnings(line: bytes) -> None:
    scan = OutputScan()
    scan(line + b"\n")
    assert scan.warnings == 0 and scan.first_warning is None


def test_each_warning_line_counts_once_and_the_first_is_kept() -> None:
    scan = OutputScan()
    scan(b"a\nWARNING: one WARNING twice\r\nb\rUserWarning: two\n")
    scan(b"Warning: three\n")
    assert scan.warnings == 3 and scan.first_warning == "WARNING: one WARNING twice"


def test_fail_on_matches_the_first_line_and_tells_once() -> None:
    told: list[str] = []
    scan = OutputScan([r"creating (a )?sample dataset", "^Traceback"])
    scan.on_match = told.append
    scan(b"loading\nWarning: not found, creating sample dataset\nTraceback (most recent call last):\n")
    assert scan.matched == "Warning: not found, creating sample dataset" and told == [scan.matched]
    assert scan.warnings == 1  # the line is a warning too
    scan(b"creating a sample dataset\n")
    assert told == [scan.matched]  # one per attempt
    scan.new_attempt()
    assert scan.matched is None
    scan(b"x\nTraceback (most recent call last):\n")
    assert scan.matched == "Traceback (most recent call last):"


def test_fail_on_after_a_warning_on_the_same_line() -> None:
    scan = OutputScan(["synthetic"])
    scan(b"WARNING: using synthetic data\n")
    assert scan.matched == "WARNING: using synthetic data" and scan.warnings == 1


def test_anchors_match_at_line_ends_and_groups_keep_their_meaning() -> None:
    scan = OutputScan([r"^loss: nan$", r"(\w+) != \1"])
    scan(b"a loss: nan\nloss: nan \n")
    assert scan.matched is None
    scan(b"ok\nfold fold != fold\n")
    assert scan.matched == "fold fold != fold"
    scan.new_attempt()
    scan(b"x\nloss: nan\ny\n")
    assert scan.matched == "loss: nan"


def test_a_kept_line_is_cut() -> None:
    scan = OutputScan()
    scan(b"WARNING " + b"x" * 5000 + b"\n")
    assert scan.first_warning is not None and len(scan.first_warning) == LINE_CHARS


def test_the_framer_scans_complete_lines_once_whatever_the_chunks() -> None:
    scan = OutputScan(["sample dataset"])
    framer = Framer(1, "stderr", 1 << 20, deque(), None, scan)
    for chunk in (b"epoch 1\nWARN", b"ING: creating sample ", b"dataset\npartial", b" line UserWarning: x"):
        framer.feed(chunk)
    assert scan.warnings == 1 and scan.matched == "WARNING: creating sample dataset"
    framer.flush()  # the unterminated last line is scanned at the end
    assert scan.warnings == 2


def test_the_framer_scans_the_cut_parts_of_an_over_long_line() -> None:
    scan = OutputScan()
    framer = Framer(1, "stdout", 1024, deque(), None, scan)
    framer.feed(b"x" * 3000 + b" WARNING " + b"y" * 3000)
    assert scan.warnings == 1


def test_the_warning_parts_are_in_every_warning() -> None:
    """The prefilter of a job without fail_on may skip a chunk only when no warning can be in it."""
    import re

    from aimedres_async.records.scan import WARNING_PARTS, WARNING_PATTERN

    for word in (b"WARN ", b"WARNING:", b"Warning:", b"warning:", b"UserWarning:", b"[WARNING]"):
        assert re.search(WARNING_PATTERN, word) and any(part in word for part in WARNING_PARTS), word
    with_fail_on, without = OutputScan(["nan loss"]), OutputScan()
    for scan in (with_fail_on, without):
        scan(b"epoch 1 learning rate 0.1\nWARN disk\nnan loss\n")
    assert with_fail_on.warnings == without.warnings == 1 and with_fail_on.matched == "nan loss"
