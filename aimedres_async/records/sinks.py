"""Where records go: the output hot path (chunk -> JSON-lines records -> one write) and the files.

A chunk whose complete lines hold no byte JSON must escape becomes its records with one
`bytes.replace`; other chunks are framed line by line with orjson. Every file is written with
whole records per `write(2)`, so a crash leaves only valid lines behind; summaries are written
to a temp file and renamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import orjson

from aimedres_async.system import atomic

Buffer = bytes | memoryview

_SPLIT = re.compile(rb"\r\n|\r|\n")
_LINE = re.compile(rb"([^\r\n]*)(\r\n|\r|\n)")
# Anything that JSON must escape, a lone \r, non-ASCII (may be invalid UTF-8) or a '{' (a line
# that might be a JSON object) sends a chunk to the careful path; these are the other bytes.
# `chunk.translate(None, _PLAIN)` deletes them and leaves what needs care: about 10x faster than a
# regex character-class search, which was a fifth of the supervisor's CPU time on `seq 5000000`.
_PLAIN = bytes(b for b in range(0x20, 0x7F) if b not in b'"\\{') + b"\n"
TAIL_BYTES = 8 * 1024
TAIL_BLOCKS = 64  # enough blocks for the last 50 lines even when streams interleave
RELEASE_STEP = 8 << 20  # a big log's page cache (JsonlFile): write-back starts every 8 MiB written,
RELEASE_WINDOW = 64 << 20  # and pages up to 64 MiB further back are dropped once written back
EVENTS_BATCH = 256  # lifecycle lines held before one write (each pins orjson's output buffer)
_sec_cache: tuple[int, bytes] = (0, b"")


def timestamp(now: float | None = None) -> bytes:
    """Now (or `now`) as RFC 3339 UTC with microseconds, e.g. 2026-11-23T11:33:47.123456Z."""
    global _sec_cache
    if now is None:
        now = time.time()
    sec = int(now)
    if _sec_cache[0] != sec:
        _sec_cache = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode())
    return b"%s.%06dZ" % (_sec_cache[1], int((now - sec) * 1_000_000))


def timestamp_str(now: float | None = None) -> str:
    return timestamp(now).decode()


def record_head() -> bytes:
    """The start of a record: `{"ts":"<RFC 3339>","t":<Unix seconds>` for one moment. The hot path
    calls it once per chunk, so the records of a chunk share their time."""
    global _sec_cache
    now = time.time()
    sec = int(now)
    if _sec_cache[0] != sec:
        _sec_cache = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode())
    usec = int((now - sec) * 1_000_000)
    return b'{"ts":"%s.%06dZ","t":%d.%06d' % (_sec_cache[1], usec, sec, usec)


class Framer:
    """Turns one stream's raw chunks into `job.output` records (bytes, ready to write).

    Records end at \\n, \\r\\n or a lone \\r. A record longer than `max_line` is cut into parts
    marked `"partial": true`, so memory stays bounded whatever the child prints.
    """

    def __init__(
        self,
        run: str,
        job: str,
        attempt: int,
        stream: str,
        max_line: int,
        tail: deque[tuple[str, bytes]],
        redact: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self._head_parts = b',"event":"job.output","run":"%s","job":"%s","attempt":%d,"stream":"%s",' % (
            run.encode(),
            job.encode(),
            attempt,
            stream.encode(),
        )
        self.stream = stream
        self.max_line = max_line
        self.tail = tail
        self.redact = redact
        self.last_data: dict[str, Any] | None = None
        self._pending = bytearray()
        self._cut = False  # the pending record already had parts written
        self.flushed = b""  # the unterminated last line flush() wrote, for --verbose

    def feed(self, data: bytes) -> tuple[list[Buffer], bytes]:
        """Frame a chunk; returns (record pieces to write in order, the complete lines it held)."""
        if not data:
            return [], b""
        # A \r at the very end may be the first half of \r\n: it stays pending until the next
        # chunk (or the end of the stream) says which it is. Then it goes back in front of it.
        if self._pending[-1:] == b"\r":
            del self._pending[-1]
            data = b"\r" + data
        end = len(data) - 1 if data[-1:] == b"\r" else len(data)
        last = max(data.rfind(b"\n", 0, end), data.rfind(b"\r", 0, end))
        if last < 0:
            self._pending += data
            return self._cut_pending(), b""
        complete, rest = data[: last + 1], data[last + 1 :]
        # Every line but the first lies inside this chunk, so the chunk's size bounds their length.
        short = len(data) <= self.max_line
        if self._pending:
            complete = bytes(self._pending) + complete
            self._pending.clear()
        first_partial, self._cut = self._cut, False
        if rest:
            self._pending += rest
        if self.redact is not None:
            complete = self.redact(complete)
        self._keep_tail(complete)
        if short and not first_partial and complete.find(b"\n") <= self.max_line:
            out = self._frame_fast(complete)
        else:
            out = None
        if out is None:
            out = [self._frame(complete, first_partial)]
        out += self._cut_pending()
        return out, complete

    def flush(self) -> bytes:
        """At end of stream: the unterminated last record, if any."""
        if not self._pending:
            return b""
        piece = bytes(self._pending)
        self._pending.clear()
        if piece.endswith(b"\r"):  # a held-back terminator, not part of the line
            piece = piece[:-1]
            if not piece and not self._cut:
                return b""
        if self.redact is not None:
            piece = self.redact(piece)
        self._keep_tail(piece + b"\n")  # ended: the next attempt's first line must not join it
        self.flushed = piece
        return self._record(record_head(), piece, self._cut)

    def _keep_tail(self, block: bytes) -> None:
        """Recent output for JUnit and the console: small blocks of one stream are merged."""
        tail = self.tail
        if tail and tail[-1][0] == self.stream and len(tail[-1][1]) + len(block) <= TAIL_BYTES:
            tail[-1] = (self.stream, tail[-1][1] + block)
        else:
            tail.append((self.stream, block[-TAIL_BYTES:]))

    def _cut_pending(self) -> list[Buffer]:
        """Cut an unterminated record that outgrew max_line; what stays pending is <= max_line."""
        if len(self._pending) <= self.max_line:
            return []
        head = record_head()
        out = []
        while len(self._pending) > self.max_line:
            piece = bytes(self._pending[: self.max_line])
            del self._pending[: self.max_line]
            if self.redact is not None:
                piece = self.redact(piece)
            out.append(self._record(head, piece, True))
        self._cut = True
        return [b"".join(out)]

    def _frame_fast(self, complete: bytes) -> list[Buffer] | None:
        """Plain lines (nothing to escape, no \r): all records from one `bytes.replace`."""
        if complete.translate(None, _PLAIN):
            return None
        start = record_head() + self._head_parts + b'"line":"'
        sep = b'"}\n' + start
        # complete ends with \n, whose replacement carries one `start` too many: cut it off
        # with a view instead of copying the whole buffer.
        records = complete.replace(b"\n", sep)
        return [start, memoryview(records)[: len(records) - len(start)]]

    def _frame(self, complete: bytes, first_partial: bool) -> bytes:
        """Line by line: escaping, \r, JSON-object lines, over-long lines cut into parts."""
        ts_head = record_head()
        out = []
        for i, m in enumerate(_LINE.finditer(complete)):
            line = m.group(1)
            partial = first_partial and i == 0
            if not line and not partial and m.group(2) == b"\r":
                continue  # a bare \r (progress bar redraw) ends no line of its own
            while len(line) > self.max_line:
                out.append(self._record(ts_head, line[: self.max_line], True))
                line, partial = line[self.max_line :], True
            out.append(self._record(ts_head, line, partial))
        return b"".join(out)

    def _record(self, ts_head: bytes, line: bytes, partial: bool) -> bytes:
        head = ts_head + self._head_parts + (b'"partial":true,' if partial else b"")
        if line[:1] == b"{" and not partial:
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                try:
                    data = orjson.dumps(obj)
                except orjson.JSONEncodeError:  # e.g. nested deeper than orjson writes
                    data = None
                if data is not None and self.redact is not None:
                    # Re-encoded as plain UTF-8, "\u00e9"-style escapes can no longer hide a match.
                    clean = self.redact(data)
                    if clean != data:
                        try:
                            obj, data = orjson.loads(clean), clean
                        except orjson.JSONDecodeError:  # the pattern cut into the JSON syntax
                            obj, data = None, None
                            line = clean
                if data is not None:
                    self.last_data = obj
                    return head + b'"data":' + data + b"}\n"
        text = line.decode("utf-8", "backslashreplace")
        return head + b'"line":' + orjson.dumps(text) + b"}\n"


ATTEMPT_MARK = "attempt"  # a tail entry (ATTEMPT_MARK, b"<n>") where attempt n's output starts


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
        items.extend((False, x.decode("utf-8", "backslashreplace")) for x in _SPLIT.split(block) if x)
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


def junit_xml(run_id: str, duration_s: float, jobs: list[dict[str, Any]], started_at: str | None = None) -> bytes:
    """A JUnit report: one testcase per job; a failed job's text is its last 50 output lines, under a
    numbered header per attempt when it had several. The suite's timestamp is the run's start.

    An optional job that failed is reported as skipped (with the reason), since it does not
    fail the run; a job that never ran because the run was stopped is skipped too.
    """
    suite = ET.Element("testsuite", name="aimedres-async", timestamp=started_at or timestamp_str())
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for job in jobs:
        counts["tests"] += 1
        case = ET.SubElement(
            suite,
            "testcase",
            classname="aimedres.training",
            name=job["id"],
            time=f"{job.get('duration_s') or 0:.3f}",
        )
        status = job["status"]
        detail = f"status={status} attempts={job['attempts']} exit_code={job.get('exit_code')}"
        if job.get("failure"):
            detail += f" failure={job['failure']}"
        if status in ("succeeded",):
            pass
        elif status == "skipped":
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message="succeeded in the resumed run")
        elif status == "cancelled":
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=f"cancelled: the run was stopped ({detail})")
        elif job.get("optional"):
            counts["skipped"] += 1
            el = ET.SubElement(case, "skipped", message=f"optional job failed ({detail})")
            el.text = xml_safe("\n".join(job.get("last_lines", [])))
        else:
            counts["failures"] += 1
            el = ET.SubElement(case, "failure", message=detail, type=job.get("failure") or status)
            el.text = xml_safe("\n".join(job.get("last_lines", [])))
        if job.get("metrics"):
            out = ET.SubElement(case, "system-out")
            out.text = xml_safe(orjson.dumps(job["metrics"]).decode())
    for k, v in counts.items():
        suite.set(k, str(v))
    suite.set("time", f"{duration_s:.3f}")
    suites = ET.Element("testsuites", name=f"aimedres-async run {run_id}")
    suites.append(suite)
    for k, v in counts.items():
        if k != "skipped":  # junit-10.xsd (Jenkins) allows no `skipped` on <testsuites>
            suites.set(k, str(v))
    ET.indent(suites)
    return bytes(ET.tostring(suites, encoding="utf-8", xml_declaration=True)) + b"\n"


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """XML 1.0 forbids most control characters; show them escaped instead."""
    return _XML_BAD.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class RunLog:
    """The files of one run under `logs_dir/<run_id>/`, plus `--log-file` and the console.

    Lifecycle records go to events.jsonl, the job's own file, the `--log-file` stream and the
    console; output records go to the job's file and the stream only.
    """

    def __init__(
        self,
        logs_dir: Path,
        run_id: str,
        console: Callable[[dict[str, Any]], None] | None = None,
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
        self.pointer = pointer
        point_latest(logs_dir, run_id, pointer)

    def job_path(self, job: str) -> Path:
        return self.dir / "jobs" / f"{job}.jsonl"

    def make_job_files(self, jobs: list[str]) -> None:
        """Create these jobs' files ahead of their start, for `open_job` to take: meant for a worker
        thread, as creating a file can take the disk half a millisecond, thousands of times."""
        for job in jobs:
            with self._ready_lock:
                if job not in self._ready and job not in self._jobs:
                    self._ready[job] = JsonlFile(self.job_path(job))

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
        if f is not None:
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
        self._queue_event(line)
        if job is not None:
            f = self._jobs.get(job)
            if f is None:  # not started yet: kept until its file opens (one open per job)
                # a compact copy: an orjson result keeps its whole (oversized) output buffer
                self._unopened.setdefault(job, []).append(bytes(memoryview(line)))
            else:
                f.write(line)
        if self.stream is not None:
            self.stream.write(line)
        if self.console is not None:
            self.console(record)
        return record

    def _queue_event(self, line: bytes) -> None:
        if not self._events_buf:
            try:
                asyncio.get_running_loop().call_soon(self.flush_events)
            except RuntimeError:  # no event loop: write now
                self.events.write(line)
                return
        self._events_buf.append(line)
        if len(self._events_buf) >= EVENTS_BATCH:  # e.g. 10,000 job.queued at once: bounded memory
            self.flush_events()

    def flush_events(self) -> None:
        """events.jsonl gets one write per event-loop iteration (whole lines only)."""
        if self._events_buf:
            data = b"".join(self._events_buf)
            self._events_buf.clear()
            self.events.write(data)

    def write_output(self, job: str, records: list[Buffer]) -> None:
        f = self._jobs.get(job)
        if f is not None:
            f.writev(records)
        if self.stream is not None:
            self.stream.writev(records)

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
