"""`report`: one self-contained HTML file that draws a run from its files (events.jsonl, jobs/*.jsonl,
summary.json), and the Mermaid gantt block of a run's attempts for `$GITHUB_STEP_SUMMARY`.

The page is hand-written SVG and vanilla JS from `assets/`, inlined together with the run's
data as JSON: no library, no network request, opens from disk or as a CI artifact.
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
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from aimedres_async import __version__
from aimedres_async.records.sinks import atomic_write

RUN_ID_RE = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{4}")
TAIL_LINES = 20  # last output lines kept per failed attempt
TAIL_CHARS = 400  # per line
MAX_CURVE_KEYS = 16  # metric charts per job
MAX_FINAL_KEYS = 40  # final metrics kept per job
GROUP_RSS_POINTS = 1500  # the group-RSS curve is thinned to about this many points
X_KEYS = ("epoch", "step", "fold")
GANTT_MAX_JOBS = 50


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
        raise ReportError(f"no run in {logs_dir} recorded anything since {_iso(since)}")
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


def _iso(t: float) -> str:
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
class _Attempt:
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
class _Job:
    id: str
    queued: float | None = None
    attempts: list[_Attempt] = field(default_factory=list)
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

    def attempt(self, n: int, run: str) -> _Attempt:
        for a in reversed(self.attempts):
            if a.n == n and a.run == run:
                return a
        a = _Attempt(n, run)
        self.attempts.append(a)
        return a


@dataclass
class _Model:
    runs: list[dict[str, Any]] = field(default_factory=list)
    jobs: dict[str, _Job] = field(default_factory=dict)
    samples: list[tuple[float, str, int]] = field(default_factory=list)  # (t, job, rss)
    workers: list[tuple[float, int]] = field(default_factory=list)  # (t, limit from then on)
    notes: list[str] = field(default_factory=list)
    first: float = math.inf
    last: float = -math.inf
    in_progress: bool = False

    def seen(self, t: float | None) -> None:
        if t is not None:
            self.first = min(self.first, t)
            self.last = max(self.last, t)


def load(run_dirs: Iterable[Path], since: float | None = None, logs: bool = True) -> _Model:
    """Read the run folders into one model (several folders: a daemon's runs over a window).
    logs=False reads the event logs only (no metric curves, no output tails)."""
    m = _Model()
    for d in run_dirs:
        _load_run(m, d, since, logs)
    if not m.jobs and not m.runs:
        raise ReportError("nothing to report")
    return m


def _load_run(m: _Model, d: Path, since: float | None, logs: bool) -> None:
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
        for k in (
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
        ):
            if k in summary:
                meta[k] = summary[k]
    if not finished:
        m.in_progress = True
    run_jobs: set[str] = set()
    wanted: set[str] | None = None
    if since is not None:  # a daemon's tickets with anything recorded in the window, whole
        wanted = set()
        for rec in records:
            t = record_time(rec)
            if t is not None and t >= since and isinstance(rec.get("job"), str):
                wanted.add(rec["job"])
    last_sample = -math.inf
    samples = m.samples
    for rec in records:
        ev = rec.get("event")
        t = record_time(rec)
        job_id = rec.get("job")
        if ev == "job.sample":  # most records of a long run: the short way
            rss = rec.get("rss_bytes", rec.get("rss"))
            if isinstance(rss, int) and t is not None and (wanted is None or job_id in wanted):
                samples.append((t, str(job_id), rss))
                last_sample = max(last_sample, t)
            continue
        if ev == "run.started":
            for k, v in rec.items():
                if k not in ("ts", "t", "event", "job_ids", "run"):
                    meta.setdefault(k, v)
            meta["t_start"] = t
            if t is not None and isinstance(rec.get("max_workers"), int):
                m.workers.append((t, rec["max_workers"]))
            m.seen(t)
            continue
        if ev == "run.finished":
            for k in ("counts", "duration_s", "exit_code", "stopped_by"):
                if k in rec:
                    meta[k] = rec[k]
            meta["t_end"] = t
            m.seen(t)
            continue
        if ev == "daemon.reloaded" and t is not None and isinstance(rec.get("max_workers"), int):
            m.workers.append((t, rec["max_workers"]))
            continue
        if not isinstance(job_id, str) or t is None:
            continue
        if wanted is not None and job_id not in wanted:
            continue
        job = m.jobs.get(job_id)
        if job is None:
            job = m.jobs[job_id] = _Job(job_id)
        if job_id not in run_jobs:
            run_jobs.add(job_id)
            job.runs.append(run_id)
            job.log = d / "jobs" / f"{job_id}.jsonl"
        m.seen(t)
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
    for entry in (summary or {}).get("jobs", []):
        job = m.jobs.get(str(entry.get("id"))) if isinstance(entry, dict) else None
        if job is None:
            continue
        job.optional = bool(entry.get("optional"))
        if job.metrics is None and isinstance(entry.get("metrics"), dict):
            job.metrics = entry["metrics"]
        if job.argv is None and isinstance(entry.get("command"), list):
            job.argv = [str(x) for x in entry["command"]]
    if math.isfinite(last_sample):
        m.seen(last_sample)
    m.runs.append(meta)
    for job_id in run_jobs if logs else ():
        _read_job_log(m, m.jobs[job_id], d / "jobs" / f"{job_id}.jsonl", run_id)


def _read_summary(d: Path, m: _Model) -> dict[str, Any] | None:
    path = d / "summary.json"
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as e:
        m.notes.append(f"{d.name}: summary.json could not be read ({e}); drawn from the event log alone")
        return None
    return data if isinstance(data, dict) else None


def _read_job_log(m: _Model, job: _Job, path: Path, run_id: str) -> None:
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


# ---------------------------------------------------------------- the data the page draws


def _num(v: Any) -> float | int | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        return float(f"{v:.5g}")  # 5 significant digits: a chart needs no more, the file stays small
    return v


def curves(records: list[tuple[int, dict[str, Any]]]) -> dict[str, Any] | None:
    """Metric curves from a job's JSON records: x = epoch, step or fold when present, else the
    record's position; one series per fold (and attempt, when several printed records)."""
    if len(records) < 2:
        return None
    xkey = next((k for k in X_KEYS if any(_num(d.get(k)) is not None for _n, d in records)), None)
    pts = [(n, d) for n, d in records if _num(d.get(xkey)) is not None] if xkey else records
    if len(pts) < 2:
        return None
    by_fold = xkey != "fold" and any("fold" in d for _n, d in pts)
    several = len({n for n, _d in pts}) > 1
    keys: dict[str, int] = {}
    for _n, d in pts:
        for k, v in d.items():
            if k not in X_KEYS and k != "attempt" and _num(v) is not None:
                keys[k] = keys.get(k, 0) + 1
    names = [k for k, c in keys.items() if c >= 2][:MAX_CURVE_KEYS]
    if not names:
        return None
    series: dict[str, dict[str, Any]] = {}
    for i, (n, d) in enumerate(pts, 1):
        label = []
        if several:
            label.append(f"attempt {n}")
        if by_fold and "fold" in d:
            # fold null: the records of the final fit on all the data, after the cross-validation
            label.append("final fit" if d["fold"] is None else f"fold {d['fold']}")
        name = ", ".join(label) or "all"
        x = _num(d.get(xkey)) if xkey else i
        s = series.get(name)
        while s is not None and x is not None and s["x"] and s["x"][-1] >= x:
            # x went back (folds printed without a fold key, a loop started over): a new line
            parts = name.rsplit(" #", 1)
            name = f"{parts[0]} #{int(parts[1]) + 1}" if len(parts) == 2 and parts[1].isdigit() else f"{name} #2"
            s = series.get(name)
        if s is None:
            s = series[name] = {"n": name, "x": [], "y": [[] for _ in names]}
            if several:
                s["a"] = n  # the attempt: a job's compared curve is its last attempt's
            if by_fold and d.get("fold", 0) is None:
                s["aux"] = True  # not a fold: left out of the job's mean over folds
        s["x"].append(x)
        for j, k in enumerate(names):
            s["y"][j].append(_num(d.get(k)))
    return {"x": xkey or "record", "keys": names, "series": list(series.values())}


def _final(metrics: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (metrics or {}).items():
        if len(out) >= MAX_FINAL_KEYS:
            break
        num = _num(v)
        if num is not None:
            out[k] = num
        elif isinstance(v, str) and len(v) <= 80:
            out[k] = v
    return out


def _group_rss(m: _Model, t0: float) -> list[list[float]]:
    """The sum over running jobs of each one's latest RSS sample, as (t, bytes) steps, thinned."""
    if not m.samples:
        return []
    changes: list[tuple[float, str, int]] = list(m.samples)
    for job in m.jobs.values():
        for a in job.attempts:
            if a.end is not None:
                changes.append((a.end, job.id, 0))
    changes.sort(key=lambda c: c[0])
    current: dict[str, int] = {}
    total = 0
    points: list[tuple[float, int]] = []
    for t, job_id, rss in changes:
        total += rss - current.get(job_id, 0)
        current[job_id] = rss
        if points and t - points[-1][0] < 0.25:  # one tick's samples arrive together: one point
            points[-1] = (points[-1][0], total)
        else:
            points.append((t, total))
    if len(points) > GROUP_RSS_POINTS:  # thin to the peak of each bucket (a peak must not vanish)
        span = (points[-1][0] - points[0][0]) or 1.0
        buckets: dict[int, tuple[float, int]] = {}
        for t, v in points:
            b = int((t - points[0][0]) / span * (GROUP_RSS_POINTS - 1))
            if b not in buckets or v > buckets[b][1]:
                buckets[b] = (t, v)
        points = [buckets[b] for b in sorted(buckets)]
    return [[round(t - t0, 3), v] for t, v in points]


def page_data(m: _Model, title: str, since: float | None = None) -> dict[str, Any]:
    """Everything the page draws, as plain JSON (times in seconds since the first record)."""
    t0 = m.first if math.isfinite(m.first) else time.time()
    t_last = m.last if math.isfinite(m.last) else t0
    peaks: dict[str, int] = {}
    for _t, job_id, rss in m.samples:
        peaks[job_id] = max(peaks.get(job_id, 0), rss)
    jobs = []
    for job in m.jobs.values():
        attempts = []
        for a in job.attempts:
            start = a.start if a.start is not None else t_last
            end = a.end if a.end is not None else t_last
            outcome = a.outcome or ("running" if m.in_progress else "unknown")
            kind = "oom" if a.failure in ("oom_killed", "cuda_oom") else outcome
            attempts.append(
                {
                    "n": a.n,
                    "run": a.run,
                    "s": round(start - t0, 3),
                    "e": round(max(end, start) - t0, 3),
                    "o": outcome,
                    "k": kind,
                    "code": a.exit_code,
                    "sig": a.signal,
                    "fail": a.failure,
                    "err": a.error,
                    "dur": a.duration if a.duration is not None else round(end - start, 3),
                    "peak": a.peak,
                    "pid": a.pid,
                    "gpus": a.gpus,
                    "backoff": a.backoff,
                    "tail": a.tail,
                }
            )
        peak = max([peaks.get(job.id, 0), *(a.peak for a in job.attempts)])
        status = job.status
        if status is None:
            last = job.attempts[-1] if job.attempts else None
            status = "queued" if last is None else "running" if last.outcome is None else "backoff"
            if not m.in_progress:
                status = "unknown"
        jobs.append(
            {
                "id": job.id,
                "status": status,
                "optional": job.optional,
                "q": round(job.queued - t0, 3) if job.queued is not None else None,
                "att": attempts,
                "peak": peak,
                "final": _final(job.metrics),
                "cmd": job.argv,
                "cwd": job.cwd,
                "sha": job.script_sha256,
                "reason": job.reason,
                "curves": curves(job.records),
                "runs": job.runs,
            }
        )
    return {
        "title": title,
        "version": __version__,
        "generated": _iso(time.time()),
        "t0": t0,
        "span": round(max(t_last - t0, 0.001), 3),
        "in_progress": m.in_progress,
        "since": _iso(since) if since is not None else None,
        "runs": m.runs,
        "workers": [[round(t - t0, 3), n] for t, n in sorted(m.workers)],
        "jobs": jobs,
        "rss": _group_rss(m, t0),
        "notes": m.notes,
    }


# ---------------------------------------------------------------- the HTML file

_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def _asset(name: str) -> str:
    return resources.files("aimedres_async.report").joinpath("assets", name).read_text(encoding="utf-8")


def render_html(data: dict[str, Any]) -> bytes:
    """The page: inline CSS, the data as JSON, inline JS. `<` in the JSON is escaped, so no text a
    job printed can close the script element."""
    payload = orjson.dumps(data).replace(b"<", b"\\u003c")
    title = data["title"].replace("&", "&amp;").replace("<", "&lt;")
    head = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title} · aimedres-async report</title><style>{_asset('report.css')}</style></head>"
        '<body><div id="app"><p class="loading">Drawing the report…</p></div>'
        '<script id="data" type="application/json">'
    )
    tail = f"</script><script>{_asset('report.js')}</script></body></html>\n"
    return head.encode() + payload + tail.encode()


