"""Reading `aimedres.toml` (or a spool ticket) and checking every key into the frozen settings of
config.py; every problem is collected and raised at once as one ConfigError.

Every table is checked in this one pass so that one run of `validate` names every problem, which
makes this module a little longer than 500 lines (the checks of single values are config_values.py).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aimedres_async.plan.accepts import accepts
from aimedres_async.plan.config import (
    EXECUTORS,
    JOB_ID_RE,
    STOP_MODES,
    STOP_SIGNALS,
    Backoff,
    Config,
    DiscoveryConfig,
    ExportConfig,
    GroupConfig,
    JobConfig,
    JobSettings,
    LoggingConfig,
    RayConfig,
    Resources,
    SlurmConfig,
    SupervisorConfig,
    Ticket,
)
from aimedres_async.plan.config_errors import ConfigError, Problems, suggest, syntax_error
from aimedres_async.plan.config_values import (
    RESOURCE_CHECKS,
    want_bool,
    want_budget_size,
    want_capacity_cpus,
    want_capacity_size,
    want_choice,
    want_duration,
    want_env,
    want_experiment,
    want_fail_on,
    want_flag_names,
    want_fraction,
    want_gpu_capacity,
    want_gpu_count,
    want_int,
    want_line_size,
    want_metrics_files,
    want_metrics_keys,
    want_nonempty,
    want_number,
    want_patterns,
    want_poll_interval,
    want_positive,
    want_str,
    want_str_list,
    want_table,
    want_timeout,
    want_workers,
)
from aimedres_async.plan.limits import LimitError, load_toml, read_regular_file, want_priority
from aimedres_async.plan.sweeps import Sweep, want_entries, want_matrix, want_repeat, want_seeds

CONFIG_NAME = "aimedres.toml"
MAX_CONFIG_BYTES = 16 << 20
NO_SETTINGS = JobSettings()  # frozen: every job table that sets nothing of its own shares it

_TOP_SCHEMA = ("supervisor", "discovery", "defaults", "jobs", "logging", "ray", "slurm", "groups", "export")

_SUPERVISOR_SCHEMA: dict[str, Callable[[object], Any]] = {
    "parallel": want_bool,
    "max_workers": want_workers,
    "logs_dir": want_str,
    "output_dir": want_str,
    "summary_dir": want_str,
    "python": want_str,
    "stop_signal": want_choice(STOP_SIGNALS),
    "stop": want_choice(STOP_MODES),
    "grace_period": want_duration,
    "spool_dir": want_str,
    "executor": want_choice(EXECUTORS),
    "max_line_bytes": want_line_size,
    "gpus": want_gpu_capacity,
    "memory": want_capacity_size,
    "cpus": want_capacity_cpus,
    "max_jobs": want_int(1),
}

_SEED_SCHEMA: dict[str, Callable[[object], Any]] = {"seeds": want_seeds, "repeat": want_repeat}
_SWEEP_SCHEMA: dict[str, Callable[[object], Any]] = {
    "matrix": want_matrix,
    "matrix_include": want_entries,
    "matrix_exclude": want_entries,
    **_SEED_SCHEMA,
}


# What a [jobs.<id>] has beyond the settings [defaults] shares with it.
_JOB_ONLY_SCHEMA: dict[str, Callable[[object], Any]] = {
    "script": want_str,
    "command": want_str_list,
    "args": want_str_list,
    "python": want_nonempty,
    "output_dir": want_nonempty,
    "pass_flags": want_flag_names,
}


# each [groups.<name>]: its workers and its budget of what its running tickets declare
_GROUPS_SCHEMA: dict[str, Callable[[object], Any]] = {
    "max_workers": want_int(1),
    "gpus": want_gpu_count,
    "memory": want_budget_size,
    "cpus": want_positive,
}


_DISCOVERY_SCHEMA: dict[str, Callable[[object], Any]] = {
    "enabled": want_bool,
    "roots": want_str_list,
    "include": want_str_list,
    "exclude": want_str_list,
}


_LOGGING_SCHEMA: dict[str, Callable[[object], Any]] = {"redact": want_patterns, "replacement": want_str}


_RAY_SCHEMA: dict[str, Callable[[object], Any]] = {
    "address": want_str,
    "working_dir": want_str,
    "excludes": want_str_list,
    "runtime_env": want_table,
    "python": want_str,
}


_SLURM_SCHEMA: dict[str, Callable[[object], Any]] = {
    "partition": want_str,
    "account": want_str,
    "qos": want_str,
    "sbatch_options": want_str_list,
    "output_dir": want_str,
    "max_pending": want_duration,
    "poll_interval": want_poll_interval,
}


_EXPORT_SCHEMA: dict[str, Callable[[object], Any]] = {
    "mlflow": want_bool,
    "tracking_uri": want_nonempty,
    "experiment": want_experiment,
    "tensorboard": want_nonempty,
}


_BACKOFF_SCHEMA: dict[str, Callable[[object], Any]] = {
    "initial": want_duration,
    "max": want_duration,
    "factor": want_number(1.0),
    "jitter": want_fraction,
}

_RESOURCES_SCHEMA: dict[str, Callable[[object], Any]] = RESOURCE_CHECKS


def _settings_schema(problems: Problems, keypath: tuple[str, ...]) -> dict[str, Callable[[object], Any]]:
    @accepts("a table: " + ", ".join(_BACKOFF_SCHEMA))
    def backoff(v: object) -> Backoff:
        return Backoff(**_table(v, (*keypath, "backoff"), _BACKOFF_SCHEMA, problems))

    @accepts("a table: " + ", ".join(_RESOURCES_SCHEMA))
    def resources(v: object) -> Resources:
        return Resources(**_table(v, (*keypath, "resources"), _RESOURCES_SCHEMA, problems))

    return {
        "epochs": want_int(1),
        "folds": want_int(1),
        "sample": want_int(1),
        "batch": want_int(1),
        "retries": want_int(0),
        "backoff": backoff,
        "timeout": want_timeout,
        "env": want_env,
        "optional": want_bool,
        "resources": resources,
        "stall_timeout": want_timeout,
        "metrics_file": want_metrics_files,
        "metrics_keys": want_metrics_keys,
        "fail_on": want_fail_on,
    }


def reference_tables() -> list[tuple[str, dict[str, Callable[[object], Any]]]]:
    """Every table the loader reads, as the config reference names it, with each key's check (whose
    `accepts` says in words what it takes): the reference's generated tables are written from this."""
    settings = _settings_schema(Problems(Path(CONFIG_NAME), ""), ())
    return [
        ("[supervisor]", _SUPERVISOR_SCHEMA),
        ("[discovery]", _DISCOVERY_SCHEMA),
        ("[defaults]", {**settings, **_SEED_SCHEMA}),
        ("[jobs.<id>]", {**settings, **_JOB_ONLY_SCHEMA, **_SWEEP_SCHEMA}),
        ("backoff = { … } (in [defaults] and [jobs.<id>])", _BACKOFF_SCHEMA),
        ("resources = { … } (in [defaults] and [jobs.<id>])", _RESOURCES_SCHEMA),
        ("[groups.<name>]", _GROUPS_SCHEMA),
        ("[logging]", _LOGGING_SCHEMA),
        ("[ray]", _RAY_SCHEMA),
        ("[slurm]", _SLURM_SCHEMA),
        ("[export]", _EXPORT_SCHEMA),
    ]


