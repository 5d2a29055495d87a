"""Job groups of one or more runs: summaries read from run ids, run folders or summary.json files,
their jobs grouped by base id and parameters without the seed, every final metric as mean ± std.

What `leaderboard`, `compare`, the step summary and the report's leaderboard section share.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from aimedres_async.report.run_model import RUN_ID_RE

OK = frozenset({"succeeded", "skipped"})  # skipped: --resume kept an earlier success (and its metrics)
PENDING = frozenset({"queued", "running", "backoff"})


class RunError(Exception):
    """A one-line reason a run cannot be read (missing, not a summary, damaged)."""


@dataclass(frozen=True)
class LoadedRun:
    """One run's summary: its id, where it was read from, and its job entries."""

    run: str
    source: str
    jobs: list[dict[str, Any]]
    schema: int | None = None


def load_run(arg: str | None, logs_dir: Path) -> LoadedRun:
    """RUN as a run id under logs_dir, a run folder, or a summary.json file; None or "latest" =
    the latest run.

    Only the entries' id, status, params and metrics are read: no path inside the file is needed,
    so a summary.json from another machine (a CI artifact) loads as well as a local one.
    """
    if arg is None or (arg == "latest" and not Path(arg).exists()):
        latest = logs_dir / "latest"
        if not latest.exists():
            raise RunError(f"no run found: {latest} does not exist (start one with `aimedres-async run`)")
        path = latest.resolve() / "summary.json"  # the source names the run folder, not the link
    elif RUN_ID_RE.fullmatch(arg) and (logs_dir / arg).is_dir():
        path = logs_dir / arg / "summary.json"
    elif Path(arg).is_dir():
        path = Path(arg) / "summary.json"
    elif Path(arg).is_file():
        path = Path(arg)
    elif RUN_ID_RE.fullmatch(arg):
        raise RunError(f"no run {arg} in {logs_dir}")
    else:
        raise RunError(f"{arg!r} is neither a run id (like 20261123T114430Z-b31a), a run folder nor a summary.json")
    return read_summary(path)


def read_summary(path: Path) -> LoadedRun:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise RunError(f"{path.parent} has no summary.json: not a run folder") from None
    except OSError as e:
        raise RunError(f"cannot read {path}: {e.strerror or e}") from None
    except orjson.JSONDecodeError as e:
        raise RunError(f"{path} is not a readable summary.json: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise RunError(f"{path} is not a run summary (it has no list of jobs)")
    jobs = [j for j in data["jobs"] if isinstance(j, dict) and isinstance(j.get("id"), str)]
    schema = data.get("schema")
    run = data.get("run")
    name = path.parent.name if path.name == "summary.json" else path.name
    return LoadedRun(
        str(run) if isinstance(run, str) else name, str(path), jobs, schema if isinstance(schema, int) else None
    )


# ---------------------------------------------------------------- grouping


def base_id(job_id: str) -> str:
    """A swept job's id is `<base>[k=v,…,seed=S]`; a base id never holds `[`."""
    return job_id.partition("[")[0]


def job_params(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's parameters without the seed (the axis mean ± std folds), in the order written."""
    params = entry.get("params")
    if not isinstance(params, dict):
        return {}
    return {str(k): v for k, v in params.items() if k != "seed"}


def _value_key(v: Any) -> tuple[str, Any]:
    """A parameter value as part of a group's key: 1 and 1.0 are one value, true and 1 are not."""
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, int | float):
        return ("n", float(v))
    if isinstance(v, str):
        return ("s", v)
    return ("j", orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode())


def group_key(entry: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, tuple[str, Any]], ...]]:
    params = job_params(entry)
    return base_id(str(entry["id"])), tuple(sorted((k, _value_key(v)) for k, v in params.items()))


def show_value(v: Any) -> str:
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def label(job: str, params: Mapping[str, Any]) -> str:
    """`base[k=v,…]`, or the plain id of a job without parameters."""
    if not params:
        return job
    return job + "[" + ",".join(f"{k}={show_value(v)}" for k, v in params.items()) + "]"


