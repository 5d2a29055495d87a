"""What is settled before a run starts, the same for `run`, `--dry-run`, `list` and `validate`: the
jobs that can never fit here or on the Slurm cluster, the run to resume from, how many workers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aimedres_async.engine.scheduler import Need, Pools, auto_workers, capacity
from aimedres_async.plan.config import Config
from aimedres_async.plan.jobs import JobSpec

NO_JOBS = "no jobs to run (check [jobs.*], [discovery] roots, --only/--exclude)"


class Refused(Exception):
    """One line: why the run cannot start (exit 2)."""


def job_problems(cfg: Config, jobs: Sequence[JobSpec]) -> tuple[list[str], Pools]:
    """What stops `run` before anything starts, one line each: no jobs; a job that can never fit the
    supervisor's GPUs, memory or CPUs (local executor) or any node of the Slurm partition. Returns
    (problems, the resource pools); Refused when Slurm cannot be asked."""
    pools = capacity(cfg)
    if not jobs:
        return [NO_JOBS], pools
    if cfg.supervisor.executor == "slurm":
        return _slurm_unfit(cfg, jobs), pools
    if cfg.supervisor.executor != "local":
        return [], pools
    problems = [
        f"job {s.id} can never run here: it {why} (see [supervisor] gpus/memory/cpus)"
        for s in jobs
        if (why := pools.never_fits(Need.of(s.resources)))
    ]
    return problems, pools


def _slurm_unfit(cfg: Config, jobs: Sequence[JobSpec]) -> list[str]:
    """Jobs no node of the partition could ever run (Slurm would keep them pending for good);
    Refused when Slurm is missing, the controller down or the partition unknown."""
    from aimedres_async.engine.executors.slurm_cluster import SlurmUnavailable, check, never_fits, nodes

    try:
        check(cfg.slurm)
        cluster = nodes()
    except SlurmUnavailable as e:
        raise Refused(str(e)) from None
    return [
        f"job {s.id} can never run on the Slurm cluster: it {why} (see the job's resources, [slurm] partition)"
        for s in jobs
        if (why := never_fits(s.resources, cluster, cfg.slurm.partition))
    ]


def check_runnable(
    cfg: Config, jobs: Sequence[JobSpec], logs_dir: Path, resume: str | None
) -> tuple[dict[str, Any] | None, Pools]:
    """Everything `run` refuses, also for --dry-run: (the summary to resume from, the pools).
    `resume` is a run id, "latest", or None for a fresh run."""
    problems, pools = job_problems(cfg, jobs)
    if problems:
        raise Refused("; ".join(problems))
    summary = None
    if resume is not None:
        from aimedres_async.report.summary import load_summary

        try:
            summary = load_summary(logs_dir, None if resume == "latest" else resume)
        except ValueError as e:
            raise Refused(str(e)) from None
    return summary, pools


def fits(cfg: Config, jobs: Sequence[JobSpec]) -> tuple[list[str], str | None]:
    """`list`'s FITS column, one cell per job (yes, NO, "-" where the cluster decides, "?" where
    Slurm cannot be asked), and a warning when it cannot."""
    if cfg.supervisor.executor == "slurm":
        from aimedres_async.engine.executors.slurm_cluster import SlurmUnavailable, never_fits, nodes

        try:
            cluster = nodes()
        except SlurmUnavailable as e:
            return ["?" for _ in jobs], f"cannot tell which jobs fit the Slurm cluster: {e}"
        return ["NO" if never_fits(s.resources, cluster, cfg.slurm.partition) else "yes" for s in jobs], None
    if cfg.supervisor.executor != "local":  # Ray: the cluster decides
        return ["-" for _ in jobs], None
    pools = capacity(cfg, look_for_gpus=any(s.resources.gpus for s in jobs))
    return ["NO" if pools.never_fits(Need.of(s.resources)) else "yes" for s in jobs], None


def worker_count(
    cfg: Config, jobs: Sequence[JobSpec], pools: Pools, logs_dir: Path, local: bool
) -> tuple[int, str | None]:
    """How many jobs run at once, and for `max_workers = "auto"` a note saying why: one per CPU,
    fewer if the memory peaks recorded here (`local`: not on a cluster's nodes) say so."""
    from aimedres_async.engine.run import default_workers
    from aimedres_async.report.summary import recorded_peaks

    sup = cfg.supervisor
    if not (sup.parallel and sup.max_workers is None):
        return default_workers(sup.parallel, sup.max_workers), None
    # memory peaks measured on a cluster's nodes say nothing about this machine's memory
    peaks = recorded_peaks(logs_dir, {s.id for s in jobs}) if local else []
    cpus = int(pools.total_cpus) if pools.total_cpus else os.cpu_count() or 1
    workers, why = auto_workers(peaks, max(1, cpus), pools.total_memory or 0)
    return workers, f"max_workers auto: {workers} ({why})"
