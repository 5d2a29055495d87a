"""A run's jobs as TensorBoard event files (SPEC §19): `DIR/<run>/<job>/` per job, its per-epoch
scalars, final metrics and params (the HPARAMS tab), written with tensorboardX.

tensorboardX (the `[tensorboard]` extra) is imported only here, when an export runs. Each job's
folder is written beside its old one and then put in its place: exporting again replaces it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from aimedres_async.plan.sweeps import file_stem
from aimedres_async.report.export_mlflow import ExportError, MissingExtra, importable
from aimedres_async.report.tracking import TrackedJob

INSTALL_HINT = "pip install 'aimedres-async[tensorboard]'"


def export(jobs: Sequence[TrackedJob], logdir: Path) -> int:
    """Every job's event file under logdir/<run>/<job>; returns how many jobs were written."""
    if not importable("tensorboardX"):
        raise MissingExtra(f"the TensorBoard export needs the tensorboard extra: {INSTALL_HINT}")
    try:
        from tensorboardX import SummaryWriter
    except ImportError as e:
        raise MissingExtra(f"tensorboardX cannot be imported ({e}): {INSTALL_HINT}") from None
    written = 0
    for job in jobs:
        final = logdir / job.run_id / file_stem(job.job_id)  # as its log and output folder are named
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            _write(SummaryWriter, job, tmp)
            _replace(tmp, final)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ExportError(f"TensorBoard: cannot write {final}: {e.strerror or e}") from None
        written += 1
    return written


def _write(writer_class: type, job: TrackedJob, folder: Path) -> None:
    from tensorboardX.summary import hparams

    w = writer_class(logdir=str(folder), flush_secs=3600, max_queue=1000)
    try:
        for p in job.points:
            w.add_scalar(p.key, p.value, global_step=p.step, walltime=p.t_ms / 1000 if p.t_ms else None)
        if job.params:
            finals = {p.key: p.value for p in job.points if "/" not in p.key or p.key.startswith("final/")}
            exp, ssi, sei = hparams(dict(job.params), finals)
            for summary in (exp, ssi, sei):
                w.file_writer.add_summary(summary)
    finally:
        w.close()


def _replace(tmp: Path, final: Path) -> None:
    """tmp takes final's place; the old folder (an earlier export) goes."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
