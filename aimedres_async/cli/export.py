"""`export mlflow` and `export tensorboard`: a finished (or running) run's jobs into an experiment
tracker, read from the run's files; the trackers' packages are imported only here, on use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aimedres_async.cli.usage import UsageError
from aimedres_async.plan.config import Config

EXIT_FAILED = 1


def cmd_export(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.report import export_mlflow, export_tensorboard
    from aimedres_async.report.export_mlflow import ExportError, MissingExtra
    from aimedres_async.report.run_model import ReportError, find_run
    from aimedres_async.report.tracking import experiment_name, read_run

    _check_options(a)
    logs_dir = Path(a.logs_dir).resolve() if a.logs_dir else cfg.resolve(cfg.supervisor.logs_dir)
    try:
        run_dir = find_run(logs_dir, a.run)
        meta, jobs = read_run(run_dir)
    except ReportError as e:
        raise UsageError(str(e)) from None
    run_id = str(meta["run"])
    try:
        if a.tracker == "mlflow":
            uri, local = export_mlflow.resolve_uri(a.tracking_uri, Path.cwd())
            experiment = a.experiment or experiment_name(meta, cfg.base_dir)
            root = Path.cwd() / "mlruns" if local else None
            outcome = export_mlflow.export(jobs, experiment, uri, root)
            print(outcome.line(run_id))
        else:
            logdir = Path(a.logdir)
            n = export_tensorboard.export(jobs, logdir)
            print(f"run {run_id}: {n} job(s) written under {logdir / run_id} (tensorboard --logdir {logdir})")
    except MissingExtra as e:
        raise UsageError(str(e)) from None
    except ExportError as e:
        print(f"aimedres-async: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _check_options(a: argparse.Namespace) -> None:
    """Each tracker's own options: --logdir for tensorboard (required), the rest for mlflow."""
    if a.tracker == "tensorboard":
        if not a.logdir:
            raise UsageError("export tensorboard needs --logdir DIR (the TensorBoard log folder to write under)")
        given = [o for o, v in (("--tracking-uri", a.tracking_uri), ("--experiment", a.experiment)) if v]
        if given:
            raise UsageError(f"{' and '.join(given)}: for export mlflow only")
    elif a.logdir:
        raise UsageError("--logdir: for export tensorboard only")
