"""The dispatcher in-process, through the Executor seam: a fake executor whose attempts end when the
test says so. No processes, no signals: each test takes well under a second.

What runs real processes (spawn, kill, reap, signals) is tested end to end elsewhere; here the
subject is the supervisor's own decisions: order, slots, backfill, backoff, stops, reloads, errors.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from aimedres_async.engine.attempt import AttemptContext, AttemptResult, JobOutput, emit_exited
from aimedres_async.engine.run import RunOptions, Supervisor
from aimedres_async.engine.scheduler import Pools
from aimedres_async.engine.state import State
from aimedres_async.plan.config import Backoff, Config, Resources, builtin
from aimedres_async.plan.jobs import JobSpec, Outcome, Status
from aimedres_async.records.console import Console

pytestmark = pytest.mark.timeout(10)
GiB = 1 << 30


def spec(job_id: str, retries: int = 0, backoff: Backoff | None = None, memory: int = 0) -> JobSpec:
    return JobSpec(
        id=job_id,
        argv=("train", job_id),
        cwd=Path("."),
        env={},
        output_dir=None,
        script=None,
        accepts=frozenset(),
        retries=retries,
        backoff=backoff or Backoff(),
        timeout=None,
        optional=False,
        resources=Resources(memory=memory),
        origin="config",
    )


class FakeExecutor:
    """Attempts that run until the test ends them: `end(job, outcome)`; a stop cancels them."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int]] = []
        self.running: set[str] = set()
        self.most_running = 0
        self.gates: dict[tuple[str, int], asyncio.Future[Outcome]] = {}
        self.fail_with: dict[str, BaseException] = {}

    def gate(self, job: str, attempt: int) -> asyncio.Future[Outcome]:
        key = (job, attempt)
        if key not in self.gates:
            self.gates[key] = asyncio.get_running_loop().create_future()
        return self.gates[key]

    def end(self, job: str, outcome: Outcome = Outcome.SUCCEEDED, attempt: int = 1) -> None:
        self.gate(job, attempt).set_result(outcome)

    async def __call__(
        self,
        s: JobSpec,
        attempt: int,
        ctx: AttemptContext,
        output: JobOutput,
        extra_env: Mapping[str, str] | None = None,
    ) -> AttemptResult:
        if s.id in self.fail_with:
            raise self.fail_with[s.id]
        self.started.append((s.id, attempt))
        ctx.emit("job.started", job=s.id, attempt=attempt, pid=None, argv=list(s.argv), cwd=".", gpus=None)
        self.running.add(s.id)
        self.most_running = max(self.most_running, len(self.running))
        stop = asyncio.ensure_future(ctx.stop.requested.wait())
        gate = self.gate(s.id, attempt)
        try:
            await asyncio.wait({gate, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            self.running.discard(s.id)
        outcome = gate.result() if gate.done() else Outcome.CANCELLED
        code = {Outcome.SUCCEEDED: 0, Outcome.FAILED: 1}.get(outcome)
        failure = "exit_code" if outcome is Outcome.FAILED else None
        result = AttemptResult(outcome=outcome, exit_code=code, failure=failure, duration_s=0.001)
        emit_exited(s, attempt, ctx, result)
        return result


def make(
    tmp_path: Path, jobs: list[JobSpec], workers: int, pools: Pools | None = None, fake: FakeExecutor | None = None
) -> tuple[Supervisor, FakeExecutor]:
    cfg: Config = builtin(tmp_path)
    fake = fake or FakeExecutor()
    console = Console("console", err=io.StringIO(), out=io.StringIO())
    opts = RunOptions(max_workers=workers, logs_dir=tmp_path / "logs")
    sup = Supervisor(
        cfg, tuple(jobs), opts, console, pools=pools or Pools.of((), None, None), executor=fake, local_resources=True
    )
    return sup, fake


async def until(pred: Callable[[], Any], timeout: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


def state(sup: Supervisor, job: str) -> State:
    return next(j.state for j in sup.jobs if j.spec.id == job)


# ---------------------------------------------------------------- tests


@pytest.mark.asyncio
async def test_jobs_start_in_config_order_and_never_exceed_the_slots(tmp_path: Path) -> None:
    sup, fake = make(tmp_path, [spec(f"j{i}") for i in range(6)], workers=2)
    run = asyncio.create_task(sup.run())
    await until(lambda: len(fake.started) == 2)
    assert [j for j, _ in fake.started] == ["j0", "j1"]
    assert state(sup, "j2") is State.QUEUED
    fake.end("j1")
    await until(lambda: len(fake.started) == 3)
    fake.end("j0")
    await until(lambda: len(fake.started) == 4)
    for j in ("j2", "j3"):
        fake.end(j)
    await until(lambda: len(fake.started) == 6)
    for j in ("j4", "j5"):
        fake.end(j)
    assert await run == 0
    assert [j for j, _ in fake.started] == [f"j{i}" for i in range(6)]
    assert fake.most_running == 2
    assert all(j.state is State.FINISHED and j.status is Status.SUCCEEDED for j in sup.jobs)


@pytest.mark.asyncio
async def test_a_smaller_job_backfills_while_a_big_one_waits_for_memory(tmp_path: Path) -> None:
    jobs = [spec("big1", memory=8 * GiB), spec("big2", memory=8 * GiB), spec("small", memory=1 * GiB)]
    sup, fake = make(tmp_path, jobs, workers=3, pools=Pools.of((), 10 * GiB, None))
    run = asyncio.create_task(sup.run())
    await until(lambda: len(fake.started) == 2)
    assert [j for j, _ in fake.started] == ["big1", "small"]  # big2 does not fit next to big1
    assert state(sup, "big2") is State.QUEUED
    fake.end("big1")
    await until(lambda: len(fake.started) == 3)
    assert fake.started[-1] == ("big2", 1)
    fake.end("small")
    fake.end("big2")
    assert await run == 0


@pytest.mark.asyncio
async def test_a_retry_waits_out_its_backoff_without_holding_a_slot(tmp_path: Path) -> None:
    jobs = [spec("flaky", retries=1, backoff=Backoff(initial=0.2, jitter=0.0)), spec("other")]
    sup, fake = make(tmp_path, jobs, workers=1)
    run = asyncio.create_task(sup.run())
    await until(lambda: fake.started == [("flaky", 1)])
    fake.end("flaky", Outcome.FAILED)
    # the slot goes to the next job while flaky waits out its delay
    await until(lambda: ("other", 1) in fake.started)
    assert state(sup, "flaky") is State.BACKOFF
    fake.end("other")
    await until(lambda: ("flaky", 2) in fake.started)
    fake.end("flaky", attempt=2)
    assert await run == 0
    retrying = [r for r in _events(sup) if r["event"] == "job.retrying"]
    assert [(r["job"], r["delay_s"], r["next_attempt"]) for r in retrying] == [("flaky", 0.2, 2)]


@pytest.mark.asyncio
async def test_a_stop_during_backoff_cancels_the_job_at_once(tmp_path: Path) -> None:
    sup, fake = make(tmp_path, [spec("flaky", retries=3, backoff=Backoff(initial=60.0, jitter=0.0))], workers=1)
    run = asyncio.create_task(sup.run())
    await until(lambda: fake.started == [("flaky", 1)])
    fake.end("flaky", Outcome.FAILED)
    await until(lambda: state(sup, "flaky") is State.BACKOFF)
    t0 = time.monotonic()
    sup.stop.request("SIGTERM")
    assert await run == 143
    assert time.monotonic() - t0 < 0.5  # not the 60 s delay
    job = sup.jobs[0]
    assert job.status is Status.CANCELLED and job.attempts == 1


@pytest.mark.asyncio
async def test_a_shrinking_reload_lets_running_jobs_finish_and_starts_no_more_than_the_new_limit(
    tmp_path: Path,
) -> None:
    sup, fake = make(tmp_path, [spec(f"j{i}") for i in range(6)], workers=3)
    run = asyncio.create_task(sup.run())
    await until(lambda: len(fake.started) == 3)
    sup.set_max_workers(1)
    fake.end("j0")
    fake.end("j1")
    await asyncio.sleep(0.02)
    assert len(fake.started) == 3  # j2 still runs: one slot, taken
    fake.end("j2")
    await until(lambda: len(fake.started) == 4)
    await asyncio.sleep(0.02)
    assert len(fake.started) == 4 and fake.running == {"j3"}
    for j in ("j3", "j4", "j5"):
        await until(lambda j=j: j in fake.running)  # type: ignore[misc]
        assert len(fake.running) == 1
        fake.end(j)
    assert await run == 0


@pytest.mark.asyncio
async def test_an_executor_error_fails_that_job_and_the_run_goes_on(tmp_path: Path) -> None:
    fake = FakeExecutor()
    fake.fail_with["broken"] = RuntimeError("bug in the executor")
    sup, fake = make(tmp_path, [spec("broken"), spec("fine")], workers=1, fake=fake)
    run = asyncio.create_task(sup.run())
    await until(lambda: fake.started == [("fine", 1)])
    fake.end("fine")
    assert await run == 1
    by_id = {j.spec.id: j for j in sup.jobs}
    assert by_id["broken"].status is Status.FAILED and by_id["fine"].status is Status.SUCCEEDED
    assert by_id["broken"].last is not None and by_id["broken"].last.failure == "supervisor_error"


class DeafExecutor(FakeExecutor):
    """Attempts that ignore the stop (a hung cluster call, an executor bug) and end only when
    cancelled; `cleaned` records that the cancellation reached them."""

    def __init__(self) -> None:
        super().__init__()
        self.cleaned: list[str] = []

    async def __call__(
        self,
        s: JobSpec,
        attempt: int,
        ctx: AttemptContext,
        output: JobOutput,
        extra_env: Mapping[str, str] | None = None,
    ) -> AttemptResult:
        self.started.append((s.id, attempt))
        try:
            await asyncio.get_running_loop().create_future()  # never done
        finally:
            self.cleaned.append(s.id)
        raise AssertionError("unreachable")


@pytest.mark.asyncio
@pytest.mark.parametrize(("signal_name", "forced", "code"), [("SIGTERM", False, 143), ("SIGINT", True, 130)])
async def test_a_stop_ends_the_run_in_bounded_time_even_if_an_attempt_ignores_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signal_name: str, forced: bool, code: int
) -> None:
    """The attempts' cancel scope gets a deadline at the stop (grace_period + STOP_MARGIN; a
    forced stop skips the grace): an attempt that does not end by then is cancelled."""
    from aimedres_async.engine import run as run_module

    monkeypatch.setattr(run_module, "STOP_MARGIN", 0.2)
    sup, fake = make(tmp_path, [spec("deaf"), spec("later")], workers=1, fake=DeafExecutor())
    sup.ctx.grace_period = 60.0 if forced else 0.1
    task = asyncio.create_task(sup.run())
    await until(lambda: fake.started == [("deaf", 1)])
    t0 = time.monotonic()
    sup.stop.request(signal_name)
    if forced:
        sup.stop.force()
    assert await asyncio.wait_for(task, 5) == code
    assert time.monotonic() - t0 < 2.0  # the margin (and the grace), not the 60 s grace nor forever
    assert fake.cleaned == ["deaf"] and fake.started == [("deaf", 1)]
    assert [j.status for j in sup.jobs] == [Status.CANCELLED, Status.CANCELLED]


@pytest.mark.asyncio
async def test_each_script_is_hashed_once_per_run_in_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses
    import hashlib
    import threading

    from aimedres_async.engine import dispatch

    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    calls: list[bool] = []
    real = dispatch.file_sha256

    def counting(path: Any) -> str | None:
        calls.append(threading.current_thread() is threading.main_thread())
        return real(path)

    monkeypatch.setattr(dispatch, "file_sha256", counting)
    jobs = [
        dataclasses.replace(spec(f"j{i}", retries=1, backoff=Backoff(initial=0.0, jitter=0.0)), script=script)
        for i in range(3)
    ]
    sup, fake = make(tmp_path, jobs, workers=2)
    task = asyncio.create_task(sup.run())
    await until(lambda: len(fake.started) == 2)
    fake.end("j0", Outcome.FAILED)  # its retry is a second attempt of the same script
    fake.end("j1")
    await until(lambda: ("j0", 2) in fake.started and ("j2", 1) in fake.started)
    fake.end("j0", attempt=2)
    fake.end("j2")
    assert await task == 0
    assert calls == [False]  # once, off the event loop's thread
    assert sup.ctx.script_hashes == {str(script): hashlib.sha256(script.read_bytes()).hexdigest()}


def _events(sup: Supervisor) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in (sup.log.dir / "events.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- the cyclic collector


@pytest.mark.asyncio
async def test_no_collector_pass_while_the_last_files_are_written_and_it_runs_again_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full pass of the cyclic collector over a big run's objects holds the loop (70 ms at
    30,000 jobs): it is off from the end of the attempts to the end of the reports, and on again
    when run() returns."""
    import gc

    sup, fake = make(tmp_path, [spec("a"), spec("b")], workers=2)
    seen: dict[str, bool] = {}
    write_reports = sup._write_reports

    def reports(duration: float) -> None:
        seen["reports"] = gc.isenabled()
        write_reports(duration)

    monkeypatch.setattr(sup, "_write_reports", reports)
    run = asyncio.create_task(sup.run())
    await until(lambda: len(fake.started) == 2)
    seen["running"] = gc.isenabled()
    fake.end("a")
    fake.end("b")
    assert await run == 0
    assert seen == {"running": True, "reports": False}
    assert gc.isenabled()


@pytest.mark.asyncio
async def test_a_cancelled_run_leaves_the_collector_on(tmp_path: Path) -> None:
    import gc

    sup, fake = make(tmp_path, [spec("a")], workers=1)
    run = asyncio.create_task(sup.run())
    await until(lambda: len(fake.started) == 1)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert gc.isenabled()


@pytest.mark.asyncio
async def test_a_full_collection_during_a_run_freezes_what_finished_jobs_left(tmp_path: Path) -> None:
    """What a finished job leaves (its attempt's result, its summary entry) lives to the end of
    the run: once a full pass has seen it, it is frozen, so later full passes do not look at it
    again (at 100,000 jobs each one held the loop longer)."""
    import gc

    sup, fake = make(tmp_path, [spec("a"), spec("b")], workers=1)
    run = asyncio.create_task(sup.run())
    try:
        await until(lambda: len(fake.started) == 1)
        fake.end("a")
        await until(lambda: len(fake.started) == 2)
        result = next(j for j in sup.jobs if j.spec.id == "a").last
        assert result is not None and gc.is_tracked(result)
        gc.collect()  # a full pass, as the collector makes one on its own
        assert not any(o is result for o in gc.get_objects()), "the finished job's result is still collected"
        fake.end("b")
        assert await run == 0
        gc.collect()  # after the run: survivors are not frozen any more
        later = [object()]
        assert any(o is later for o in gc.get_objects())
    finally:
        gc.unfreeze()


@pytest.mark.asyncio
async def test_a_daemon_freezes_nothing_it_lets_go_of(tmp_path: Path) -> None:
    """The daemon drops each finished job: frozen, a reference cycle in one would never be freed."""
    import gc

    cfg: Config = builtin(tmp_path)
    console = Console("console", err=io.StringIO(), out=io.StringIO())
    opts = RunOptions(max_workers=1, logs_dir=tmp_path / "logs", serve=True)
    daemon = Supervisor(cfg, (), opts, console, pools=Pools.of((), None, None), executor=FakeExecutor())
    run = asyncio.create_task(daemon.run())
    try:
        await until(daemon.started_event.is_set)
        kept = [object()]
        gc.collect()
        assert any(o is kept for o in gc.get_objects()), "the daemon froze a live object"
    finally:
        daemon.stop.request("SIGTERM")
        await run
        gc.unfreeze()


@pytest.mark.asyncio
async def test_the_run_makes_a_full_pass_every_so_many_finished_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small passes of its own as jobs finish (system.collector.COLLECT_EVERY), rather than the
    collector's own, which grow with what the run held at the last one."""
    import gc

    from aimedres_async.system import collector

    monkeypatch.setattr(collector, "COLLECT_EVERY", 1)
    thresholds = gc.get_threshold()
    gc.set_threshold(1_000_000_000)  # no pass of the collector's own during the test
    try:
        sup, fake = make(tmp_path, [spec("a"), spec("b")], workers=1)
        run = asyncio.create_task(sup.run())
        await until(lambda: len(fake.started) == 1)
        fake.end("a")
        await until(lambda: len(fake.started) == 2)
        result = next(j for j in sup.jobs if j.spec.id == "a").last
        assert not any(o is result for o in gc.get_objects()), "no full pass when job a finished"
        fake.end("b")
        assert await run == 0
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
