"""Logs written with log schema 1 (an older version) are still read. In schema 1 every record of a
job's file names its run and job; schema 2's `job.output` records leave them to the file's path
(docs/reference/log-records.md). `logs` (and `logs -f`), `report` (and `--since`), `--resume`, the
daemon's `status` line and the shipped JSON Schema files take a hand-written run of either form, and
`logs` and `report` show the two alike.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import PY, events, read_jsonl, write_config
from helpers_cli import cli
from helpers_schema import VALIDATORS, check_record

from aimedres_async.daemon.control import last_line
from aimedres_async.report.chart_data import page_data
from aimedres_async.report.run_model import load

REPO = Path(__file__).resolve().parents[2]
RUN = "20261123T114430Z-b31a"
T0 = 1795434270.0  # 2026-11-23T11:44:30Z
CODE = "print('hello')"
METRICS = {"acc": 0.9}


def _ts(t: float) -> str:
    sec = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{round((t - sec) * 1e6):06d}Z"


def _output(schema: int, t: float, attempt: int, stream: str, **body: Any) -> dict[str, Any]:
    ids = {"run": RUN, "job": "train"} if schema == 1 else {}
    return {"ts": _ts(t), "t": t, "event": "job.output", **ids, "attempt": attempt, "stream": stream, **body}


def _lifecycle(folder: Path, schema: int) -> list[dict[str, Any]]:
    """The run's lifecycle records: attempt 1 fails, attempt 2 succeeds after a retry."""
    argv = [PY, "-c", CODE]

    def rec(t: float, event: str, **fields: Any) -> dict[str, Any]:
        return {"ts": _ts(t), "t": t, "event": event, "run": RUN, **fields}

    started = {"started_at": _ts(T0), "config": str(folder / "aimedres.toml"), "host": "vm", "python": "3.11.7"}
    started |= {"platform": "Linux", "max_workers": 1, "logs_dir": str(folder / "logs" / RUN)}
    failed = {"outcome": "failed", "exit_code": 1, "failure": "exit_code", "duration_s": 0.8, "peak_rss_bytes": 1 << 20}
    return [
        rec(T0, "run.started", schema=schema, **started, job_ids=["train"]),
        rec(T0 + 0.1, "job.queued", job="train"),
        rec(T0 + 0.2, "job.started", job="train", attempt=1, pid=4242, argv=argv, cwd=str(folder), gpus=None),
        rec(T0 + 1.0, "job.exited", job="train", attempt=1, **failed),
        rec(T0 + 1.0, "job.retrying", job="train", attempt=1, delay_s=0.5, next_attempt=2),
        rec(T0 + 1.5, "job.started", job="train", attempt=2, pid=4343, argv=argv, cwd=str(folder), gpus=None),
        rec(T0 + 3.0, "job.exited", job="train", attempt=2, outcome="succeeded", exit_code=0, duration_s=1.5),
        rec(T0 + 3.0, "job.finished", job="train", status="succeeded", attempts=2, optional=False, metrics=METRICS),
        rec(T0 + 3.1, "run.finished", counts={"succeeded": 1}, duration_s=3.1, exit_code=0, stopped_by=None),
    ]


def write_run(folder: Path, schema: int) -> Path:
    """A finished run of one job, `train`, as log schema `schema` wrote it; returns its folder."""
    life = _lifecycle(folder, schema)
    outputs = {
        1: [
            _output(schema, T0 + 0.5, 1, "stdout", line="loading data"),
            _output(schema, T0 + 0.9, 1, "stderr", line="Traceback (most recent call last):"),
            _output(schema, T0 + 0.9, 1, "stderr", line="RuntimeError: boom"),
        ],
        2: [
            _output(schema, T0 + 2.0, 2, "stdout", data={"epoch": 1, "loss": 0.5}),
            _output(schema, T0 + 2.5, 2, "stdout", data={"epoch": 2, "loss": 0.25}),
            _output(schema, T0 + 2.6, 2, "stdout", partial=True, line="a line cut in"),
            _output(schema, T0 + 2.6, 2, "stdout", line=" two"),
            _output(schema, T0 + 2.9, 2, "stdout", data=METRICS),
        ],
    }
    job = [*life[1:3], *outputs[1], *life[3:6], *outputs[2], *life[6:8]]
    run = folder / "logs" / RUN
    (run / "jobs").mkdir(parents=True)
    (folder / "logs" / "latest").symlink_to(RUN)
    (run / "events.jsonl").write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in life))
    (run / "jobs" / "train.jsonl").write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in job))
    entry = {
        "id": "train",
        "status": "succeeded",
        "optional": False,
        "attempts": 2,
        "exit_code": 0,
        "signal": None,
        "failure": None,
        "duration_s": 1.5,
        "peak_rss_bytes": 2 << 20,
        "command": [PY, "-c", CODE],
        "command_line": f"{PY} -c {CODE!r}",
        "log": str(run / "jobs" / "train.jsonl"),
        "metrics": METRICS,
    }
    summary = {k: v for k, v in life[0].items() if k not in ("ts", "t", "event", "job_ids")}
    summary |= {"finished_at": _ts(T0 + 3.1), "duration_s": 3.1, "exit_code": 0, "counts": {"succeeded": 1}}
    summary |= {"stopped_by": None, "jobs": [entry]}
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    write_config(folder, f"[discovery]\nenabled = false\n[jobs.train]\ncommand = {json.dumps([PY, '-c', CODE])}\n")
    return run