def _table(
    raw: object,
    keypath: tuple[str, ...],
    schema: Mapping[str, Callable[[object], Any]],
    problems: Problems,
) -> dict[str, Any]:
    """Validate one table against its schema; returns the parsed values that were valid."""
    if not isinstance(raw, dict):
        problems.add(keypath, "expected a table")
        return {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        parse = schema.get(key)
        if parse is None:
            problems.add((*keypath, key), "unknown key" + suggest(key, schema))
            continue
        try:
            out[key] = parse(value)
        except ValueError as e:
            problems.add((*keypath, key), str(e))
    return out


def _job(job_id: str, raw: object, problems: Problems, keypath: tuple[str, ...] | None = None) -> JobConfig | None:
    keypath = ("jobs", job_id) if keypath is None else keypath
    if not JOB_ID_RE.fullmatch(job_id):
        problems.add(keypath, "invalid job id (use lowercase letters, digits, '_', '.', '-'; at most 64)")
        return None
    schema: dict[str, Callable[[object], Any]] = dict(_settings_schema(problems, keypath))
    schema.update(_JOB_ONLY_SCHEMA)
    schema.update(_SWEEP_SCHEMA)
    parsed = _table(raw, keypath, schema, problems)
    sweep = _sweep(parsed, keypath, problems)
    script, command = parsed.pop("script", None), parsed.pop("command", None)
    args = parsed.pop("args", ())
    python, output_dir = parsed.pop("python", None), parsed.pop("output_dir", None)
    pass_flags = parsed.pop("pass_flags", None)
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
        settings=JobSettings(**parsed) if parsed else NO_SETTINGS,  # frozen: shared by the jobs that set none
        python=python,
        output_dir=output_dir,
        pass_flags=pass_flags,
        sweep=sweep,
    )


