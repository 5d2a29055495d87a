"""Which executor runs a run's attempts, from `[supervisor] executor`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aimedres_async.plan.config import Config

if TYPE_CHECKING:
    from aimedres_async.engine.dispatch import Executor


def make_executor(cfg: Config, logs_dir: Path | None = None) -> Executor | None:
    """The attempt runner for `[supervisor] executor`: None = local processes.

    Raises executors.ray.RayUnavailable or executors.slurm_cluster.SlurmUnavailable (a one-line reason)
    when the cluster's software is missing or the cluster does not answer.
    """
    if cfg.supervisor.executor == "slurm":
        from aimedres_async.engine.executors.slurm import SlurmExecutor

        logs = logs_dir or cfg.resolve(cfg.supervisor.logs_dir)
        return SlurmExecutor(cfg.slurm, str(cfg.base_dir), str(logs)).run_attempt
    if cfg.supervisor.executor != "ray":
        return None
    from aimedres_async.engine.executors.ray import RayExecutor

    return RayExecutor(cfg.ray, str(cfg.base_dir)).run_attempt
