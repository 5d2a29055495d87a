"""The `aimedres.toml` contract as frozen, typed settings: what every other module reads.

config_load.py reads a file into them; config_errors.py words what is wrong with one.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimedres_async.plan.sweeps import DEFAULT_MAX_JOBS, Sweep
from aimedres_async.plan.units import format_size

JOB_ID_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
STOP_MODES = ("cancel", "drain")  # [supervisor] stop: what the first SIGINT/SIGTERM does to running jobs
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGKILL")
EXECUTORS = ("local", "ray", "slurm")
DEFAULT_MAX_LINE_BYTES = 1 << 20
MAX_GPUS = 1024
MAX_WORKERS = 100_000  # far above what one machine runs; the bound keeps every figure 64-bit


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 1.0
    factor: float = 2.0
    max: float = 300.0
    jitter: float = 0.1


@dataclass(frozen=True, slots=True)
class Resources:
    gpus: float = 0.0
    memory: int = 0
    cpus: float = 0.0

    def describe(self) -> str:
        parts = []
        if self.gpus:
            parts.append(f"gpus={self.gpus:g}")
        if self.memory:
            parts.append(f"memory={format_size(self.memory)}")
        if self.cpus:
            parts.append(f"cpus={self.cpus:g}")
        return " ".join(parts) or "-"


@dataclass(frozen=True, slots=True)
class JobSettings:
    """Values a job inherits from `[defaults]` unless it sets its own (None = not set)."""

    epochs: int | None = None
    folds: int | None = None
    sample: int | None = None
    batch: int | None = None
    retries: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    optional: bool | None = None
    resources: Resources | None = None
    stall_timeout: float | None = None  # stop and retry a job silent this long (0/unset: off)
    # paths or globs under the job's output folder (of a list, the first that matches): its JSON = final metrics
    metrics_file: str | tuple[str, ...] | None = None
    metrics_keys: tuple[str, ...] | None = None  # globs over metric names: kept whatever their type, shown first
    fail_on: tuple[str, ...] | None = None  # regexes: an output line matching one fails the attempt


@dataclass(frozen=True, slots=True)
class JobConfig:
    """One `[jobs.<id>]` table."""

    id: str
    script: str | None = None
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] = ()
    settings: JobSettings = field(default_factory=JobSettings)
    python: str | None = None  # interpreter for this job's .py script (beats [supervisor] python)
    output_dir: str | None = None  # its output folder, relative to [supervisor] output_dir (default: the id)
    sweep: Sweep | None = None  # matrix, matrix_include/exclude, seeds/repeat (plan.sweeps)
    # the flags it may be given (output_dir, epochs, folds, sample, batch); None = each one its script declares
    pass_flags: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SupervisorConfig:
    parallel: bool = False
    max_workers: int | None = None  # None = "auto"
    logs_dir: str = "logs"
    output_dir: str = "results"
    summary_dir: str = ""  # also write each run's summary here as training_summary_<UTC time>.json ("" = no)
    python: str = ""
    stop_signal: str = "SIGINT"
    stop: str = "cancel"  # "drain": the first SIGINT/SIGTERM lets running jobs finish, the second cancels
    grace_period: float = 10.0
    spool_dir: str = "spool"
    executor: str = "local"
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    gpus: tuple[str, ...] | None = None  # None = "auto": CUDA_VISIBLE_DEVICES, NVML or nvidia-smi
    memory: int | None = None  # None = "auto": the memory available at start
    cpus: float | None = None  # None = "auto": os.cpu_count()
    max_jobs: int = DEFAULT_MAX_JOBS  # a run whose sweeps expand beyond this needs --yes


@dataclass(frozen=True)
class DiscoveryConfig:
    enabled: bool = True
    roots: tuple[str, ...] = (".",)
    include: tuple[str, ...] = ("train_*.py",)
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoggingConfig:
    redact: tuple[str, ...] = ()  # regular expressions; matches in job output never reach a log
    replacement: str = "[REDACTED]"

    def redactor(self) -> Callable[[bytes], bytes] | None:
        """A function that redacts every pattern's matches in bytes, or None when there is nothing
        to redact. Patterns without groups are joined into one compiled regex (one pass over the
        output); a pattern with groups keeps a regex of its own, since joined its backreferences
        would name another pattern's group, and two patterns may name a group alike."""
        if not self.redact:
            return None
        replacement = self.replacement.encode()

        def hide(m: re.Match[bytes]) -> bytes:
            # An empty match (\b, a lookahead) hides nothing: it must not insert the replacement.
            return replacement if m.end() > m.start() else b""

        compiled = [re.compile(p.encode()) for p in self.redact]
        plain = [c.pattern for c in compiled if not c.groups]
        passes = [re.compile(b"|".join(b"(?:" + p + b")" for p in plain))] if plain else []
        passes += [c for c in compiled if c.groups]
        if len(passes) == 1:
            only = passes[0]
            return lambda data: only.sub(hide, data)

        def redact(data: bytes) -> bytes:
            for pattern in passes:
                data = pattern.sub(hide, data)
            return data

        return redact


