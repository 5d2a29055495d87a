"""Migrating a repository whose old `train.py` orchestrator has a built-in job list (issue #27):
examples/old-orchestrator (the fixture the migration guide is tried on) copied to a clean folder and
migrated by the guide's commands, run as real subprocesses with real jobs."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from helpers_cli import PY, cli, dry_run_commands, usage_error
from helpers_schema import check_run_folder

FIXTURE = Path(__file__).resolve().parents[2] / "examples" / "old-orchestrator"
LEGACY = ["files/training/train_diabetes.py", "files/training/train_parkinsons.py", "training/train_als.py"]


@pytest.fixture
def old_repo(tmp_path: Path) -> Path:
    """A clean copy of the fixture repository, a repository of its own (a .git folder)."""
    root = tmp_path / "medres"
    shutil.copytree(FIXTURE, root)
    (root / ".git").mkdir()
    return root


def migrate(root: Path, marker: str = "", extra_defaults: str = "") -> dict[str, Any]:
    """The guide's first step: `init --from-orchestrator train.py`; the test's marker in every job."""
    r = cli(root, "init", "--from-orchestrator", "train.py")
    assert r.returncode == 0, r.stderr
    path = root / "aimedres.toml"
    if marker or extra_defaults:
        env = f'env = {{ TEST_MARKER = "{marker}" }}\n' if marker else ""
        path.write_text(path.read_text().replace("retries = 0\n", f"retries = 0\n{env}{extra_defaults}", 1))
    return tomllib.loads(path.read_text())


def summary_jobs(root: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((root / "logs" / "latest" / "summary.json").read_text())
    return {j["id"]: j for j in data["jobs"]}


def row(stdout: str, job: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith(f"{job} "))


def test_init_from_orchestrator_writes_the_built_in_jobs_with_their_arguments_and_folders(old_repo: Path) -> None:
    """Regression (issue #27, items 1-3): the built-in job list was dropped (no --data-path, so a
    script trained on made-up data), `validate` refused init's config, and the old defaults changed."""
    config = migrate(old_repo)
    text = (old_repo / "aimedres.toml").read_text()
    assert config["jobs"]["parkinsons"] == {
        "script": "src/medres/training/train_parkinsons.py",
        "output_dir": "parkinsons_comprehensive_results",
        "args": ["--data-path", "ParkinsonDatasets"],
        "metrics_file": "parkinsons_report.json",  # its json.dump target, found in its source
    }
    assert config["jobs"]["als"] == {
        "script": "src/medres/training/train_als.py",
        "output_dir": "als_comprehensive_results",
        "args": ["--dataset-choice", "als-progression"],
        "pass_flags": ["output_dir", "epochs", "sample", "batch"],  # supports_folds=False
        "metrics_file": "als_metrics.json",
    }
    assert "# Parkinson's Disease (TrainingJob at train.py:" in text
    assert "# ALS (Amyotrophic Lateral Sclerosis) (TrainingJob at train.py:" in text
    # the old defaults: one at a time, no retries, no timeout, Ctrl+C lets running jobs finish
    assert config["supervisor"]["parallel"] is False and config["supervisor"]["stop"] == "drain"
    assert config["defaults"] == {"retries": 0}
    assert config["supervisor"]["summary_dir"] == "summaries"
    # the legacy copies are excluded, each with a comment naming the copy that runs
    assert sorted(config["discovery"]["exclude"]) == LEGACY
    assert "\"training/train_als.py\",  # a copy of job 'als'; src/medres/training/train_als.py runs" in text
    assert '# metrics_file = "metrics/diabetes_*.json"' in text  # a discovered script's report, suggested

    r = cli(old_repo, "validate")
    assert r.returncode == 0, r.stderr
    assert "ok (3 jobs: parkinsons, als, diabetes)" in r.stdout
    commands = dry_run_commands(cli(old_repo, "--dry-run", "--epochs", "5", "--folds", "3").stdout)
    out = old_repo / "results"
    assert commands["parkinsons"] == [
        PY,
        "src/medres/training/train_parkinsons.py",
        "--output-dir",
        str(out / "parkinsons_comprehensive_results"),
        "--epochs",
        "5",
        "--folds",
        "3",
        "--data-path",
        "ParkinsonDatasets",
    ]
    assert "--folds" not in commands["als"] and commands["als"][-2:] == ["--dataset-choice", "als-progression"]
    assert commands["diabetes"][1] == "src/medres/training/train_diabetes.py"


