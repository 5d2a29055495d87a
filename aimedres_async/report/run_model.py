"""Reading a run from its files (events.jsonl, jobs/*.jsonl, summary.json) into one model: its
jobs and their attempts, memory samples, worker limits, metric records and failed attempts' output.

Several run folders read together make one model too: a daemon's runs over a time window.
"""

from __future__ import annotations

import calendar
import contextlib
import math
import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from aimedres_async.plan.sweeps import file_stem

RUN_ID_RE = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{4}")
TAIL_LINES = 20  # last output lines kept per failed attempt
TAIL_CHARS = 400  # per line


class ReportError(Exception):
    """A one-line reason the report cannot be made (no run, a damaged events file, ...)."""


# ---------------------------------------------------------------- finding runs


def find_run(logs_dir: Path, run: str | None) -> Path:
    """The run folder for RUN: a run id under logs_dir, a run folder's path, or (None) the latest."""
    if run is None:
        path = logs_dir / "latest"
        if not path.exists():
            raise ReportError(f"no run found: {path} does not exist (start one with `aimedres-async run`)")
        return path.resolve()
    if RUN_ID_RE.fullmatch(run) and (logs_dir / run).is_dir():
        return (logs_dir / run).resolve()
    path = Path(run)
    if path.is_dir():
        if not (path / "events.jsonl").is_file():
            raise ReportError(f"{path} is not a run folder (it has no events.jsonl)")
        return path.resolve()
    if RUN_ID_RE.fullmatch(run):
        raise ReportError(f"no run {run} in {logs_dir}")
    raise ReportError(f"{run!r} is neither a run id (like 20261123T114430Z-b31a) nor a run folder")


def parse_since(text: str, now: float | None = None) -> float:
    """`--since`: a duration back from now ("12h", "90m", "2d") or a UTC date/time
    ("2026-11-27", "2026-11-27T08:00", "2026-11-27 08:00:00Z"); returns Unix seconds."""
    from aimedres_async.plan.units import parse_duration

    now = time.time() if now is None else now
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    t = text.strip().rstrip("Zz").replace(" ", "T")
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return float(calendar.timegm(time.strptime(t, fmt)))
        except ValueError:
            continue
    raise ReportError(f"--since {text!r}: expected a duration back from now (12h, 2d) or a UTC time (2026-11-27T08:00)")


def runs_since(logs_dir: Path, since: float) -> list[Path]:
    """Run folders under logs_dir with any record at or after `since` (the daemon's included)."""
    try:
        names = sorted(d.name for d in logs_dir.iterdir() if RUN_ID_RE.fullmatch(d.name) and d.is_dir())
    except OSError as e:
        raise ReportError(f"cannot read logs folder {logs_dir}: {e.strerror or e}") from None
    found = []
    for name in names:
        last = _last_time(logs_dir / name / "events.jsonl")
        if last is not None and last >= since:
            found.append(logs_dir / name)
    if not found:
        raise ReportError(f"no run in {logs_dir} recorded anything since {iso_time(since)}")
    return found


def _last_time(path: Path) -> float | None:
    """The time of the last whole record of a JSON-lines file, reading only its end."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 65536))
            tail = f.read()
    except OSError:
        return None
    for line in reversed(tail.split(b"\n")):
        with contextlib.suppress(orjson.JSONDecodeError):
            rec = orjson.loads(line)
            if isinstance(rec, dict):
                return record_time(rec)
    return None


# ---------------------------------------------------------------- reading records

_minute_cache: dict[str, float] = {}


def record_time(rec: dict[str, Any]) -> float | None:
    """A record's time in Unix seconds: its numeric `t`, else its RFC 3339 `ts`."""
    t = rec.get("t")
    if isinstance(t, int | float) and not isinstance(t, bool):
        return float(t)
    ts = rec.get("ts")
    if not isinstance(ts, str) or len(ts) < 19:
        return None
    base = _minute_cache.get(ts[:16])  # "2026-11-27T17:46": one parse a minute, not per record
    try:
        if base is None:
            base = _minute_cache[ts[:16]] = float(calendar.timegm(time.strptime(ts[:16], "%Y-%m-%dT%H:%M")))
        return base + float(ts[17:].rstrip("Zz"))
    except ValueError:
        return None


