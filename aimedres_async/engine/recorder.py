"""The one place that turns the run's state changes into records: `job.queued`, `job.retrying` and
`job.finished` in the run's logs, and summary.json, rewritten at most once a second while it runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import anyio

from aimedres_async.engine.jobrun import JobRun
from aimedres_async.engine.state import Change, State
from aimedres_async.records.console import Console
from aimedres_async.records.sinks import RunLog
from aimedres_async.report import diagnose
from aimedres_async.report.summary import write_summary

SUMMARY_MIN_INTERVAL = 1.0
RESUMED = "succeeded in the resumed run with the same command"


class Recorder:
    """Records what the run state tells (`record`), and keeps summary.json up to date: each job's
    entry is rebuilt only when the job changed, and the file is written by one task
    (`keep_summary`), at most once per SUMMARY_MIN_INTERVAL; a change is deferred, never dropped."""

    def __init__(
        self, log: RunLog, console: Console, redact_argv: Callable[[tuple[str, ...]], list[str]], serve: bool
    ) -> None:
        self.log = log
        self.console = console
        self.redact_argv = redact_argv
        self.serve = serve  # the daemon's tickets hold the results: no summary.json
        self.meta: dict[str, Any] = {}  # run metadata: summary.json without its jobs
        self._entries: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self._lock = anyio.Lock()  # one summary.json write at a time, in order
        self._dirty: anyio.Event | None = None
        self._last_write = 0.0

    def record(self, change: Change, job: JobRun) -> None:
        """A job moved: its record, if the move has one, and a summary that needs writing."""
        spec = job.spec
        if change.new is State.QUEUED and change.old is None:
            self.log.emit("job.queued", job=spec.id, **job.queued_fields)
        elif change.new is State.BACKOFF:
            self.log.emit(
                "job.retrying",
                job=spec.id,
                attempt=change.attempt,
                delay_s=round(change.delay or 0.0, 3),
                next_attempt=change.attempt + 1,
            )
        elif change.new is State.FINISHED:
            self._finished(change, job)
        self.changed()

    def _finished(self, change: Change, job: JobRun) -> None:
        assert change.status is not None
        why: dict[str, Any] = {}
        if change.old is None:
            why["reason"] = RESUMED
        elif job.failed:
            why = diagnose.failure_fields(job.output.tail, job.spec.python)
            if job.last is not None and job.last.error:
                why["error"] = job.last.error
        self.log.emit(
            "job.finished",
            job=job.spec.id,
            status=change.status.value,
            attempts=change.attempt,
            optional=job.spec.optional,
            metrics=job.output.metrics,
            **why,
        )
        self.log.close_job(job.spec.id)

    def forget(self, job_id: str) -> None:
        self._entries.pop(job_id, None)

    # ------------------------------------------------------------ summary.json

    def summary(self, jobs: Iterable[JobRun]) -> dict[str, Any]:
        return {**self.meta, "jobs": [self._entry(j) for j in jobs]}

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
            else job.fixed_fields(self.log.job_path(job.spec.id), self.redact_argv(job.spec.argv))
        )
        entry = job.summary(fixed)
        self._entries[job.spec.id] = (key, entry)
        return entry

    def changed(self) -> None:
        """Something in the summary changed: `keep_summary` writes it (no-op before it runs)."""
        if self._dirty is not None:
            self._dirty.set()

    async def keep_summary(self, jobs: Iterable[JobRun]) -> None:
        """The run's summary writer (a task of the run): waits for a change, then for the rest of
        the interval since the last write, then writes. Cancelled at the end of the run."""
        if self.serve:
            return
        self._dirty = anyio.Event()
        while True:
            await self._dirty.wait()
            await anyio.sleep(max(0.0, self._last_write + SUMMARY_MIN_INTERVAL - time.monotonic()))
            await self.write_summary(jobs)

    async def write_summary(self, jobs: Iterable[JobRun], final: bool = False) -> None:
        """summary.json, whole (atomic.write), in a worker thread. When the final one finds the disk
        full, the out-of-date one from earlier in the run is removed and the write tried once
        more: its space is usually enough, and else no summary is better than one that says
        "queued"."""
        async with self._lock:  # the state as of this write, written after the one before
            self._last_write = time.monotonic()
            if self._dirty is not None and self._dirty.is_set():
                self._dirty = anyio.Event()  # this write covers the change
            data = self.summary(jobs)
            problem = await anyio.to_thread.run_sync(write_summary, self.log.dir / "summary.json", data, final)
        if problem is not None:
            self.console.warning(problem)