def test_the_converted_config_trains_on_the_real_data_one_job_at_a_time(old_repo: Path, marker: str) -> None:
    migrate(old_repo, marker)
    r = cli(old_repo, "--epochs", "2")
    assert r.returncode == 0, (r.stdout, r.stderr)
    jobs = summary_jobs(old_repo)
    park = jobs["parkinsons"]
    assert park["metrics"]["dataset.rows"] == 211  # ParkinsonDatasets/parkinsons.csv, not a sample
    assert park["warnings"] == 0 and park["first_warning"] is None
    # only measurements: no timestamp, no config.*, the report's metrics before the printed ones
    assert list(park["metrics"]) == ["dataset.rows", "cv.accuracy", "cv.f1", "epoch", "loss"]
    assert jobs["als"]["metrics"] == {"rmse": 0.42, "r2": 0.81}
    assert (old_repo / "results/parkinsons_comprehensive_results/parkinsons_report.json").is_file()
    assert (old_repo / "results/als_comprehensive_results/als_metrics.json").is_file()
    assert row(r.stdout, "parkinsons").split()[-5].startswith("dataset.rows=211")
    assert json.loads((old_repo / "logs/latest/summary.json").read_text())["max_workers"] == 1
    check_run_folder(old_repo)


def test_a_fallback_to_made_up_data_is_a_counted_warning_and_fail_on_fails_it(old_repo: Path, marker: str) -> None:
    """Regression (issue #27, item 1): the script printed a warning, trained on a sample dataset
    and "succeeded"; nothing in the results said so."""
    migrate(old_repo, marker)
    shutil.rmtree(old_repo / "ParkinsonDatasets")
    r = cli(old_repo, "--only", "parkinsons", "--epochs", "2")
    assert r.returncode == 0, r.stderr
    warning = "Warning: Parkinson's dataset not found, creating a sample dataset"
    park = summary_jobs(old_repo)["parkinsons"]
    assert park["warnings"] == 1 and park["first_warning"] == warning
    assert f"warnings: 1 (first: {warning})" in row(r.stdout, "parkinsons")
    finished = next(line for line in r.stderr.splitlines() if "job.finished" in line)
    assert "warnings=1" in finished
    check_run_folder(old_repo)

    (old_repo / "aimedres.toml").unlink()
    migrate(old_repo, marker, 'fail_on = ["creating (a )?sample dataset"]\n')
    r = cli(old_repo, "--only", "parkinsons", "--epochs", "2", "--retries", "2")
    assert r.returncode == 1, r.stdout
    park = summary_jobs(old_repo)["parkinsons"]
    assert park["status"] == "failed" and park["failure"] == "output_match" and park["error"] == warning
    assert park["attempts"] == 1  # what it said would be said again: not retried
    assert f"error: {warning}" in row(r.stdout, "parkinsons") and "[output_match]" in row(r.stdout, "parkinsons")
    check_run_folder(old_repo)


def test_a_job_that_matches_fail_on_is_stopped_at_once(old_repo: Path, marker: str) -> None:
    """The match ends the attempt: a job printing on after it is not left to train for hours."""
    config = (
        f'[discovery]\nenabled = false\n[defaults]\nenv = {{ TEST_MARKER = "{marker}" }}\n'
        '[jobs.slow]\ncommand = ["sh", "-c", "echo using synthetic data; exec sleep 60"]\n'
        'fail_on = ["synthetic"]\n'
    )
    (old_repo / "aimedres.toml").write_text(config)
    r = cli(old_repo, "run", timeout=30)
    assert r.returncode == 1, r.stdout
    job = summary_jobs(old_repo)["slow"]
    assert job["failure"] == "output_match" and job["error"] == "using synthetic data" and job["duration_s"] < 30


def test_init_mentions_the_orchestrator_and_its_config_passes_validate(old_repo: Path) -> None:
    """Regression (issue #27, item 2): init's config was refused by `validate` at once."""
    r = cli(old_repo, "init")
    assert r.returncode == 0, r.stderr
    assert "init --from-orchestrator train.py" in r.stderr
    config = tomllib.loads((old_repo / "aimedres.toml").read_text())
    assert sorted(config["discovery"]["exclude"]) == ["**/legacy/**", *LEGACY]
    assert cli(old_repo, "validate").returncode == 0
    assert '# metrics_file = "parkinsons_report.json"' in (old_repo / "aimedres.toml").read_text()