def iso_time(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def read_events(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The records of an events file, and whether its last line was cut short (being written).

    A line that is not a whole JSON record anywhere but at the very end means the file is
    damaged: ReportError. A cut-short last line is returned as a flag; the caller decides.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReportError(f"{path} does not exist: not a run folder") from None
    except OSError as e:
        raise ReportError(f"cannot read {path}: {e.strerror or e}") from None
    lines = data.split(b"\n")
    cut = lines.pop() != b""  # whatever follows the last newline is an unfinished record
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict):
            raise ReportError(f"{path}: line {n} is not a whole JSON record: the file is truncated or damaged")
        records.append(rec)
    if not records:
        raise ReportError(f"{path} holds no records" + (" (only a cut-short line)" if cut else ""))
    return records, cut


# ---------------------------------------------------------------- the model of a run


@dataclass
class Attempt:
    n: int
    run: str
    start: float | None = None
    end: float | None = None
    outcome: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    failure: str | None = None
    error: str | None = None
    duration: float | None = None
    peak: int = 0
    pid: int | None = None
    gpus: str | None = None
    backoff: float | None = None  # delay after this attempt before the next one was queued
    tail: list[str] = field(default_factory=list)


@dataclass
class Job:
    id: str
    queued: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    status: str | None = None
    optional: bool = False
    metrics: dict[str, Any] | None = None
    argv: list[str] | None = None
    cwd: str | None = None
    script_sha256: str | None = None
    reason: str | None = None
    log: Path | None = None
    runs: list[str] = field(default_factory=list)
    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (attempt, data)
    params: dict[str, Any] | None = None  # a sweep's combination (job.started, summary.json)
    run: str | None = None  # the run it belongs to, when several runs are read together

    def attempt(self, n: int, run: str) -> Attempt:
        for a in reversed(self.attempts):
            if a.n == n and a.run == run:
                return a
        a = Attempt(n, run)
        self.attempts.append(a)
        return a


@dataclass
class RunModel:
    runs: list[dict[str, Any]] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    samples: list[tuple[float, str, int]] = field(default_factory=list)  # (t, job key, rss)
    workers: list[tuple[float, int, str]] = field(default_factory=list)  # (t, the run's limit from then on, run)
    notes: list[str] = field(default_factory=list)
    first: float = math.inf
    last: float = -math.inf
    in_progress: bool = False
    tickets: bool = False  # a daemon ran tickets (job.queued names a ticket's job or priority)
    multi: bool = False  # several runs: a job is (run, id), a job id may recur in each run

    def key(self, run_id: str, job_id: str) -> str:
        """The job's key in `jobs`: its id, or with several runs its run and id (ids have no '/')."""
        return f"{run_id}/{job_id}" if self.multi else job_id

    def seen(self, t: float | None) -> None:
        if t is not None:
            self.first = min(self.first, t)
            self.last = max(self.last, t)


def load(run_dirs: Iterable[Path], since: float | None = None, logs: bool = True) -> RunModel:
    """Read the run folders into one model (several folders: a daemon's runs over a window).
    logs=False reads the event logs only (no metric curves, no output tails)."""
    dirs = list(run_dirs)
    m = RunModel(multi=len(dirs) > 1)
    for d in dirs:
        _load_run(m, d, since, logs)
    if not m.jobs and not m.runs:
        raise ReportError("nothing to report")
    return m


_SUMMARY_META = (
    "started_at",
    "finished_at",
    "config",
    "config_sha256",
    "git",
    "host",
    "python",
    "platform",
    "max_workers",
    "duration_s",
    "exit_code",
    "counts",
    "stopped_by",
)
_RUN_EVENTS = frozenset({"run.started", "run.finished", "daemon.reloaded"})


def _load_run(m: RunModel, d: Path, since: float | None, logs: bool) -> None:
    """One run folder into the model: the run's own record, its jobs' events, then their logs."""
    records, cut = read_events(d / "events.jsonl")
    finished = any(r.get("event") == "run.finished" for r in records)
    if cut:
        if finished:
            raise ReportError(f"{d / 'events.jsonl'}: the last line is not a whole JSON record: the file is truncated")
        m.notes.append(f"{d.name}: the last line of events.jsonl was still being written; it is left out")
    run_id = str(records[0].get("run") or d.name)
    meta: dict[str, Any] = {"run": run_id, "dir": str(d), "finished": finished}
    summary = _read_summary(d, m)
    if summary:
        meta.update({k: summary[k] for k in _SUMMARY_META if k in summary})
    if not finished:
        m.in_progress = True
    run_jobs = _read_records(m, d, records, run_id, meta, _wanted(records, since))
    _add_summary_jobs(m, summary, run_id)
    m.runs.append(meta)
    for key in run_jobs if logs else ():
        job = m.jobs[key]
        _read_job_log(m, job, d / "jobs" / f"{file_stem(job.id)}.jsonl", run_id)


def _wanted(records: list[dict[str, Any]], since: float | None) -> set[str] | None:
    """With `since`: a daemon's tickets with anything recorded in the window, whole; else all (None)."""
    if since is None:
        return None
    wanted = set()
    for rec in records:
        t = record_time(rec)
        if t is not None and t >= since and isinstance(rec.get("job"), str):
            wanted.add(rec["job"])
    return wanted


def _read_records(
    m: RunModel, d: Path, records: list[dict[str, Any]], run_id: str, meta: dict[str, Any], wanted: set[str] | None
) -> set[str]:
    """Every record of one events file into the model; returns the keys of the jobs it names."""
    run_jobs: set[str] = set()
    last_sample = -math.inf
    samples = m.samples
    for rec in records:
        ev = rec.get("event")
        t = record_time(rec)
        job_id = rec.get("job")
        if ev == "job.sample":  # most records of a long run: the short way
            rss = rec.get("rss_bytes", rec.get("rss"))
            if isinstance(rss, int) and t is not None and (wanted is None or job_id in wanted):
                samples.append((t, m.key(run_id, str(job_id)), rss))
                last_sample = max(last_sample, t)
            continue
        if ev in _RUN_EVENTS and _run_event(m, meta, ev, rec, t, run_id):
            continue
        if not isinstance(job_id, str) or t is None:
            continue
        if wanted is not None and job_id not in wanted:
            continue
        key = m.key(run_id, job_id)
        job = m.jobs.get(key)
        if job is None:
            job = m.jobs[key] = Job(job_id, run=run_id if m.multi else None)
        if key not in run_jobs:
            run_jobs.add(key)
            job.runs.append(run_id)
            job.log = d / "jobs" / f"{file_stem(job_id)}.jsonl"
        if ev == "job.queued" and ("ticket_job" in rec or "priority" in rec):
            m.tickets = True
        m.seen(t)
        _job_event(job, ev, rec, t, run_id)
    if math.isfinite(last_sample):
        m.seen(last_sample)
    return run_jobs


def _run_event(m: RunModel, meta: dict[str, Any], ev: str, rec: dict[str, Any], t: float | None, run_id: str) -> bool:
    """A run's own record (started, finished, workers reloaded) into its meta; False: not one."""
    if ev == "run.started":
        for k, v in rec.items():
            if k not in ("ts", "t", "event", "job_ids", "run"):
                meta.setdefault(k, v)
        meta["t_start"] = t
        if t is not None and isinstance(rec.get("max_workers"), int):
            m.workers.append((t, rec["max_workers"], run_id))
        m.seen(t)
        return True
    if ev == "run.finished":
        for k in ("counts", "duration_s", "exit_code", "stopped_by"):
            if k in rec:
                meta[k] = rec[k]
        meta["t_end"] = t
        m.seen(t)
        return True
    if ev == "daemon.reloaded" and t is not None and isinstance(rec.get("max_workers"), int):
        m.workers.append((t, rec["max_workers"], run_id))
        return True
    return False


def _job_event(job: Job, ev: object, rec: dict[str, Any], t: float, run_id: str) -> None:
    """One job record (queued, started, exited, retrying, finished) into its job and attempt."""
    n = rec.get("attempt")
    if ev == "job.queued":
        job.queued = t if job.queued is None else job.queued
    elif ev == "job.started" and isinstance(n, int):
        a = job.attempt(n, run_id)
        a.start, a.pid, a.gpus = t, rec.get("pid"), rec.get("gpus")
        if isinstance(rec.get("argv"), list):
            job.argv = [str(x) for x in rec["argv"]]
        job.cwd = rec.get("cwd") or job.cwd
        job.script_sha256 = rec.get("script_sha256") or job.script_sha256
        if isinstance(rec.get("params"), dict):
            job.params = rec["params"]
    elif ev == "job.exited" and isinstance(n, int):
        a = job.attempt(n, run_id)
        a.end = t
        a.outcome = rec.get("outcome")
        a.exit_code, a.signal = rec.get("exit_code"), rec.get("signal")
        a.failure, a.error = rec.get("failure"), rec.get("error")
        dur = rec.get("duration_s")
        a.duration = float(dur) if isinstance(dur, int | float) else None
        if a.start is None:  # never spawned (spawn_failed): a sliver at its end
            a.start = t - (a.duration or 0.0)
        peak = rec.get("peak_rss_bytes")
        a.peak = max(a.peak, peak if isinstance(peak, int) else 0)
    elif ev == "job.retrying" and isinstance(n, int):
        delay = rec.get("delay_s")
        job.attempt(n, run_id).backoff = float(delay) if isinstance(delay, int | float) else None
    elif ev == "job.finished":
        status = rec.get("status")
        job.status = str(status) if status is not None else None
        if isinstance(rec.get("metrics"), dict):
            job.metrics = rec["metrics"]
        if isinstance(rec.get("optional"), bool):
            job.optional = rec["optional"]
        job.reason = rec.get("reason") or job.reason


def _add_summary_jobs(m: RunModel, summary: dict[str, Any] | None, run_id: str) -> None:
    """What only summary.json says of a job: optional, its final metrics, command and parameters."""
    for entry in (summary or {}).get("jobs", []):
        job = m.jobs.get(m.key(run_id, str(entry.get("id")))) if isinstance(entry, dict) else None
        if job is None:
            continue
        job.optional = bool(entry.get("optional"))
        if job.metrics is None and isinstance(entry.get("metrics"), dict):
            job.metrics = entry["metrics"]
        if job.argv is None and isinstance(entry.get("command"), list):
            job.argv = [str(x) for x in entry["command"]]
        if job.params is None and isinstance(entry.get("params"), dict):
            job.params = entry["params"]


def _read_summary(d: Path, m: RunModel) -> dict[str, Any] | None:
    path = d / "summary.json"
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as e:
        m.notes.append(f"{d.name}: summary.json could not be read ({e}); drawn from the event log alone")
        return None
    return data if isinstance(data, dict) else None


def _read_job_log(m: RunModel, job: Job, path: Path, run_id: str) -> None:
    """Metric records (`data` objects) and each attempt's last output lines, from the job's log.

    Only records that hold a `data` object or a lifecycle event are parsed; plain output lines are
    kept as raw bytes in a short ring per attempt and decoded only for attempts that failed.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below; read line by line, the file may be big)
    except FileNotFoundError:
        return
    except OSError as e:
        m.notes.append(f"{job.id}: cannot read its log {path.name}: {e.strerror or e}")
        return
    attempt = 0
    tails: dict[int, deque[bytes]] = {}
    bad = 0
    with f:
        for raw in f:
            if b'"event":"job.output"' in raw:
                if b',"data":{' in raw:
                    try:
                        rec = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        bad += 1
                        continue
                    data = rec.get("data")
                    n = rec.get("attempt")
                    if isinstance(data, dict):
                        job.records.append((n if isinstance(n, int) else attempt, data))
                        m.seen(record_time(rec))
                    continue
                tails.setdefault(attempt, deque(maxlen=TAIL_LINES)).append(raw)
                continue
            if b'"event":"job.started"' in raw:
                try:
                    rec = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    bad += 1
                    continue
                n = rec.get("attempt")
                attempt = n if isinstance(n, int) else attempt + 1
    if bad:
        m.notes.append(f"{job.id}: {bad} damaged line(s) in its log were skipped")
    for a in job.attempts:
        if a.run == run_id and a.outcome not in (None, "succeeded") and a.n in tails:
            a.tail = _decode_tail(tails[a.n])
        elif a.run == run_id and a.outcome is None and a.n in tails:
            a.tail = _decode_tail(tails[a.n])  # still running: its latest lines


def _decode_tail(raws: Iterable[bytes]) -> list[str]:
    out = []
    for raw in raws:
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        line = rec.get("line")
        if isinstance(line, str):
            prefix = "! " if rec.get("stream") == "stderr" else ""
            out.append(prefix + (line if len(line) <= TAIL_CHARS else line[: TAIL_CHARS - 1] + "…"))
    return out
