"""One `run`: dispatch jobs into worker slots, re-queue retries, stop cleanly, write the artifacts.

Jobs start in plan order; a retry waits out its backoff without holding a slot and then joins
the back of the queue. A stop (signal, `--fail-fast`) starts nothing more, stops every running
attempt through the runner, and marks what never ran as cancelled: every job ends recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import shlex
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import anyio._backends._asyncio  # else imported on first use, blocking the loop ~50 ms
from anyio.abc import TaskGroup

from aimedres_async.engine.attempt import AttemptContext, AttemptResult, JobOutput, StopRequest
from aimedres_async.engine.executors.local import run_attempt
from aimedres_async.engine.retries import backoff_delay, should_retry
from aimedres_async.engine.scheduler import Grant, Need, Pools, Slots, capacity, pick_next
from aimedres_async.plan import metrics_file, preflight
from aimedres_async.plan.config import Config
from aimedres_async.plan.jobs import JobSpec, Outcome, State, Status, resolve_python, transition
from aimedres_async.records import sinks
from aimedres_async.records.console import Console
from aimedres_async.records.schema import SCHEMA_VERSION
from aimedres_async.report import diagnose
from aimedres_async.report.summary import load_summary as load_summary
from aimedres_async.report.summary import markdown_table as markdown_table
from aimedres_async.report.summary import metrics_text as metrics_text
from aimedres_async.report.summary import recorded_peaks as recorded_peaks
from aimedres_async.report.summary import results_table as results_table
from aimedres_async.report.summary import supervisor_identity, write_reports, write_summary
from aimedres_async.system import procs
from aimedres_async.system.provenance import bytes_sha256, git_info, host_info

# One attempt of a job, wherever it runs: executors.local.run_attempt, RayExecutor.run_attempt or
# SlurmExecutor.run_attempt.
Executor = Callable[[JobSpec, int, AttemptContext, JobOutput, "Mapping[str, str] | None"], Awaitable[AttemptResult]]

SAMPLE_INTERVAL = 1.0
FILES_AHEAD = 32  # job log files created ahead of their start, in one worker-thread call
DAEMON_POINTER = "latest-daemon"  # `serve` leaves logs_dir/latest to `run` (and `logs JOB`)
ESCAPED_ROUNDS = 50  # kill-and-look-again rounds per tick for chains of escaped processes
SUMMARY_MIN_INTERVAL = 1.0
QUEUE_BATCH = 100  # jobs queued at the start between two turns of the event loop


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


@dataclass
class JobRun:
    """One job's progress through the run; becomes its entry in summary.json."""

    spec: JobSpec
    attempts: int = 0
    state: State = State.QUEUED
    status: Status | None = None  # how it ended, once state is FINISHED
    pid: int | None = None  # the running attempt's main process
    last: AttemptResult | None = None
    output: JobOutput = field(default_factory=JobOutput)
    duration_s: float = 0.0
    peak_rss_bytes: int = 0
    on_finished: Callable[[JobRun], None] | None = None
    need: Need = field(default_factory=Need)
    bypassed: int = 0  # times a later job started first (see scheduler.pick_next)
    grant: Grant | None = None
    stop: StopRequest | None = None  # the running attempt's own stop (see Supervisor.cancel)
    cancelled: bool = False

    def __post_init__(self) -> None:
        self.need = Need.of(self.spec.resources)

    @property
    def failed(self) -> bool:
        return self.status is not None and not self.status.ok and self.status is not Status.CANCELLED

    def error(self) -> str | None:
        """Why it failed: the supervisor's reason (it could not start, ...) or its last stderr line."""
        if self.last is not None and self.last.error:
            return self.last.error
        return diagnose.error_line(self.output.tail) if self.failed else None

    def fixed_fields(self, log_path: Path, argv: list[str]) -> dict[str, Any]:
        """The parts of its summary entry that never change: command, log path, output folder."""
        return {
            "command": argv,
            "command_line": shlex.join(argv),
            "log": str(log_path),
            "output_dir": str(self.spec.output_dir) if self.spec.output_dir else None,
        }

    def summary(self, fixed: Mapping[str, Any]) -> dict[str, Any]:
        """The summary.json entry; `fixed` holds `fixed_fields` (or an earlier entry, which has them)."""
        last = self.last
        return {
            "id": self.spec.id,
            "status": self.status.value if self.status else self.state.value,
            "optional": self.spec.optional,
            "attempts": self.attempts,
            "pid": self.pid,
            "exit_code": last.exit_code if last else None,
            "signal": last.signal if last else None,
            "failure": last.failure if last and self.status and not self.status.ok else None,
            "error": self.error(),
            "error_tail": diagnose.error_tail(self.output.tail) if self.failed else [],
            "duration_s": round(self.duration_s, 3),
            "peak_rss_bytes": self.peak_rss_bytes,
            "command": fixed["command"],
            "command_line": fixed["command_line"],
            "log": fixed["log"],
            "output_dir": fixed["output_dir"],
            "metrics": self.output.metrics,
        }


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(2)