def test_without_a_config_the_duplicate_error_names_no_missing_file(old_repo: Path) -> None:
    """Regression (issue #27, item 2): the error said `in aimedres.toml` when there was none."""
    r = cli(old_repo, "validate")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3  # one per duplicated id
    assert all("in aimedres.toml" not in line and "(`aimedres-async init` writes one)" in line for line in lines)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def main():\n    pass\n", "no default_jobs() function"),
        ("def default_jobs():\n    return []\n", "holds no TrainingJob(...) call"),
        ("def default_jobs(:\n", "does not parse"),
        ("def default_jobs():\n    return [TrainingJob(name='x', output='o')]\n", "needs a literal script= path"),
    ],
)
def test_init_from_an_unreadable_orchestrator_is_one_line(tmp_path: Path, source: str, expected: str) -> None:
    (tmp_path / "train.py").write_text(source)
    assert expected in usage_error(cli(tmp_path, "init", "--from-orchestrator", "train.py"))
    assert not (tmp_path / "aimedres.toml").exists()
    assert "cannot read" in usage_error(cli(tmp_path, "init", "--from-orchestrator", "nope.py"))


def test_metrics_keys_put_the_chosen_metrics_first(old_repo: Path, marker: str) -> None:
    migrate(old_repo, marker)
    path = old_repo / "aimedres.toml"
    path.write_text(path.read_text().replace("[jobs.parkinsons]\n", '[jobs.parkinsons]\nmetrics_keys = ["cv.*"]\n'))
    r = cli(old_repo, "--only", "parkinsons", "--epochs", "1")
    assert r.returncode == 0, r.stderr
    assert list(summary_jobs(old_repo)["parkinsons"]["metrics"])[:2] == ["cv.accuracy", "cv.f1"]
    assert row(r.stdout, "parkinsons").split()[-5].startswith("cv.accuracy=")


# ---------------------------------------------------------------- stop = "drain", with real signals

DRAIN_JOB = """\
import os, pathlib, signal, sys, time
here = pathlib.Path(sys.argv[1])
(here / "started").write_text(str(os.getpid()))
deadline = time.monotonic() + 60
while not (here / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.02)
(here / "saved").write_text("model")
"""


def start_draining_run(tmp_path: Path, marker: str) -> tuple[subprocess.Popen[str], Path, Path]:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "job.py").write_text(DRAIN_JOB)
    config = (
        '[supervisor]\nstop = "drain"\ngrace_period = "20s"\n[discovery]\nenabled = false\n'
        f'[defaults]\nenv = {{ TEST_MARKER = "{marker}" }}\n'
        f'[jobs.first]\ncommand = ["{PY}", "job.py", "."]\n[jobs.second]\ncommand = ["{PY}", "job.py", "second"]\n'
    )
    (root / "aimedres.toml").write_text(config)
    (root / "second").mkdir()
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:  # the child has its own copy of the descriptor
        proc = subprocess.Popen(
            [PY, "-m", "aimedres_async", "run"], cwd=root, stdout=subprocess.DEVNULL, stderr=stderr, text=True
        )
    wait_for(lambda: (root / "started").exists(), what="the first job to start")
    return proc, root, err


def test_drain_lets_the_running_job_finish_and_save_and_starts_nothing_more(tmp_path: Path, marker: str) -> None:
    """Regression (issue #27, item 6): Ctrl+C cancelled the running jobs; the old tool let them
    finish and save. With stop = "drain" the first signal only stops starting jobs."""
    proc, root, err = start_draining_run(tmp_path, marker)
    proc.send_signal(signal.SIGINT)
    line = wait_for(lambda: next((x for x in err.read_text().splitlines() if "draining" in x), None), what="drain")
    assert "SIGINT: draining: no new job starts; the 1 running job may finish and save (SIGINT again" in line
    (root / "go").write_text("")  # the job carries on after the signal, then saves
    assert proc.wait(timeout=60) == 130
    assert (root / "saved").read_text() == "model"
    jobs = summary_jobs(root)
    assert jobs["first"]["status"] == "succeeded" and jobs["second"]["status"] == "cancelled"
    assert not (root / "second" / "started").exists()
    assert json.loads((root / "logs/latest/summary.json").read_text())["stopped_by"] == "SIGINT"


def test_a_second_signal_cancels_the_draining_jobs(tmp_path: Path, marker: str) -> None:
    proc, root, err = start_draining_run(tmp_path, marker)
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "draining" in err.read_text(), what="drain")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert not (root / "saved").exists()  # stopped with stop_signal before it saved
    jobs = summary_jobs(root)
    assert jobs["first"]["status"] == "cancelled" and jobs["second"]["status"] == "cancelled"


# ---------------------------------------------------------------- no empty folder from a failed job


