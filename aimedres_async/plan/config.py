"""The `aimedres.toml` contract: frozen, typed configuration and a strict loader.

Every problem (TOML syntax, unknown key, wrong type, value out of range) is collected and reported
at once as one line naming the file, the key path and, where it can be found, the line.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import signal
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JOB_ID_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGKILL")
EXECUTORS = ("local", "ray", "slurm")
DEFAULT_MAX_LINE_BYTES = 1 << 20
MAX_GPUS = 1024
MAX_WORKERS = 100_000  # far above what one machine runs; the bound keeps every figure 64-bit
MAX_INT = (1 << 63) - 1
MAX_CONFIG_BYTES = 16 << 20


class ConfigError(Exception):
    """One or more problems in a config file; each is a complete one-line message."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    factor: float = 2.0
    max: float = 300.0
    jitter: float = 0.1


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
    metrics_file: str | None = None  # a path or glob under the job's output folder: its JSON = final metrics


@dataclass(frozen=True)
class JobConfig:
    """One `[jobs.<id>]` table."""

    id: str
    script: str | None = None
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] = ()
    settings: JobSettings = field(default_factory=JobSettings)
    python: str | None = None  # interpreter for this job's .py script (beats [supervisor] python)
    output_dir: str | None = None  # its output folder, relative to [supervisor] output_dir (default: the id)


@dataclass(frozen=True)
class SupervisorConfig:
    parallel: bool = False
    max_workers: int | None = None  # None = "auto"
    logs_dir: str = "logs"
    output_dir: str = "results"
    summary_dir: str = ""  # also write each run's summary here as training_summary_<UTC time>.json ("" = no)
    python: str = ""
    stop_signal: str = "SIGINT"
    grace_period: float = 10.0
    spool_dir: str = "spool"
    executor: str = "local"
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    gpus: tuple[str, ...] | None = None  # None = "auto": CUDA_VISIBLE_DEVICES, NVML or nvidia-smi
    memory: int | None = None  # None = "auto": the memory available at start
    cpus: float | None = None  # None = "auto": os.cpu_count()


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
        """One compiled bytes regex for all patterns, or None when there is nothing to redact."""
        if not self.redact:
            return None
        pattern = re.compile(b"|".join(b"(?:" + p.encode() + b")" for p in self.redact))
        replacement = self.replacement.encode()
        # An empty match (\b, a lookahead) hides nothing: it must not insert the replacement.
        return lambda data: pattern.sub(lambda m: replacement if m.end() > m.start() else b"", data)


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

    @property
    def stop_signum(self) -> signal.Signals:
        return signal.Signals[self.supervisor.stop_signal]

    def resolve(self, p: str) -> Path:
        return self.base_dir / p


# ---------------------------------------------------------------- durations and sizes

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)", re.I)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgt]?i?b?)\s*$", re.I)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like "500ms", "10s", "5m", "2h", "1h30m"."""
    if isinstance(value, bool):
        raise ValueError('expected a duration like 10, "10s", "5m", "2h"')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 64:  # also keeps the unit scan below linear on hostile input
            raise ValueError(f"{text[:64]!r}... is not a duration (too long)")
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for m in _DURATION_PART.finditer(text):
                if m.start() != pos and text[pos : m.start()].strip():
                    break
                seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
                pos = m.end()
            if pos == 0 or text[pos:].strip():
                raise ValueError(f'{value!r} is not a duration (use e.g. "500ms", "10s", "5m", "2h")') from None
    else:
        raise ValueError('expected a duration like 10, "10s", "5m", "2h"')
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError("a duration must be a finite number >= 0")
    return seconds


def read_regular_file(path: Path, limit: int) -> bytes:
    """A regular file's bytes, at most `limit` of them; ValueError for anything else.

    Opened non-blocking, so a FIFO cannot hang the open, and refused unless it is a regular
    file: /dev/zero or a pipe would otherwise be read without end.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {format_size(limit)}")
    return data