@pytest.fixture
def runs(tmp_path: Path) -> dict[int, Path]:
    """The same run written by schema 1 and by schema 2, each in its own project folder."""
    out = {}
    for schema in (1, 2):
        (tmp_path / f"v{schema}").mkdir()
        write_run(tmp_path / f"v{schema}", schema)
        out[schema] = tmp_path / f"v{schema}"
    return out


def _outputs(folder: Path) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(folder / "logs" / RUN / "jobs" / "train.jsonl") if r["event"] == "job.output"]


def test_the_fixture_is_each_schemas_form(runs: dict[int, Path]) -> None:
    assert all(r["run"] == RUN and r["job"] == "train" for r in _outputs(runs[1]))
    assert not any("run" in r or "job" in r for r in _outputs(runs[2]))


@pytest.mark.parametrize("schema", [1, 2])
def test_the_shipped_json_schema_validates_either_form(runs: dict[int, Path], schema: int) -> None:
    run = runs[schema] / "logs" / RUN
    for path in (run / "events.jsonl", run / "jobs" / "train.jsonl"):
        for n, rec in enumerate(read_jsonl(path), 1):
            check_record(rec, f"schema {schema} {path.name}:{n}")  # strict: no undeclared field either
    summary = json.loads((run / "summary.json").read_text())
    assert not list(VALIDATORS["summary"].iter_errors(summary)) and summary["schema"] == schema


def test_logs_renders_a_schema_1_job_file_as_it_renders_schema_2s(runs: dict[int, Path]) -> None:
    shown = set()
    for folder in runs.values():
        for args in (["logs", "train"], ["logs", "train", "--run", RUN], ["logs", "-f", "train"]):
            r = cli(folder, *args, timeout=30)  # -f: the file ends with job.finished, so it returns
            assert r.returncode == 0, r.stderr
            shown.add(r.stdout.replace(str(folder), "FOLDER"))
    assert len(shown) == 1, shown
    (text,) = shown
    for expected in ("#1 | loading data", "#1!| RuntimeError: boom", "#2 | epoch=1 loss=0.5", "#2 | acc=0.9"):
        assert expected in text, text
    assert "#2 | a line cut in…" in text and "#2 |  two" in text
    assert "== job.finished" in text and 'metrics={"acc":0.9}' in text


def _page_data(html: Path, folder: Path) -> dict[str, Any]:
    m = re.search(r'<script id="data" type="application/json">(.*?)</script>', html.read_text(), re.S)
    assert m, "no data block in the report"
    data: dict[str, Any] = json.loads(m.group(1).replace(str(folder), "FOLDER"))
    del data["generated"]
    for run in data["runs"]:
        run.pop("schema")  # the one difference the two runs have
    return data


@pytest.mark.parametrize("since", [None, "2026-11-23T11:00"])
def test_a_schema_1_run_reports_as_its_schema_2_twin(runs: dict[int, Path], since: str | None) -> None:
    data = {}
    for schema, folder in runs.items():
        r = cli(folder, "report", "-o", "r.html", *(["--since", since] if since else []), timeout=60)
        assert r.returncode == 0, r.stderr
        data[schema] = _page_data(folder / "r.html", folder)
    assert data[1] == data[2]
    (job,) = data[1]["jobs"]
    assert job["id"] == "train" and job["status"] == "succeeded"
    text = json.dumps(job)
    assert "RuntimeError: boom" in text  # the failed attempt's last lines, read from the job's file
    assert job["curves"] and "loss" in text  # the metric records (`data`), read from the job's file


def test_resume_skips_what_a_schema_1_run_finished(runs: dict[int, Path]) -> None:
    folder = runs[1]
    r = cli(folder, "run", "--resume", "--no-progress", timeout=60)
    assert r.returncode == 0, r.stderr
    (finished,) = events(folder, "job.finished")
    assert finished["run"] != RUN and finished["status"] == "skipped" and finished["metrics"] == {"acc": 0.9}


def test_the_daemons_status_line_reads_either_form(runs: dict[int, Path]) -> None:
    for folder in runs.values():
        assert last_line(folder / "logs" / RUN / "jobs" / "train.jsonl") == '{"acc":0.9}'


def test_a_synthetic_run_of_many_jobs_reads_alike_in_either_form(tmp_path: Path) -> None:
    """bench/report.py's generator (60 jobs, retries, failures with stderr tails, a metric record
    per epoch) in both forms: the report's model of them is the same."""
    spec = importlib.util.spec_from_file_location("bench_report", REPO / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    drawn = {}
    for schema in (1, 2):
        run = bench.make_run(tmp_path / f"v{schema}", jobs=60, epochs=5, schema=schema)
        named = b'"event":"job.output","run":' in (run / "jobs" / "model-0000.jsonl").read_bytes()
        assert named == (schema == 1)
        data = page_data(load([run]), "t")
        del data["generated"]
        drawn[schema] = json.loads(json.dumps(data).replace(str(tmp_path / f"v{schema}"), "FOLDER"))
    assert drawn[1] == drawn[2]
    assert sum(1 for j in drawn[2]["jobs"] if j["curves"]) >= 50
