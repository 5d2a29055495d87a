"""Where records go (SPEC §7): JSON-lines files written whole, atomic summaries, JUnit XML, RunLog."""

from __future__ import annotations

import collections
import ctypes
import errno
import json
import mmap
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import orjson
import pytest

from aimedres_async.records import sinks
from aimedres_async.records.framing import Framer
from aimedres_async.records.sinks import JsonlFile, RunLog, atomic_write, dumps_line
from aimedres_async.report.junit import junit_xml, xml_safe

RUN = "20260101T000000Z-abcd"
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "only whole records"
    return [orjson.loads(line) for line in data.splitlines()]


# ---------------------------------------------------------------------------------------- JsonlFile


def test_jsonl_file_appends_whole_records(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    f = JsonlFile(path)
    f.write(dumps_line({"n": 1}))
    f.write(memoryview(dumps_line({"n": 2})))
    f.close()
    g = JsonlFile(path)  # reopening appends
    g.write(dumps_line({"n": 3}))
    g.close()
    assert [r["n"] for r in read_jsonl(path)] == [1, 2, 3]
    h = JsonlFile(path, truncate=True)
    h.write(dumps_line({"n": 4}))
    h.close()
    assert [r["n"] for r in read_jsonl(path)] == [4]
    assert f.error is None and g.error is None and h.error is None


def test_jsonl_file_finishes_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    calls = []

    def short_write(fd: int, data: Any) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data)[:7])

    def short_writev(fd: int, pieces: Any) -> int:
        calls.append(sum(len(p) for p in pieces))
        return real_write(fd, b"".join(pieces)[:7])

    path = tmp_path / "short.jsonl"
    f = JsonlFile(path)
    monkeypatch.setattr(os, "write", short_write)
    monkeypatch.setattr(os, "writev", short_writev)
    line = dumps_line({"msg": "x" * 50})
    f.write(line)
    monkeypatch.undo()
    f.close()
    assert path.read_bytes() == line
    assert len(calls) > 1 and f.error is None


