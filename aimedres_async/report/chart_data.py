"""A run's model as the plain JSON the report page draws: each job's attempts on one time axis,
its metric curves and final metrics, and the group's memory over time.
"""

from __future__ import annotations

import math
import time
from typing import Any

from aimedres_async import __version__
from aimedres_async.report.groups import LoadedRun, groups, metric_names, swept
from aimedres_async.report.leaderboard import parse_sort, rank, step_summary_wanted, to_json
from aimedres_async.report.run_model import Attempt, Job, RunModel, iso_time

MAX_CURVE_KEYS = 16  # metric charts per job
MAX_FINAL_KEYS = 40  # final metrics kept per job
GROUP_RSS_POINTS = 1500  # the group-RSS curve is thinned to about this many points
X_KEYS = ("epoch", "step", "fold")
FINAL_STATUSES = ("succeeded", "skipped")  # skipped: succeeded in the run --resume skipped it for


CHART_MAX = 1e100  # beyond it a value is drawn at ±CHART_MAX: spans and squares stay finite in JS
CHART_TINY = 1e-300  # nearer 0 than this (subnormals) a value is drawn as 0


def _num(v: Any, marks: dict[str, str] | None = None, key: str = "") -> float | int | None:
    """A value as a chart draws it: None unless a finite number; clamped into ±CHART_MAX, and
    CHART_TINY flushed to 0, noting in `marks` (key -> how) what was changed."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    how = None
    if isinstance(v, int):
        if -CHART_MAX <= v <= CHART_MAX:
            return v if abs(v) < 1 << 53 else float(f"{v:.5g}")  # JavaScript's exact integers
        how, v = f"values beyond ±{CHART_MAX:g} drawn at ±{CHART_MAX:g}", math.copysign(CHART_MAX, v)
    elif not math.isfinite(v):
        how, v = "values that are not finite (NaN, ±inf) left out", None
    elif abs(v) > CHART_MAX:
        how, v = f"values beyond ±{CHART_MAX:g} drawn at ±{CHART_MAX:g}", math.copysign(CHART_MAX, v)
    elif 0 < abs(v) < CHART_TINY:
        how, v = f"values nearer 0 than {CHART_TINY:g} drawn as 0", 0.0
    if how is not None and marks is not None:
        marks.setdefault(key, how)
    if v is None:
        return None
    return float(f"{v:.5g}")  # 5 significant digits: a chart needs no more, the file stays small


def curves(records: list[tuple[int, dict[str, Any]]], marks: dict[str, str] | None = None) -> dict[str, Any] | None:
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
            s["y"][j].append(_num(d.get(k), marks, k))
    return {"x": xkey or "record", "keys": names, "series": list(series.values())}


def _final(metrics: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (metrics or {}).items():
        if len(out) >= MAX_FINAL_KEYS:
            break
        clamped: dict[str, str] = {}
        num = _num(v, clamped, k)
        if clamped or (num is None and isinstance(v, float)):
            out[k] = repr(v)  # the exact value as text in the table, left out of the bar charts
        elif num is not None:
            out[k] = num
        elif isinstance(v, str) and len(v) <= 80:
            out[k] = v
    return out


def _group_rss(m: RunModel, t0: float) -> list[list[float]]:
    """The sum over running jobs of each one's latest RSS sample, as (t, bytes) steps, thinned."""
    if not m.samples:
        return []
    changes: list[tuple[float, str, int]] = list(m.samples)
    for key, job in m.jobs.items():
        for a in job.attempts:
            if a.end is not None:
                changes.append((a.end, key, 0))
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


def page_data(m: RunModel, title: str, since: float | None = None) -> dict[str, Any]:
    """Everything the page draws, as plain JSON (times in seconds since the first record)."""
    t0 = m.first if math.isfinite(m.first) else time.time()
    t_last = m.last if math.isfinite(m.last) else t0
    peaks: dict[str, int] = {}
    for _t, key, rss in m.samples:
        peaks[key] = max(peaks.get(key, 0), rss)
    names = _names(m)
    notes: list[str] = []
    jobs = [
        _job_data(job, m.in_progress, peaks.get(key, 0), t0, t_last, notes) | {"id": names[key]}
        for key, job in m.jobs.items()
    ]
    return {
        "title": title,
        "tickets": m.tickets,
        "version": __version__,
        "generated": iso_time(time.time()),
        "t0": t0,
        "span": round(max(t_last - t0, 0.001), 3),
        "in_progress": m.in_progress,
        "since": iso_time(since) if since is not None else None,
        "runs": m.runs,
        "workers": _worker_limit(m, t0),
        "jobs": jobs,
        "rss": _group_rss(m, t0),
        "notes": m.notes + notes,
        "leaderboard": leaderboard_data(m),
    }


