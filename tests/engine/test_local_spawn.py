"""The local executor's spawn through asyncio's subprocess API (`executors.local.AttemptProtocol`).

An attempt ends when its main process exits, whoever holds its pipes: what is left in them is
read for at most DRAIN_TIMEOUT, then our ends are closed, so a process that escaped the job's
session neither hangs the attempt nor keeps a pipe of the supervisor's open. In-process, with
real processes; the `marker` fixture fails a test if any job process outlives it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import deque
from pathlib import Path

import pytest
from conftest import marked_processes

from aimedres_async.engine.attempt import AttemptContext, JobOutput, StopRequest
from aimedres_async.engine.executors import local
from aimedres_async.engine.executors.local import run_attempt
from aimedres_async.plan.config import Backoff, Resources
from aimedres_async.plan.jobs import JobSpec, Outcome
from aimedres_async.system import children

# The job starts a process in a session of its own (out of reach of the group kill) that keeps
# writing to the job's stdout, ignoring SIGPIPE, until a write fails: then it leaves a file saying
# so and exits. The job itself prints one line and exits 4.
ESCAPED = (
    "setsid sh -c 'trap \"\" PIPE; while echo late 2>/dev/null; do sleep 0.1; done; touch pipe-closed' & "
    "sleep 0.5; echo main-done; exit 4"
)


def _spec(tmp_path: Path, argv: list[str], marker: str) -> JobSpec:
    return JobSpec(
        id="escaper",
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


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.asyncio
async def test_attempt_ends_at_exit_and_frees_a_pipe_an_escaped_process_holds(tmp_path: Path, marker: str) -> None:
    lines: list[bytes] = []
    ctx = AttemptContext(
        run_id="r",
        emit=lambda ev, **kw: None,
        write_output=lambda job, recs: lines.extend(bytes(r) for r in recs),
        stop=StopRequest(),
        grace_period=0.2,
    )
    spec = _spec(tmp_path, ["sh", "-c", ESCAPED], marker)
    try:
        # the escaped writer would keep the pipe open forever: the attempt must still end, after
        # the exit plus at most the drain deadline (bounded here generously for a busy machine)
        result = await asyncio.wait_for(run_attempt(spec, 1, ctx, JobOutput(tail=deque(maxlen=8))), timeout=30)
        assert result.outcome is Outcome.FAILED and result.exit_code == 4 and result.failure == "exit_code"
        assert b'"line":"main-done"}' in b"".join(lines)
        assert "escaper" not in ctx.live and not children.LEADERS
        # our read end was closed when the attempt ended: the escaped writer's next write fails
        for _ in range(200):
            if (tmp_path / "pipe-closed").exists():
                break
            await asyncio.sleep(0.05)
        assert (tmp_path / "pipe-closed").exists(), "the supervisor still holds the job's stdout pipe"
    finally:
        _kill(marked_processes(marker))


@pytest.mark.asyncio
async def test_output_and_exit_arrive_through_the_attempt_protocol(
    tmp_path: Path, marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spawn is `loop.subprocess_exec` with AttemptProtocol: chunks come through
    pipe_data_received (both streams) and the end through process_exited."""
    seen: list[tuple[str, int]] = []
    real_data, real_exit = local.AttemptProtocol.pipe_data_received, local.AttemptProtocol.process_exited

    def data(self: local.AttemptProtocol, fd: int, chunk: bytes) -> None:
        seen.append(("data", fd))
        real_data(self, fd, chunk)

    def exited(self: local.AttemptProtocol) -> None:
        seen.append(("exited", 0))
        real_exit(self)

    monkeypatch.setattr(local.AttemptProtocol, "pipe_data_received", data)
    monkeypatch.setattr(local.AttemptProtocol, "process_exited", exited)
    ctx = AttemptContext(
        run_id="r", emit=lambda ev, **kw: None, write_output=lambda job, recs: None, stop=StopRequest()
    )
    spec = _spec(tmp_path, ["sh", "-c", "echo out; echo err >&2; exit 0"], marker)
    result = await asyncio.wait_for(run_attempt(spec, 1, ctx, JobOutput()), timeout=30)
    assert result.outcome is Outcome.SUCCEEDED
    assert ("data", 1) in seen and ("data", 2) in seen and ("exited", 0) in seen


@pytest.mark.asyncio
async def test_a_missing_program_is_spawn_failed_and_leaves_nothing_listed(tmp_path: Path, marker: str) -> None:
    ctx = AttemptContext(
        run_id="r", emit=lambda ev, **kw: None, write_output=lambda job, recs: None, stop=StopRequest()
    )
    for argv in (["no-such-program-here"], [str(tmp_path)]):
        result = await run_attempt(_spec(tmp_path, argv, marker), 1, ctx, JobOutput())
        assert result.outcome is Outcome.SPAWN_FAILED and result.error, result
    assert ctx.live == {} and not children.LEADERS
