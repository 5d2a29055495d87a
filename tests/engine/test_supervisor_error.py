"""A supervisor error (a bug in the dispatcher or around an attempt) ends the run at once: the
run's task group cancels every running attempt, whose runner kills its process group, and the
command exits 1 with one error line. It must not wait for the running jobs to end on their own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import PY, alive, events, job_summary, marked_processes, wait_for, write_config

# Hangs for 300 s with a child of its own in its group unless something kills them.
LONG = json.dumps(["sh", "-c", "sleep 300 & echo $! >> pids; echo $$ >> pids; wait"])
# Ends once the long job's processes are up, so the next dispatch happens while it runs.
READY = json.dumps(["sh", "-c", "until [ -s pids ] && [ $(wc -l < pids) -ge 2 ]; do sleep 0.05; done"])
QUICK = json.dumps(["true"])

# Runs the real command line with one supervisor function made to fail (a stand-in for a bug).
DRIVER = textwrap.dedent(
    """
    import sys
    from aimedres_async.cli import app as cli
    from aimedres_async.engine import dispatch

    where = sys.argv[1]
    if where == "dispatch":  # the dispatcher's third pick raises
        real = dispatch.pick_next
        calls = []

        def pick_next(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("dispatcher bug")
            return real(*args, **kwargs)

        dispatch.pick_next = pick_next
    else:  # recording the ready job's attempt raises, inside its attempt task
        real_after = dispatch.Dispatcher._after_attempt

        def after(self, job, attempt, result):
            if job.spec.id == "ready":
                raise RuntimeError("bookkeeping bug")
            return real_after(self, job, attempt, result)

        dispatch.Dispatcher._after_attempt = after
    sys.exit(cli.main(["run"]))
    """
)


def config(marker: str) -> str:
    return f"""
[supervisor]
parallel = true
max_workers = 2
grace_period = "1s"
[discovery]
enabled = false
[defaults]
retries = 0
env = {{ TEST_MARKER = "{marker}" }}
[jobs.long]
command = {LONG}
[jobs.ready]
command = {READY}
[jobs.later]
command = {QUICK}
"""


@pytest.mark.parametrize("where", ["dispatch", "attempt"])
def test_supervisor_error_stops_running_jobs(tmp_path: Path, marker: str, where: str) -> None:
    write_config(tmp_path, config(marker))
    proc = subprocess.Popen(
        [PY, "-c", DRIVER, where],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        for pid in marked_processes(marker):
            os.kill(pid, signal.SIGKILL)
        pytest.fail("the run waited for its running job after a supervisor error instead of stopping it")
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("aimedres-async: error: ")]
    bug = "dispatcher bug" if where == "dispatch" else "bookkeeping bug"
    assert len(errors) == 1 and "internal error" in errors[0] and f"RuntimeError: {bug}" in errors[0], err
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 2
    wait_for(lambda: not any(alive(p) for p in pids), timeout=10, what="the long job's processes to be gone")
    assert job_summary(tmp_path, "long")["status"] == "cancelled"
    (finished,) = events(tmp_path, "run.finished")
    assert finished["stopped_by"] == "error" and finished["exit_code"] == 1
    assert finished["error"] == f"RuntimeError: {bug}"
