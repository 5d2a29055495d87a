"""plan.metrics_file, in-process with real files: a job's report file flattened into dotted keys,
found by glob (the newest), merged under what the job printed; problems are warnings."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from aimedres_async.plan.metrics_file import MAX_BYTES, MAX_KEYS, final_metrics, find, flatten, is_metric, read


def write(path: Path, obj: object, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(obj))
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_flatten_nests_as_dotted_keys_and_keeps_lists_and_scalars() -> None:
    obj = {"acc": 0.9, "val": {"loss": 0.2, "per_class": {"a": 1, "b": 2}}, "hist": [1, 2], "none": None}
    assert flatten(obj) == {
        "acc": 0.9,
        "val.loss": 0.2,
        "val.per_class.a": 1,
        "val.per_class.b": 2,
        "hist": [1, 2],
        "none": None,
    }


def test_flatten_keeps_an_empty_object_as_a_value() -> None:
    assert flatten({"a": {}, "b": {"c": {}}}) == {"a": {}, "b.c": {}}


def test_flatten_stops_at_max_keys() -> None:
    flat = flatten({"m": {str(i): i for i in range(3 * MAX_KEYS)}})
    assert len(flat) == MAX_KEYS and flat["m.0"] == 0


def test_find_a_plain_name(tmp_path: Path) -> None:
    path = write(tmp_path / "out" / "metrics.json", {})
    assert find(tmp_path, "out/metrics.json") == path
    assert find(tmp_path, "missing.json") is None


def test_find_a_glob_takes_the_newest_file(tmp_path: Path) -> None:
    write(tmp_path / "fold1" / "report.json", {}, mtime_ns=1_000_000_000)
    newest = write(tmp_path / "fold3" / "report.json", {}, mtime_ns=3_000_000_000)
    write(tmp_path / "fold2" / "report.json", {}, mtime_ns=2_000_000_000)
    (tmp_path / "fold9" / "report.json").mkdir(parents=True)  # a folder is not a report
    assert find(tmp_path, "fold*/report.json") == newest
    assert find(tmp_path, "**/report.json") == newest


def test_find_treats_glob_characters_in_the_job_folder_literally(tmp_path: Path) -> None:
    workdir = tmp_path / "run[1]"
    path = write(workdir / "m.json", {})
    write(tmp_path / "run1" / "m.json", {})  # what "run[1]" would match as a pattern
    assert find(workdir, "m.json") == path


def test_read_flattens_the_object(tmp_path: Path) -> None:
    write(tmp_path / "m.json", {"test": {"auc": 0.8}})
    assert read(tmp_path, "m.json") == ({"test.auc": 0.8}, None)


def test_read_says_why_not(tmp_path: Path) -> None:
    flat, why = read(tmp_path, "m.json")
    assert flat is None and why == f"metrics_file 'm.json': no such file in {tmp_path}"
    (tmp_path / "bad.json").write_text("{not json")
    flat, why = read(tmp_path, "bad.json")
    assert flat is None and why is not None and why.startswith(f"metrics_file {tmp_path / 'bad.json'}: not valid JSON")
    write(tmp_path / "list.json", [1, 2])
    assert read(tmp_path, "list.json") == (
        None,
        f"metrics_file {tmp_path / 'list.json'}: expected a JSON object, found list",
    )


def test_read_refuses_a_file_over_the_limit(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_bytes(b'{"a": "' + b"x" * MAX_BYTES + b'"}')
    flat, why = read(tmp_path, "big.json")
    assert flat is None and why == f"metrics_file {tmp_path / 'big.json'}: larger than 16 MiB; not read"


def test_what_the_job_printed_wins_over_the_file(tmp_path: Path) -> None:
    write(tmp_path / "m.json", {"acc": 0.5, "extra": {"f1": 0.7}})
    warnings: list[str] = []
    merged = final_metrics(tmp_path, "m.json", {"acc": 0.9, "loss": 0.1}, warnings.append)
    assert merged == {"acc": 0.9, "extra.f1": 0.7, "loss": 0.1}
    assert list(merged) == ["acc", "extra.f1", "loss"] and warnings == []


def test_the_file_alone_when_the_job_printed_nothing(tmp_path: Path) -> None:
    write(tmp_path / "m.json", {"acc": 0.5})
    assert final_metrics(tmp_path, "m.json", None, lambda w: None) == {"acc": 0.5}


def test_no_metrics_file_means_what_was_printed(tmp_path: Path) -> None:
    printed = {"acc": 1}
    assert final_metrics(tmp_path, None, printed, lambda w: None) is printed
    assert final_metrics(tmp_path, "", None, lambda w: None) is None


def test_a_missing_file_is_a_warning_and_keeps_what_was_printed(tmp_path: Path) -> None:
    warnings: list[str] = []
    assert final_metrics(tmp_path, "m.json", {"acc": 1}, warnings.append) == {"acc": 1}
    assert warnings == [f"metrics_file 'm.json': no such file in {tmp_path}; final metrics are what the job printed"]


# ---------------------------------------------------------------- only measurements, chosen keys first

REPORT = {
    "timestamp": "2026-12-07T05:00:00Z",
    "created_at": 1_765_000_000,
    "config": {"epochs": 80, "data_path": "ParkinsonDatasets", "lr": 0.001},
    "args": {"folds": 5},
    "params": {"n_estimators": 300},
    "model": "rf",
    "used_gpu": True,
    "dataset": {"rows": 211, "name": "parkinsons"},
    "cv": {"accuracy": 0.91, "f1": 0.88, "fold_times": [1.0, 2.0]},
    "training_time": 12.5,
}


def test_a_flattened_report_keeps_only_its_measurements(tmp_path: Path) -> None:
    """Regression (issue #27, item 4): `timestamp` and `config.*` came first, hiding every metric."""
    write(tmp_path / "report.json", REPORT)
    metrics = final_metrics(tmp_path, "report.json", None, lambda w: None)
    assert metrics == {"dataset.rows": 211, "cv.accuracy": 0.91, "cv.f1": 0.88, "training_time": 12.5}


def test_metrics_keys_choose_what_comes_first_whatever_its_type(tmp_path: Path) -> None:
    write(tmp_path / "report.json", REPORT)
    keys = ["cv.f1", "cv.acc*", "config.data_path"]
    metrics = final_metrics(tmp_path, "report.json", {"loss": 0.2}, lambda w: None, keys)
    assert metrics is not None
    assert list(metrics) == ["cv.f1", "cv.accuracy", "config.data_path", "dataset.rows", "training_time", "loss"]
    assert metrics["config.data_path"] == "ParkinsonDatasets"


def test_metrics_keys_order_what_the_job_printed_too(tmp_path: Path) -> None:
    printed = {"loss": 0.2, "epoch": 9, "val_auc": 0.93}
    metrics = final_metrics(tmp_path, None, printed, lambda w: None, ["val_*"])
    assert list(metrics or {}) == ["val_auc", "loss", "epoch"]


def test_printed_values_are_never_filtered(tmp_path: Path) -> None:
    write(tmp_path / "report.json", {"acc": 0.5})
    metrics = final_metrics(tmp_path, "report.json", {"model": "rf", "acc": 0.9}, lambda w: None)
    assert metrics == {"acc": 0.9, "model": "rf"}


def test_is_metric() -> None:
    assert is_metric("cv.f1", 0.8) and is_metric("epochs_run", 3) and is_metric("train_time", 1.5)
    assert not is_metric("model", "rf") and not is_metric("gpu", True) and not is_metric("hist", [1])
    assert not is_metric("config.lr", 0.1) and not is_metric("run.params.depth", 3)
    assert not is_metric("ts", 1.0) and not is_metric("finished_at", 1.0) and not is_metric("meta.Timestamp", 1)


def test_a_list_of_globs_takes_the_first_that_matches(tmp_path: Path) -> None:
    write(tmp_path / "b" / "second.json", {"b": 2})
    write(tmp_path / "c" / "third.json", {"c": 3})
    assert find(tmp_path, ["a/*.json", "b/*.json", "c/*.json"]) == tmp_path / "b" / "second.json"
    assert final_metrics(tmp_path, ("x.json", "c/*.json"), None, lambda w: None) == {"c": 3}
    warnings: list[str] = []
    final_metrics(tmp_path, ("x.json", "y/*.json"), None, warnings.append)
    assert warnings == [
        f"metrics_file ['x.json', 'y/*.json']: no such file in {tmp_path}; final metrics are what the job printed"
    ]
