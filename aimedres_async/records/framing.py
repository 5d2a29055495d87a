"""The output hot path: one stream's raw chunks framed into `job.output` JSON-lines records, their
timestamps, and the tail of recent output each job keeps (for JUnit, the console and diagnoses).

A chunk whose complete lines hold no byte JSON must escape becomes its records with one
`bytes.replace`; other chunks are framed line by line with orjson. The records are the job's file's
(schema 2: no `run`, no `job`, which its path names); `with_run_job` makes the `--log-file` form.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from aimedres_async.plan.metrics_file import LONG_NUMBER, exact_ints

Buffer = bytes | memoryview

LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_LINE = re.compile(rb"([^\r\n]*)(\r\n|\r|\n)")
# Anything that JSON must escape, a lone \r, non-ASCII (may be invalid UTF-8) or a '{' (a line
# that might be a JSON object) sends a chunk to the careful path; these are the other bytes.
# `chunk.translate(None, _PLAIN)` deletes them and leaves what needs care: about 10x faster than a
# regex character-class search, which was a fifth of the supervisor's CPU time on `seq 5000000`.
_PLAIN = bytes(b for b in range(0x20, 0x7F) if b not in b'"\\{') + b"\n"
TAIL_BYTES = 8 * 1024
TAIL_BLOCKS = 64  # enough blocks for the last 50 lines even when streams interleave
ATTEMPT_MARK = "attempt"  # a tail entry (ATTEMPT_MARK, b"<n>") where attempt n's output starts
_EVENT = b',"event":"job.output",'  # in every record's head, after its time
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
    """`timestamp` as text, e.g. 2026-11-23T11:33:47.123456Z."""
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


class Records(list[Buffer]):
    """Record pieces to write in order, led by a chunk of plain lines framed with one
    `bytes.replace` (`plain`, each line ending in \\n, and the `start` of each of its records):
    `with_run_job` frames them again for the `--log-file` stream the same way."""

    __slots__ = ("plain", "start")
    plain: bytes
    start: bytes


def _replace_frame(plain: bytes, start: bytes) -> list[Buffer]:
    """Plain lines (nothing to escape, each ending in \\n) as records that begin with `start`."""
    records = plain.replace(b"\n", b'"}\n' + start)
    # plain ends with \n, whose replacement carries one `start` too many: cut it off with a view
    # instead of copying the whole buffer.
    return [start, memoryview(records)[: len(records) - len(start)]]


def with_run_job(records: list[Buffer], run: str, job: str) -> list[Buffer]:
    """A `Framer`'s records as the `--log-file` stream writes them, where one file holds every job's
    output: `"run"` and `"job"` follow `"event"` (schema 1's order, which the stream keeps).

    Plain lines (`Records`) are framed again with the ids in their start: one more `bytes.replace`.
    Other records get them inserted into their head; see `_add_ids`.
    """
    ids = b'"run":"%s","job":"%s",' % (run.encode(), job.encode())
    if not isinstance(records, Records):
        return _add_ids(records, ids)
    at = records.start.index(_EVENT) + len(_EVENT)
    out = _replace_frame(records.plain, records.start[:at] + ids + records.start[at:])
    rest = records[2:]  # the parts of a line cut meanwhile
    return out + _add_ids(rest, ids) if rest else out


def _add_ids(records: list[Buffer], ids: bytes) -> list[Buffer]:
    """`ids` inserted after `"event"` in each record. The records a `Framer` returns at once share
    their head (time, attempt, stream) but for the parts of a line cut meanwhile: one
    `bytes.replace` then does them all, else each is done alone. A \\n followed by the head can only
    start a record (JSON escapes a newline in any value), and a record's own `"event"` comes before
    anything the job printed."""
    buf = b"".join(records)
    cut = buf.find(_EVENT) + len(_EVENT)
    if cut < len(_EVENT):
        return records
    head = b"\n" + buf[:cut]
    if buf.count(head) == buf.count(b"\n") - 1:  # every record after the first starts with it
        full = buf.replace(head, head + ids)
        return [full[:cut], ids, memoryview(full)[cut:]]
    out: list[bytes] = []
    for record in buf.split(b"\n")[:-1]:
        at = record.find(_EVENT) + len(_EVENT)
        out += (record[:at], ids, record[at:], b"\n")
    return [b"".join(out)]


class Framer:
    """Turns one stream's raw chunks into `job.output` records (bytes, ready to write).

    Records end at \\n, \\r\\n or a lone \\r. A record longer than `max_line` is cut into parts
    marked `"partial": true`, so memory stays bounded whatever the child prints. The records go
    to `logs/<run>/jobs/<job>.jsonl`, whose path names `run` and `job`: they are not written
    (`with_run_job` adds them for the `--log-file` stream).
    """

    def __init__(
        self,
        attempt: int,
        stream: str,
        max_line: int,
        tail: deque[tuple[str, bytes]],
        redact: Callable[[bytes], bytes] | None = None,
        scan: Callable[[bytes], None] | None = None,
    ) -> None:
        self._head_parts = _EVENT + b'"attempt":%d,"stream":"%s",' % (attempt, stream.encode())
        self._line_start = self._head_parts + b'"line":"'
        self.stream = stream
        self.max_line = max_line
        self.tail = tail
        self.redact = redact
        self.scan = scan  # records.scan.OutputScan: warnings and fail_on, once per chunk
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
        if self.scan is not None:
            self.scan(complete)
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
        if self.scan is not None:
            self.scan(piece)
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
        """Cut an unterminated record that outgrew max_line; what stays pending is <= max_line.
        A held-back \r (see `frame`) is no byte of the line: it does not count."""
        limit = self.max_line + (self._pending[-1:] == b"\r")
        if len(self._pending) <= limit:
            return []
        head = record_head()
        out = []
        while len(self._pending) > limit:
            piece = bytes(self._pending[: self.max_line])
            del self._pending[: self.max_line]
            if self.redact is not None:
                piece = self.redact(piece)
            if self.scan is not None:
                self.scan(piece)
            out.append(self._record(head, piece, True))
        self._cut = True
        return [b"".join(out)]

    def _frame_fast(self, complete: bytes) -> list[Buffer] | None:
        """Plain lines (nothing to escape, no \r): all records from one `bytes.replace`."""
        if complete.translate(None, _PLAIN):
            return None
        start = record_head() + self._line_start
        out = Records(_replace_frame(complete, start))
        out.plain, out.start = complete, start  # set here: a Python __init__ costs 0.3 us a chunk
        return out

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
                exact = exact_ints(line) if LONG_NUMBER.search(line) else None
                try:
                    data = orjson.dumps(obj) if exact is None else exact[1]
                except orjson.JSONEncodeError:  # e.g. nested deeper than orjson writes
                    data = None
                if data is not None and self.redact is not None:
                    # Re-encoded as plain UTF-8, "\u00e9"-style escapes can no longer hide a match.
                    clean = self.redact(data)
                    if clean != data:
                        try:
                            obj, data = orjson.loads(clean), clean
                            exact = exact_ints(clean) if exact is not None else None
                        except orjson.JSONDecodeError:  # the pattern cut into the JSON syntax
                            obj, data = None, None
                            line = clean
                if data is not None:
                    self.last_data = obj if exact is None else exact[0]
                    return head + b'"data":' + data + b"}\n"
        text = line.decode("utf-8", "backslashreplace")
        return head + b'"line":' + orjson.dumps(text) + b"}\n"