def _sweep(parsed: dict[str, Any], keypath: tuple[str, ...], problems: Problems) -> Sweep | None:
    """The sweep keys popped from a parsed table, checked together (plan.sweeps checks each)."""
    got = {key: parsed.pop(key) for key in _SWEEP_SCHEMA if key in parsed}
    if not got:
        return None
    if "seeds" in got and "repeat" in got:
        problems.add(keypath, "give `seeds` or `repeat`, not both")
    matrix = got.get("matrix", ())
    keys = {k: None for k, _v in matrix}
    for entry in got.get("matrix_exclude", ()):
        for key, _value in entry:
            if key not in keys:
                hint = suggest(key, keys) if keys else " (there is no `matrix` to exclude from)"
                problems.add((*keypath, "matrix_exclude"), f"{key}: not a matrix key" + hint)
    return Sweep(
        matrix=matrix,
        include=got.get("matrix_include", ()),
        exclude=got.get("matrix_exclude", ()),
        seeds=got.get("seeds", got.get("repeat")),
    )


def parse(text: str, path: Path | None, base_dir: Path) -> Config:
    """Parse config text; raises ConfigError listing every problem."""
    problems = Problems(path, text)
    try:
        raw = load_toml(text)
    except tomllib.TOMLDecodeError as e:
        raise syntax_error(e, problems.name, text) from None
    except LimitError as e:
        raise ConfigError([f"{problems.name}: {e}"]) from None

    _check_top_level(raw, problems)

    sup = _table(raw.get("supervisor", {}), ("supervisor",), _SUPERVISOR_SCHEMA, problems)
    disc = _table(raw.get("discovery", {}), ("discovery",), _DISCOVERY_SCHEMA, problems)
    logging = _table(raw.get("logging", {}), ("logging",), _LOGGING_SCHEMA, problems)
    ray = _table(raw.get("ray", {}), ("ray",), _RAY_SCHEMA, problems)
    slurm = _table(raw.get("slurm", {}), ("slurm",), _SLURM_SCHEMA, problems)
    defaults_schema = {**_settings_schema(problems, ("defaults",)), **_SEED_SCHEMA}
    defaults_raw = _table(raw.get("defaults", {}), ("defaults",), defaults_schema, problems)
    default_sweep = _sweep(defaults_raw, ("defaults",), problems)
    export = _table(raw.get("export", {}), ("export",), _EXPORT_SCHEMA, problems)
    builtin = Config(path=None, base_dir=base_dir).defaults
    defaults = dataclasses.replace(builtin, **defaults_raw)

    jobs = _jobs(raw.get("jobs", {}), problems)
    groups = _groups(raw.get("groups", {}), problems)

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
        seeds=default_sweep.seeds if default_sweep else None,
        groups=groups,
        export=ExportConfig(**export),
    )


def _groups(raw: object, problems: Problems) -> dict[str, GroupConfig]:
    """`[groups.<name>]`: the daemon's queues, each with its own worker count and resource budget."""
    if not isinstance(raw, dict):
        problems.add(("groups",), "expected tables like [groups.<name>]")
        return {}
    groups = {}
    for name, table in raw.items():
        if not JOB_ID_RE.fullmatch(name):
            problems.add(("groups", name), "invalid group name (use lowercase letters, digits, '_', '.', '-')")
            continue
        groups[name] = GroupConfig(**_table(table, ("groups", name), _GROUPS_SCHEMA, problems))
    return groups


def _check_top_level(raw: Mapping[str, Any], problems: Problems) -> None:
    """Anything at the top but the known tables is a problem; a stray setting is told its table."""
    for key, value in raw.items():
        if key in _TOP_SCHEMA:
            continue
        if isinstance(value, dict):
            problems.add((key,), "unknown table" + suggest(key, dict.fromkeys(_TOP_SCHEMA)))
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


def _jobs(jobs_raw: object, problems: Problems) -> list[JobConfig]:
    jobs: list[JobConfig] = []
    if not isinstance(jobs_raw, dict):
        problems.add(("jobs",), "expected tables like [jobs.<id>]")
    else:
        for job_id, job_raw in jobs_raw.items():
            job = _job(job_id, job_raw, problems)
            if job is not None:
                jobs.append(job)
    return jobs


def _ticket_job_id(job: object) -> bool:
    """A job id (`train`), or a combination's full id (`train[lr=0.1,seed=0]`): which combinations
    a job has is the config's to say (plan.jobs.ticket_spec)."""
    if not isinstance(job, str) or len(job) > 4096 or not job.isprintable():
        return False
    base, bracket, rest = job.partition("[")
    return JOB_ID_RE.fullmatch(base) is not None and (not bracket or (rest.endswith("]") and len(rest) > 1))


