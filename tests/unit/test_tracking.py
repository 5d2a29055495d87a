"""The tracker mapping (report/tracking.py): a job's records -> params, tags, metric points and
steps, and MLflow's batch limits (export_mlflow._batches); in-process, without MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aimedres_async.report import export_mlflow
from aimedres_async.report.tracking import (
    Point,
    job_params,
    metric_key,
    metric_points,
    read_job,
    read_run,
)


def _rec(data: dict[str, Any], t: float = 100.0) -> tuple[dict[str, Any], float]:
    return data, t


def _series(points: list[Point]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for p in points:
        out.setdefault(p.key, []).append((p.step, p.value))
    return out


def test_epochs_per_fold_become_one_series_per_fold_and_the_final_fit_its_own() -> None:
    records = [
        _rec({"epoch": 1, "fold": 1, "loss": 0.9, "val_acc": 0.5}),
        _rec({"epoch": 2, "fold": 1, "loss": 0.7, "val_acc": 0.6}),
        _rec({"epoch": 1, "fold": 2, "loss": 0.8, "val_acc": 0.55}),
        _rec({"epoch": 2, "fold": 2, "loss": 0.6, "val_acc": 0.65}),
        _rec({"epoch": 1, "fold": None, "loss": 0.75}),
        _rec({"epoch": 2, "fold": None, "loss": 0.55}),
        _rec({"model": "m", "accuracy": 0.6, "epochs": 2}),  # the final metrics, printed last
    ]
    final = {"model": "m", "accuracy": 0.6, "epochs": 2}
    points, text = metric_points(records, final, 200.0)
    s = _series(points)
    assert s["loss/fold_1"] == [(1, 0.9), (2, 0.7)]
    assert s["val_acc/fold_2"] == [(1, 0.55), (2, 0.65)]
    assert s["loss/final_fit"] == [(1, 0.75), (2, 0.55)]  # fold null: the final fit
    assert s["accuracy"] == [(2, 0.6)] and s["epochs"] == [(2, 2.0)]  # final metrics at the last step
    assert set(s) == {
        "loss/fold_1",
        "loss/fold_2",
        "val_acc/fold_1",
        "val_acc/fold_2",
        "loss/final_fit",
        "accuracy",
        "epochs",
    }
    assert text == {"model": "m"}  # not a number: a tag
    assert {p.t_ms for p in points if p.key == "accuracy"} == {200_000}


def test_a_final_metric_named_like_a_series_or_its_folder_is_kept_apart() -> None:
    records = [_rec({"epoch": 1, "fold": 1, "loss": 0.9}), _rec({"epoch": 1, "fold": None, "loss": 0.8})]
    points, _ = metric_points(records, {"loss": 0.7}, None)
    assert _series(points)["final/loss"] == [(1, 0.7)] and "loss" not in _series(points)


def test_a_final_metric_named_like_a_series_is_kept_apart() -> None:
    records = [_rec({"epoch": e, "loss": 1.0 / e}, 100.0 + e) for e in (1, 2, 3)]
    points, _ = metric_points(records, {"loss": 0.2, "acc": 0.9}, 110.0)
    s = _series(points)
    assert s["loss"] == [(1, 1.0), (2, 0.5), (3, 1 / 3)]  # the history is the epochs' alone
    assert s["final/loss"] == [(3, 0.2)] and s["acc"] == [(3, 0.9)]
    assert [p.t_ms for p in points if p.key == "loss"] == [101_000, 102_000, 103_000]


def test_records_without_an_epoch_are_numbered_and_the_final_one_is_not_a_step() -> None:
    final = {"loss": 0.1}
    records = [_rec({"loss": 0.5}), _rec({"loss": 0.3}), _rec(dict(final))]
    points, _ = metric_points(records, final, 1.0)
    s = _series(points)
    assert s["loss"] == [(0, 0.5), (1, 0.3)]
    assert s["final/loss"] == [(1, 0.1)]


def test_step_is_taken_from_step_and_a_fractional_epoch_falls_back_to_the_position() -> None:
    points, _ = metric_points([_rec({"step": 100, "lr": 0.1}), _rec({"step": 200, "lr": 0.05})], None, None)
    assert _series(points) == {"lr": [(100, 0.1), (200, 0.05)]}
    points, _ = metric_points([_rec({"epoch": 0.5, "loss": 1.0}), _rec({"epoch": 1.0, "loss": 0.5})], None, None)
    assert _series(points) == {"loss": [(0, 1.0), (1, 0.5)]}


def test_booleans_nan_and_strings_are_not_metric_values() -> None:
    records = [_rec({"epoch": 1, "ok": True, "loss": float("nan"), "name": "x", "acc": 1})]
    points, _ = metric_points(records, {"flag": False, "acc": 2}, None)
    assert _series(points) == {"acc": [(1, 1.0)], "final/acc": [(1, 2.0)]}


def test_params_from_the_sweep_then_the_command_flags() -> None:
    argv = ["/venv/bin/python", "train.py", "--epochs", "5", "--folds=3", "--batch-size", "64", "--sample", "100"]
    params = job_params(argv, "/venv/bin/python", {"lr": 0.001, "opt": "adam", "seed": 7})
    assert list(params)[:3] == ["lr", "opt", "seed"]  # the contract's order
    assert params["lr"] == "0.001" and params["opt"] == "adam" and params["seed"] == "7"
    assert params["epochs"] == "5" and params["folds"] == "3" and params["batch"] == "64" and params["sample"] == "100"
    assert params["script"] == "train.py" and params["interpreter"] == "/venv/bin/python"
    assert params["command"].startswith("/venv/bin/python train.py --epochs 5")


def test_a_swept_epochs_wins_over_the_flag_and_a_command_job_names_its_own_script() -> None:
    assert job_params(["python3", "t.py", "--epochs", "5"], None, {"epochs": 9})["epochs"] == "9"
    params = job_params(["python3", "tools/t.py", "x"], None, None)
    assert params["script"] == "tools/t.py" and params["interpreter"] == "python3"
    params = job_params(["./train.sh", "--epochs"], None, None)  # a flag without its value
    assert params["script"] == "./train.sh" and "interpreter" not in params and "epochs" not in params


def test_metric_keys_are_ones_mlflow_takes() -> None:
    assert metric_key("val acc (%)") == "val acc ___"
    assert metric_key("loss/fold_1") == "loss/fold_1"
    assert (
        metric_key("/abs") == "_abs"
        and metric_key("a//b") == "a__b"
        and metric_key("..") == "_."
        and metric_key(".") == "_"
    )
    assert metric_key("") == "_" and len(metric_key("k" * 300)) == 250


def test_batches_respect_mlflows_limits_and_put_the_tags_last() -> None:
    params = [f"p{i}" for i in range(150)]
    tags = [f"t{i}" for i in range(10)]
    metrics = [f"m{i}" for i in range(2500)]
    calls = export_mlflow._batches(params, tags, metrics)
    for p, t, m in calls:
        assert len(p) <= 100 and len(t) <= 100 and len(m) <= 1000 and len(p) + len(t) + len(m) <= 1000
    assert [x for c in calls for x in c[0]] == params
    assert [x for c in calls for x in c[2]] == metrics
    assert [x for c in calls for x in c[1]] == tags and calls[-1][1] == tags  # the completion mark comes last
    assert len(calls) == 3  # 100 p + 900 m, 50 p + 950 m, 650 m + the tags


@pytest.mark.parametrize(
    ("status", "mlflow"),
    [
        ("succeeded", "FINISHED"),
        ("failed", "FAILED"),
        ("timed_out", "FAILED"),
        ("cancelled", "KILLED"),
        (None, "RUNNING"),
    ],
)
def test_statuses(tmp_path: Path, status: str | None, mlflow: str) -> None:
    log = tmp_path / "j.jsonl"
    lines = [{"event": "job.started", "t": 10.0, "attempt": 1, "argv": ["sh", "x"]}]
    if status:
        lines.append({"event": "job.finished", "t": 20.0, "status": status, "attempts": 1, "metrics": None})
    log.write_text("".join(json.dumps(r) + "\n" for r in lines))
    job = read_job({"run": "R"}, "j", log)
    assert job.mlflow_status == mlflow and job.finished == (status is not None)
    assert job.start_ms == 10_000 and job.end_ms == (20_000 if status else None)


def _write_run(d: Path) -> None:
    (d / "jobs").mkdir(parents=True)
    t = 1_800_000_000.0
    recs = [
        {"event": "job.queued", "t": t, "run": "R", "job": "a"},
        {
            "event": "job.started",
            "t": t + 1,
            "run": "R",
            "job": "a",
            "attempt": 1,
            "argv": ["py", "a.py"],
            "interpreter": "py",
            "params": {"lr": 0.1, "seed": 1},
        },
        {"event": "job.output", "t": t + 2, "attempt": 1, "stream": "stdout", "data": {"epoch": 1, "loss": 2.0}},
        {"event": "job.output", "t": t + 2.5, "attempt": 1, "stream": "stdout", "line": "crash"},
        {
            "event": "job.exited",
            "t": t + 3,
            "run": "R",
            "job": "a",
            "attempt": 1,
            "outcome": "failed",
            "failure": "exit_code",
            "exit_code": 1,
        },
        {
            "event": "job.started",
            "t": t + 4,
            "run": "R",
            "job": "a",
            "attempt": 2,
            "argv": ["py", "a.py"],
            "interpreter": "py",
            "params": {"lr": 0.1, "seed": 1},
        },
        {"event": "job.output", "t": t + 5, "attempt": 2, "stream": "stdout", "data": {"epoch": 1, "loss": 1.0}},
        {"event": "job.output", "t": t + 6, "attempt": 2, "stream": "stdout", "data": {"epoch": 2, "loss": 0.5}},
        {
            "event": "job.exited",
            "t": t + 7,
            "run": "R",
            "job": "a",
            "attempt": 2,
            "outcome": "succeeded",
            "exit_code": 0,
        },
        {
            "event": "job.finished",
            "t": t + 7,
            "run": "R",
            "job": "a",
            "status": "succeeded",
            "attempts": 2,
            "optional": False,
            "metrics": {"acc": 0.9},
        },
    ]
    (d / "jobs" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"event":"job.out')
    summary = {
        "run": "R",
        "config": str(d / "proj" / "aimedres.toml"),
        "config_sha256": "ab" * 32,
        "git": {"commit": "c0ffee", "dirty": True},
        "jobs": [
            {
                "id": "a",
                "status": "succeeded",
                "attempts": 2,
                "log": str(d / "jobs" / "a.jsonl"),
                "params": {"lr": 0.1, "seed": 1},
            },
            {"id": "b", "status": "skipped", "attempts": 0, "log": str(d / "jobs" / "b.jsonl")},
        ],
    }
    (d / "summary.json").write_text(json.dumps(summary))


def test_a_run_read_from_its_summary_and_logs(tmp_path: Path) -> None:
    _write_run(tmp_path)
    meta, jobs = read_run(tmp_path)
    assert [j.job_id for j in jobs] == ["a"]  # `--resume` skipped b: the run that trained it has it
    job = jobs[0]
    assert job.attempts == 2 and job.status == "succeeded" and job.mlflow_status == "FINISHED"
    assert _series(job.points) == {"loss": [(1, 1.0), (2, 0.5)], "acc": [(2, 0.9)]}  # the last attempt's curve
    assert job.params["lr"] == "0.1" and job.params["seed"] == "1" and job.params["script"] == "a.py"
    assert job.tags["aimedres.run_id"] == "R" and job.tags["aimedres.job_id"] == "a"
    assert job.tags["aimedres.attempts"] == "2" and job.tags["aimedres.outcome"] == "succeeded"
    assert job.tags["mlflow.source.git.commit"] == "c0ffee" and job.tags["aimedres.git_dirty"] == "true"
    assert job.tags["aimedres.config_sha256"] == "ab" * 32
    assert job.start_ms == 1_800_000_001_000 and job.end_ms == 1_800_000_007_000
    assert meta["run"] == "R"