STAT_MAX = 1e100  # beyond it a value is left out of the statistics: a sum or a square would overflow


def number(v: Any) -> float | None:
    """A metric value that statistics take: a finite number within ±STAT_MAX, not a boolean."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    if not -STAT_MAX <= v <= STAT_MAX:  # NaN and ±inf too
        return None
    return float(v)


@dataclass(frozen=True)
class Stat:
    """A metric over a group's successful jobs: mean, sample standard deviation (n - 1; None
    for n = 1) and how many jobs printed it."""

    mean: float
    std: float | None
    n: int


def stat(values: list[float]) -> Stat:
    mean = math.fsum(values) / len(values)
    return Stat(mean, statistics.stdev(values) if len(values) > 1 else None, len(values))


@dataclass
class Group:
    """The jobs of one base id and parameter combination (seeds and runs folded together)."""

    job: str
    params: dict[str, Any]
    key: tuple[Any, ...] = ()  # group_key: equal for the same base id and parameter values
    entries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (run, entry)
    counted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # the successes in the statistics
    runs: list[str] = field(default_factory=list)
    metrics: dict[str, Stat] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return label(self.job, self.params)

    @property
    def n(self) -> int:
        return len(self.counted)

    @property
    def failed(self) -> int:
        return sum(1 for _r, e in self.entries if e.get("status") not in OK and e.get("status") not in PENDING)


def groups(runs: Iterable[LoadedRun]) -> list[Group]:
    """The groups of these runs' jobs, in the order they first appear.

    A job counts in the statistics when it succeeded; a `skipped` one (--resume) counts with the
    metrics it kept, unless the same job id succeeded in another of the runs read (it is that
    success, copied).
    """
    found: dict[tuple[Any, ...], Group] = {}
    skipped: list[tuple[Group, str, dict[str, Any]]] = []
    succeeded: set[str] = set()
    for run in runs:
        for entry in run.jobs:
            key = group_key(entry)
            g = found.get(key)
            if g is None:
                g = found[key] = Group(key[0], job_params(entry), key)
            g.entries.append((run.run, entry))
            if run.run not in g.runs:
                g.runs.append(run.run)
            if entry.get("status") == "succeeded":
                g.counted.append((run.run, entry))
                succeeded.add(str(entry["id"]))
            elif entry.get("status") == "skipped":
                skipped.append((g, run.run, entry))
    for g, run_id, entry in skipped:
        if str(entry["id"]) not in succeeded:
            succeeded.add(str(entry["id"]))  # a second skipped copy of it is the same success
            g.counted.append((run_id, entry))
    for g in found.values():
        g.metrics = _stats(e for _r, e in g.counted)
    return list(found.values())


def _stats(entries: Iterable[Mapping[str, Any]]) -> dict[str, Stat]:
    values: dict[str, list[float]] = {}
    for entry in entries:
        metrics = entry.get("metrics")
        for k, v in (metrics if isinstance(metrics, dict) else {}).items():
            x = number(v)
            if x is not None:
                values.setdefault(str(k), []).append(x)
    return {k: stat(v) for k, v in values.items()}


def metric_names(gs: Iterable[Group]) -> list[str]:
    """Every metric of the groups, in the order first seen (the first is the default sort key)."""
    names: dict[str, None] = {}
    for g in gs:
        for k in g.metrics:
            names.setdefault(k)
    return list(names)


def swept(gs: Iterable[Group]) -> dict[str, list[Any]]:
    """Each parameter that takes more than one value across the groups, with its values (in the
    order first seen)."""
    values: dict[str, dict[tuple[str, Any], Any]] = {}
    for g in gs:
        for k, v in g.params.items():
            values.setdefault(k, {}).setdefault(_value_key(v), v)
    return {k: list(vs.values()) for k, vs in values.items() if len(vs) > 1}
