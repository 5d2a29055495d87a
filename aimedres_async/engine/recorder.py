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
from aimedres_async.report.summary import entry_bytes, summary_pieces, write_summary

SUMMARY_MIN_INTERVAL = 1.0
REFRESH_BATCH = 100  # summary entries rebuilt between two turns of the event loop
RESUMED = "succeeded in the resumed run with the same command"


class Recorder:
    """Records what the run state tells (`record`), and keeps summary.json up to date: an entry is
    rebuilt and serialized only when its job changed, and the file, assembled from those bytes,
    is written by one task (`keep_summary`), at most once per interval; a change is deferred,
    never dropped. The interval grows with the file: a write takes at most a tenth of the time."""

    def __init__(
        self, log: RunLog, console: Console, redact_argv: Callable[[tuple[str, ...]], list[str]], serve: bool
    ) -> None:
        self.log = log
        self.console = console
        self.redact_argv = redact_argv
        self.serve = serve  # the daemon's tickets hold the results: no summary.json
        self.meta: dict[str, Any] = {}  # run metadata: summary.json without its jobs
        self._entries: dict[str, dict[str, Any]] = {}  # job id -> its entry as of its last change
        self._where: dict[str, int] = {}  # job id -> its place in summary.json's list
        self._slots: list[bytes] = []  # each job's entry, serialized (report.summary.entry_bytes)
        self._stale: dict[str, JobRun] = {}  # jobs changed since their entry was built
        self._lock = anyio.Lock()  # one summary.json write at a time, in order
        self._dirty: anyio.Event | None = None
        self._last_write = 0.0
        self._interval = SUMMARY_MIN_INTERVAL
        self.required_failed = 0  # jobs not optional that finished neither succeeded nor skipped

    def plan(self, jobs: Iterable[JobRun]) -> None:
        """The jobs summary.json lists, in its order."""
        if self.serve:
            return
        for job in jobs:
            self._where[job.spec.id] = len(self._slots)
            self._slots.append(b"")
            self._stale[job.spec.id] = job

    def touch(self, job: JobRun) -> None:
        """Something in a job's entry changed (its state, its pid)."""
        if job.spec.id in self._where:
            self._stale[job.spec.id] = job
            self.changed()

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
        self.touch(job)

    def _finished(self, change: Change, job: JobRun) -> None:
        assert change.status is not None
        if not change.status.ok and not job.spec.optional:
            self.required_failed += 1
        why: dict[str, Any] = {}
        if change.old is None:
            why["reason"] = RESUMED
        elif job.failed:
            why = diagnose.failure_fields(job.output.tail, job.spec.python)
            if job.last is not None and job.last.error:
                why["error"] = job.last.error
        scan = job.output.scan
        if scan.warnings:
            why.update(warnings=scan.warnings, first_warning=scan.first_warning)
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

    # ------------------------------------------------------------ summary.json

    def _refresh(self, limit: int | None = None) -> None:
        """Rebuild the entries of the jobs that changed since the last look, and only those (at
        most `limit` of them)."""
        for _ in range(len(self._stale) if limit is None else min(limit, len(self._stale))):
            job_id, job = self._stale.popitem()
            fixed = self._entries.get(job_id)
            if fixed is None:
                fixed = job.fixed_fields(self.log.job_path(job_id), self.redact_argv(job.spec.argv))
            entry = self._entries[job_id] = job.summary(fixed)
            self._slots[self._where[job_id]] = entry_bytes(entry)

    def summary(self, jobs: Iterable[JobRun]) -> dict[str, Any]:
        """summary.json's content as it stands (for the final table and the reports)."""
        self._refresh()
        return {**self.meta, "jobs": [self._entries[j.spec.id] for j in jobs]}

    def changed(self) -> None:
        """Something in the summary changed: `keep_summary` writes it (no-op before it runs)."""
        if self._dirty is not None:
            self._dirty.set()

    async def keep_summary(self) -> None:
        """The run's summary writer (a task of the run): waits for a change, then for the rest of
        the interval since the last write, then writes. Cancelled at the end of the run."""
        if self.serve:
            return
        self._dirty = anyio.Event()
        while True:
            await self._dirty.wait()
            await anyio.sleep(max(0.0, self._last_write + self._interval - time.monotonic()))
            await self.write_summary()

    async def write_summary(self, final: bool = False) -> None:
        """summary.json, assembled from the entries' bytes and written whole (atomic.write) in a
        worker thread; see report.summary.write_summary for a full disk."""
        if self.serve:
            return
        async with self._lock:  # the state as of this write, written after the one before
            if self._dirty is not None and self._dirty.is_set():
                self._dirty = anyio.Event()  # this write covers the change
            while self._stale:  # thousands at the start: the loop gets a turn between batches
                self._refresh(REFRESH_BATCH)
                await anyio.lowlevel.checkpoint()
            meta, slots = dict(self.meta), list(self._slots)
            t0 = time.monotonic()
            problem = await anyio.to_thread.run_sync(self._write, meta, slots, final)
            self._last_write = time.monotonic()
            self._interval = max(SUMMARY_MIN_INTERVAL, 10 * (self._last_write - t0))
        if problem is not None:
            self.console.warning(problem)

    def _write(self, meta: dict[str, Any], slots: list[bytes], final: bool) -> str | None:
        return write_summary(self.log.dir / "summary.json", summary_pieces(meta, slots), final)
