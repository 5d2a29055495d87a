"""A run's jobs into MLflow (SPEC §19): one MLflow run per job, written with `MlflowClient` and
`log_batch` within MLflow's batch limits; found again by our run and job ids, so that exporting
again adds nothing and completes what an interrupted (or too early) export left out.

mlflow (the `[mlflow]` extra: mlflow-skinny, with SQLAlchemy and Alembic for MLflow's local
default store) is imported only here, when an export runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimedres_async.report.tracking import TrackedJob

INSTALL_HINT = "pip install 'aimedres-async[mlflow]'"
MAX_METRICS = 1000  # MLflow's limits per log_batch call: metrics, params, tags, and all together
MAX_PARAMS_TAGS = 100
MAX_ENTITIES = 1000
SEARCH_PAGE = 1000
DONE_TAG = "aimedres.export"  # "complete" once a job's export is whole (its last write)
ARTIFACT_DIR = "aimedres"  # where the job's JSON-lines log goes among the run's artifacts


class ExportError(Exception):
    """One line: why the export could not be made (a missing package, the store refused, ...)."""


class MissingExtra(ExportError):
    """The optional packages are not installed: the line says what to pip install."""


@dataclass
class Outcome:
    experiment: str
    tracking_uri: str
    created: int = 0
    completed: int = 0
    unchanged: int = 0
    running: int = 0  # exported while still running: a later export completes them

    def line(self, run_id: str) -> str:
        parts = [f"{self.created} new", f"{self.completed} completed", f"{self.unchanged} already there"]
        total = self.created + self.completed + self.unchanged
        where = f"MLflow experiment {self.experiment!r} at {self.tracking_uri}"
        text = f"run {run_id}: {total} job(s) in {where} ({', '.join(parts)})"
        if self.running:
            text += f"; {self.running} still running: export again when the run has ended"
        return text


def default_uri(base: Path) -> str:
    """MLflow's own local default, in `base`: the SQLite store mlflow.db (MLflow 3's default)."""
    return f"sqlite:///{(base / 'mlflow.db').resolve()}"


def resolve_uri(uri: str | None, base: Path) -> tuple[str, bool]:
    """(tracking URI, whether it is the local default): the given one, else $MLFLOW_TRACKING_URI,
    else MLflow's local default in `base`. A relative `sqlite:///` path is taken from `base`."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    if uri is None:
        return default_uri(base), True
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/") and uri[len(prefix) :] != ":memory:":
        return prefix + str((base / uri[len(prefix) :]).resolve()), False
    return uri, False


def importable(name: str) -> bool:
    """Whether `import name` would find the package (a None in sys.modules hides it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules holds None (or a spec-less module)
        return False


def client_for(uri: str) -> Any:
    """An MlflowClient for `uri`; MissingExtra with the line that fixes it when packages lack."""
    if not importable("mlflow"):
        raise MissingExtra(f"the MLflow export needs the mlflow extra: {INSTALL_HINT}")
    if uri.startswith("sqlite:") and not (importable("sqlalchemy") and importable("alembic")):
        raise MissingExtra(f"MLflow's local store {uri} needs SQLAlchemy and Alembic: {INSTALL_HINT}")
    try:
        from mlflow import MlflowClient
    except ImportError as e:
        raise MissingExtra(f"mlflow cannot be imported ({e}): {INSTALL_HINT}") from None
    for name in ("mlflow", "alembic"):  # their INFO lines (database set-up) are not ours to print
        logging.getLogger(name).setLevel(logging.WARNING)
    with _mlflow_errors():
        return MlflowClient(tracking_uri=uri)


def export(
    jobs: Sequence[TrackedJob],
    experiment: str,
    uri: str,
    artifact_root: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Every job into `experiment` at `uri`. `artifact_root`: where a new experiment keeps its
    artifacts (the local default store's folder; None: the store's own default)."""
    client = client_for(uri)
    result = Outcome(experiment, uri)
    with _mlflow_errors():
        exp_id = _experiment(client, experiment, artifact_root)
        found = _existing(client, exp_id, jobs)
        for n, job in enumerate(jobs, 1):
            _export_job(client, exp_id, job, found.get(job.job_id), result)
            if progress is not None:
                progress(n)
    return result