def leaderboard_data(m: RunModel) -> dict[str, Any] | None:
    """The leaderboard section: the job groups (seeds folded into mean ± std), ranked by the first
    metric, and each swept parameter's values; None when no job has parameters or repeats."""
    entries = [
        {"id": j.id, "status": j.status, "metrics": j.metrics, **({"params": j.params} if j.params else {})}
        for j in m.jobs.values()
    ]
    gs = groups([LoadedRun("report", "", entries)])  # in the run's order: each parameter's values too
    if not step_summary_wanted(gs):
        return None
    metrics = metric_names(gs)
    keys = parse_sort(None, metrics)
    ranked = rank(gs, keys)
    rows = to_json(ranked)
    for row, r in zip(rows, ranked, strict=True):
        row["label"] = r.group.label
        del row["runs"]
    return {
        "rows": rows,
        "metrics": metrics[:MAX_FINAL_KEYS],
        "sort": str(keys[0]) if keys else None,
        "swept": swept(gs),
    }


def _names(m: RunModel) -> dict[str, str]:
    """Each job's name on the page: its id, or, when the same id ran in several runs (a report
    `--since`), its id and the time its run started (`train@17:46:05`), so that runs stay apart."""
    seen: dict[str, int] = {}
    for job in m.jobs.values():
        seen[job.id] = seen.get(job.id, 0) + 1
    starts = {r["run"]: r.get("t_start") for r in m.runs}
    names: dict[str, str] = {}
    for key, job in m.jobs.items():
        name = job.id
        if seen[job.id] > 1 and job.run is not None:
            t = starts.get(job.run)
            name = f"{job.id}@{time.strftime('%H:%M:%S', time.gmtime(t))}" if isinstance(t, int | float) else job.run
            if name in names.values():
                name = f"{job.id}@{job.run}"
        names[key] = name
    return names


def _worker_limit(m: RunModel, t0: float) -> list[list[float]]:
    """The worker limit over time as (t, n) steps: the sum of the limits of the runs going on at t
    (two supervisors at once have both their workers), each counted from its start to its end."""
    changes: list[tuple[float, str, int]] = [(t, run, n) for t, n, run in m.workers]
    for r in m.runs:
        if isinstance(r.get("t_end"), int | float):
            changes.append((float(r["t_end"]), r["run"], 0))
    changes.sort(key=lambda c: c[0])
    current: dict[str, int] = {}
    steps: list[list[float]] = []
    for t, run, n in changes:
        current[run] = n
        point = [round(t - t0, 3), sum(current.values())]
        if steps and steps[-1][0] == point[0]:
            steps[-1] = point
        else:
            steps.append(point)
    if len(steps) > 1 and steps[-1][1] == 0:
        steps.pop()  # the last run's end: the line goes on to the edge rather than drop to 0 there
    return steps


def _job_data(
    job: Job, in_progress: bool, sampled_peak: int, t0: float, t_last: float, notes: list[str]
) -> dict[str, Any]:
    attempts = [_attempt_data(a, in_progress, t0, t_last) for a in job.attempts]
    peak = max([sampled_peak, *(a.peak for a in job.attempts)])
    status = job.status
    if status is None:
        last = job.attempts[-1] if job.attempts else None
        status = "queued" if last is None else "running" if last.outcome is None else "backoff"
        if not in_progress:
            status = "unknown"
    marks: dict[str, str] = {}  # metric -> how its extreme values are drawn
    data = {
        "id": job.id,
        "status": status,
        "optional": job.optional,
        "q": round(job.queued - t0, 3) if job.queued is not None else None,
        "att": attempts,
        "peak": peak,
        # a job that did not succeed has no final metrics: the last object it printed is a progress
        # record (or a partial result), kept apart as `last`, never ranked beside finished jobs
        "final": _final(job.metrics) if status in FINAL_STATUSES else {},
        "last": _final(job.metrics) if status not in FINAL_STATUSES and job.metrics else None,
        "cmd": job.argv,
        "cwd": job.cwd,
        "sha": job.script_sha256,
        "reason": job.reason,
        "curves": curves(job.records, marks),
        "runs": job.runs,
    }
    by_how: dict[str, list[str]] = {}
    for key, how in marks.items():
        by_how.setdefault(how, []).append(key)
    notes += [f"{job.id}: {', '.join(keys)}: {how}" for how, keys in by_how.items()]
    if job.params is not None:  # a sweep's combination; absent otherwise (the page stays as small)
        data["params"] = job.params
    return data


def _attempt_data(a: Attempt, in_progress: bool, t0: float, t_last: float) -> dict[str, Any]:
    start = a.start if a.start is not None else t_last
    end = a.end if a.end is not None else t_last
    outcome = a.outcome or ("running" if in_progress else "unknown")
    kind = "oom" if a.failure in ("oom_killed", "cuda_oom") else outcome
    return {
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