def test_jsonl_file_writev_writes_all_pieces_in_order(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    f = JsonlFile(path)
    a, b = dumps_line({"n": 1}), dumps_line({"n": 2})
    f.writev([a[:3], memoryview(a)[3:], b])
    f.close()
    assert [r["n"] for r in read_jsonl(path)] == [1, 2]


def test_jsonl_file_writev_finishes_a_short_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def short_writev(fd: int, buffers: Any) -> int:
        return real_write(fd, b"".join(bytes(x) for x in buffers)[:5])  # the disk took 5 bytes

    path = tmp_path / "v.jsonl"
    f = JsonlFile(path)
    monkeypatch.setattr(os, "writev", short_writev)
    records = dumps_line({"n": 1}) + dumps_line({"n": 2})
    f.writev([records[:10], memoryview(records)[10:]])
    monkeypatch.undo()
    f.close()
    assert path.read_bytes() == records
    assert f.error is None


@needs_dev_full
def test_jsonl_file_keeps_the_error_of_a_full_disk_and_drops_later_writes(tmp_path: Path) -> None:
    f = JsonlFile(Path("/dev/full"))
    f.write(dumps_line({"n": 1}))  # must not raise
    assert isinstance(f.error, OSError) and f.error.errno == errno.ENOSPC
    first = f.error
    # Point the descriptor at a real file: a write that was not dropped would land there.
    spy = tmp_path / "spy"
    fd = os.open(spy, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    assert f.fd is not None
    os.dup2(fd, f.fd)
    os.close(fd)
    f.write(dumps_line({"n": 2}))
    if hasattr(f, "writev"):
        f.writev([dumps_line({"n": 3})])
    f.close()
    assert spy.read_bytes() == b"", "writes after the first error are dropped"
    assert f.error is first, "the first error is the one kept"


@needs_dev_full
def test_jsonl_file_writev_keeps_the_error_of_a_full_disk() -> None:
    f = JsonlFile(Path("/dev/full"))
    f.writev([dumps_line({"n": 1}), memoryview(dumps_line({"n": 2}))])
    assert isinstance(f.error, OSError) and f.error.errno == errno.ENOSPC
    f.close()


def _resident_bytes(path: Path) -> int:
    """How much of a file the page cache holds, by mincore(2) on a read-only mapping of it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    page = os.sysconf("SC_PAGE_SIZE")
    pages = (size + page - 1) // page
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vec = ctypes.create_string_buffer(pages)
            assert libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
            return sum(b & 1 for b in vec.raw) * page
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def _fs_type(path: Path) -> str:
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        mount, fstype = line.split()[1:3]
        if str(path).startswith(mount.rstrip("/") + "/") and len(mount) > len(best):
            best, kind = mount, fstype
    return kind


def test_jsonl_file_keeps_only_the_end_of_a_big_log_in_the_page_cache(tmp_path: Path) -> None:
    """96 MiB through JsonlFile: write-back is started as it goes and what was written back is
    dropped from the cache; the same bytes written plainly stay cached (the control)."""
    if _fs_type(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip(f"{tmp_path} is on {_fs_type(tmp_path)}: its pages are the file and cannot be dropped")
    record = b'{"line":"' + b"x" * ((1 << 20) - 12) + b'"}\n'
    ours, plain = tmp_path / "ours.jsonl", tmp_path / "plain.jsonl"
    f = JsonlFile(ours)
    fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    for _ in range(96):  # at ~100 MB/s, a chatty job's pace: the disk has time to take it
        f.writev([record])
        os.write(fd, record)
        time.sleep(0.01)
    f.close()
    os.close(fd)
    assert f.error is None
    assert ours.stat().st_size == plain.stat().st_size == 96 * len(record)
    if _resident_bytes(plain) < 80 << 20:
        pytest.skip("the page cache did not keep even the plainly written file (memory pressure?)")
    assert _resident_bytes(ours) <= 40 << 20, "most of the big log was dropped from the cache"
    with open(ours, "rb") as r:  # and it reads back whole, from the disk
        assert all(line == record for line in r)


def test_jsonl_file_to_a_device_or_fifo_writes_without_page_cache_bookkeeping(tmp_path: Path) -> None:
    """`--log-file /dev/null` or a FIFO: no page cache to manage, and big writes just work."""
    f = JsonlFile(Path("/dev/null"))
    for _ in range(3):
        f.writev([b"x" * (5 << 20)])
    assert f.error is None
    f.close()
    fifo = tmp_path / "stream"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(reader, True)
    got: list[int] = []
    drain = threading.Thread(target=lambda: got.extend(iter(lambda: len(os.read(reader, 1 << 20)), 0)))
    try:
        w = JsonlFile(fifo)
        drain.start()  # after a writer has the FIFO open: before, a read would see end of file
        for _ in range(20):
            w.writev([b"y" * ((1 << 20) - 1) + b"\n"])
        assert w.error is None
        w.close()
        drain.join(timeout=30)
        assert sum(got) == 20 << 20
    finally:
        os.close(reader)


def test_jsonl_file_close_is_idempotent_and_later_writes_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    f = JsonlFile(path)
    f.write(b'{"n":1}\n')
    f.close()
    f.close()
    f.write(b'{"n":2}\n')
    assert f.fd is None and f.error is None
    assert path.read_bytes() == b'{"n":1}\n'


def test_dumps_line_is_one_json_line() -> None:
    record: dict[Any, Any] = {"event": "x", 2: "two", "text": "a\nb", "é": None}  # non-str keys allowed
    line = dumps_line(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == {"event": "x", "2": "two", "text": "a\nb", "é": None}


# ------------------------------------------------------------------------------------ atomic_write


def test_atomic_write_creates_folders_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "summary.json"
    atomic_write(path, b'{"ok": true}\n')
    assert path.read_bytes() == b'{"ok": true}\n'
    assert os.listdir(path.parent) == ["summary.json"]


def test_atomic_write_replaces_the_file_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "summary.json"
    path.write_bytes(b"old contents\n")
    old_inode = path.stat().st_ino
    calls: list[tuple[str, Any]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", fd))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        calls.append(("replace", (Path(src), Path(dst))))
        assert Path(src).read_bytes() == b"new contents\n", "the temp file is complete before the rename"
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with open(path, "rb") as reader:  # a reader that opened the old file keeps seeing it whole
        atomic_write(path, b"new contents\n")
        assert reader.read() == b"old contents\n"
    monkeypatch.undo()
    assert path.read_bytes() == b"new contents\n"
    assert path.stat().st_ino != old_inode, "replaced by rename, not rewritten in place"
    assert [c[0] for c in calls] == ["fsync", "replace", "fsync"]  # the file, then its folder
    src, dst = calls[1][1]
    assert src.parent == path.parent and src != path and dst == path  # same folder: same filesystem
    assert os.listdir(tmp_path) == ["summary.json"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "summary.json"
    path.write_bytes(b"old\n")

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError):
        atomic_write(path, b"new\n")
    monkeypatch.undo()
    assert path.read_bytes() == b"old\n"


def test_atomic_write_failure_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "summary.json"
    path.write_bytes(b"old\n")

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError):
        atomic_write(path, b"new\n")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["summary.json"]


def test_point_latest_is_a_relative_symlink_replaced_atomically(tmp_path: Path) -> None:
    (tmp_path / "run-1").mkdir()
    (tmp_path / "run-2").mkdir()
    sinks.point_latest(tmp_path, "run-1")
    assert os.readlink(tmp_path / "latest") == "run-1"
    sinks.point_latest(tmp_path, "run-2")
    assert os.readlink(tmp_path / "latest") == "run-2"
    assert (tmp_path / "latest").resolve() == (tmp_path / "run-2").resolve()
    assert sorted(os.listdir(tmp_path)) == ["latest", "run-1", "run-2"]


# --------------------------------------------------------------------------------------- junit_xml


def _job(job_id: str, status: str, **kw: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "status": status,
        "attempts": 1,
        "exit_code": None,
        "failure": None,
        "duration_s": 1.5,
        "optional": False,
        **kw,
    }


JOBS = [
    _job("ok", "succeeded", exit_code=0, metrics={"acc": 0.93, "loss": 0.1}),
    _job(
        "bad",
        "failed",
        attempts=3,
        exit_code=2,
        failure="exit_code",
        last_lines=["epoch 1", "Traceback (most recent call last):", "ValueError: boom"],
    ),
    _job("slow", "timed_out", failure="timeout", last_lines=["epoch 7"]),
    _job("gone", "spawn_failed", failure="spawn_failed"),
    _job("extra", "failed", exit_code=1, failure="exit_code", optional=True, last_lines=["optional went wrong"]),
    _job("stopped", "cancelled"),
    _job("resumed", "skipped", attempts=0, duration_s=None),
]


def _parse(xml: bytes) -> ET.Element:
    assert xml.startswith(b"<?xml") and b"encoding='utf-8'" in xml.split(b"\n", 1)[0]
    return ET.fromstring(xml)


def _cases(root: ET.Element) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in root.iter("testcase")}  # type: ignore[misc]


def test_junit_xml_has_one_testcase_per_job_and_right_counts() -> None:
    root = _parse(junit_xml(RUN, 12.3456, JOBS))
    assert root.tag == "testsuites" and RUN in (root.get("name") or "")
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert [c.get("name") for c in suite.findall("testcase")] == [j["id"] for j in JOBS]
    expected = {"tests": "7", "failures": "3", "errors": "0", "skipped": "3"}
    assert {k: suite.get(k) for k in expected} == expected
    # <testsuites> carries no `skipped`: junit-10.xsd (what Jenkins validates against) forbids it
    assert {k: root.get(k) for k in expected} == {**expected, "skipped": None}
    assert suite.get("time") == "12.346"
    assert len(suite.findall("testcase/failure")) == 3 and len(suite.findall("testcase/skipped")) == 3
    assert _cases(root)["ok"].get("time") == "1.500"
    assert _cases(root)["resumed"].get("time") == "0.000"


def test_junit_xml_failure_of_a_required_job() -> None:
    cases = _cases(_parse(junit_xml(RUN, 1.0, JOBS)))
    ok = cases["ok"]
    assert ok.find("failure") is None and ok.find("skipped") is None
    bad = cases["bad"]
    failure = bad.find("failure")
    assert failure is not None and bad.find("skipped") is None
    assert failure.get("type") == "exit_code"
    assert "exit_code=2" in (failure.get("message") or "") and "attempts=3" in (failure.get("message") or "")
    assert failure.text == "epoch 1\nTraceback (most recent call last):\nValueError: boom"
    slow = cases["slow"].find("failure")
    assert slow is not None and slow.get("type") == "timeout" and slow.text == "epoch 7"
    gone = cases["gone"].find("failure")
    assert gone is not None and gone.get("type") == "spawn_failed"


def test_junit_xml_skips_optional_failures_cancelled_and_resumed_jobs() -> None:
    cases = _cases(_parse(junit_xml(RUN, 1.0, JOBS)))
    for name in ("extra", "stopped", "resumed"):
        assert cases[name].find("failure") is None, name
        assert cases[name].find("skipped") is not None, name
    extra = cases["extra"].find("skipped")
    assert extra is not None and "optional" in (extra.get("message") or "") and extra.text == "optional went wrong"
    stopped = cases["stopped"].find("skipped")
    assert stopped is not None and "cancel" in (stopped.get("message") or "")


def test_junit_xml_metrics_in_system_out() -> None:
    cases = _cases(_parse(junit_xml(RUN, 1.0, JOBS)))
    out = cases["ok"].find("system-out")
    assert out is not None and json.loads(out.text or "") == {"acc": 0.93, "loss": 0.1}
    assert cases["stopped"].find("system-out") is None


def test_junit_xml_survives_control_and_invalid_characters_in_output() -> None:
    nasty = [
        "nul \x00 here",
        "ansi \x1b[31mred\x1b[0m",
        "vt \x0b ff \x0c bs \x08",
        "bad \ufffe \uffff",
        "lone \ud800 surrogate",
        "fine: tab\t café 日本 🙂 <tag> & \"q\" 'a' ]]>",
    ]
    jobs = [
        _job("bad", "failed", failure="exit_code", exit_code=1, last_lines=nasty),
        _job("opt", "failed", failure="exit_code", optional=True, last_lines=nasty),
        _job("m", "succeeded", metrics={"note": "x\x01y"}),
    ]
    cases = _cases(_parse(junit_xml(RUN, 1.0, jobs)))  # parses
    failure = cases["bad"].find("failure")
    assert failure is not None
    assert failure.text == "\n".join(
        [
            "nul \\x00 here",
            "ansi \\x1b[31mred\\x1b[0m",
            "vt \\x0b ff \\x0c bs \\x08",
            "bad \\xfffe \\xffff",
            "lone \\xd800 surrogate",
            "fine: tab\t café 日本 🙂 <tag> & \"q\" 'a' ]]>",
        ]
    )
    skipped = cases["opt"].find("skipped")
    assert skipped is not None and skipped.text == failure.text
    out = cases["m"].find("system-out")
    assert out is not None and json.loads(out.text or "") == {"note": "x\x01y"}


def test_junit_xml_of_a_framed_job_uses_its_last_lines() -> None:
    tail: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=8)
    framer = Framer(1, "stdout", 1 << 20, tail)
    framer.feed(b"".join(b"line %d \x00\xff\n" % i for i in range(80)))
    lines = sinks.last_lines(tail, 50)
    cases = _cases(_parse(junit_xml(RUN, 1.0, [_job("bad", "failed", failure="exit_code", last_lines=lines)])))
    failure = cases["bad"].find("failure")
    assert failure is not None
    assert (failure.text or "").split("\n") == [f"line {i} \\x00\\xff" for i in range(30, 80)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("tab\tnl\ncr\r", "tab\tnl\ncr\r"),  # the three control characters XML allows
        ("\x00\x01\x08\x0b\x0c\x0e\x1f", "\\x00\\x01\\x08\\x0b\\x0c\\x0e\\x1f"),
        ("\ufffe\uffff", "\\xfffe\\xffff"),
        ("\ud800\udfff", "\\xd800\\xdfff"),
        ("\x7f\x85 é \U0001f642", "\x7f\x85 é \U0001f642"),
    ],
)
def test_xml_safe(text: str, expected: str) -> None:
    assert xml_safe(text) == expected
    el = ET.Element("t")
    el.text = xml_safe(text)
    ET.fromstring(ET.tostring(el, encoding="utf-8"))  # serialises and parses


# ------------------------------------------------------------------------------------------ RunLog


def _runlog(tmp_path: Path, **kw: Any) -> tuple[RunLog, list[dict[str, Any]], Path]:
    seen: list[dict[str, Any]] = []
    stream = tmp_path / "stream.jsonl"
    log = RunLog(tmp_path / "logs", RUN, console=lambda record, _line: seen.append(record), stream_path=stream, **kw)
    return log, seen, stream


def test_runlog_creates_the_run_folder_and_latest(tmp_path: Path) -> None:
    log, _seen, _stream = _runlog(tmp_path)
    run_dir = tmp_path / "logs" / RUN
    assert log.dir == run_dir
    assert (run_dir / "events.jsonl").is_file() and (run_dir / "jobs").is_dir()
    latest = tmp_path / "logs" / "latest"
    assert latest.is_symlink() and latest.resolve() == run_dir.resolve()
    assert log.job_path("train") == run_dir / "jobs" / "train.jsonl"
    log.close()
    other = RunLog(tmp_path / "logs", "20260101T000001Z-beef")
    assert latest.resolve() == (tmp_path / "logs" / "20260101T000001Z-beef").resolve()
    other.close()


def test_runlog_routes_lifecycle_and_output_records(tmp_path: Path) -> None:
    log, seen, stream = _runlog(tmp_path)
    started = log.emit("run.started", jobs=["a"])
    log.open_job("a")
    log.emit("job.started", job="a", attempt=1, pid=1234)
    framer = Framer(1, "stdout", 1 << 20, collections.deque(maxlen=8))
    records, _lines = framer.feed(b'epoch 1\n{"loss": 0.5}\nsay "hi"\n')
    log.write_output("a", records)  # as the runner passes them
    log.emit("job.exited", job="a", attempt=1, outcome="succeeded", exit_code=0)
    log.close_job("a")
    log.emit("job.finished", job="a", status="succeeded", attempts=1)  # job closed: opened briefly
    log.emit("run.finished", exit_code=0)
    log.close()

    assert started["event"] == "run.started" and started["run"] == RUN and started["jobs"] == ["a"]
    lifecycle = ["run.started", "job.started", "job.exited", "job.finished", "run.finished"]
    events = read_jsonl(log.dir / "events.jsonl")
    assert [r["event"] for r in events] == lifecycle, "events.jsonl holds lifecycle records, no output"
    assert all(r["run"] == RUN and TS_RE.match(r["ts"]) for r in events)
    job_recs = read_jsonl(log.job_path("a"))
    assert [r["event"] for r in job_recs] == [
        "job.started",
        "job.output",
        "job.output",
        "job.output",
        "job.exited",
        "job.finished",
    ]
    outputs = [r for r in job_recs if r["event"] == "job.output"]
    assert [r.get("line", r.get("data")) for r in outputs] == ["epoch 1", {"loss": 0.5}, 'say "hi"']
    # log schema 2: output records leave run and job to the file's path; lifecycle records keep them
    assert all("run" not in r and "job" not in r for r in outputs)
    assert all(r["job"] == "a" and r["run"] == RUN for r in job_recs if r["event"] != "job.output")
    assert all(r["attempt"] == 1 for r in job_recs[:-1])  # job.finished was emitted without an attempt
    assert job_recs[0]["pid"] == 1234
    streamed = read_jsonl(stream)
    assert [r["event"] for r in streamed] == [
        "run.started",
        "job.started",
        "job.output",
        "job.output",
        "job.output",
        "job.exited",
        "job.finished",
        "run.finished",
    ]
    # the stream holds every job's output: there, output records name run and job after event
    for mine, theirs in zip(outputs, streamed[2:5], strict=True):
        items = list(mine.items())
        assert list(theirs.items()) == [*items[:3], ("run", RUN), ("job", "a"), *items[3:]]
    assert [r["event"] for r in seen] == lifecycle, "the console gets lifecycle records only"
    assert seen[1] == job_recs[0] == streamed[1]
    assert log.write_errors() == []


def test_runlog_stream_file_is_truncated(tmp_path: Path) -> None:
    stream = tmp_path / "stream.jsonl"
    stream.write_bytes(b'{"old": true}\n')
    log = RunLog(tmp_path / "logs", RUN, stream_path=stream)
    log.emit("run.started")
    log.close()
    assert [r["event"] for r in read_jsonl(stream)] == ["run.started"]


def test_runlog_without_stream_or_console(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "logs", RUN)
    rec = log.emit("job.queued", job="q")
    log.close()
    assert read_jsonl(log.job_path("q")) == [rec] == read_jsonl(log.dir / "events.jsonl")


@needs_dev_full
def test_runlog_reports_a_job_file_that_cannot_be_written(tmp_path: Path) -> None:
    log, _seen, stream = _runlog(tmp_path)
    os.symlink("/dev/full", log.job_path("a"))  # the job's log is on a full disk
    log.open_job("a")
    log.emit("job.started", job="a", attempt=1)  # must not raise
    framer = Framer(1, "stdout", 1 << 20, collections.deque(maxlen=8))
    log.write_output("a", framer.feed(b"x\n")[0])
    errors = log.write_errors()
    assert len(errors) == 1 and str(log.job_path("a")) in errors[0] and "No space left" in errors[0]
    assert [r["event"] for r in read_jsonl(stream)] == ["job.started", "job.output"]  # the rest still works
    log.close()


@needs_dev_full
def test_runlog_still_reports_a_failed_job_file_after_the_job_is_closed(tmp_path: Path) -> None:
    log, _seen, _stream = _runlog(tmp_path)
    os.symlink("/dev/full", log.job_path("a"))
    log.open_job("a")
    log.emit("job.started", job="a", attempt=1)
    log.close_job("a")
    errors = log.write_errors()
    log.close()
    assert any(str(log.job_path("a")) in e for e in errors)


def test_runlog_survives_a_vanished_run_folder(tmp_path: Path) -> None:
    log, _seen, stream = _runlog(tmp_path)
    log.emit("run.started")
    shutil.rmtree(log.dir)
    try:
        log.emit("job.queued", job="a")  # must not raise: a vanished folder must not stop the run
        log.open_job("b")
        log.emit("job.started", job="b", attempt=1)
    finally:
        log.close()
    assert [r["event"] for r in read_jsonl(stream)] == ["run.started", "job.queued", "job.started"]
    assert log.write_errors(), "the lost files are reported"


@pytest.mark.asyncio
async def test_a_jobs_lifecycle_lines_are_written_once_per_loop_iteration_and_before_its_output(
    tmp_path: Path,
) -> None:
    """Inside the event loop a job's lifecycle lines wait for the end of the iteration (one write
    with events.jsonl's), and output that comes first takes them along, in order, in one writev."""
    import asyncio

    log = RunLog(tmp_path / "logs", RUN)
    log.open_job("a")
    path = log.job_path("a")
    log.emit("job.started", job="a", attempt=1)
    assert path.read_bytes() == b""  # held until the loop turns
    log.write_output("a", [b'{"event":"job.output","line":"x"}\n'])
    log.emit("job.exited", job="a", attempt=1, outcome="succeeded")
    log.emit("job.finished", job="a", status="succeeded")
    await asyncio.sleep(0)
    events = [json.loads(line)["event"] for line in path.read_bytes().splitlines()]
    assert events == ["job.started", "job.output", "job.exited", "job.finished"]
    log.close()