@dataclass(frozen=True)
class RayConfig:
    """`[ray]`: where executor = "ray" sends jobs and what ships with them."""

    address: str = "http://127.0.0.1:8265"
    working_dir: str = "."  # relative to the config's folder; uploaded to the cluster ("" = none)
    excludes: tuple[str, ...] = ("logs", "results", "spool", ".git", ".venv", "venv", "__pycache__")
    runtime_env: Mapping[str, Any] = field(default_factory=dict)  # passed to Ray as it is (pip, env_vars, ...)
    python: str = ""  # interpreter for .py scripts on the cluster; "" = [supervisor] python or ours


@dataclass(frozen=True)
class SlurmConfig:
    """`[slurm]`: how executor = "slurm" submits each attempt with `sbatch`."""

    partition: str = ""  # "" = the cluster's default partition
    account: str = ""
    qos: str = ""
    sbatch_options: tuple[str, ...] = ()  # added after ours, so they win (e.g. "--constraint=a100")
    output_dir: str = ""  # job output files; "" = <logs_dir>/<run_id>/slurm; must be readable on every node
    max_pending: float = 0.0  # an attempt pending longer than this fails (0 = wait as long as it takes)
    poll_interval: float = 2.0  # how often squeue is asked and the output files are read


@dataclass(frozen=True)
class GroupConfig:
    """`[groups.<name>]`: a daemon queue with its own worker count (SPEC §15) and, optionally, its
    own budget of the resources its running tickets declare (None = no cap of the group's)."""

    max_workers: int = 1
    gpus: int | None = None
    memory: int | None = None
    cpus: float | None = None

    @property
    def budgeted(self) -> bool:
        return self.gpus is not None or self.memory is not None or self.cpus is not None


DEFAULT_GROUP = "default"  # the group of a ticket that names none; its workers: [supervisor] max_workers


@dataclass(frozen=True)
class ExportConfig:
    """`[export]`: where every run (and every daemon ticket) goes when it ends (SPEC §19)."""

    mlflow: bool = False
    tracking_uri: str = ""  # "" = $MLFLOW_TRACKING_URI, else MLflow's local default in the config's folder
    experiment: str = ""  # "" = the config folder's name
    tensorboard: str = ""  # a folder (relative to the config's); "" = no TensorBoard export

    @property
    def active(self) -> bool:
        return self.mlflow or bool(self.tensorboard)


@dataclass(frozen=True)
class Config:
    path: Path | None  # None: no file, built-in defaults
    base_dir: Path  # relative paths in the config are relative to this folder
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    defaults: JobSettings = field(default_factory=lambda: JobSettings(retries=0, backoff=Backoff(), optional=False))
    jobs: tuple[JobConfig, ...] = ()
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    seeds: tuple[int, ...] | None = None  # [defaults] seeds or repeat: every job's seed axis unless it sets one
    groups: Mapping[str, GroupConfig] = field(default_factory=dict)
    export: ExportConfig = field(default_factory=ExportConfig)

    @property
    def stop_signum(self) -> signal.Signals:
        return signal.Signals[self.supervisor.stop_signal]

    def resolve(self, p: str) -> Path:
        return self.base_dir / p


@dataclass(frozen=True)
class Ticket:
    """A spool ticket: a configured job with overrides (`job = "als"`), or a whole job."""

    job: str | None  # the configured job it names, or None for a whole job
    label: str  # what to call it in listings: the job it names, or its own `id`
    config: JobConfig  # overrides (job form) or the whole job; its id is the ticket id
    priority: int = 0  # the daemon claims higher first; FIFO within one priority
    after: tuple[str, ...] = ()  # tickets that must have succeeded before this one starts
    number: int | None = None  # its short number in the spool (`submit` gives it)
    group: str = DEFAULT_GROUP  # the daemon queue it waits in ([groups.<name>])
    not_before: float | None = None  # epoch seconds: not claimed before (`submit --delay`)
    cwd: str | None = None  # an absolute working folder (`submit -- CMD`: where submit ran)
    restarted_from: str | None = None  # the ticket `restart` made this one from


def groups_of(cfg: Config) -> list[str]:
    """The daemon's queues: "default" and each `[groups.<name>]`."""
    return [DEFAULT_GROUP, *sorted(g for g in cfg.groups if g != DEFAULT_GROUP)]


def builtin(base_dir: Path) -> Config:
    """The configuration used when no config file exists: built-in defaults only."""
    return Config(path=None, base_dir=base_dir)