def parse_ticket(text: str, ticket_id: str, name: str = "<ticket>") -> Ticket:
    """Validate a ticket's TOML with the same rules as `[jobs.*]`; raises ConfigError."""
    problems = Problems(Path(name), text)
    try:
        raw = load_toml(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{name}: TOML syntax error: {e}"]) from None
    except LimitError as e:
        raise ConfigError([f"{name}: {e}"]) from None
    if not raw:
        raise ConfigError([f'{name}: empty ticket (give `job = "<id>"` or a `script`/`command`)'])
    if "result" in raw:
        raise ConfigError([f"{name}: result: a new ticket must not carry a [result] table"])
    job = raw.pop("job", None)
    label = raw.pop("id", None)
    extra = _ticket_keys(raw, ticket_id, problems)
    priority = raw.pop("priority", 0)
    after = raw.pop("after", [])
    try:
        priority = want_priority(priority)
    except LimitError as e:
        problems.add(("priority",), str(e))
        priority = 0
    if isinstance(after, str):
        after = [after]
    if not isinstance(after, list) or not all(isinstance(a, str) and JOB_ID_RE.fullmatch(a) for a in after):
        problems.add(("after",), "expected a ticket id or a list of ticket ids")
        after = []
    elif ticket_id in after:
        problems.add(("after",), "a ticket cannot wait for itself")
    if job is not None and not _ticket_job_id(job):
        problems.add(("job",), "expected the id of a configured job, or of one combination of its sweep")
    if label is not None and (not isinstance(label, str) or not JOB_ID_RE.fullmatch(label)):
        problems.add(("id",), "invalid id (use lowercase letters, digits, '_', '.', '-'; at most 64)")
    if job is not None and ("script" in raw or "command" in raw):
        problems.add(("job",), "a ticket names a configured job or gives `script`/`command`, not both")
    swept = sorted(set(raw) & set(_SWEEP_SCHEMA))
    if swept:  # a ticket is one job: `run` expands sweeps, the daemon runs what it is given
        problems.add((swept[0],), "a ticket is one job; sweeps belong in the config's [jobs.<id>]")
        for key in swept:
            raw.pop(key)
    if job is not None:
        schema: dict[str, Callable[[object], Any]] = dict(_settings_schema(problems, ()))
        schema["args"] = want_str_list
        parsed = _table(raw, (), schema, problems)
        args = parsed.pop("args", ())
        config = JobConfig(id=ticket_id, args=args, settings=JobSettings(**parsed))
    else:
        config_or_none = _job(ticket_id, raw, problems, keypath=())
        config = config_or_none or JobConfig(id=ticket_id)
    if problems.items:
        raise ConfigError(problems.items)
    name_it = extra.pop("label", None) or job or label or ticket_id
    return Ticket(job=job, label=str(name_it), config=config, priority=priority, after=tuple(after), **extra)


def _ticket_keys(raw: dict[str, Any], ticket_id: str, problems: Problems) -> dict[str, Any]:
    """The daemon's own ticket keys (number, label, group, not_before, cwd, restarted_from), taken
    out of `raw` and checked; the rest is the job."""
    out: dict[str, Any] = {}
    checks: dict[str, Callable[[object], Any]] = {
        "number": want_int(1),
        "label": _want_label,
        "group": _want_id,
        "not_before": _want_moment,
        "cwd": _want_absolute,
        "restarted_from": _want_id,
    }
    for key, check in checks.items():
        if key in raw:
            try:
                out[key] = check(raw.pop(key))
            except ValueError as e:
                problems.add((key,), str(e))
    return out


def _want_id(v: object) -> str:
    if not isinstance(v, str) or not JOB_ID_RE.fullmatch(v):
        raise ValueError(
            "expected lowercase letters, digits, '_', '.', '-' (at most 64, starting with a letter or digit)"
        )
    return v


def _want_label(v: object) -> str:
    text = want_nonempty(v)
    if len(text) > 80 or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ValueError("expected one line of at most 80 characters")
    return text


def _want_moment(v: object) -> float:
    import datetime

    if not isinstance(v, datetime.datetime) or v.tzinfo is None:
        raise ValueError("expected a date and time with its offset, e.g. 2026-12-07T06:00:00Z")
    return v.timestamp()


def _want_absolute(v: object) -> str:
    path = want_nonempty(v)
    if not os.path.isabs(path):
        raise ValueError("expected an absolute path")
    return path


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
