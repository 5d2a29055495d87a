"""Stopping: real signals to a real supervisor subprocess, and cancellation of an attempt in-process.

Every test here uses the `marker` fixture, which fails the test if any job process (grandchildren
included) is still alive afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import deque
from pathlib import Path

import pytest
from conftest import PY, events, marked_processes, read_jsonl, run_dir, start_cli, summary, wait_for, write_config

from aimedres_async.engine.attempt import AttemptContext, JobOutput, StopRequest
from aimedres_async.engine.executors.local import run_attempt
from aimedres_async.plan.config import Backoff, Resources
from aimedres_async.plan.jobs import JobSpec
from aimedres_async.system import procs


def cfg(marker: str, jobs: str, grace: str = "2s", workers: int = 3) -> str:
    return f"""
[supervisor]
parallel = true
max_workers = {workers}
grace_period = "{grace}"
[discovery]
enabled = false
[defaults]
retries = 2
backoff = {{ initial = "30s" }}
env = {{ TEST_MARKER = "{marker}" }}
{jobs}
"""


GRANDCHILDREN = '["sh", "-c", "sleep 60 & sleep 60 & echo started; wait"]'


def _started(folder: Path, n: int) -> bool:
    return len(events(folder, "job.started")) >= n and all(
        any(r["event"] == "job.output" for r in read_jsonl(run_dir(folder) / "jobs" / f"{e['job']}.jsonl"))
        for e in events(folder, "job.started")
    )


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_mid_run_leaves_no_process(tmp_path: Path, marker: str, sig: signal.Signals, code: int) -> None:
    jobs = "".join(f"[jobs.g{i}]\ncommand = {GRANDCHILDREN}\n" for i in range(3))
    jobs += '[jobs.waiting]\ncommand = ["true"]\n'  # never gets a slot before the stop
    write_config(tmp_path, cfg(marker, jobs))
    proc = start_cli(tmp_path, "run")
    wait_for(lambda: _started(tmp_path, 3), what="3 jobs with grandchildren running")
    assert len(marked_processes(marker)) >= 9  # 3 shells + 6 sleeps
    t0 = time.monotonic()
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    # background sleeps ignore SIGINT, so a SIGINT stop waits out the grace, then SIGKILLs the group
    assert time.monotonic() - t0 < 10
    assert marked_processes(marker) == []
    s = summary(tmp_path)
    assert s["exit_code"] == code and s["stopped_by"] == sig.name
    assert {j["id"]: j["status"] for j in s["jobs"]} == {
        "g0": "cancelled",
        "g1": "cancelled",
        "g2": "cancelled",
        "waiting": "cancelled",
    }
    assert {e["outcome"] for e in events(tmp_path, "job.exited")} == {"cancelled"}
    assert events(tmp_path, "run.finished")[0]["exit_code"] == code
    assert "Traceback" not in err


def test_second_sigint_skips_the_grace_period(tmp_path: Path, marker: str) -> None:
    stubborn = json.dumps(
        [
            PY,
            "-c",
            "import signal,time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)",
        ]
    )
    write_config(tmp_path, cfg(marker, f"[jobs.stubborn]\ncommand = {stubborn}\n", grace="60s"))
    proc = start_cli(tmp_path, "run")
    wait_for(lambda: _started(tmp_path, 1), what="the stubborn job")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # still in its 60 s grace period
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert time.monotonic() - t0 < 5
    (exited,) = events(tmp_path, "job.exited")
    assert exited["outcome"] == "cancelled" and exited["signal"] == "SIGKILL"
    assert "again" in err


def test_stop_during_backoff_records_cancelled(tmp_path: Path, marker: str) -> None:
    write_config(tmp_path, cfg(marker, '[jobs.flop]\ncommand = ["false"]\n'))
    proc = start_cli(tmp_path, "run")
    wait_for(lambda: events(tmp_path, "job.retrying"), what="the retry to be scheduled")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 143
    fin = events(tmp_path, "job.finished")
    assert [(e["job"], e["status"], e["attempts"]) for e in fin] == [("flop", "cancelled", 1)]


def test_summary_is_valid_json_throughout(tmp_path: Path, marker: str) -> None:
    jobs = "".join(f'[jobs.q{i}]\ncommand = ["sh", "-c", "sleep 0.{i}"]\n' for i in range(8))
    write_config(tmp_path, cfg(marker, jobs))
    proc = start_cli(tmp_path, "run")
    seen = 0
    while proc.poll() is None:
        path = tmp_path / "logs" / "latest" / "summary.json"
        if path.exists():
            json.loads(path.read_text())  # never half-written
            seen += 1
        time.sleep(0.02)
    proc.communicate()
    assert proc.returncode == 0 and seen > 0


# ---------------------------------------------------------------- in-process: cancellation


def _spec(tmp_path: Path, argv: list[str], marker: str) -> JobSpec:
    return JobSpec(
        id="cancel-me",
        argv=tuple(argv),
        cwd=tmp_path,
        env={"TEST_MARKER": marker},
        output_dir=None,
        script=None,
        accepts=frozenset(),
        retries=0,
        backoff=Backoff(),
        timeout=None,
        optional=False,
        resources=Resources(),
        origin="config",
    )


@pytest.mark.asyncio
async def test_cancelling_an_attempt_kills_and_reaps_its_group(tmp_path: Path, marker: str) -> None:
    emitted: list[tuple[str, dict[str, object]]] = []
    written: list[bytes] = []
    ctx = AttemptContext(
        run_id="r",
        emit=lambda ev, **kw: emitted.append((ev, kw)),
        write_output=lambda job, b: written.append(b),
        stop=StopRequest(),
        grace_period=30.0,
    )
    spec = _spec(tmp_path, ["sh", "-c", "sleep 60 & sleep 60 & echo up; wait"], marker)
    task = asyncio.create_task(run_attempt(spec, 1, ctx, JobOutput(tail=deque(maxlen=8))))
    for _ in range(200):
        if written:
            break
        await asyncio.sleep(0.02)
    pgid = ctx.live["cancel-me"].pgid
    assert len(procs.live_members(pgid)) == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # synchronously killed and reaped before the cancellation propagated: nothing to wait for
    assert procs.live_members(pgid) == []
    assert marked_processes(marker) == []
    assert "cancel-me" not in ctx.live


@pytest.mark.asyncio
async def test_exit_is_seen_while_a_grandchild_holds_the_pipe(tmp_path: Path, marker: str) -> None:
    """cpython#119710: the exit must not wait for the pipes; the group is then cleaned up."""
    ctx = AttemptContext(
        run_id="r", emit=lambda ev, **kw: None, write_output=lambda job, b: None, stop=StopRequest(), grace_period=0.2
    )
    spec = _spec(tmp_path, ["sh", "-c", "(trap '' INT TERM; exec sleep 60) & exit 3"], marker)
    t0 = time.monotonic()
    result = await asyncio.wait_for(run_attempt(spec, 1, ctx, JobOutput()), timeout=20)
    assert result.exit_code == 3 and result.failure == "exit_code"
    assert time.monotonic() - t0 < 5  # grace 0.2 s, then SIGKILL: not the sleep's 60 s
    assert marked_processes(marker) == []


def test_subreaper_adopts_and_sweeps_orphans(tmp_path: Path, marker: str) -> None:
    """A grandchild that left the job's session is still killed when the supervisor exits."""
    jobs = '[jobs.escape]\ncommand = ["sh", "-c", "setsid sleep 60 & echo bye"]\n'
    write_config(tmp_path, cfg(marker, jobs))
    proc = start_cli(tmp_path, "run")
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert marked_processes(marker) == []
    assert os.path.exists(run_dir(tmp_path) / "summary.json")
