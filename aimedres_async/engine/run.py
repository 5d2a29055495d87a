"""One `run`: the run state, the dispatcher, the recorder and the sampler under one task tree; the
run's start (provenance, `run.started`, --resume) and end (`run.finished`, reports, exit code).

Jobs start in plan order; a retry waits out its backoff without holding a slot and then joins the
back of the queue. A stop (signal, `--fail-fast`) starts nothing more, stops every running attempt
through the executor, and marks what never ran as cancelled: every job ends recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio._backends._asyncio  # else imported on first use, blocking the loop ~50 ms

from aimedres_async.engine.attempt import AttemptContext, StopRequest
from aimedres_async.engine.dispatch import Dispatcher, Executor
from aimedres_async.engine.executors.local import run_attempt
from aimedres_async.engine.failures import cgroup_oom_kills
from aimedres_async.engine.jobrun import JobRun
from aimedres_async.engine.recorder import Recorder
from aimedres_async.engine.sampler import Sampler
from aimedres_async.engine.scheduler import Need, Pools, Slots, capacity
from aimedres_async.engine.state import Change, RunState, State
from aimedres_async.plan.config import Config
from aimedres_async.plan.jobs import JobSpec, Status, resolve_python
from aimedres_async.records import sinks
from aimedres_async.records.console import Console
from aimedres_async.records.framing import timestamp_str
from aimedres_async.records.schema import SCHEMA_VERSION
from aimedres_async.report.summary import supervisor_identity, write_reports
from aimedres_async.system import collector
from aimedres_async.system.provenance import bytes_sha256, git_info, host_info

DAEMON_POINTER = "latest-daemon"  # `serve` leaves logs_dir/latest to `run` (and `logs JOB`)
QUEUE_BATCH = 100  # jobs queued at the start between two turns of the event loop
# How long after its grace period a stopped attempt may take to end before it is cancelled (its
# group killed, shielded): covers the drain of its pipes, and a cluster's scancel/stop_job round trips.
STOP_MARGIN = 30.0


@dataclass(frozen=True)
class RunOptions:
    max_workers: int
    logs_dir: Path
    log_file: Path | None = None
    junit_xml: Path | None = None
    verbose: bool = False
    fail_fast: bool = False
    allow_partial_success: bool = False
    resume: dict[str, Any] | None = None  # the earlier run's summary.json
    step_summary: Path | None = None  # $GITHUB_STEP_SUMMARY
    serve: bool = False  # the spool daemon: jobs arrive through add(); idle is not the end
    job_env: Mapping[str, str] = field(default_factory=dict)  # added to every job's environment
    ledger: Path | None = None  # the daemon's: where cluster jobs it submits are recorded (slurm_ledger)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(2)


class Supervisor:
    """A run of `jobs` (or, serving, of the jobs `add` brings): `run()` returns its exit code.

    The run state (engine.state) says where every job is; the dispatcher moves jobs through it,
    and every move reaches `_changed`, which has the recorder write it down.
    """

    def __init__(
        self,
        cfg: Config,
        jobs: tuple[JobSpec, ...],
        opts: RunOptions,
        console: Console,
        pools: Pools | None = None,
        executor: Executor | None = None,
        local_resources: bool | None = None,
    ) -> None:
        self.cfg = cfg
        self.opts = opts
        self.console = console
        self.run_id = new_run_id()
        self.jobs = [JobRun(spec) for spec in jobs]
        self._index = {j.spec.id: j for j in self.jobs}
        if console.progress is not None:
            console.progress.tail_of = lambda job_id: self._index[job_id].output.tail if job_id in self._index else None
        self.log = sinks.RunLog(
            opts.logs_dir, self.run_id, console.event, opts.log_file, pointer=DAEMON_POINTER if opts.serve else "latest"
        )
        # (job id, pid, attempt, the job.started record's fields)
        self.on_started: Callable[[str, int, int, dict[str, Any]], None] | None = None
        self.before_finish: Callable[[], Awaitable[None]] | None = None  # the daemon's exports under way
        self.ctx = self._attempt_context()
        self.stop = self.ctx.stop
        self.pools = pools or capacity(cfg)
        # Only the local executor's jobs are children of ours; other executors run helper commands
        # (sbatch, squeue) as children that the escaped-process sweep must leave alone.
        self.local_processes = executor is None
        # elsewhere (Ray, Slurm) the cluster schedules resources; a test's fake executor may ask for the pools
        self.local_resources = executor is None if local_resources is None else local_resources
        if not self.local_resources:
            for job in self.jobs:
                job.need = Need()
        self.state = RunState(self._changed)
        self.recorder = Recorder(self.log, console, self.ctx.redact_argv, opts.serve)
        self.dispatcher = Dispatcher(
            self.state,
            self._index,
            executor or run_attempt,  # local processes unless told otherwise
            self.ctx,
            Slots(opts.max_workers),
            self.pools,
            self.log,
            console,
            local_resources=self.local_resources,
            serve=opts.serve,
            fail_fast=opts.fail_fast,
        )
        self._freezer = None if opts.serve else collector.SurvivorFreezer()  # the daemon lets go of its jobs
        self.started_event = anyio.Event()  # set once run.started is logged and the plan queued
        self.error: str | None = None  # the supervisor error that ended the run, if one did
        self.drained_by: str | None = None  # the signal that drained the run (stop = "drain")
        self.started = time.time()

    def _attempt_context(self) -> AttemptContext:
        """What every attempt of the run shares: its records' way out, the stop, the settings."""
        cfg, opts = self.cfg, self.opts
        return AttemptContext(
            run_id=self.run_id,
            emit=self._emit,
            write_output=self.log.write_output,
            stop=StopRequest(),
            stop_signal=cfg.stop_signum,
            grace_period=cfg.supervisor.grace_period,
            max_line_bytes=cfg.supervisor.max_line_bytes,
            echo=self.console.echo if opts.verbose else None,
            redact=cfg.logging.redactor(),
            base_env={**os.environ, **opts.job_env},
            ledger=opts.ledger,
            warn=self.console.warning,
        )

    # ------------------------------------------------------------ what the daemon and signals use

    @property
    def on_slot_free(self) -> Callable[[], None] | None:
        return self.dispatcher.on_slot_free

    @on_slot_free.setter
    def on_slot_free(self, callback: Callable[[], None] | None) -> None:
        self.dispatcher.on_slot_free = callback

    def add(self, spec: JobSpec, on_finished: Callable[[JobRun], None] | None = None, **queued_fields: Any) -> JobRun:
        """Queue a job while running (the daemon's way in); `queued_fields` go into its job.queued."""
        job = JobRun(spec, on_finished=on_finished, queued_fields=queued_fields)
        if not self.local_resources:
            job.need = Need()
        self.jobs.append(job)
        self._index[spec.id] = job
        self.state.add(job.track)
        self.dispatcher.kick()
        return job

    def cancel(self, job_id: str) -> bool:
        """Stop one job for good: a running attempt as a stop does (stop_signal, grace, SIGKILL of
        its group), a waiting or backing-off one at once; it ends cancelled and is not retried."""
        job = self._index.get(job_id)
        if job is None or job.status is not None:
            return False
        self.state.cancel(job_id)
        if job.stop is not None:
            job.stop.request("cancelled")
        return True

    def drain(self, reason: str) -> None:
        """`stop = "drain"`'s first signal: start nothing more (what waits ends cancelled), let the
        running attempts finish with their own outcome; the run then ends as stopped by `reason`."""
        if self.drained_by is None:
            self.drained_by = reason
        self.state.drain()
        self.dispatcher.kick()

    @property
    def stopped_by(self) -> str | None:
        """What stopped the run (a signal, --fail-fast, an error), or drained it; None if nothing."""
        return self.stop.reason or self.drained_by

    def free_slots(self) -> int:
        """How many more jobs could start right now."""
        return max(0, self.dispatcher.slots.free() - self.state.queued_count())

    def set_max_workers(self, n: int) -> None:
        """Change the worker limit while running (SIGHUP); running jobs are not touched."""
        self.dispatcher.slots.resize(n)
        self.dispatcher.kick()

    def _emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """The executors' records (`job.started`, `job.exited`, …) on their way to the run's logs."""
        job = self._index.get(fields.get("job", "")) if event == "job.started" else None
        if job is not None:
            argv = fields.get("argv")  # what really ran: an executor may choose its own ([ray] python)
            fields["interpreter"] = argv[0] if job.spec.python and argv else job.spec.python
        record = self.log.emit(event, **fields)
        if event == "job.started":
            if job is not None:
                job.pid = fields["pid"]
                self.recorder.touch(job)
            if self.on_started is not None:
                self.on_started(fields["job"], fields["pid"], fields["attempt"], fields)
        return record

    def _changed(self, change: Change) -> None:
        """Every move of the run state: recorded, then the daemon's bookkeeping of finished jobs."""
        job = self._index[change.job]
        if change.new is not State.RUNNING:
            job.pid = None
        self.recorder.record(change, job)
        if change.new is not State.FINISHED:
            return
        if self._freezer is not None:
            self._freezer.job_finished()
        job.output.settle()
        if job.on_finished is not None:
            try:
                job.on_finished(job)
            except Exception as e:  # the daemon's bookkeeping must not kill the loop
                self.console.warning(f"{job.spec.id}: finishing failed: {e!r}")
        if self.opts.serve:  # a daemon keeps no history in memory: the ticket has it
            self.jobs.remove(job)
            del self._index[job.spec.id]
            self.state.forget(job.spec.id)

    # ------------------------------------------------------------ the run

    async def run(self) -> int:
        """Run every job to a final state; returns the exit code (see docs/reference/cli.md, "Exit codes")."""
        t0 = time.monotonic()
        planned = list(self.jobs)  # add() may queue more while run.started is being prepared
        self.recorder.meta = self._run_started(await anyio.to_thread.run_sync(self._provenance))
        self.ctx.oom_kills = await anyio.to_thread.run_sync(cgroup_oom_kills)
        # The plan, the config and the summary's entries live as long as the run: they are made
        # without the cyclic collector and then frozen out of its sight, whose full passes over
        # 100,000 jobs' objects held the event loop for up to a second.
        gc.disable()
        try:
            await self._queue(planned)
            self.started_event.set()
            if not self.opts.serve:
                await self.recorder.write_summary()
        finally:
            gc.freeze()
            gc.enable()
        try:
            try:
                with self._freezer or contextlib.nullcontext():  # what finished jobs leave, frozen too
                    await self._run_tasks()
            except Exception as e:  # a supervisor bug: every attempt was stopped (its group killed)
                self._failed(e)
            # The run is over: no cyclic collector pass over its jobs' objects while the last
            # summary writes and the reports are made (at 30,000 jobs one took 70 ms, in the summary
            # writer's thread, holding the loop); it runs again before an [export], and whatever
            # ends the run (a cancellation too) leaves it on.
            gc.disable()
            self.state.abandon()
            return await self._finish(time.monotonic() - t0)
        finally:
            gc.enable()

    async def _queue(self, planned: list[JobRun]) -> None:
        """The plan into the run state, in order; --resume's skipped jobs after it."""
        skipped = self._resumed(planned)
        for start in range(0, len(planned), QUEUE_BATCH):
            batch = planned[start : start + QUEUE_BATCH]
            self.recorder.plan(batch)
            for job in batch:
                if job.spec.id not in skipped:
                    self.state.add(job.track)
            await anyio.lowlevel.checkpoint()  # thousands of jobs: the loop gets a turn between batches
        for job_id, metrics in skipped.items():
            job = self._index[job_id]
            job.output.metrics = metrics
            self.state.add(job.track, Status.SKIPPED)

    async def _run_tasks(self) -> None:
        """The run's task tree: the sampler and the summary writer beside the dispatcher, and every
        attempt in a task group of its own. An error in any of them cancels the others: a running
        attempt is cancelled, and its executor kills its process group (shielded) before it
        returns.

        A stop asks every attempt to end (stop_signal, grace_period, SIGKILL: the executor's
        graceful path); the attempts' cancel scope is the backstop: it gets a deadline of
        grace_period + STOP_MARGIN, so a stop ends the run in bounded time whatever an executor
        (or a cluster) does, each cancelled attempt killing its group in a shielded finally."""
        sampler = Sampler(self.ctx, self.log, self.console, self._index, self.local_processes)
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(sampler.run, name="sampler")
            helpers.start_soon(self.recorder.keep_summary, name="summary")
            try:
                async with anyio.create_task_group() as attempts:
                    self._bound_the_stop(attempts.cancel_scope)
                    await self.dispatcher.run(attempts, helpers)
                    self.state.stop()  # what never started; the running attempts end on their own
            finally:
                gc.disable()  # the run is over (run() enables it again): see run()
                helpers.cancel_scope.cancel()  # the sampler, the summary writer (a write under way completes)

    def _bound_the_stop(self, scope: anyio.CancelScope) -> None:
        """From the stop request on, `scope` (the attempts') ends by grace_period + STOP_MARGIN;
        a forced stop (a second Ctrl+C) skips the grace."""

        def bound(grace: float) -> None:  # a future's callback: no task to ask anyio's clock from
            deadline = asyncio.get_running_loop().time() + grace + STOP_MARGIN
            scope.deadline = min(scope.deadline, deadline)

        self.stop.when_requested().add_done_callback(lambda _f: bound(self.ctx.grace_period))
        self.stop.when_forced().add_done_callback(lambda _f: bound(0.0))

    def _failed(self, error: Exception) -> None:
        """A supervisor error ended the run: `error` says which, in one line (run.finished too)."""
        errors = error.exceptions if isinstance(error, BaseExceptionGroup) else (error,)
        first = errors[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        self.stop.request("error")
        self.error = f"{type(first).__name__}: {first}"

    async def _finish(self, duration: float) -> int:
        """`run.finished`, the final summary.json and the reports; the exit code."""
        if self.before_finish is not None:
            await self.before_finish()
        code = self._exit_code()
        counts = self.state.counts()
        for problem in self.log.write_errors():
            self.console.warning(f"could not write log file {problem}")
        extra: dict[str, Any] = {"error": self.error} if self.error else {}
        self.log.emit(
            "run.finished",
            counts=counts,
            duration_s=round(duration, 3),
            exit_code=code,
            stopped_by=self.stopped_by,
            **extra,
        )
        self.recorder.meta.update(
            finished_at=timestamp_str(),
            duration_s=round(duration, 3),
            exit_code=code,
            counts=counts,
            stopped_by=self.stopped_by,
        )
        if not self.opts.serve:
            await self.recorder.write_summary(final=True)
            # Every task has ended: the reports (read back from the run's files) take a worker thread.
            await anyio.to_thread.run_sync(self._write_reports, duration)
            if self.cfg.export.active:
                gc.enable()  # a tracker's client (SQLAlchemy, protobuf) makes garbage of its own
                await self._export()
        self.log.close()
        return code

    async def _export(self) -> None:
        """`[export]`: the finished run to MLflow and TensorBoard, read back from its files in a
        worker thread; each tracker's result is a record after run.finished, a failure a warning."""
        from aimedres_async.report import auto_export

        self.log.flush_events()
        results = await anyio.to_thread.run_sync(
            auto_export.export_run, self.cfg.export, self.cfg.base_dir, self.log.dir
        )
        auto_export.record(results, self.log, self.console)

    def _provenance(self) -> dict[str, Any]:
        """What run.started records about the config, the checkout and the host (file reads and a
        `git` subprocess: run in a worker thread)."""
        cfg = self.cfg
        config_sha = None
        if cfg.path is not None:
            try:
                config_sha = bytes_sha256(cfg.path.read_bytes())
            except OSError:
                pass
        return {
            "config": str(cfg.path.resolve()) if cfg.path else None,
            "config_sha256": config_sha,
            "git": git_info(cfg.base_dir),
            **host_info(),
            # the interpreter of .py scripts unless a job names its own (job.started says which ran)
            "interpreter": resolve_python(cfg.supervisor.python, cfg.base_dir),
        }

    def _run_started(self, provenance: dict[str, Any]) -> dict[str, Any]:
        provenance = dict(provenance)
        interpreter = provenance.pop("interpreter")  # in run.started only, not in summary.json
        meta: dict[str, Any] = {
            "schema": SCHEMA_VERSION,  # docs/reference/log-records.md: additive changes keep it
            "run": self.run_id,
            "started_at": timestamp_str(),
            **provenance,
            "max_workers": self.opts.max_workers,
            "logs_dir": str(self.log.dir),
            **supervisor_identity(),
        }
        self.log.emit("run.started", **meta, job_ids=[j.spec.id for j in self.jobs], interpreter=interpreter)
        return meta

    def _resumed(self, planned: list[JobRun]) -> dict[str, Any]:
        """--resume: the jobs that succeeded in the earlier run with the same command, with their
        final metrics."""
        if not self.opts.resume:
            return {}
        before = {j["id"]: j for j in self.opts.resume.get("jobs", []) if isinstance(j, dict)}
        skipped = {}
        for job in planned:
            old = before.get(job.spec.id)
            same = old is not None and old.get("command") == self.ctx.redact_argv(job.spec.argv)
            if same and old is not None and old.get("status") in ("succeeded", "skipped"):
                skipped[job.spec.id] = old.get("metrics")
        return skipped

    # ------------------------------------------------------------ results

    def _exit_code(self) -> int:
        reason = self.stopped_by
        if self.opts.serve:  # SIGTERM is how systemd stops a service cleanly; an internal error is 1
            return {"SIGINT": 130, "error": 1}.get(reason or "", 0)
        if reason == "error":
            return 1
        if reason in ("SIGINT", "SIGTERM", "SIGHUP"):
            return {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}[reason]
        # counted as the jobs finished: looking at every job here held the loop 38 ms at 30,000 jobs
        required_failed = self.recorder.required_failed > 0
        if reason == "fail-fast":
            return 1
        if required_failed and not self.opts.allow_partial_success:
            return 1
        return 0

    def summary(self) -> dict[str, Any]:
        return self.recorder.summary(self.jobs)

    def _write_reports(self, duration: float) -> None:
        jobs = self.summary()["jobs"]
        for job, run in zip(jobs, self.jobs, strict=True):
            job["last_lines"] = sinks.last_lines(run.output.tail)
        gantt = self._gantt() if self.opts.step_summary is not None else ""
        problems = write_reports(
            self.run_id,
            duration,
            jobs,
            self.opts.junit_xml,
            self.opts.step_summary,
            started_at=self.recorder.meta.get("started_at"),
            step_extra=gantt,
        )
        for problem in problems:
            self.console.warning(problem)

    def _gantt(self) -> str:
        """The run's attempts as a Mermaid gantt block (GitHub draws it), read from events.jsonl."""
        from aimedres_async.report.gantt import mermaid_gantt
        from aimedres_async.report.run_model import ReportError

        self.log.flush_events()
        try:
            return mermaid_gantt(self.log.dir) + "\n"
        except ReportError as e:
            self.console.warning(f"no gantt in the step summary: {e}")
            return ""


def default_workers(parallel: bool, configured: int | None) -> int:
    if not parallel:
        return 1
    return configured or os.cpu_count() or 1
