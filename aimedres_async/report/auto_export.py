"""`[export]`: a run's (or a daemon ticket's) jobs sent to MLflow and TensorBoard when it ends.

The exports run in a worker thread, after the run's own records are final; each ends as a
`run.exported` or `export.failed` record. A failed export is a warning, never a failed run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimedres_async.plan.config import ExportConfig
from aimedres_async.records.console import Console
from aimedres_async.records.sinks import RunLog
from aimedres_async.report.tracking import TrackedJob, experiment_name, read_job, read_run


@dataclass(frozen=True)
class ExportResult:
    tracker: str  # "mlflow" or "tensorboard"
    destination: str  # the tracking URI (and experiment), or the TensorBoard folder
    error: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # counts, duration


def export_run(cfg: ExportConfig, base_dir: Path, run_dir: Path) -> list[ExportResult]:
    """Every job of a finished run (its summary.json and job logs) to the configured trackers."""
    try:
        meta, jobs = read_run(run_dir)
    except Exception as e:  # a damaged run folder: the export fails, the run does not
        return [ExportResult(t, "", f"cannot read the run: {e}") for t in _trackers(cfg)]
    return _export(cfg, base_dir, meta, jobs)


def export_ticket(
    cfg: ExportConfig, base_dir: Path, meta: Mapping[str, Any], job_id: str, log: Path, entry: Mapping[str, Any]
) -> list[ExportResult]:
    """One daemon ticket's job, from its own log and summary entry (the daemon's run goes on)."""
    try:
        job = read_job(meta, job_id, log, entry)
    except Exception as e:
        return [ExportResult(t, "", f"cannot read the job's log: {e}") for t in _trackers(cfg)]
    return _export(cfg, base_dir, meta, [job])


def _trackers(cfg: ExportConfig) -> list[str]:
    return (["mlflow"] if cfg.mlflow else []) + (["tensorboard"] if cfg.tensorboard else [])


def _export(cfg: ExportConfig, base_dir: Path, meta: Mapping[str, Any], jobs: list[TrackedJob]) -> list[ExportResult]:
    from aimedres_async.report import export_mlflow, export_tensorboard

    results = []
    if cfg.mlflow:
        uri, local = export_mlflow.resolve_uri(cfg.tracking_uri or None, base_dir)
        experiment = cfg.experiment or experiment_name(meta, base_dir)
        named = {"experiment": experiment}
        t0 = time.monotonic()
        try:
            out = export_mlflow.export(jobs, experiment, uri, base_dir / "mlruns" if local else None)
        except Exception as e:  # ExportError, MissingExtra, or a tracker's own bug: a warning all the same
            results.append(ExportResult("mlflow", uri, str(e) or type(e).__name__, named))
        else:
            counts = {"created": out.created, "completed": out.completed, "unchanged": out.unchanged}
            results.append(ExportResult("mlflow", uri, None, {**named, **counts, "duration_s": _since(t0)}))
    if cfg.tensorboard:
        logdir = base_dir / cfg.tensorboard
        t0 = time.monotonic()
        try:
            n = export_tensorboard.export(jobs, logdir)
        except Exception as e:
            results.append(ExportResult("tensorboard", str(logdir), str(e) or type(e).__name__))
        else:
            results.append(ExportResult("tensorboard", str(logdir), None, {"written": n, "duration_s": _since(t0)}))
    return results


def _since(t0: float) -> float:
    return round(time.monotonic() - t0, 3)


def record(results: list[ExportResult], log: RunLog, console: Console, **extra: Any) -> None:
    """Each result as a `run.exported` or `export.failed` record (on the event loop's thread); a
    failure is also a warning on a person's console, where its record is not printed twice."""
    for r in results:
        if r.error is None:
            log.emit("run.exported", tracker=r.tracker, destination=r.destination, **r.fields, **extra)
            continue
        fields = {"tracker": r.tracker, "destination": r.destination, **r.fields, "error": r.error, **extra}
        if console.json:
            log.emit("export.failed", **fields)
            continue
        _quietly(log, "export.failed", fields)
        ticket = f" of ticket {extra['ticket']}" if "ticket" in extra else ""
        console.warning(f"export{ticket} to {r.tracker} failed: {r.error}")


def _quietly(log: RunLog, event: str, fields: dict[str, Any]) -> None:
    """The record into the logs only (the warning says it on the console)."""
    shown, log.console = log.console, None
    try:
        log.emit(event, **fields)
    finally:
        log.console = shown
