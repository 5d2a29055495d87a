"""A run's jobs as experiment trackers take them (SPEC §19): per job its params, tags, metric points
(name, value, step, time), status and times, read from its own JSON-lines log and summary entry.

Pure mapping and file reading only: the MLflow and TensorBoard writers (export_mlflow.py,
export_tensorboard.py) import their packages; this module imports neither.
"""

from __future__ import annotations

import math
import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from aimedres_async.plan.sweeps import file_stem
from aimedres_async.report.run_model import ReportError, read_events, record_time

X_KEYS = ("epoch", "step", "fold")  # what a per-epoch record's step is taken from, in this order
FLAG_PARAMS = {"--epochs": "epochs", "--folds": "folds", "--batch-size": "batch", "--sample": "sample"}
MAX_KEY = 250  # MLflow's limit for a param, metric or tag name
MAX_PARAM_VALUE = 6000  # MLflow's limit for a param value
MAX_TAG_VALUE = 8000  # MLflow's limit for a tag value
# Our status -> MLflow's run status; a job without one (still queued or running) stays RUNNING.
MLFLOW_STATUS = {
    "succeeded": "FINISHED",
    "failed": "FAILED",
    "timed_out": "FAILED",
    "stalled": "FAILED",
    "spawn_failed": "FAILED",
    "cancelled": "KILLED",
    "interrupted": "KILLED",
}
NOT_EXPORTED = frozenset({"skipped"})  # `--resume` skipped it: the run that trained it has it
_BAD_KEY_CHARS = re.compile(r"[^\w.\- :/]")


@dataclass(frozen=True)
class Point:
    key: str
    value: float
    step: int
    t_ms: int


@dataclass
class TrackedJob:
    """One job of one run, as a tracker's run."""

    run_id: str
    job_id: str
    status: str | None = None  # ours (succeeded, failed, ...); None while it has not finished
    attempts: int = 0
    start_ms: int | None = None
    end_ms: int | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)
    log: Path | None = None

    @property
    def mlflow_status(self) -> str:
        return MLFLOW_STATUS.get(self.status or "", "RUNNING")

    @property
    def finished(self) -> bool:
        return self.status in MLFLOW_STATUS


# ---------------------------------------------------------------- names


def metric_key(name: str) -> str:
    """A name MLflow accepts (letters, digits, `_ - . : / space`; no empty or `..` path parts)."""
    key = _BAD_KEY_CHARS.sub("_", name)[:MAX_KEY] or "_"
    if not _unique_path(key):
        key = key.replace("/", "_")
        if not _unique_path(key):  # ".", "..", "..x"
            key = "_" + key[1:]
    return key


def _unique_path(key: str) -> bool:
    """MLflow's rule: a name is a normalized relative path that does not climb out."""
    norm = posixpath.normpath(key)
    return norm == key and norm != "." and not norm.startswith(("..", "/"))


def param_value(v: object) -> str:
    """A swept value as MLflow's string: strings as they are, numbers and the rest as JSON."""
    text = v if isinstance(v, str) else orjson.dumps(v).decode()
    return text[:MAX_PARAM_VALUE]


# ---------------------------------------------------------------- the mapping


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _ms(t: float | None) -> int | None:
    return None if t is None else round(t * 1000)


def job_params(argv: list[str] | None, interpreter: str | None, params: Mapping[str, Any] | None) -> dict[str, str]:
    """A job's params: the swept ones (and the seed), then epochs, folds, batch and sample as its
    command passes them, the script, the interpreter and the whole command."""
    out: dict[str, str] = {}
    for k, v in (params or {}).items():
        out[metric_key(str(k))] = param_value(v)
    argv = argv or []
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        name = FLAG_PARAMS.get(flag)
        if name is None:
            continue
        if not eq:
            if i + 1 >= len(argv):
                continue
            value = argv[i + 1]
        out.setdefault(name, value[:MAX_PARAM_VALUE])
    script, python = _script_of(argv, interpreter)
    if script is not None:
        out.setdefault("script", script[:MAX_PARAM_VALUE])
    if python is not None:
        out.setdefault("interpreter", python[:MAX_PARAM_VALUE])
    if argv:
        out.setdefault("command", shlex.join(argv)[:MAX_PARAM_VALUE])
    return out


def _script_of(argv: list[str], interpreter: str | None) -> tuple[str | None, str | None]:
    """(script, interpreter): a `.py` job runs `interpreter script ...`; a `command` job that
    starts `python x.py` is read the same way; any other command is its own script."""
    if len(argv) >= 2 and (
        (interpreter and argv[0] == interpreter)
        or (Path(argv[0]).name.startswith("python") and argv[1].endswith(".py"))
    ):
        return argv[1], argv[0]
    return (argv[0], None) if argv else (None, None)