class Supervisor:
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
        self._entries: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}  # see _entry
        if console.progress is not None:
            console.progress.tail_of = lambda job_id: self._index[job_id].output.tail if job_id in self._index else None
        self.stop = StopRequest()
        self.log = sinks.RunLog(
            opts.logs_dir, self.run_id, console.event, opts.log_file, pointer=DAEMON_POINTER if opts.serve else "latest"
        )
        self.on_started: Callable[[str, int, int], None] | None = None  # (job id, pid, attempt)
        self.on_slot_free: Callable[[], None] | None = None
        self.ctx = AttemptContext(
            run_id=self.run_id,
            emit=self._emit,
            write_output=self.log.write_output,
            stop=self.stop,
            stop_signal=cfg.stop_signum,
            grace_period=cfg.supervisor.grace_period,
            max_line_bytes=cfg.supervisor.max_line_bytes,
            echo=console.echo if opts.verbose else None,
            redact=cfg.logging.redactor(),
            base_env={**os.environ, **opts.job_env},
        )
        self.slots = Slots(opts.max_workers)
        self.pools = pools or capacity(cfg)
        self.run_attempt: Executor = executor or run_attempt  # local processes unless told otherwise
        # Only the local executor's jobs are children of ours; other executors run helper commands
        # (sbatch, squeue) as children that the escaped-process sweep must leave alone.
        self.local_processes = executor is None
        # elsewhere (Ray, Slurm) the cluster schedules resources; a test's fake executor may ask for the pools
        self.local_resources = executor is None if local_resources is None else local_resources
        if not self.local_resources:
            for job in self.jobs:
                job.need = Need()
        self._waiting: deque[JobRun] = deque()
        self._running = 0  # attempts in progress (each a task of the run's task group)
        self._attempts: TaskGroup | None = None
        self._tasks: TaskGroup | None = None
        self._summary_lock = anyio.Lock()  # one summary.json write at a time, in order
        self.started_event = anyio.Event()  # set once run.started is logged and the plan queued
        self._backoff: dict[str, asyncio.TimerHandle] = {}
        self._wake = asyncio.Event()
        self._last_summary = 0.0
        self._summary_timer: asyncio.TimerHandle | None = None
        self._told_gone = False
        self._making_files = False
        self.error: str | None = None  # the supervisor error that ended the run, if one did
        self._meta: dict[str, Any] = {}
        self.started = time.time()

    def _emit(self, event: str, **fields: Any) -> dict[str, Any]:
        if event == "job.started" and fields.get("job") in self._index:
            spec = self._index[fields["job"]].spec
            argv = fields.get("argv")  # what really ran: an executor may choose its own ([ray] python)
            fields["interpreter"] = argv[0] if spec.python and argv else spec.python
        record = self.log.emit(event, **fields)
        if event == "job.started":
            job = self._index.get(fields["job"])
            if job is not None:
                job.pid = fields["pid"]
                self._summary_changed()
            if self.on_started is not None:
                self.on_started(fields["job"], fields["pid"], fields["attempt"])
        return record

    def _move(self, job: JobRun, new: State) -> None:
        """The one place a job's state changes (jobs.transition checks the move)."""
        job.state = transition(job.state, new)
        if new is not State.RUNNING:
            job.pid = None
        self._summary_changed()

    def add(self, spec: JobSpec, on_finished: Callable[[JobRun], None] | None = None, **queued_fields: Any) -> JobRun:
        """Queue a job while running (the daemon's way in)."""
        job = JobRun(spec, on_finished=on_finished)
        if not self.local_resources:
            job.need = Need()
        self.jobs.append(job)
        self._index[spec.id] = job
        self.log.emit("job.queued", job=spec.id, **queued_fields)
        self._waiting.append(job)
        self._wake.set()
        return job

    def cancel(self, job_id: str) -> bool:
        """Stop one job for good: a running attempt as a stop does (stop_signal, grace, SIGKILL of
        its group), a waiting or backing-off one at once; it ends cancelled and is not retried."""
        job = self._index.get(job_id)
        if job is None or job.status is not None:
            return False
        job.cancelled = True
        if job.stop is not None:
            job.stop.request("cancelled")
        elif job in self._waiting:
            self._waiting.remove(job)
            self._finish(job, Status.CANCELLED)
        elif job_id in self._backoff:
            self._backoff.pop(job_id).cancel()
            self._finish(job, Status.CANCELLED)
        return True

    def free_slots(self) -> int:
        """How many more jobs could start right now."""
        return max(0, self.slots.free() - len(self._waiting))

    def set_max_workers(self, n: int) -> None:
        """Change the worker limit while running (SIGHUP); running jobs are not touched."""
        self.slots.resize(n)
        self._wake.set()

    # ------------------------------------------------------------ the run

    async def run(self) -> int:
        """Run every job to a final state; returns the exit code (see docs/reference/cli.md, "Exit codes")."""
        t0 = time.monotonic()
        planned = list(self.jobs)  # add() may queue more while run.started is being prepared
        self._meta = self._run_started(await anyio.to_thread.run_sync(self._provenance))
        resumed = self._apply_resume()
        for n, job in enumerate(planned, 1):
            if job.state is State.QUEUED:
                self.log.emit("job.queued", job=job.spec.id)
                self._waiting.append(job)
            if n % QUEUE_BATCH == 0:
                await anyio.lowlevel.checkpoint()  # thousands of jobs: the loop gets a turn between batches
        for job in resumed:
            self.log.emit(
                "job.finished",
                job=job.spec.id,
                status=job.status,
                attempts=0,
                optional=job.spec.optional,
                metrics=job.output.metrics,
                reason="succeeded in the resumed run with the same command",
            )
        self.started_event.set()
        if not self.opts.serve:
            await self._write_summary()
        try:
            await self._run_tasks()
        except Exception as e:  # a supervisor bug: every attempt was stopped (its group killed)
            self._failed(e)
        self._cancel_unfinished()
        duration = time.monotonic() - t0
        code = self._exit_code()
        counts: dict[str, int] = {}
        for job in self.jobs:
            key = job.status.value if job.status else job.state.value
            counts[key] = counts.get(key, 0) + 1
        for problem in self.log.write_errors():
            self.console.warning(f"could not write log file {problem}")
        extra: dict[str, Any] = {"error": self.error} if self.error else {}
        self.log.emit(
            "run.finished",
            counts=counts,
            duration_s=round(duration, 3),
            exit_code=code,
            stopped_by=self.stop.reason,
            **extra,
        )
        self._meta.update(
            finished_at=sinks.timestamp_str(),
            duration_s=round(duration, 3),
            exit_code=code,
            counts=counts,
            stopped_by=self.stop.reason,
        )
        if not self.opts.serve:
            await self._write_summary(final=True)
            # Every task has ended: the reports (read back from the run's files) take a worker thread.
            await anyio.to_thread.run_sync(self._write_reports, duration)
        self.log.close()
        return code

    async def _run_tasks(self) -> None:
        """The run's tasks under two task groups: the sampler beside the dispatcher, and every
        attempt under the dispatcher. An error in any of them cancels the others: a running
        attempt is cancelled, and its runner kills its process group before it returns."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            tasks.start_soon(self._sample, name="sampler")
            try:
                async with anyio.create_task_group() as attempts:
                    self._attempts = attempts
                    await self._dispatch()
                    self._cancel_unstarted()  # the running attempts end on their own (or stopped)
            finally:
                self._attempts = None
                tasks.cancel_scope.cancel()  # the sampler; a summary write under way completes
        self._tasks = None

    def _failed(self, error: Exception) -> None:
        """A supervisor error ended the run: `error` says which, in one line (run.finished too)."""
        errors = error.exceptions if isinstance(error, BaseExceptionGroup) else (error,)
        first = errors[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        self.stop.request("error")
        self.error = f"{type(first).__name__}: {first}"

    def _cancel_unstarted(self) -> None:
        for job in self._waiting:
            self._finish(job, Status.CANCELLED)
        self._waiting.clear()
        for job_id, handle in list(self._backoff.items()):
            handle.cancel()
            self._finish(self._by_id(job_id), Status.CANCELLED)
        self._backoff.clear()

    def _cancel_unfinished(self) -> None:
        """After an error: what never started, and the attempts that were stopped, end cancelled."""
        self._cancel_unstarted()
        for job in list(self.jobs):
            if job.state is State.RUNNING:
                self._finish(job, Status.CANCELLED)

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
            "started_at": sinks.timestamp_str(),
            **provenance,
            "max_workers": self.opts.max_workers,
            "logs_dir": str(self.log.dir),
            **supervisor_identity(),
        }
        self.log.emit("run.started", **meta, job_ids=[j.spec.id for j in self.jobs], interpreter=interpreter)
        return meta

    def _apply_resume(self) -> list[JobRun]:
        if not self.opts.resume:
            return []
        before = {j["id"]: j for j in self.opts.resume.get("jobs", []) if isinstance(j, dict)}
        skipped = []
        for job in self.jobs:
            old = before.get(job.spec.id)
            same = old is not None and old.get("command") == self.ctx.redact_argv(job.spec.argv)
            if same and old is not None and old.get("status") in ("succeeded", "skipped"):
                job.status = Status.SKIPPED
                job.state = transition(job.state, State.FINISHED)
                job.output.metrics = old.get("metrics")
                skipped.append(job)
        return skipped

    async def _dispatch(self) -> None:
        """Acquire a slot, pick the next job that fits, start its attempt; until nothing is left."""
        while True:
            if self.stop.requested.is_set():
                return
            if not self._waiting and not self._running and not self._backoff and not self.opts.serve:
                return
            if self._waiting and await self._acquire_slot():
                picked = pick_next(self._waiting, self.pools)
                if picked is not None:
                    self._start(*picked)
                    self._make_files_ahead()
                    continue
                self.slots.release()  # nothing fits until a running job gives its resources back
            await self._until_woken()

    async def _acquire_slot(self) -> bool:
        """A worker slot, or False if the run is stopped (or woken by a change) first."""
        if not self.slots.locked():
            await self.slots.acquire()  # free: returns without waiting
            return True
        acquire = asyncio.ensure_future(self.slots.acquire())
        try:
            await asyncio.wait({acquire, self.stop.when_requested()}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not acquire.done():
                acquire.cancel()
        if acquire.done() and not acquire.cancelled():
            if self.stop.requested.is_set():
                self.slots.release()
                return False
            return True
        return False

    def _start(self, job: JobRun, grant: Grant) -> None:
        job.grant = grant
        self._waiting.remove(job)
        self._move(job, State.RUNNING)
        assert self._attempts is not None
        self._running += 1
        self._attempts.start_soon(self._attempt, job, name=f"job:{job.spec.id}")

    def _make_files_ahead(self) -> None:
        """The log files of the next jobs to start are created in a worker thread, a batch at a
        time, so that the loop does not wait for the disk at each start."""
        if self._making_files or self._tasks is None:
            return
        ids = [j.spec.id for j in itertools.islice(self._waiting, FILES_AHEAD) if not self.log.has_job_file(j.spec.id)]
        if len(ids) >= FILES_AHEAD // 2:
            self._making_files = True
            self._tasks.start_soon(self._make_files, ids, name="job files")

    async def _make_files(self, ids: list[str]) -> None:
        try:
            await anyio.to_thread.run_sync(self.log.make_job_files, ids)
        finally:
            self._making_files = False

    async def _until_woken(self) -> None:
        wake_wait: asyncio.Future[Any] = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({self.stop.when_requested(), wake_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake_wait.cancel()
        self._wake.clear()

    async def _attempt(self, job: JobRun) -> None:
        job.attempts += 1
        attempt = job.attempts
        self.log.open_job(job.spec.id)
        problem = preflight.ensure_output_dirs(job.spec)
        if problem is not None:
            self.console.warning(problem)
        try:
            devices = job.grant.visible_devices() if job.grant else None
            if devices is None and self.local_resources and self.pools.gpus:
                devices = ""  # GPUs are handed out here: a job that asked for none gets none
            job.stop = self.stop.child()
            try:
                result = await self.run_attempt(
                    job.spec,
                    attempt,
                    replace(self.ctx, stop=job.stop),
                    job.output,
                    {"CUDA_VISIBLE_DEVICES": devices} if devices is not None else None,
                )
            except Exception as e:  # a supervisor bug must not hang or lose the job
                result = AttemptResult(outcome=Outcome.FAILED, failure="supervisor_error", error=repr(e))
                self.log.emit(
                    "job.exited",
                    job=job.spec.id,
                    attempt=attempt,
                    outcome="failed",
                    failure="supervisor_error",
                    error=repr(e),
                )
            finally:
                self.stop.release(job.stop)
                job.stop = None
                self.slots.release()
                if job.grant is not None:
                    self.pools.give(job.grant)
                    job.grant = None
            if result.outcome is Outcome.SUCCEEDED and job.spec.metrics_file:
                # a report file on a slow or network disk must not hold up the loop
                job.output.metrics = await self._read_metrics_file(job)
            self._after_attempt(job, attempt, result)
        finally:
            # Counted down before the dispatcher is woken: it must not see a job still "running".
            self._running -= 1
            self._wake.set()
            if self.on_slot_free is not None:
                self.on_slot_free()

    def _after_attempt(self, job: JobRun, attempt: int, result: AttemptResult) -> None:
        """Record an attempt; finish the job, or schedule its retry after the backoff."""
        job.last = result
        job.duration_s += result.duration_s
        job.peak_rss_bytes = max(job.peak_rss_bytes, result.peak_rss_bytes)
        if result.outcome is Outcome.SUCCEEDED:
            self._finish(job, Status.SUCCEEDED)
        elif job.cancelled:
            self._finish(job, Status.CANCELLED)
        elif should_retry(result, job.spec, attempt) and not self.stop.requested.is_set():
            self._after_oom(job, result)
            delay = backoff_delay(job.spec.backoff, attempt)
            self.log.emit(
                "job.retrying", job=job.spec.id, attempt=attempt, delay_s=round(delay, 3), next_attempt=attempt + 1
            )
            self._move(job, State.BACKOFF)
            self._backoff[job.spec.id] = asyncio.get_running_loop().call_later(delay, self._requeue, job)
        else:
            self._finish(job, Status(result.outcome.value))
            if self.opts.fail_fast and not job.status.ok and not job.spec.optional:  # type: ignore[union-attr]
                self.stop.request("fail-fast")

    async def _read_metrics_file(self, job: JobRun) -> dict[str, Any] | None:
        """The job's final metrics with its `metrics_file` merged in, read in a worker thread."""
        problems: list[str] = []
        spec = job.spec
        metrics = await anyio.to_thread.run_sync(
            metrics_file.final_metrics, spec.workdir, spec.metrics_file, job.output.metrics, problems.append
        )
        for message in problems:
            self.console.warning(f"{spec.id}: {message}")
        return metrics

    def _after_oom(self, job: JobRun, result: AttemptResult) -> None:
        """An out-of-memory failure is retried only where it can run without sharing the memory."""
        if not self.local_resources:
            return  # a cluster (Ray, Slurm) places the retry: this machine's pools do not apply
        if result.failure == "cuda_oom" and job.need.gpus:
            job.need = replace(job.need, exclusive_gpu=True)
        elif result.failure == "oom_killed":
            want = max(job.need.memory, int(result.peak_rss_bytes * 1.2))
            total = self.pools.total_memory
            job.need = replace(job.need, memory=min(want, total) if total is not None else want)

    def _requeue(self, job: JobRun) -> None:
        self._backoff.pop(job.spec.id, None)
        self._move(job, State.QUEUED)
        self._waiting.append(job)
        self._wake.set()

    def _finish(self, job: JobRun, status: Status) -> None:
        if job.state is State.FINISHED:
            return
        job.status = status
        self._move(job, State.FINISHED)
        why = diagnose.failure_fields(job.output.tail, job.spec.python) if job.failed else {}
        if job.failed and job.last is not None and job.last.error:
            why["error"] = job.last.error
        self.log.emit(
            "job.finished",
            job=job.spec.id,
            status=status.value,
            attempts=job.attempts,
            optional=job.spec.optional,
            metrics=job.output.metrics,
            **why,
        )
        self.log.close_job(job.spec.id)
        if job.on_finished is not None:
            try:
                job.on_finished(job)
            except Exception as e:  # the daemon's bookkeeping must not kill the loop
                self.console.warning(f"{job.spec.id}: finishing failed: {e!r}")
        if self.opts.serve:
            self.jobs.remove(job)  # a daemon keeps no history in memory: the ticket has it
            self._index.pop(job.spec.id, None)
            self._entries.pop(job.spec.id, None)

    def _by_id(self, job_id: str) -> JobRun:
        return self._index[job_id]

    async def _sample(self) -> None:
        """Once a tick, one /proc scan: peak RSS of every running job's whole process group, each
        reading also recorded as a `job.sample` event (at most one per job per second), which the
        HTML report draws as memory over time; and the processes jobs left behind outside their
        groups."""
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL)
            if self.log.check_present() and not self._told_gone:
                self._told_gone = True
                self.console.warning(
                    f"the run's logs folder {self.log.dir} was removed while running: recreated "
                    "it; what was written in between is lost"
                )
            if not self.ctx.live and not procs.has_children():
                continue
            snapshot = await asyncio.to_thread(procs.processes)
            for job_id, live in list(self.ctx.live.items()):
                if not live.pgid:  # being spawned: no group yet (pgid 0 is the kernel's threads)
                    continue
                rss = procs.group_rss(live.pgid, snapshot)
                live.peak_rss = max(live.peak_rss, procs.group_peak(live.pgid, snapshot) if rss else 0)
                job = self._index.get(job_id)
                if rss and job is not None and job.status is None:
                    self.log.emit("job.sample", job=job_id, attempt=job.attempts, rss_bytes=rss)
            if self.local_processes:
                await self._kill_escaped(snapshot)

    async def _kill_escaped(self, snapshot: list[procs.ProcInfo]) -> None:
        """A job's escaped descendants (setsid, double fork) die once their attempt has ended.

        They are re-parented to us (the subreaper) when their parents die; their environment says
        which attempt they belong to. Killing one re-parents its own children to us, so the scan
        repeats until a round kills nothing: chains die whole. A process whose environment names
        no attempt is killed once no attempt is running (it can belong to none then).
        """
        for _round in range(ESCAPED_ROUNDS):
            live, zombies = await asyncio.to_thread(procs.adopted, snapshot)
            procs.reap_zombies(zombies)
            running = {(self.run_id, job, str(lv.attempt)) for job, lv in self.ctx.live.items()}
            victims = [p for p in live if p.marks not in running and (p.marks is not None or not self.ctx.live)]
            if not [p for p in victims if procs.kill_adopted(p)]:
                return
            await asyncio.sleep(0.02)
            snapshot = await asyncio.to_thread(procs.processes)

    # ------------------------------------------------------------ results

    def _exit_code(self) -> int:
        reason = self.stop.reason
        if self.opts.serve:  # SIGTERM is how systemd stops a service cleanly; an internal error is 1
            return {"SIGINT": 130, "error": 1}.get(reason or "", 0)
        if reason == "error":
            return 1
        if reason in ("SIGINT", "SIGTERM", "SIGHUP"):
            return {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}[reason]
        required_failed = any(not j.status.ok for j in self.jobs if j.status and not j.spec.optional)
        if reason == "fail-fast":
            return 1
        if required_failed and not self.opts.allow_partial_success:
            return 1
        return 0

    def summary(self) -> dict[str, Any]:
        return {**self._meta, "jobs": [self._entry(j) for j in self.jobs]}

    def _entry(self, job: JobRun) -> dict[str, Any]:
        """A job's summary entry, rebuilt only when its attempts, status or last result changed
        (summary.json is rewritten while thousands of jobs wait or have finished)."""
        key = (job.attempts, job.state, job.status, job.pid, id(job.last))
        cached = self._entries.get(job.spec.id)
        if cached is not None and cached[0] == key:
            return cached[1]
        fixed = (
            cached[1]
            if cached is not None
            else job.fixed_fields(self.log.job_path(job.spec.id), self.ctx.redact_argv(job.spec.argv))
        )
        entry = job.summary(fixed)
        self._entries[job.spec.id] = (key, entry)
        return entry

    def _summary_changed(self) -> None:
        """A job changed state: summary.json is rewritten at most once per SUMMARY_MIN_INTERVAL,
        and a change inside the interval is deferred to its end, never dropped."""
        if self.opts.serve or self._summary_timer is not None or not self._meta:
            return
        wait = self._last_summary + SUMMARY_MIN_INTERVAL - time.monotonic()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._summary_timer = loop.call_later(max(0.0, wait), self._deferred_summary)

    def _deferred_summary(self) -> None:
        self._summary_timer = None
        if self._tasks is not None:
            self._tasks.start_soon(self._write_summary, name="summary")

    async def _write_summary(self, final: bool = False) -> None:
        """summary.json, whole (atomic.write), in a worker thread. When the final one finds the disk
        full, the out-of-date one from earlier in the run is removed and the write tried once
        more: its space is usually enough, and else no summary is better than one that says
        "queued"."""
        if self._summary_timer is not None:
            self._summary_timer.cancel()
            self._summary_timer = None
        async with self._summary_lock:  # the state as of this write, written after the one before
            self._last_summary = time.monotonic()
            data = self.summary()
            problem = await anyio.to_thread.run_sync(write_summary, self.log.dir / "summary.json", data, final)
        if problem is not None:
            self.console.warning(problem)

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
            started_at=self._meta.get("started_at"),
            step_extra=gantt,
        )
        for problem in problems:
            self.console.warning(problem)

    def _gantt(self) -> str:
        """The run's attempts as a Mermaid gantt block (GitHub draws it), read from events.jsonl."""
        from aimedres_async.report.html import ReportError, mermaid_gantt

        self.log.flush_events()
        try:
            return mermaid_gantt(self.log.dir) + "\n"
        except ReportError as e:
            self.console.warning(f"no gantt in the step summary: {e}")
            return ""


def make_executor(cfg: Config, logs_dir: Path | None = None) -> Executor | None:
    """The attempt runner for `[supervisor] executor`: None = local processes.

    Raises executors.ray.RayUnavailable or executors.slurm.SlurmUnavailable (a one-line reason)
    when the cluster's software is missing or the cluster does not answer.
    """
    if cfg.supervisor.executor == "slurm":
        from aimedres_async.engine.executors.slurm import SlurmExecutor

        logs = logs_dir or cfg.resolve(cfg.supervisor.logs_dir)
        return SlurmExecutor(cfg.slurm, str(cfg.base_dir), str(logs)).run_attempt
    if cfg.supervisor.executor != "ray":
        return None
    from aimedres_async.engine.executors.ray import RayExecutor

    return RayExecutor(cfg.ray, str(cfg.base_dir)).run_attempt


def default_workers(parallel: bool, configured: int | None) -> int:
    if not parallel:
        return 1
    return configured or os.cpu_count() or 1