def parse_size(value: object) -> int:
    """Bytes from an integer or a string like "512MiB", "8GiB", "1.5G"."""
    if isinstance(value, bool):
        raise ValueError('expected a size like 1048576 or "512MiB"')
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = _SIZE_RE.match(value) if len(value) <= 64 else None
        if not m or m.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f'{value[:64]!r} is not a size (use e.g. "512MiB", "8GiB")')
        try:
            n = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
        except OverflowError:  # float("9" * 400) is inf
            raise ValueError(f"{value[:64]!r} is too large") from None
    else:
        raise ValueError('expected a size like 1048576 or "512MiB"')
    if n < 0:
        raise ValueError("a size must be >= 0")
    if n > MAX_INT:
        raise ValueError(f"a size must be <= {MAX_INT} bytes")
    return n


def format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TiB"


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, s = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    h, minutes = divmod(minutes, 60)
    return f"{h}h{minutes:02d}m"


# ---------------------------------------------------------------- the loader


class _Problems:
    """Collects problems, each naming file, key path and (when found) the line."""

    def __init__(self, path: Path | None, text: str) -> None:
        self.name = str(path) if path else "<built-in>"
        self.lines = text.splitlines()
        self.items: list[str] = []

    def add(self, keypath: tuple[str, ...], message: str) -> None:
        line = _locate(self.lines, keypath) if keypath else None
        where = f"{self.name}:{line}" if line else self.name
        # a quoted key may hold anything (a newline, a fake "error:" line): show it quoted
        path = ".".join(json.dumps(k) if re.search(r'[\x00-\x1f\x7f"\\]', k) else k for k in keypath)
        self.items.append(f"{where}: {path}: {message}" if keypath else f"{where}: {message}")


_KEY_PART = re.compile(r"""\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*(\.|$)""")


def _split_key(text: str) -> tuple[str, ...] | None:
    """A dotted TOML key into its parts; quoted parts may contain dots."""
    parts, pos = [], 0
    while pos < len(text):
        m = _KEY_PART.match(text, pos)
        if not m:
            return None
        parts.append(m.group(1).strip("\"'"))
        pos = m.end()
    return tuple(parts)


def _header_path(line: str) -> tuple[str, ...] | None:
    s = line.strip()
    if not s.startswith("[") or s.startswith("[["):
        return None
    m = re.match(r"""\[((?:"[^"]*"|'[^']*'|[^\]"'])*)\]""", s)
    return _split_key(m.group(1)) if m else None


def _locate(lines: list[str], keypath: tuple[str, ...]) -> int | None:
    """Best-effort line number of a key path in the TOML text (for error messages)."""
    table: tuple[str, ...] = ()
    best: int | None = None
    for i, line in enumerate(lines, 1):
        header = _header_path(line)
        if header is not None:
            table = header
            if header == keypath:
                return i
            continue
        head, eq, _rest = line.partition("=")  # (a key holding "=" is not located; messages say less)
        key = _split_key(head.strip()) if eq and len(head) <= 1024 and head.strip() else None
        if not key:
            continue
        full = table + key
        if full == keypath:
            return i
        if keypath[: len(full)] == full and best is None:
            best = i  # an inline table holding the key
    return best


def _suggest(key: str, allowed: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(sorted(allowed))})"


def _want_bool(v: object) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def _want_str(v: object) -> str:
    if not isinstance(v, str):
        raise ValueError("expected a string")
    if "\0" in v:  # no path, argument or variable can hold one
        raise ValueError("must not contain a NUL character")
    return v


def _want_int(lo: int) -> Callable[[object], int]:
    def check(v: object) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError("expected an integer")
        if v < lo:
            raise ValueError(f"must be >= {lo}")
        if v > MAX_INT:  # every figure ends up in a JSON log, whose integers are 64-bit
            raise ValueError(f"must be <= {MAX_INT}")
        return v

    return check


def _want_number(lo: float) -> Callable[[object], float]:
    def check(v: object) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError("expected a number")
        if not v >= lo or v == float("inf"):
            raise ValueError(f"must be a finite number >= {lo:g}")
        return float(v)

    return check