def job_tags(
    run_id: str,
    job_id: str,
    meta: Mapping[str, Any],
    end: Mapping[str, Any],
    script: str | None,
    final_text: Mapping[str, str],
) -> dict[str, str]:
    """Tags: our run and job ids, attempts, outcome, failure kind, exit code, git commit, config
    hash; MLflow's own source tags; the final metrics that are not numbers."""
    tags = {"aimedres.run_id": run_id, "aimedres.job_id": job_id, "aimedres.job_base": job_id.partition("[")[0]}
    for key, value in (
        ("aimedres.attempts", end.get("attempts")),
        ("aimedres.outcome", end.get("status")),
        ("aimedres.failure", end.get("failure")),
        ("aimedres.exit_code", end.get("exit_code")),
        ("aimedres.optional", end.get("optional")),
        ("aimedres.config_sha256", meta.get("config_sha256")),
        ("aimedres.host", meta.get("host")),
    ):
        if value is not None:
            tags[key] = str(value).lower() if isinstance(value, bool) else str(value)
    git = meta.get("git")
    if isinstance(git, dict) and isinstance(git.get("commit"), str):
        tags["mlflow.source.git.commit"] = git["commit"]
        tags["aimedres.git_dirty"] = str(bool(git.get("dirty"))).lower()
    tags["mlflow.source.type"] = "JOB"
    if script:
        tags["mlflow.source.name"] = script[:MAX_TAG_VALUE]
    for k, v in final_text.items():
        tags[metric_key(f"aimedres.final.{k}")] = v[:MAX_TAG_VALUE]
    return tags


def metric_points(
    records: list[tuple[dict[str, Any], float | None]], final: Mapping[str, Any] | None, final_t: float | None
) -> tuple[list[Point], dict[str, str]]:
    """Per-epoch points and final metrics from one attempt's printed JSON records `(data, time)`.

    The step is the records' `epoch` (else `step`, else `fold`); when records carry a `fold` as
    well as an epoch or step, a series is `<key>/fold_<n>` (fold null: `<key>/final_fit`, the fit
    on all the data). Without any of them the step is the record's position. Final metrics are
    logged at the last step under their own names, or as `final/<key>` where a per-epoch series
    has that name (or is under it); the ones that are not numbers are returned apart (tags)."""
    xkey = next((k for k in X_KEYS if any(_num(d.get(k)) is not None for d, _t in records)), None)
    rows = [(d, t) for d, t in records if _num(d.get(xkey)) is not None] if xkey else _without_final(records, final)
    xs = [_num(d.get(xkey)) for d, _t in rows] if xkey else []
    integral = bool(xs) and all(x is not None and x.is_integer() for x in xs)
    by_fold = xkey in ("epoch", "step") and any("fold" in d for d, _t in rows)
    points: list[Point] = []
    for i, (d, t) in enumerate(rows):
        x = xs[i] if integral else None
        step = int(x) if x is not None else i
        suffix = ""
        if by_fold:  # fold null (or none): the final fit on all the data, after the folds
            suffix = f"/fold_{d['fold']}" if d.get("fold") is not None else "/final_fit"
        for k, v in d.items():
            num = _num(v)
            if num is None or k in X_KEYS or k == "attempt":
                continue
            points.append(Point(metric_key(k + suffix), num, step, _ms(t) or 0))
    # a final metric's name must not be a series' name, nor the folder of one (`loss` beside
    # `loss/fold_1`: MLflow's file store keeps each name as a path)
    series = {p.key for p in points} | {p.key.rsplit("/", 1)[0] for p in points if "/" in p.key}
    last_step = max((p.step for p in points), default=0)
    text: dict[str, str] = {}
    for k, v in (final or {}).items():
        num = _num(v)
        if num is None:
            if isinstance(v, str):
                text[k] = v
            continue
        key = metric_key(k)
        key = metric_key(f"final/{k}") if key in series else key
        points.append(Point(key, num, last_step, _ms(final_t) or 0))
    return points, text


def _without_final(
    records: list[tuple[dict[str, Any], float | None]], final: Mapping[str, Any] | None
) -> list[tuple[dict[str, Any], float | None]]:
    """Records without an epoch: all but the last when the last is the final metrics."""
    if records and final is not None and records[-1][0] == final:
        return records[:-1]
    return records


# ---------------------------------------------------------------- reading a run


@dataclass
class _Log:
    """What one job's log says: its lifecycle records and each attempt's printed JSON records."""

    queued: float | None = None
    started: dict[str, Any] | None = None  # the first attempt's job.started
    last_started: dict[str, Any] | None = None
    exited: dict[str, Any] | None = None  # the last attempt's job.exited
    finished: dict[str, Any] | None = None
    data: dict[int, list[tuple[dict[str, Any], float | None]]] = field(default_factory=dict)


