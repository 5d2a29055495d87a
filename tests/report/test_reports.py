"""The end-of-run reports (SPEC §7, §16): the results table is never cut in a file or pipe and ends a
cut cell with `…` on a terminal; JUnit's timestamp is the run's start and a failed or skipped job's
text numbers its attempts; the step summary marks optional jobs. Real runs of the real CLI.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import PY, summary, write_config
from helpers_cli import cli

from aimedres_async.report.summary import results_table

MANY = {f"metric_{i:02d}": round(0.1 * i, 3) for i in range(30)}  # about 400 characters of metrics


def command(code: str) -> str:
    return json.dumps([PY, "-c", code])


def config(marker: str, jobs: str) -> str:
    return f"""
[supervisor]
parallel = true
max_workers = 2
[discovery]
enabled = false
[defaults]
backoff = {{ initial = "50ms", jitter = 0.0 }}
env = {{ TEST_MARKER = "{marker}" }}
{jobs}
"""


def test_results_table_in_a_pipe_is_never_cut(tmp_path: Path, marker: str) -> None:
    """Regression: the table was cut to 140 columns (with `...`) even when written to a file in CI."""
    write_config(
        tmp_path, config(marker, f"[jobs.wide]\ncommand = {command(f'print({json.dumps(json.dumps(MANY))})')}\n")
    )
    r = cli(tmp_path, "run", "--no-progress")
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("wide "))
    assert row.endswith("metric_29=2.9") and "…" not in row and "..." not in row, row
    assert len(row) > 300


def test_results_table_on_a_terminal_ends_a_cut_cell_with_an_ellipsis() -> None:
    jobs = [
        {
            "id": "wide",
            "status": "succeeded",
            "optional": False,
            "attempts": 1,
            "exit_code": 0,
            "signal": None,
            "duration_s": 1.0,
            "peak_rss_bytes": 0,
            "metrics": MANY,
        }
    ]
    cut = results_table(jobs, width=80).splitlines()
    assert all(len(line) <= 80 for line in cut), cut
    assert cut[1].endswith("…") and "metric_00=0.0" in cut[1]
    whole = results_table(jobs).splitlines()[1]
    assert whole.endswith("metric_29=2.9")


FLAKY = "import os, sys; a = os.environ['AIMEDRES_ATTEMPT']; print('line of attempt', a); sys.exit(3)"


def test_junit_timestamp_is_the_start_and_attempts_are_numbered(tmp_path: Path, marker: str) -> None:
    jobs = (
        f"[jobs.req]\ncommand = {command(FLAKY)}\nretries = 2\n"
        f"[jobs.opt]\ncommand = {command(FLAKY)}\nretries = 1\noptional = true\n"
        f"[jobs.ok]\ncommand = {command('import time; time.sleep(1.2)')}\n"
    )
    write_config(tmp_path, config(marker, jobs))
    step = tmp_path / "step.md"
    r = cli(tmp_path, "run", "--no-progress", "--junit-xml", "junit.xml", env={"GITHUB_STEP_SUMMARY": str(step)})
    assert r.returncode == 1, r.stderr
    s = summary(tmp_path)
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    # Regression: the timestamp was the moment the report was written, at the run's end
    assert suite.get("timestamp") == s["started_at"] != s["finished_at"]
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    failure = cases["req"].find("failure")
    skipped = cases["opt"].find("skipped")
    assert failure is not None and skipped is not None
    assert (failure.text or "").splitlines() == [
        "--- attempt 1 ---",
        "line of attempt 1",
        "--- attempt 2 ---",
        "line of attempt 2",
        "--- attempt 3 ---",
        "line of attempt 3",
    ]
    assert (skipped.text or "").splitlines() == [
        "--- attempt 1 ---",
        "line of attempt 1",
        "--- attempt 2 ---",
        "line of attempt 2",
    ]
    # the step summary marks the optional job (it does not fail the run)
    rows = {line.split("|")[1].strip(): line for line in step.read_text().splitlines() if line.startswith("| ")}
    assert "(optional)" in rows["opt"] and "(optional)" not in rows["req"] and "(optional)" not in rows["ok"]


def test_junit_of_a_single_attempt_has_no_attempt_header(tmp_path: Path, marker: str) -> None:
    write_config(tmp_path, config(marker, f"[jobs.once]\ncommand = {command(FLAKY)}\n"))
    assert cli(tmp_path, "run", "--no-progress", "--junit-xml", "junit.xml").returncode == 1
    failure = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite/testcase/failure")
    assert failure is not None and (failure.text or "").splitlines() == ["line of attempt 1"]


def test_junit_keeps_the_header_of_an_attempt_cut_by_the_50_line_limit() -> None:
    from aimedres_async.records.framing import ATTEMPT_MARK
    from aimedres_async.records.sinks import last_lines

    tail = [
        (ATTEMPT_MARK, b"1"),
        ("stdout", b"".join(b"a%d\n" % i for i in range(60))),
        (ATTEMPT_MARK, b"2"),
        ("stdout", b"b1\nb2\n"),
    ]
    lines = last_lines(tail, n=50)
    assert lines[0] == "--- attempt 1 ---" and lines[1] == "a12" and lines[-3:] == ["--- attempt 2 ---", "b1", "b2"]
    assert sum(1 for x in lines if not x.startswith("---")) == 50
