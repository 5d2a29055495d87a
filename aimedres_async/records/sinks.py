"""Where records go: the run's files, each written with whole records per `write(2)`, so a crash
leaves only valid lines behind; summaries are written to a temp file and renamed.

How a job's output becomes records is framing.py's; `last_lines` here is the text form of its
output tail that the run's reports write.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from aimedres_async.plan.sweeps import file_stem
from aimedres_async.records.framing import ATTEMPT_MARK, LINE_BREAK, Buffer, timestamp_str, with_run_job
from aimedres_async.system import atomic

RELEASE_STEP = 8 << 20  # a big log's page cache (JsonlFile): write-back starts every 8 MiB written,
RELEASE_WINDOW = 64 << 20  # and pages up to 64 MiB further back are dropped once written back
EVENTS_BATCH = 256  # lifecycle lines held before one write (each pins orjson's output buffer)


def last_lines(tail: Iterable[tuple[str, bytes]], n: int = 50) -> list[str]:
    """The last n output lines of a job, from the tail blocks its framers kept. When they span
    several attempts, each attempt's lines follow a header `--- attempt N ---`."""
    items: list[tuple[bool, str]] = []  # (is a header, text)
    marks = 0
    for stream, block in tail:
        if stream == ATTEMPT_MARK:
            marks += 1
            items.append((True, f"--- attempt {block.decode() or '?'} ---"))
            continue
        items.extend((False, x.decode("utf-8", "backslashreplace")) for x in LINE_BREAK.split(block) if x)
    if marks < 2:
        return [text for header, text in items if not header][-n:]
    kept: list[tuple[bool, str]] = []
    count = 0
    for i in range(len(items) - 1, -1, -1):
        header, text = items[i]
        if not header:
            if count == n:
                # the lines kept start inside an attempt: name it
                kept.append(next((item for item in reversed(items[:i]) if item[0]), (True, "--- ... ---")))
                break
            count += 1
        kept.append((header, text))
    kept.reverse()
    # an attempt that printed nothing keeps its header, so the numbering shows every attempt
    return [text for _header, text in kept]


