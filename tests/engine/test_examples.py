"""The bundled examples (examples/training): one JSON object per epoch and the final metrics last;
Ctrl+C saves a checkpoint into the output dir and exits 130 without a traceback, alone and under
the supervisor; the README's example table names the metrics they really print.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import read_jsonl, run_dir, summary, wait_for

pytest.importorskip("sklearn", reason="the examples need scikit-learn (pip install -e '.[examples]')")

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "training"
NAMES = ("breast_cancer", "diabetes", "digits")
VAL_KEYS = {"breast_cancer": {"val_accuracy"}, "diabetes": {"val_r2", "val_rmse"}, "digits": {"val_accuracy"}}


@pytest.mark.parametrize("name", NAMES)
def test_one_json_object_per_epoch_then_the_final_metrics(tmp_path: Path, name: str) -> None:
    r = subprocess.run(
        [
            PY,
            str(EXAMPLES / f"train_{name}.py"),
            "--epochs",
            "2",
            "--folds",
            "2",
            "--output-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    objects = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    epochs, final = objects[:-1], objects[-1]
    assert len(epochs) == (2 + 1) * 2  # two folds and the final fit, two epochs each
    for rec in epochs:
        assert isinstance(rec["epoch"], int) and isinstance(rec["loss"], float)
        if rec["fold"] is None:  # the final fit on all rows has no validation split
            assert set(rec) == {"epoch", "fold", "loss"}
        else:
            assert set(rec) == {"epoch", "fold", "loss"} | VAL_KEYS[name]
    assert [(rec["fold"], rec["epoch"]) for rec in epochs] == [(1, 1), (1, 2), (2, 1), (2, 2), (None, 1), (None, 2)]
    assert final["model"] == name and final["epochs"] == 2 and final["folds"] == 2
    assert r.stdout.splitlines()[-1] == json.dumps(final)  # the final metrics are the last line


def _wait_for_epoch_line(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith('{"epoch"'):
            return
        assert line, "the script ended before its first epoch"
    raise AssertionError("no epoch line within 60 s")


@pytest.mark.parametrize("name", NAMES)
def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [PY, str(EXAMPLES / f"train_{name}.py"), "--epochs", "100000", "--folds", "2", "--output-dir", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        _wait_for_epoch_line(proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert f"saved a checkpoint to {out / 'checkpoint.pkl'}" in err
    with open(out / "checkpoint.pkl", "rb") as fh:
        state = pickle.load(fh)
    assert state["epoch"] >= 1 and state["fold"] == 1 and "model" in state
    assert not list(out.glob("*.tmp"))


def _project_copy(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "aimedres.toml", tmp_path / "aimedres.toml")
    shutil.copytree(EXAMPLES, tmp_path / "examples" / "training")
    return tmp_path


def test_ctrl_c_under_the_supervisor_leaves_checkpoints_and_no_traceback(tmp_path: Path) -> None:
    folder = _project_copy(tmp_path)
    proc = subprocess.Popen(
        [PY, "-m", "aimedres_async", "run", "--only", "breast_cancer", "--epochs", "100000", "--no-progress"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        log = folder / "logs" / "latest" / "jobs" / "breast_cancer.jsonl"
        wait_for(lambda: log.exists() and b'"data":{"epoch"' in log.read_bytes(), timeout=60, what="an epoch record")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    records = read_jsonl(run_dir(folder) / "jobs" / "breast_cancer.jsonl")
    text = "\n".join(r.get("line", "") for r in records if r["event"] == "job.output")
    assert "Traceback" not in text and "saved a checkpoint" in text, text[-2000:]
    exited = next(r for r in records if r["event"] == "job.exited")
    assert exited["exit_code"] == 130 and exited["outcome"] == "cancelled", exited
    assert (folder / "results" / "breast_cancer" / "checkpoint.pkl").exists()


def test_readme_table_names_the_metrics_the_examples_print(tmp_path: Path) -> None:
    """The README's example table stays true: its rows show each job's final metrics, in order."""
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("JOB            STATUS") :].split("```")[0]
    shown = {}
    for line in block.splitlines()[1:]:
        if line.startswith("logs:"):
            break
        cells = line.split()
        shown[cells[0]] = [kv.split("=")[0] for kv in cells[6:]]
    assert set(shown) == set(NAMES)
    folder = _project_copy(tmp_path)
    r = subprocess.run(
        [PY, "-m", "aimedres_async", "run", "--epochs", "2", "--folds", "2", "--no-progress"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr
    for job in summary(folder)["jobs"]:
        assert job["status"] == "succeeded"
        assert [k for k in job["metrics"] if k != "model"] == shown[job["id"]], (job["id"], job["metrics"])
    table = r.stdout[r.stdout.index("JOB ") :]
    assert re.search(r"^JOB\s+STATUS\s+ATTEMPTS\s+EXIT\s+TIME\s+PEAK RSS\s+FINAL METRICS$", table, re.M)


def test_the_examples_give_identical_final_metrics_one_at_a_time_and_in_parallel(tmp_path: Path) -> None:
    """Ianvs' "verify parallel equivalence": the bundled examples run with -j 1 and with -j 3 print
    the same final metrics, to the last digit (`compare --exact` exits 0)."""
    folder = _project_copy(tmp_path)
    runs = []
    for workers in ("1", "3"):
        r = subprocess.run(
            [PY, "-m", "aimedres_async", "run", "-j", workers, "--epochs", "2", "--folds", "2", "--no-progress"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        data = summary(folder)
        assert data["max_workers"] == int(workers)
        assert sorted((j["id"], j["status"]) for j in data["jobs"]) == [(n, "succeeded") for n in NAMES]
        assert all(len(j["metrics"]) > 3 for j in data["jobs"]), data["jobs"]  # something to compare
        runs.append(data["run"])
    r = subprocess.run(
        [PY, "-m", "aimedres_async", "compare", *runs, "--exact"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "exact: no difference (3 jobs: every status and final metric identical)" in r.stdout


def test_getting_started_leaderboard_names_the_metrics_the_sweep_prints(tmp_path: Path) -> None:
    """docs/getting-started.md shows the leaderboard of examples/sweep.toml: its columns are the
    numeric final metrics breast_cancer prints, in order, and its rows the sweep's combinations."""
    text = (ROOT / "docs" / "getting-started.md").read_text()
    block = text[text.index("ranked by accuracy:desc") :].split("```")[0].splitlines()
    header, rows = block[1].split(), [line.split() for line in block[2:] if line.strip()]
    r = subprocess.run(
        [PY, str(EXAMPLES / "train_breast_cancer.py"), "--epochs", "1", "--folds", "2", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    final = json.loads(r.stdout.splitlines()[-1])
    numeric = [k for k, v in final.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    assert header == ["RANK", "JOB", "N", *numeric]
    sweep = (ROOT / "examples" / "sweep.toml").read_text()
    assert "matrix = { batch_size = [16, 64], epochs = [2, 4] }" in sweep and "seeds = [0, 1, 2]" in sweep
    assert sorted(row[1] for row in rows) == sorted(
        f"breast_cancer[batch_size={b},epochs={e}]" for b in (16, 64) for e in (2, 4)
    )
    assert all(row[2] == "3" for row in rows)  # three seeds each