def build(run_dirs: list[Path], since: float | None = None) -> bytes:
    """The report of these run folders (one run, or a daemon's runs with `since`)."""
    m = load(run_dirs, since)
    title = f"since {_iso(since)}" if since is not None else str(m.runs[0]["run"])
    return render_html(page_data(m, title, since))


def write_report(run_dirs: list[Path], out: Path, since: float | None = None) -> Path:
    """Write the report atomically (temp + rename); ReportError on a problem with the input."""
    html = build(run_dirs, since)
    try:
        atomic_write(out, html)
    except OSError as e:
        raise ReportError(f"cannot write {out}: {e.strerror or e}") from None
    return out


# ---------------------------------------------------------------- Mermaid gantt (step summary)

_GANTT_BAD = re.compile(r"[#:;\n\r,%]")
_GANTT_TAGS = {"succeeded": "done", "cancelled": "active", "running": "active"}


def _gantt_name(text: str) -> str:
    """A task or section name Mermaid's gantt lexer takes whole: no # : ; , % or line breaks."""
    return _GANTT_BAD.sub("_", text).strip() or "_"


def mermaid_gantt(run_dir: Path, limit: int = GANTT_MAX_JOBS) -> str:
    """A ```mermaid gantt block of the run's attempts (the `limit` longest jobs), for Markdown."""
    m = load([run_dir], logs=False)
    data = page_data(m, run_dir.name)
    t0 = data["t0"]
    jobs = [j for j in data["jobs"] if j["att"]]
    longest = sorted(jobs, key=lambda j: -sum(a["e"] - a["s"] for a in j["att"]))[:limit]
    keep = {j["id"] for j in longest}
    lines = [
        "```mermaid",
        "gantt",
        f"    title {_gantt_name('aimedres-async run ' + data['title'])}",
        "    dateFormat YYYY-MM-DD HH:mm:ss",
        "    axisFormat %H:%M:%S",
    ]
    for i, job in enumerate(j for j in jobs if j["id"] in keep):
        lines.append(f"    section {_gantt_name(job['id'])}")
        for a in job["att"]:
            start = math.floor(t0 + a["s"])
            end = max(start + 1, math.ceil(t0 + a["e"]))  # whole seconds; never zero-length
            tag = _GANTT_TAGS.get(a["o"], "crit")
            # the section names the job: a task name never starts with a job id that Mermaid would
            # read as a keyword (a job called "title" or "section")
            name = _gantt_name(f"attempt {a['n']} {a['k']}")
            lines.append(f"    {name} :{tag}, j{i}a{a['n']}, {_gantt_time(start)}, {_gantt_time(end)}")
    lines.append("```")
    more = len(jobs) - len(longest)
    note = f"\n{more} more job(s) ran; the gantt shows the {len(longest)} longest. The HTML report has them all.\n"
    return "\n".join(lines) + "\n" + (note if more > 0 else "")


def _gantt_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