@contextlib.contextmanager
def _mlflow_errors() -> Iterator[None]:
    """MLflow's and the network's errors as one line (the first line of MLflow's message)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as e:
        text = str(e.message if hasattr(e, "message") else e).strip().splitlines()
        raise ExportError(f"MLflow: {text[0] if text else type(e).__name__}") from None
    except ExportError:
        raise
    except Exception as e:  # the network, the database: whatever the store's libraries raise
        text = str(e).strip().splitlines()
        raise ExportError(f"MLflow: {type(e).__name__}: {text[0] if text else ''}".rstrip(": ")) from None


def _experiment(client: Any, name: str, artifact_root: Path | None) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise ExportError(f"MLflow experiment {name!r} is deleted: restore it, or give another --experiment")
        return str(exp.experiment_id)
    location = None
    if artifact_root is not None:
        folder = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        location = str(artifact_root / (f"experiment-{folder}" if folder.isdigit() else folder))
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException:  # made meanwhile by another export
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)


def _existing(client: Any, exp_id: str, jobs: Sequence[TrackedJob]) -> dict[str, Any]:
    """The MLflow runs an earlier export made of these jobs (by our run id, and job id for one job)."""
    run_ids = {j.run_id for j in jobs}
    found: dict[str, Any] = {}
    for run_id in run_ids:
        query = f"tags.`aimedres.run_id` = '{_quote(run_id)}'"
        if len(jobs) == 1:
            query += f" and tags.`aimedres.job_id` = '{_quote(jobs[0].job_id)}'"
        token = None
        while True:
            page = client.search_runs([exp_id], query, max_results=SEARCH_PAGE, page_token=token)
            for r in page:
                job_id = r.data.tags.get("aimedres.job_id")
                if job_id is not None and (job_id not in found or _done(r)):
                    found[job_id] = r
            token = page.token
            if not token:
                break
    return found


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _done(r: Any) -> bool:
    return bool(r.data.tags.get(DONE_TAG) == "complete" and r.info.status != "RUNNING")


def _export_job(client: Any, exp_id: str, job: TrackedJob, old: Any, result: Outcome) -> None:
    """One job: a new MLflow run, or the rest of one an earlier export began."""
    from mlflow.entities import Metric, Param, RunTag

    if old is not None and _done(old) and old.info.status == job.mlflow_status:
        result.unchanged += 1
        return
    points = job.points
    params = dict(job.params)
    if old is None:
        run = client.create_run(exp_id, start_time=job.start_ms, tags=job.tags, run_name=job.job_id)
        run_id = run.info.run_id
        tags: dict[str, str] = {}
        result.created += 1
    else:
        run_id = old.info.run_id
        params = {k: v for k, v in params.items() if k not in old.data.params}
        points = _missing(client, run_id, old, points)
        tags = job.tags
        result.completed += 1
    if job.log is not None:
        client.log_artifact(run_id, str(job.log), ARTIFACT_DIR)
    if job.finished:
        tags = {**tags, DONE_TAG: "complete"}
    else:
        result.running += 1
    metrics = [Metric(p.key, p.value, p.t_ms, p.step) for p in points]
    for p, t, m in _batches([Param(k, v) for k, v in params.items()], [RunTag(k, v) for k, v in tags.items()], metrics):
        client.log_batch(run_id, metrics=m, params=p, tags=t)
    if job.finished:
        client.set_terminated(run_id, status=job.mlflow_status, end_time=job.end_ms)


def _missing(client: Any, run_id: str, old: Any, points: list[Any]) -> list[Any]:
    """The points an earlier export of this run did not log (by name, step, time and value)."""
    have: set[tuple[str, int, int, float]] = set()
    for key in old.data.metrics:
        for m in client.get_metric_history(run_id, key):
            have.add((m.key, m.step, m.timestamp, m.value))
    return [p for p in points if (p.key, p.step, p.t_ms, p.value) not in have]


def _batches(params: list[Any], tags: list[Any], metrics: list[Any]) -> list[tuple[list[Any], list[Any], list[Any]]]:
    """(params, tags, metrics) of each log_batch call, within MLflow's limits; the tags (the
    completion mark among them) go in the last call, with the last metrics when they fit."""
    calls: list[tuple[list[Any], list[Any], list[Any]]] = []
    p_at = m_at = 0
    while p_at < len(params) or m_at < len(metrics):
        p = params[p_at : p_at + MAX_PARAMS_TAGS]
        m = metrics[m_at : m_at + min(MAX_METRICS, MAX_ENTITIES - len(p))]
        p_at, m_at = p_at + len(p), m_at + len(m)
        calls.append((p, [], m))
    for start in range(0, len(tags), MAX_PARAMS_TAGS):
        t = tags[start : start + MAX_PARAMS_TAGS]
        if calls and not calls[-1][1] and len(calls[-1][0]) + len(calls[-1][2]) + len(t) <= MAX_ENTITIES:
            calls[-1] = (calls[-1][0], t, calls[-1][2])
        else:
            calls.append(([], t, []))
    return calls
