"""The dispatcher: takes a worker slot, asks the run state for the next queued job that fits, starts
its attempt in the run's task group, and tells the state how the attempt ended.

A backoff is the dispatcher's own wait, up to the earliest due time the state gives: it holds no
slot and needs no task or timer of its own.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import anyio
from anyio.abc import TaskGroup

from aimedres_async.engine.attempt import AttemptContext, AttemptResult, JobOutput, StopRequest, file_sha256
from aimedres_async.engine.jobrun import JobRun
from aimedres_async.engine.retries import backoff_delay, should_retry
from aimedres_async.engine.scheduler import Grant, Pools, Slots, pick_next
from aimedres_async.engine.state import RunState
from aimedres_async.plan import metrics_file, preflight
from aimedres_async.plan.jobs import JobSpec, Outcome
from aimedres_async.records.console import Console
from aimedres_async.records.sinks import RunLog

# One attempt of a job, wherever it runs: executors.local.run_attempt, RayExecutor.run_attempt or
# SlurmExecutor.run_attempt.
Executor = Callable[[JobSpec, int, AttemptContext, JobOutput, "Mapping[str, str] | None"], Awaitable[AttemptResult]]

FILES_AHEAD = 128  # job log files created ahead of their start, in one worker-thread call


class Dispatcher:
    """Starts attempts while slots and resources allow, until the run stops or (not serving) every
    job has finished. `kick()` tells it something changed: a slot came free, a job was queued, a
    stop was requested, the worker limit changed."""

    def __init__(
        self,
        state: RunState,
        jobs: Mapping[str, JobRun],
        run_attempt: Executor,
        ctx: AttemptContext,
        slots: Slots,
        pools: Pools,
        log: RunLog,
        console: Console,
        *,
        local_resources: bool,
        serve: bool,
        fail_fast: bool,
    ) -> None:
        self.state = state
        self.jobs = jobs
        self.run_attempt = run_attempt
        self.ctx = ctx
        self.stop: StopRequest = ctx.stop
        self.slots = slots
        self.pools = pools
        self.log = log
        self.console = console
        self.local_resources = local_resources
        self.serve = serve
        self.fail_fast = fail_fast
        self.on_slot_free: Callable[[], None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._making_files = False
        self._starts_since_look = FILES_AHEAD  # the first start looks
        self._hashing: dict[str, anyio.Event] = {}  # scripts being hashed

    def kick(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def run(self, attempts: TaskGroup, helpers: TaskGroup) -> None:
        """Until stopped, or (not serving) until nothing is queued, running or backing off.
        Attempts start in `attempts`; log files are made ahead in `helpers`."""
        self.stop.when_requested().add_done_callback(lambda _f: self.kick())
        while not self.stop.requested.is_set():
            self.state.wake(time.monotonic())
            if self.state.idle() and not self.serve:
                return
            if self.state.queued_count() and not self.slots.locked():
                await self.slots.acquire()  # a free slot: returns without waiting
                picked = pick_next((self.jobs[j] for j in self.state.queued()), self.pools)
                if picked is not None:
                    self._start(attempts, *picked)
                    self._make_files_ahead(helpers)
                    continue
                self.slots.release()  # nothing fits until a running job gives its resources back
            await self._until_kicked()

    async def _until_kicked(self) -> None:
        """Wait for a kick, or for the earliest backoff to end."""
        self._wake = asyncio.get_running_loop().create_future()
        due = self.state.next_due()
        try:
            if due is None:
                await self._wake
            else:
                with anyio.move_on_after(max(0.0, due - time.monotonic())):
                    await self._wake
        finally:
            self._wake = None

    def _start(self, attempts: TaskGroup, job: JobRun, grant: Grant) -> None:
        job.grant = grant
        self.state.start(job.spec.id)
        attempts.start_soon(self._attempt, job, name=f"job:{job.spec.id}")

    def _make_files_ahead(self, helpers: TaskGroup) -> None:
        """The log files of the next jobs to start are created in a worker thread, a batch at a
        time, so that the loop does not wait for the disk at each start."""
        self._starts_since_look += 1
        if self._making_files or self._starts_since_look < FILES_AHEAD // 8:
            return  # a look walks FILES_AHEAD queued jobs: not at every start
        self._starts_since_look = 0
        upcoming = itertools.islice(self.state.queued(), FILES_AHEAD)
        ids = [j for j in upcoming if not self.log.has_job_file(j)]
        if len(ids) >= FILES_AHEAD // 2:
            self._making_files = True
            helpers.start_soon(self._make_files, ids, name="job files")

    async def _make_files(self, ids: list[str]) -> None:
        try:
            await anyio.to_thread.run_sync(self.log.make_job_files, ids)
        finally:
            self._making_files = False

    # ------------------------------------------------------------ one attempt

    async def _attempt(self, job: JobRun) -> None:
        attempt = job.attempts
        if job.spec.script is not None:
            await self._hash_script(str(job.spec.script))
        self.log.open_job(job.spec.id)
        made = preflight.missing_output_dirs(job.spec)
        problem = preflight.ensure_output_dirs(job.spec)
        if problem is not None:
            self.console.warning(problem)
        try:
            result = await self._run_attempt(job, attempt)
            if result.outcome is not Outcome.SUCCEEDED and made:
                preflight.remove_if_empty(made)
            if result.outcome is Outcome.SUCCEEDED and (job.spec.metrics_file or job.spec.metrics_keys):
                # a report file on a slow or network disk must not hold up the loop
                job.output.metrics = await self._read_metrics_file(job)
            self._after_attempt(job, attempt, result)
        finally:
            # The state has moved on before the dispatcher looks again.
            self.kick()
            if self.on_slot_free is not None:
                self.on_slot_free()

    async def _hash_script(self, script: str) -> None:
        """A script's sha256 for job.started, once per script per run, in a worker thread; an
        attempt whose script is being hashed for another waits for that."""
        if script in self.ctx.script_hashes:
            return
        pending = self._hashing.get(script)
        if pending is not None:
            await pending.wait()
            return
        self._hashing[script] = done = anyio.Event()
        try:
            self.ctx.script_hashes[script] = await anyio.to_thread.run_sync(file_sha256, script)
        finally:
            del self._hashing[script]
            done.set()

    async def _run_attempt(self, job: JobRun, attempt: int) -> AttemptResult:
        """The executor's attempt with the job's own stop; the slot and resources are given back
        however it ends."""
        devices = job.grant.visible_devices() if job.grant else None
        if devices is None and self.local_resources and self.pools.gpus:
            devices = ""  # GPUs are handed out here: a job that asked for none gets none
        job.stop = self.stop.child()
        try:
            return await self.run_attempt(
                job.spec,
                attempt,
                replace(self.ctx, stop=job.stop),
                job.output,
                {"CUDA_VISIBLE_DEVICES": devices} if devices is not None else None,
            )
        except Exception as e:  # a supervisor bug must not hang or lose the job
            self.log.emit(
                "job.exited",
                job=job.spec.id,
                attempt=attempt,
                outcome="failed",
                failure="supervisor_error",
                error=repr(e),
            )
            return AttemptResult(outcome=Outcome.FAILED, failure="supervisor_error", error=repr(e))
        finally:
            self.stop.release(job.stop)
            job.stop = None
            self.slots.release()
            if job.grant is not None:
                self.pools.give(job.grant)
                job.grant = None

    def _after_attempt(self, job: JobRun, attempt: int, result: AttemptResult) -> None:
        """Record the attempt, and tell the state how it ended: finished, or retried after the
        backoff that the retry policy chose."""
        job.last = result
        job.duration_s += result.duration_s
        job.peak_rss_bytes = max(job.peak_rss_bytes, result.peak_rss_bytes)
        retry_in = None
        if (
            result.outcome is not Outcome.SUCCEEDED
            and not job.track.cancelled
            and not self.stop.requested.is_set()
            and should_retry(result, job.spec, attempt)
        ):
            self._after_oom(job, result)
            retry_in = backoff_delay(job.spec.backoff, attempt)
        change = self.state.attempt_ended(job.spec.id, result.outcome, time.monotonic(), retry_in)
        failed = change.status is not None and not change.status.ok
        if self.fail_fast and failed and not job.spec.optional:
            self.stop.request("fail-fast")

    async def _read_metrics_file(self, job: JobRun) -> dict[str, Any] | None:
        """The job's final metrics with its `metrics_file` merged in, read in a worker thread."""
        problems: list[str] = []
        spec = job.spec
        metrics = await anyio.to_thread.run_sync(
            metrics_file.final_metrics,
            spec.workdir,
            spec.metrics_file,
            job.output.metrics,
            problems.append,
            spec.metrics_keys,
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