def test_a_job_that_failed_before_writing_leaves_no_empty_output_folder(tmp_path: Path, marker: str) -> None:
    """Regression (issue #27, item 8): a failed job left an empty results/<id>/ behind."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    head = "import argparse, pathlib, sys\np = argparse.ArgumentParser()\np.add_argument('--output-dir')\na = p.parse_args()\n"
    (root / "train_early.py").write_text(head + "sys.exit('no data')\n")
    (root / "train_late.py").write_text(
        head + "pathlib.Path(a.output_dir, 'partial.txt').write_text('x')\nsys.exit(1)\n"
    )
    (root / "train_fine.py").write_text(head)
    (root / "aimedres.toml").write_text(
        f'[defaults]\nretries = 1\nbackoff = {{ initial = "10ms" }}\nenv = {{ TEST_MARKER = "{marker}" }}\n'
        '[jobs.deep]\nscript = "train_early.py"\noutput_dir = "nested/deeper/deep"\n'
    )
    r = cli(root, "run")
    assert r.returncode == 1, r.stdout
    results = root / "results"
    assert sorted(p.name for p in results.iterdir()) == ["fine", "late"]  # no early/, no nested/
    assert (results / "late" / "partial.txt").exists() and (results / "fine").is_dir()
    assert summary_jobs(root)["early"]["attempts"] == 2  # made again, and removed again, for the retry


def test_report_and_logs_take_the_run_the_same_way(old_repo: Path, marker: str) -> None:
    """Regression (issue #27, item 7): the failure hint printed `logs … --run ID`, while `report
    --run ID` was an unknown option and `report` took the run only positionally."""
    migrate(old_repo, marker)
    (old_repo / "src/medres/training/train_als.py").write_text("raise SystemExit('no data')\n")
    r = cli(old_repo, "--only", "als")
    assert r.returncode == 1
    hint = r.stdout.strip().splitlines()[-1]
    run_id = hint.rsplit(" ", 1)[1]
    assert hint == f"why als failed: aimedres-async logs als --run {run_id}"
    for args in (["logs", "als", "--run", run_id], ["logs", "als", run_id]):
        shown = cli(old_repo, *args)
        assert shown.returncode == 0 and "no data" in shown.stdout, args
    for args in (["report", "--run", run_id], ["report", run_id]):
        made = cli(old_repo, *args)
        assert made.returncode == 0 and (old_repo / "logs" / run_id / "report.html").is_file(), made.stderr
    assert "two runs given" in usage_error(cli(old_repo, "report", run_id, "--run", "other"))


# ---------------------------------------------------------------- the guide, followed literally

GUIDE = FIXTURE.parents[1] / "docs" / "how-to" / "migrating.md"


def guide_walkthrough() -> list[str]:
    """The commands of the guide's walkthrough: its block that runs in examples/old-orchestrator."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_check", FIXTURE.parents[1] / ".ci" / "docs_check.py")
    assert spec is not None and spec.loader is not None
    docs_check = importlib.util.module_from_spec(spec)
    sys.modules["docs_check"] = docs_check  # its dataclasses look their module up there
    spec.loader.exec_module(docs_check)
    commands = docs_check.commands_in(GUIDE, "migrating.md")
    return [c.text for c in commands if c.mode == "in" and c.reason == "examples/old-orchestrator"]


def test_the_guides_walkthrough_does_what_it_says(old_repo: Path, marker: str) -> None:
    """Regression (issue #27, item 7): the guide broke when followed as written. Its walkthrough's
    commands, run as written on a clean copy of the fixture, do what the guide says they do."""
    commands = guide_walkthrough()
    assert commands[0] == "python -m aimedres_async init --from-orchestrator train.py"
    results = []
    for text in commands:
        argv = text.split()
        if argv[:3] == ["python", "-m", "aimedres_async"]:
            results.append(cli(old_repo, *argv[3:]))
        else:
            results.append(subprocess.run(argv, cwd=old_repo, capture_output=True, text=True, timeout=30))
        assert results[-1].returncode == 0, (text, results[-1].stdout, results[-1].stderr)
        if len(results) == 1:  # the config init wrote: the test's marker in every job's environment
            path = old_repo / "aimedres.toml"
            path.write_text(
                path.read_text().replace("retries = 0\n", f'retries = 0\nenv = {{ TEST_MARKER = "{marker}" }}\n')
            )
    text = GUIDE.read_text()
    assert "aimedres.toml: ok (3 jobs: parkinsons, als, diabetes)" in results[1].stdout and results[1].stdout in text
    assert all(line.rstrip() in text for line in results[2].stdout.splitlines())  # `list`, as shown
    assert row(results[4].stdout, "parkinsons").split()[-5] == "dataset.rows=211"
    assert (
        "warnings: 1 (first: Warning: Parkinson's dataset not found, creating a sample dataset)" in results[-1].stdout
    )
    assert len(list((old_repo / "summaries").iterdir())) == 2 and len(list(old_repo.glob("logs/*/report.html"))) == 1
