"""Helpers for the many-job benchmarks (dispatch, overhead, memory, idle, makespan) and bench/all.py.

Standard library only. `_common.py` has the timing, statistics and table helpers; this module adds
configs with many `[jobs.*]` tables, reading a run's `summary.json` and `events.jsonl` (SPEC §7),
reading a live process's memory and CPU time from /proc (Linux), and the "figure" records that every
benchmark puts in its `--json` output so that `bench/all.py` can print one combined table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import write_config

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MIB = 1 << 20


# --- configs --------------------------------------------------------------------------------------


def write_jobs_config(path: Path, n: int, command: Sequence[str], workers: int, prefix: str = "j") -> Path:
    """A config with n identical jobs `[jobs.<prefix><i>] command = [...]`, parallel, max_workers = workers."""
    jobs = {f"{prefix}{i}": list(command) for i in range(n)}
    return write_config(path, jobs, supervisor={"parallel": True, "max_workers": workers})


# --- a run's artifacts ------------------------------------------------------------------------------


def latest_run_dir(logs_dir: Path) -> Path | None:
    """logs_dir/latest (resolved), or the newest run folder if the link is missing."""
    latest = logs_dir / "latest"
    if latest.exists():
        return latest.resolve()
    runs = sorted(p for p in logs_dir.glob("*") if p.is_dir() and (p / "events.jsonl").exists())
    return runs[-1] if runs else None


def read_summary(logs_dir: Path) -> dict[str, Any] | None:
    """The newest run's summary.json, or None if there is none (or it is not JSON)."""
    run = latest_run_dir(logs_dir)
    if run is None:
        return None
    try:
        data = json.loads((run / "summary.json").read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_counts(summary: dict[str, Any] | None, expected: Mapping[str, int], what: str = "aimedres") -> list[str]:
    """Problems if summary.json's `counts` (SPEC §7 run.finished counts per status) differ from expected."""
    if summary is None:
        return [f"{what}: no readable summary.json"]
    counts = summary.get("counts")
    problems = []
    if counts != dict(expected):
        problems.append(f"{what}: summary.json counts {counts!r}, expected {dict(expected)!r}")
    jobs = summary.get("jobs")
    n = sum(expected.values())
    if not isinstance(jobs, list) or len(jobs) != n:
        problems.append(
            f"{what}: summary.json lists {len(jobs) if isinstance(jobs, list) else 'no'} jobs, expected {n}"
        )
    return problems


def read_events(logs_dir: Path) -> Iterator[dict[str, Any]]:
    """The records of the newest run's events.jsonl (lines that are not JSON objects are skipped)."""
    run = latest_run_dir(logs_dir)
    if run is None:
        return
    with open(run / "events.jsonl", "rb") as f:
        for raw in f:
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec


def ts_seconds(ts: str) -> float:
    """RFC 3339 UTC with microseconds ('2026-11-23T12:06:31.063161Z') as POSIX seconds."""
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


# --- /proc ----------------------------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a live process, all its threads (/proc/<pid>/stat; clock-tick resolution)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()  # after "pid (comm) ": field 3 (state) is fields[0]
    try:
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)
    except (IndexError, ValueError):
        return None


def proc_thread_cpu_ns(pid: int) -> dict[int, int]:
    """CPU time in ns of each live thread of pid (first field of /proc/<pid>/task/<tid>/schedstat).

    Nanosecond resolution, unlike the clock ticks of /proc/<pid>/stat, but only for threads alive at
    the time of reading: compare two readings only if no thread of the first is missing in the second.
    Empty if schedstat is not available.
    """
    out: dict[int, int] = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            out[int(tid)] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def proc_mem(pid: int) -> dict[str, int] | None:
    """VmRSS and VmHWM (peak RSS so far) of a live process, in bytes; None once it has exited."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out or None  # a zombie has no Vm* lines


def proc_children(pid: int) -> list[int]:
    """The live children of pid (union of /proc/<pid>/task/*/children)."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            kids += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except (OSError, ValueError):
            pass
    return kids


def proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]]


@dataclass
class Reaped:
    """A child reaped with os.wait4: its exit code and its own rusage (it and its reaped descendants)."""

    returncode: int
    cpu_s: float
    maxrss_bytes: int  # Linux: max(its own peak RSS, its largest reaped descendant's)


def try_reap(proc: subprocess.Popen[Any]) -> Reaped | None:
    """Reap proc if it has exited (WNOHANG), keeping the rusage that Popen.wait would throw away."""
    if proc.returncode is not None:
        raise RuntimeError("already reaped")
    pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
    if pid == 0:
        return None
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc  # so that Popen does not try to reap it again
    return Reaped(rc, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024)


def stop_and_reap(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[Reaped, bool]:
    """Send sig, wait up to timeout for the exit (SIGKILL after that); returns (reaped, was_killed)."""
    if proc.returncode is None:
        proc.send_signal(sig)
    deadline = time.monotonic() + timeout
    killed = False
    while True:
        r = try_reap(proc)
        if r is not None:
            return r, killed
        if not killed and time.monotonic() > deadline:
            proc.kill()
            killed = True
        time.sleep(0.02)


# --- figures for bench/all.py ---------------------------------------------------------------------------


@dataclass
class Figure:
    """One row of the combined table: what aimedres measured, the peer (if any), the ratio, the target."""

    figure: str
    aimedres: str  # displayed value, e.g. "2.31 s"
    peer: str  # e.g. "xargs -P 8: 0.84 s", or "-"
    ratio: float | None
    target: str  # e.g. "<= 2.5x xargs"
    verdict: str  # PASS | MISS | INVALID | INFO
    value: float | None = None  # the number behind `aimedres`, in `unit`
    peer_value: float | None = None
    unit: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(value: float | None, limit: float, problems: Sequence[str]) -> str:
    """PASS if value <= limit, MISS if not, INVALID if the measurement failed verification."""
    if problems or value is None or value != value:  # nan
        return "INVALID"
    return "PASS" if value <= limit else "MISS"


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None or r != r else f"{r:.2f}x"