def _read_log(path: Path) -> _Log:
    """A job's JSON-lines log, read once; only lifecycle lines and lines with a `data` object
    are parsed (plain output lines, most of a log, are skipped by a byte test)."""
    out = _Log()
    attempt = 0
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below; read line by line, the file may be big)
    except OSError:
        return out
    with f:
        for raw in f:
            if b'"event":"job.output"' in raw:
                if b',"data":{' not in raw:
                    continue
            elif b'"event":"job.sample"' in raw:
                continue
            try:
                rec = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue  # a cut-short last line (still being written)
            if not isinstance(rec, dict):
                continue
            ev = rec.get("event")
            n = rec.get("attempt")
            if ev == "job.output":
                data = rec.get("data")
                if isinstance(data, dict):
                    out.data.setdefault(n if isinstance(n, int) else attempt, []).append((data, record_time(rec)))
            elif ev == "job.queued" and out.queued is None:
                out.queued = record_time(rec)
            elif ev == "job.started":
                attempt = n if isinstance(n, int) else attempt + 1
                out.started = out.started or rec
                out.last_started = rec
            elif ev == "job.exited":
                out.exited = rec
            elif ev == "job.finished":
                out.finished = rec
    return out


def read_job(meta: Mapping[str, Any], job_id: str, log: Path, entry: Mapping[str, Any] | None = None) -> TrackedJob:
    """One job from its log (and its summary.json entry, when there is one)."""
    run_id = str(meta.get("run") or "")
    got = _read_log(log)
    entry = entry or {}
    end: dict[str, Any] = dict(got.finished or {})
    for k in ("status", "attempts", "failure", "exit_code", "optional", "metrics"):
        if end.get(k) is None and entry.get(k) is not None:
            end[k] = entry[k]
    if end.get("status") in ("queued", "running", "backoff"):
        end["status"] = None
    if got.exited is not None:
        end.setdefault("failure", got.exited.get("failure"))
        end.setdefault("exit_code", got.exited.get("exit_code"))
    started = got.started or {}
    last = got.last_started or {}
    argv = last.get("argv") if isinstance(last.get("argv"), list) else entry.get("command")
    argv = [str(a) for a in argv] if isinstance(argv, list) else None
    interpreter = last.get("interpreter") if isinstance(last.get("interpreter"), str) else None
    params = last.get("params") if isinstance(last.get("params"), dict) else entry.get("params")
    job_params_ = job_params(argv, interpreter, params if isinstance(params, dict) else None)
    final = end.get("metrics") if isinstance(end.get("metrics"), dict) else None
    last_attempt = max(got.data, default=None)
    records = got.data.get(last_attempt, []) if last_attempt is not None else []
    end_t = record_time(got.finished) if got.finished else None
    points, final_text = metric_points(records, final, end_t)
    start_t = record_time(started) if started else got.queued
    status = end.get("status")
    return TrackedJob(
        run_id=run_id,
        job_id=job_id,
        status=str(status) if status is not None else None,
        attempts=int(end.get("attempts") or 0),
        start_ms=_ms(start_t),
        end_ms=_ms(end_t),
        params=job_params_,
        tags=job_tags(run_id, job_id, meta, end, job_params_.get("script"), final_text),
        points=points,
        log=log if log.is_file() else None,
    )


def read_run(run_dir: Path, only: Iterable[str] | None = None) -> tuple[dict[str, Any], list[TrackedJob]]:
    """A run folder's meta (run id, git, config, ...) and its jobs (`only`: just these ids), in
    the run's order. summary.json names each job's log; a daemon's run folder has none, and its
    jobs are the ones its events.jsonl names."""
    wanted = set(only) if only is not None else None
    summary = _summary(run_dir)
    entries: list[dict[str, Any]]
    if summary is not None:
        meta = {k: v for k, v in summary.items() if k != "jobs"}
        entries = [e for e in summary.get("jobs", []) if isinstance(e, dict) and isinstance(e.get("id"), str)]
    else:
        records, _cut = read_events(run_dir / "events.jsonl")
        meta = dict(next((r for r in records if r.get("event") == "run.started"), records[0]))
        seen: dict[str, dict[str, Any]] = {}
        for r in records:
            if isinstance(r.get("job"), str) and r.get("event") in ("job.queued", "job.finished"):
                seen.setdefault(r["job"], {"id": r["job"]})
        entries = list(seen.values())
    meta.setdefault("run", run_dir.name)
    jobs = []
    for e in entries:
        if wanted is not None and e["id"] not in wanted:
            continue
        if e.get("status") in NOT_EXPORTED:
            continue
        log = Path(e["log"]) if isinstance(e.get("log"), str) else run_dir / "jobs" / f"{file_stem(e['id'])}.jsonl"
        if not log.is_absolute():
            log = run_dir / log
        jobs.append(read_job(meta, e["id"], log, e))
    return meta, jobs


def _summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads((run_dir / "summary.json").read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as e:
        raise ReportError(f"cannot read {run_dir / 'summary.json'}: {e}") from None
    return data if isinstance(data, dict) else None


def experiment_name(meta: Mapping[str, Any], fallback: Path) -> str:
    """The default experiment: the name of the folder of the run's config (else `fallback`'s)."""
    config = meta.get("config")
    folder = Path(config).parent if isinstance(config, str) and config else fallback
    return folder.resolve().name or "aimedres-async"