def _want_str_list(v: object) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError("expected a list of strings")
    return tuple(_want_str(x) for x in v)


def _want_choice(choices: tuple[str, ...]) -> Callable[[object], str]:
    def check(v: object) -> str:
        if v not in choices:
            raise ValueError(f"expected one of {', '.join(repr(c) for c in choices)}")
        return str(v)

    return check


def _want_workers(v: object) -> int | None:
    if v == "auto":
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_WORKERS:
        raise ValueError(f'expected an integer from 1 to {MAX_WORKERS}, or "auto"')
    return v


def _want_env(v: object) -> dict[str, str]:
    if not isinstance(v, dict):
        raise ValueError('expected a table of NAME = "value"')
    out: dict[str, str] = {}
    for k, val in v.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise ValueError(f"{k!r} is not a valid environment variable name")
        if isinstance(val, bool) or not isinstance(val, str | int | float):
            raise ValueError(f"{k}: expected a string value")
        if "\0" in str(val):
            raise ValueError(f"{k}: must not contain a NUL character")
        out[k] = str(val)
    return out


def _want_duration(v: object) -> float:
    return parse_duration(v)


def _want_timeout(v: object) -> float:
    return parse_duration(v)  # 0 means "no time limit" (and, set on a job, beats a default)


def _table(
    raw: object,
    keypath: tuple[str, ...],
    schema: Mapping[str, Callable[[object], Any]],
    problems: _Problems,
) -> dict[str, Any]:
    """Validate one table against its schema; returns the parsed values that were valid."""
    if not isinstance(raw, dict):
        problems.add(keypath, "expected a table")
        return {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        parse = schema.get(key)
        if parse is None:
            problems.add((*keypath, key), "unknown key" + _suggest(key, schema))
            continue
        try:
            out[key] = parse(value)
        except ValueError as e:
            problems.add((*keypath, key), str(e))
    return out


def _min_size(v: object, lo: int) -> int:
    n = parse_size(v)
    if n < lo:
        raise ValueError(f"must be at least {format_size(lo)}")
    return n


def _want_gpus(v: object) -> float:
    n = _want_number(0.0)(v)
    if n > 1 and n != int(n):
        raise ValueError("a fraction of a GPU must be below 1 (e.g. 0.5); above 1, whole GPUs only")
    return n


def _want_gpu_capacity(v: object) -> tuple[str, ...] | None:
    """[supervisor] gpus: "auto" (None), a count, or a list of device ids."""
    if v == "auto":
        return None
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        if v > MAX_GPUS:
            raise ValueError(f"{v} GPUs? at most {MAX_GPUS} (did you mean a list of ids?)")
        return tuple(str(i) for i in range(v))
    if isinstance(v, list) and all(isinstance(x, int | str) and not isinstance(x, bool) for x in v):
        ids = tuple(str(x) for x in v)
        if len(set(ids)) != len(ids):
            raise ValueError("a GPU is listed twice")
        return ids
    raise ValueError('expected "auto", a number of GPUs, or a list of device ids like [0, 1]')


def _want_capacity_size(v: object) -> int | None:
    return None if v == "auto" else _min_size(v, 1)


def _want_capacity_cpus(v: object) -> float | None:
    if v == "auto":
        return None
    n = _want_number(0.0)(v)
    if n <= 0:
        raise ValueError('must be > 0, or "auto"')
    return n


_SUPERVISOR_SCHEMA: dict[str, Callable[[object], Any]] = {
    "parallel": _want_bool,
    "max_workers": _want_workers,
    "logs_dir": _want_str,
    "output_dir": _want_str,
    "summary_dir": _want_str,
    "python": _want_str,
    "stop_signal": _want_choice(STOP_SIGNALS),
    "grace_period": _want_duration,
    "spool_dir": _want_str,
    "executor": _want_choice(EXECUTORS),
    "max_line_bytes": lambda v: _min_size(v, 1024),
    "gpus": _want_gpu_capacity,
    "memory": _want_capacity_size,
    "cpus": _want_capacity_cpus,
}


def _want_patterns(v: object) -> tuple[str, ...]:
    patterns = _want_str_list(v)
    for p in patterns:
        try:
            compiled = re.compile(p.encode())  # redaction matches bytes: check it as bytes
        except (re.error, UnicodeEncodeError, OverflowError, RecursionError) as e:
            raise ValueError(f"{p!r} is not a valid regular expression: {e}") from None
        if compiled.fullmatch(b""):
            raise ValueError(f"{p!r} matches the empty string: it would redact between every character")
    return patterns


_LOGGING_SCHEMA: dict[str, Callable[[object], Any]] = {"redact": _want_patterns, "replacement": _want_str}

_DISCOVERY_SCHEMA: dict[str, Callable[[object], Any]] = {
    "enabled": _want_bool,
    "roots": _want_str_list,
    "include": _want_str_list,
    "exclude": _want_str_list,
}


def _settings_schema(problems: _Problems, keypath: tuple[str, ...]) -> dict[str, Callable[[object], Any]]:
    def backoff(v: object) -> Backoff:
        parsed = _table(
            v,
            (*keypath, "backoff"),
            {
                "initial": _want_duration,
                "max": _want_duration,
                "factor": _want_number(1.0),
                "jitter": lambda x: _fraction(x),
            },
            problems,
        )
        return Backoff(**parsed)

    def resources(v: object) -> Resources:
        parsed = _table(
            v,
            (*keypath, "resources"),
            {
                "gpus": _want_gpus,
                "cpus": _want_number(0.0),
                "memory": parse_size,
            },
            problems,
        )
        return Resources(**parsed)

    return {
        "epochs": _want_int(1),
        "folds": _want_int(1),
        "sample": _want_int(1),
        "batch": _want_int(1),
        "retries": _want_int(0),
        "backoff": backoff,
        "timeout": _want_timeout,
        "env": _want_env,
        "optional": _want_bool,
        "resources": resources,
        "stall_timeout": _want_timeout,
        "metrics_file": _want_metrics_file,
    }


def _want_metrics_file(v: object) -> str:
    text = _want_str(v)
    if not text.strip():
        raise ValueError("must not be empty")
    if text.startswith("/") or ".." in Path(text).parts:
        raise ValueError("must be a path or glob inside the job's output folder (relative, no '..')")
    return text


def _fraction(v: object) -> float:
    x = _want_number(0.0)(v)
    if x > 1:
        raise ValueError("must be between 0 and 1")
    return x


def _job(job_id: str, raw: object, problems: _Problems, keypath: tuple[str, ...] | None = None) -> JobConfig | None:
    keypath = ("jobs", job_id) if keypath is None else keypath
    if not JOB_ID_RE.fullmatch(job_id):
        problems.add(keypath, "invalid job id (use lowercase letters, digits, '_', '.', '-'; at most 64)")
        return None
    schema: dict[str, Callable[[object], Any]] = dict(_settings_schema(problems, keypath))
    schema.update(
        script=_want_str, command=_want_str_list, args=_want_str_list, python=_want_nonempty, output_dir=_want_nonempty
    )
    parsed = _table(raw, keypath, schema, problems)
    script, command = parsed.pop("script", None), parsed.pop("command", None)
    args = parsed.pop("args", ())
    python, output_dir = parsed.pop("python", None), parsed.pop("output_dir", None)
    if isinstance(raw, dict) and "script" not in raw and "command" not in raw:
        problems.add(keypath, 'needs `script = "path/to/train.py"` or `command = [...]`')
    elif script is not None and command is not None:
        problems.add(keypath, "give either `script` or `command`, not both")
    elif command is not None and not command:
        problems.add((*keypath, "command"), "must not be empty")
    elif script is not None and not script.strip():
        problems.add((*keypath, "script"), "must not be empty")
    if python is not None and command is not None:
        problems.add((*keypath, "python"), "only a `script` job has an interpreter; a `command` names its own")
    return JobConfig(
        id=job_id,
        script=script,
        command=command,
        args=args,
        settings=JobSettings(**parsed),
        python=python,
        output_dir=output_dir,
    )


def _want_nonempty(v: object) -> str:
    text = _want_str(v)
    if not text.strip():
        raise ValueError("must not be empty")
    return text


_TOP_SCHEMA = ("supervisor", "discovery", "defaults", "jobs", "logging", "ray", "slurm")


def _want_table(v: object) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError("expected a table")
    return v


_RAY_SCHEMA: dict[str, Callable[[object], Any]] = {
    "address": _want_str,
    "working_dir": _want_str,
    "excludes": _want_str_list,
    "runtime_env": _want_table,
    "python": _want_str,
}


def _want_poll_interval(v: object) -> float:
    seconds = parse_duration(v)
    if seconds < 0.1:
        raise ValueError("must be at least 100ms")
    return seconds


_SLURM_SCHEMA: dict[str, Callable[[object], Any]] = {
    "partition": _want_str,
    "account": _want_str,
    "qos": _want_str,
    "sbatch_options": _want_str_list,
    "output_dir": _want_str,
    "max_pending": _want_duration,
    "poll_interval": _want_poll_interval,
}


@dataclass(frozen=True)
class Ticket:
    """A spool ticket: a configured job with overrides (`job = "als"`), or a whole job."""

    job: str | None  # the configured job it names, or None for a whole job
    label: str  # what to call it in listings: the job it names, or its own `id`
    config: JobConfig  # overrides (job form) or the whole job; its id is the ticket id
    priority: int = 0  # the daemon claims higher first; FIFO within one priority
    after: tuple[str, ...] = ()  # tickets that must have succeeded before this one starts


def parse_ticket(text: str, ticket_id: str, name: str = "<ticket>") -> Ticket:
    """Validate a ticket's TOML with the same rules as `[jobs.*]`; raises ConfigError."""
    problems = _Problems(Path(name), text)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{name}: TOML syntax error: {e}"]) from None
    if not raw:
        raise ConfigError([f'{name}: empty ticket (give `job = "<id>"` or a `script`/`command`)'])
    if "result" in raw:
        raise ConfigError([f"{name}: result: a new ticket must not carry a [result] table"])
    job = raw.pop("job", None)
    label = raw.pop("id", None)
    priority = raw.pop("priority", 0)
    after = raw.pop("after", [])
    if not isinstance(priority, int) or isinstance(priority, bool):
        problems.add(("priority",), "expected a whole number (higher runs first)")
        priority = 0
    if isinstance(after, str):
        after = [after]
    if not isinstance(after, list) or not all(isinstance(a, str) and JOB_ID_RE.fullmatch(a) for a in after):
        problems.add(("after",), "expected a ticket id or a list of ticket ids")
        after = []
    elif ticket_id in after:
        problems.add(("after",), "a ticket cannot wait for itself")
    if job is not None and (not isinstance(job, str) or not JOB_ID_RE.fullmatch(job)):
        problems.add(("job",), "expected the id of a configured job")
    if label is not None and (not isinstance(label, str) or not JOB_ID_RE.fullmatch(label)):
        problems.add(("id",), "invalid id (use lowercase letters, digits, '_', '.', '-'; at most 64)")
    if job is not None and ("script" in raw or "command" in raw):
        problems.add(("job",), "a ticket names a configured job or gives `script`/`command`, not both")
    if job is not None:
        schema: dict[str, Callable[[object], Any]] = dict(_settings_schema(problems, ()))
        schema["args"] = _want_str_list
        parsed = _table(raw, (), schema, problems)
        args = parsed.pop("args", ())
        config = JobConfig(id=ticket_id, args=args, settings=JobSettings(**parsed))
    else:
        config_or_none = _job(ticket_id, raw, problems, keypath=())
        config = config_or_none or JobConfig(id=ticket_id)
    if problems.items:
        raise ConfigError(problems.items)
    return Ticket(job=job, label=str(job or label or ticket_id), config=config, priority=priority, after=tuple(after))


def parse(text: str, path: Path | None, base_dir: Path) -> Config:
    """Parse config text; raises ConfigError listing every problem."""
    problems = _Problems(path, text)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(e))
        if m:
            where = f"{problems.name}:{m.group(1)}:{m.group(2)}"
        else:  # "(at end of document)": point at the end of the text
            lines = text.split("\n")
            where = f"{problems.name}:{len(lines)}:{len(lines[-1]) + 1}"
            msg += " (at end of file)"
        raise ConfigError([f"{where}: TOML syntax error: {msg}"]) from None

    for key, value in raw.items():
        if key in _TOP_SCHEMA:
            continue
        if isinstance(value, dict):
            problems.add((key,), "unknown table" + _suggest(key, dict.fromkeys(_TOP_SCHEMA)))
        else:
            home = next(
                (
                    t
                    for t, schema in (("supervisor", _SUPERVISOR_SCHEMA), ("discovery", _DISCOVERY_SCHEMA))
                    if key in schema
                ),
                None,
            )
            hint = f" (it belongs under [{home}])" if home else ""
            problems.add((key,), "unknown top-level key; settings go in tables like [supervisor]" + hint)

    sup = _table(raw.get("supervisor", {}), ("supervisor",), _SUPERVISOR_SCHEMA, problems)
    disc = _table(raw.get("discovery", {}), ("discovery",), _DISCOVERY_SCHEMA, problems)
    logging = _table(raw.get("logging", {}), ("logging",), _LOGGING_SCHEMA, problems)
    ray = _table(raw.get("ray", {}), ("ray",), _RAY_SCHEMA, problems)
    slurm = _table(raw.get("slurm", {}), ("slurm",), _SLURM_SCHEMA, problems)
    defaults_raw = _table(raw.get("defaults", {}), ("defaults",), _settings_schema(problems, ("defaults",)), problems)
    builtin = Config(path=None, base_dir=base_dir).defaults
    defaults = dataclasses.replace(builtin, **defaults_raw)

    jobs: list[JobConfig] = []
    jobs_raw = raw.get("jobs", {})
    if not isinstance(jobs_raw, dict):
        problems.add(("jobs",), "expected tables like [jobs.<id>]")
    else:
        for job_id, job_raw in jobs_raw.items():
            job = _job(job_id, job_raw, problems)
            if job is not None:
                jobs.append(job)

    if problems.items:
        raise ConfigError(problems.items)
    return Config(
        path=path,
        base_dir=base_dir,
        supervisor=SupervisorConfig(**sup),
        discovery=DiscoveryConfig(**disc),
        defaults=defaults,
        jobs=tuple(jobs),
        logging=LoggingConfig(**logging),
        ray=RayConfig(**ray),
        slurm=SlurmConfig(**slurm),
    )


def load(path: Path) -> Config:
    """Read and parse a config file; its folder becomes the base for relative paths."""
    try:
        data = read_regular_file(path, MAX_CONFIG_BYTES)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read config: {e.strerror or e}"]) from None
    except ValueError as e:
        raise ConfigError([f"{path}: cannot read config: {e}"]) from None
    try:
        text = data.decode("utf-8-sig")  # editors on Windows like to add a BOM
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: config is not UTF-8 text (byte {e.start})"]) from None
    return parse(text, path, path.resolve().parent)


CONFIG_NAME = "aimedres.toml"


def find_config(start: Path) -> tuple[Path | None, Path]:
    """`aimedres.toml` in `start` or the nearest parent, looking no higher than the repository root
    (a folder holding `.git`) or `/`, as git looks for `.git`. Returns (the file or None, the last
    folder looked in)."""
    folder = start
    while True:
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate, folder
        if (folder / ".git").exists() or folder.parent == folder:
            return None, folder
        folder = folder.parent


def builtin(base_dir: Path) -> Config:
    """The configuration used when no config file exists: built-in defaults only."""
    return Config(path=None, base_dir=base_dir)