class JsonlFile:
    """An append-only file written with whole records per write(2); errors are kept, not raised.

    A full disk or a vanished folder must not stop a job: the first error is remembered (and
    reported by the caller) and later writes to this file are dropped.

    A big log does not fill the page cache: every `RELEASE_STEP` bytes, the kernel is asked to start
    writing the new part back (`POSIX_FADV_DONTNEED` on dirty pages starts write-back without
    waiting), and the parts before it that have been written back by now are dropped from the
    cache. The same few tens of MiB of cache pages are recycled, dirty memory stays bounded, and a
    job printing gigabytes does not push its own training data out of memory (the idea of
    PostgreSQL's `*_flush_after`). A log is read back from disk when someone reads it. On this
    project's VM it also halves the time of writing a big log: fresh cache pages cost the kernel
    several times more to fill than recycled ones (bench/capture.py).
    """

    def __init__(self, path: Path, truncate: bool = False) -> None:
        self.path = path
        self.error: OSError | None = None
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | (os.O_TRUNC if truncate else 0)
        self.fd: int | None = None
        # write-back bookkeeping (regular files only: a FIFO or /dev/stdout has no page cache)
        self._base = self._started = self._end = -1
        try:
            self.fd = os.open(path, flags, 0o644)
            st = os.fstat(self.fd)
            if stat.S_ISREG(st.st_mode):
                self._base = self._started = self._end = st.st_size
        except OSError as e:
            self.error = e

    def write(self, data: Buffer) -> None:
        self.writev([data])

    def writev(self, pieces: list[Buffer]) -> None:
        """Several buffers in one write(2), without joining them first; whole records or nothing."""
        if self.fd is None or self.error is not None:
            return
        try:
            n = os.writev(self.fd, pieces)
            total = sum(len(p) for p in pieces)
            if n < total:  # a short write (disk nearly full): finish the rest, or undo it
                start = os.lseek(self.fd, 0, os.SEEK_END) - n
                try:
                    rest = memoryview(b"".join(pieces))[n:]
                    while rest:
                        rest = rest[os.write(self.fd, rest) :]
                except OSError:
                    os.ftruncate(self.fd, start)  # never leave half a record behind
                    raise
        except OSError as e:
            self.error = e
            return
        if self._end >= 0:
            self._end += total
            if self._end - self._started >= RELEASE_STEP:
                self._release()

    def _release(self) -> None:
        """One POSIX_FADV_DONTNEED over the new part and the last RELEASE_WINDOW bytes before it:
        the kernel starts writing back the new (dirty) pages and drops the older ones it has
        written back since; pages still being written are dropped by a later call."""
        assert self.fd is not None
        low = max(self._base, self._started - RELEASE_WINDOW)
        try:
            os.posix_fadvise(self.fd, low, self._end - low, os.POSIX_FADV_DONTNEED)
        except OSError:  # a file system without it: the cache does its usual thing
            self._end = -1
        self._started = self._end

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def dumps_line(record: Mapping[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)


def atomic_write(path: Path, data: bytes) -> None:
    """Write whole (atomic.write: temp, fsync, rename, fsync of the folder), creating the folders:
    readers see old or new, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write(path, data)


def point_latest(logs_dir: Path, run_id: str, pointer: str = "latest") -> None:
    """Make logs_dir/latest (or another pointer) a symlink to the run's folder, replaced atomically."""
    link = logs_dir / pointer
    tmp = logs_dir / f".{pointer}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(run_id, tmp)
    os.replace(tmp, link)


class RunLog:
    """The files of one run under `logs_dir/<run_id>/`, plus `--log-file` and the console.

    Lifecycle records go to events.jsonl, the job's own file, the `--log-file` stream and the
    console, the same bytes everywhere; output records go to the job's file (without `run` and
    `job`, which its path names) and the stream (with them) only.
    """

    def __init__(
        self,
        logs_dir: Path,
        run_id: str,
        console: Callable[[dict[str, Any], bytes], None] | None = None,  # (record, its JSON line)
        stream_path: Path | None = None,
        pointer: str = "latest",  # the symlink in logs_dir to move here (`serve` has its own)
    ) -> None:
        self.run_id = run_id
        self.dir = logs_dir / run_id
        (self.dir / "jobs").mkdir(parents=True, exist_ok=True)
        self.events = JsonlFile(self.dir / "events.jsonl")
        self.stream = JsonlFile(stream_path, truncate=True) if stream_path else None
        self.console = console
        self._jobs: dict[str, JsonlFile] = {}
        self._failed: list[JsonlFile] = []  # closed job files that had a write error
        self._unopened: dict[str, list[bytes]] = {}  # records of jobs whose file is not open yet
        self._ready: dict[str, JsonlFile] = {}  # files made ahead of their job's start (make_job_files)
        self._ready_lock = threading.Lock()
        self._events_buf: list[bytes] = []
        self._job_lines: dict[str, list[Buffer]] = {}  # lifecycle lines for open job files, this iteration
        self.pointer = pointer
        point_latest(logs_dir, run_id, pointer)

    def job_path(self, job: str) -> Path:
        return self.dir / "jobs" / f"{file_stem(job)}.jsonl"  # a swept id's brackets: plan.sweeps

    def make_job_files(self, jobs: list[str]) -> None:
        """Create these jobs' files ahead of their start, for `open_job` to take: meant for a worker
        thread, as creating a file can take the disk half a millisecond, thousands of times."""
        for job in jobs:
            with self._ready_lock:
                if job in self._ready or job in self._jobs:
                    continue
            made = JsonlFile(self.job_path(job))  # outside the lock: open_job never waits for a disk
            with self._ready_lock:
                if job in self._ready or job in self._jobs:  # opened on the loop meanwhile
                    made.close()
                else:
                    self._ready[job] = made

    def has_job_file(self, job: str) -> bool:
        return job in self._jobs or job in self._ready

    def open_job(self, job: str) -> None:
        if job not in self._jobs:
            with self._ready_lock:
                made = self._ready.pop(job, None)
            f = self._jobs[job] = made if made is not None else JsonlFile(self.job_path(job))
            for line in self._unopened.pop(job, ()):
                f.write(line)

    def close_job(self, job: str) -> None:
        if job in self._unopened:  # it never ran: its file gets its few records now
            self.open_job(job)
        f = self._jobs.pop(job, None)
        held = self._job_lines.pop(job, None)
        if f is not None:
            if held:
                f.writev(held)
            f.close()
            if f.error is not None:
                self._failed.append(f)

    def emit(self, event: str, job: str | None = None, attempt: int | None = None, **fields: Any) -> dict[str, Any]:
        now = time.time()
        record: dict[str, Any] = {"ts": timestamp_str(now), "t": round(now, 6), "event": event, "run": self.run_id}
        if job is not None:
            record["job"] = job
        if attempt is not None:
            record["attempt"] = attempt
        record.update(fields)
        line = dumps_line(record)
        held = self._queue_event(line)
        if job is not None:
            f = self._jobs.get(job)
            if f is None:  # not started yet: kept until its file opens (one open per job)
                # a compact copy: an orjson result keeps its whole (oversized) output buffer
                self._unopened.setdefault(job, []).append(bytes(memoryview(line)))
            elif held:  # written with events.jsonl's, at the end of this event-loop iteration
                self._job_lines.setdefault(job, []).append(line)
            else:
                f.write(line)
        if self.stream is not None:
            self.stream.write(line)
        if self.console is not None:
            self.console(record, line)
        return record

    def _queue_event(self, line: bytes) -> bool:
        """Hold the line for flush_events (True), or write it now where no event loop runs."""
        if not self._events_buf:
            try:
                asyncio.get_running_loop().call_soon(self.flush_events)
            except RuntimeError:  # no event loop: write now
                self.events.write(line)
                return False
        self._events_buf.append(line)
        if len(self._events_buf) >= EVENTS_BATCH:  # e.g. 10,000 job.queued at once: bounded memory
            self.flush_events()
        return True

    def flush_events(self) -> None:
        """events.jsonl and each job's file get one write per event-loop iteration (whole lines)."""
        if self._events_buf:
            data = b"".join(self._events_buf)
            self._events_buf.clear()
            self.events.write(data)
        if self._job_lines:
            held, self._job_lines = self._job_lines, {}
            for job, lines in held.items():
                f = self._jobs.get(job)
                if f is not None:
                    f.writev(lines)

    def write_output(self, job: str, records: list[Buffer]) -> None:
        """A `Framer`'s records into the job's file as they are, and into the `--log-file` stream
        with `run` and `job` added (one file holds every job's output there)."""
        f = self._jobs.get(job)
        if f is not None:
            held = self._job_lines.pop(job, None)  # its lifecycle lines come first: one writev
            f.writev(held + records if held else records)
        if self.stream is not None:
            self.stream.writev(with_run_job(records, self.run_id, job))

    def check_present(self) -> bool:
        """Whether the run's folder had been removed (rm -rf of a running run): if so, recreate it
        and reopen the files, so that what is written from now on is kept. Called once a tick;
        records written in between are lost, which the caller says once."""
        try:
            gone = self.events.fd is None or os.fstat(self.events.fd).st_nlink == 0
        except OSError:
            gone = True
        if not gone:
            return False
        try:
            (self.dir / "jobs").mkdir(parents=True, exist_ok=True)
        except OSError:
            return True  # the next tick tries again; the files keep their errors meanwhile
        self.flush_events()
        self._drop_ready()  # made in the removed folder
        self.events.close()
        self.events = JsonlFile(self.dir / "events.jsonl")
        for job, f in list(self._jobs.items()):
            f.close()
            self._jobs[job] = JsonlFile(self.job_path(job))
        with contextlib.suppress(OSError):
            point_latest(self.dir.parent, self.run_id, self.pointer)
        return True

    def write_errors(self) -> list[str]:
        """Files that could not be written (full disk, removed folder), one line each."""
        files = [self.events, *self._jobs.values(), *self._failed] + ([self.stream] if self.stream else [])
        return [f"{f.path}: {f.error.strerror or f.error}" for f in files if f.error is not None]

    def _drop_ready(self) -> None:
        with self._ready_lock:
            for f in self._ready.values():
                f.close()
            self._ready.clear()

    def close(self) -> None:
        self.flush_events()
        for job in [*self._unopened, *self._jobs]:
            self.close_job(job)
        self._drop_ready()
        self.events.close()
        if self.stream is not None:
            self.stream.close()
