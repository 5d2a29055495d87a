"""Moving a research repository from the old run_all_training.py / train.py orchestrator (SPEC §14,
issue #13). A fixture repo reproduces each case a migrating user met; every test drives the real
command line (`python -m aimedres_async`) in a subprocess, and jobs are real processes."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import read_jsonl
from helpers_cli import PY, cli, dry_run_commands, usage_error

SECOND_VENV_MODULE = "aimedres_only_in_second_venv"

SCRIPT_HEAD = """\
import argparse, json, os, sys
from pathlib import Path
p = argparse.ArgumentParser()
p.add_argument("--output-dir")
p.add_argument("--epochs", type=int)
a, _ = p.parse_known_args()
"""

SCRIPTS = {
    # the canonical copy and the legacy one the old discovery picked first
    "src/medres/training/train_als.py": "Path(a.output_dir, 'which').write_text('canonical')\n",
    "files/training/train_als.py": "Path(a.output_dir, 'which').write_text('legacy')\n",
    "training/train_als.py": "Path(a.output_dir, 'which').write_text('older')\n",
    # makes its own output dir without parents, then a child of it
    "src/medres/training/train_mkdir.py": (
        "Path(a.output_dir).mkdir(exist_ok=True)\n"
        "os.mkdir(os.path.join(a.output_dir, 'models'))\n"
        "Path(a.output_dir, 'models', 'model.bin').write_text('w')\n"
    ),
    # crashes with a traceback after printing more than 20 lines
    "src/medres/training/train_crash.py": (
        "for i in range(30):\n    print('epoch', i, flush=True)\ndef build():\n    return nn.Linear(3, 1)\nbuild()\n"
    ),
    # writes its metrics to a report file and prints one JSON line
    "src/medres/training/train_report.py": (
        "os.makedirs(os.path.join(a.output_dir, 'metrics'), exist_ok=True)\n"
        "report = {'accuracy': 0.81, 'cv': {'f1': 0.77, 'auc': {'macro': 0.9}}, 'model': 'rf'}\n"
        "Path(a.output_dir, 'metrics', 'training_report.json').write_text(json.dumps(report))\n"
        "print(json.dumps({'accuracy': 0.85, 'epochs': a.epochs}))\n"
    ),
}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def repo(tmp_path: Path, config: str | None = None, marker: str = "") -> Path:
    """A research repo as it was: a .git folder, canonical scripts under src/, older copies."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    for rel, body in SCRIPTS.items():
        write(root / rel, SCRIPT_HEAD + body)
    if config is not None:
        env = f'\n[defaults]\nenv = {{ TEST_MARKER = "{marker}" }}\n' if marker and "[defaults]" not in config else ""
        write(root / "aimedres.toml", config + env)
    return root


RESOLVED = """\
[supervisor]
parallel = false

[discovery]
roots = ["."]

[jobs.als]
script = "src/medres/training/train_als.py"
"""


def job_entry(folder: Path, job: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "logs" / "latest" / "summary.json").read_text())
    return next(j for j in data["jobs"] if j["id"] == job)


def latest_events(folder: Path, name: str) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(folder / "logs" / "latest" / "events.jsonl") if r["event"] == name]


# ---------------------------------------------------------------- 1. duplicates: never the wrong script


@pytest.mark.parametrize("args", [["run"], ["list"], ["validate"], ["run", "--dry-run"], ["--dry-run"]])
def test_duplicate_ids_are_refused_listing_every_path(tmp_path: Path, args: list[str]) -> None:
    """Regression (issue #13, case 1): the first script found per id ran (a legacy copy), `validate`
    said ok. Now every command refuses with one line per id naming every path and how to choose."""
    root = repo(tmp_path)
    write(root / "files/training/train_report.py", SCRIPT_HEAD)  # a second duplicated id
    r = cli(root, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    als = next(line for line in lines if "'als'" in line)
    assert als.startswith("aimedres-async: error: ")
    for path in ("src/medres/training/train_als.py", "files/training/train_als.py", "training/train_als.py"):
        assert path in als
    assert '[jobs.als] script = "src/medres/training/train_als.py"' in als and "exclude glob" in als
    assert any("'report'" in line and "files/training/train_report.py" in line for line in lines)
    assert not (root / "results").exists() and not (root / "logs").exists()  # nothing ran


def test_a_config_naming_the_script_runs_that_one(tmp_path: Path, marker: str) -> None:
    root = repo(tmp_path, RESOLVED, marker)
    r = cli(root, "validate")
    assert r.returncode == 0, r.stderr
    r = cli(root, "run", "--only", "als")
    assert r.returncode == 0, r.stderr
    assert (root / "results" / "als" / "which").read_text() == "canonical"


def test_an_exclude_glob_resolves_duplicates_and_list_shows_every_script_path(tmp_path: Path) -> None:
    root = repo(tmp_path, '[discovery]\nroots = ["."]\nexclude = ["files/**", "training/**"]\n')
    r = cli(root, "list")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()[1:]}
    assert rows == {
        "als": "src/medres/training/train_als.py",
        "mkdir": "src/medres/training/train_mkdir.py",
        "crash": "src/medres/training/train_crash.py",
        "report": "src/medres/training/train_report.py",
    }


@pytest.mark.parametrize(
    "folder",
    [
        "build",
        "dist",
        ".tox/py311",
        ".nox/tests",
        "lib/python3.11/site-packages",
        "node_modules/pkg",
        "myenv",
        ".hidden",
        "venv",
    ],
)
def test_default_discovery_skips_build_output_installed_packages_and_virtual_envs(tmp_path: Path, folder: str) -> None:
    root = repo(tmp_path, RESOLVED)
    write(root / folder / "train_crash.py", SCRIPT_HEAD)  # would be a second `crash`
    if folder == "myenv":
        write(root / folder / "pyvenv.cfg", "home = /usr/bin\n")  # a virtual env, whatever its name
    r = cli(root, "list")
    assert r.returncode == 0, r.stderr
    assert folder not in r.stdout


# ---------------------------------------------------------------- 2. folders exist before a job starts


def test_output_dirs_exist_with_parents_before_the_job_starts(tmp_path: Path, marker: str) -> None:
    """Regression (issue #13, case 2): a script that makes its output dir without parents failed on
    a fresh checkout because results/ did not exist."""
    root = repo(
        tmp_path,
        RESOLVED + '\n[jobs.mkdir]\nscript = "src/medres/training/train_mkdir.py"\n'
        '[jobs.nested]\nscript = "src/medres/training/train_mkdir.py"\noutput_dir = "deep/er/nested"\n',
        marker,
    )
    assert not (root / "results").exists()
    r = cli(root, "run", "--only", "mkdir", "nested", "--base-output-dir", "fresh/results")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert (root / "fresh/results/mkdir/models/model.bin").exists()
    assert (root / "fresh/results/deep/er/nested/models/model.bin").exists()


# ---------------------------------------------------------------- 3. the interpreter is a choice


@pytest.fixture
def second_python(tmp_path: Path) -> Path:
    """A real second venv holding a module the interpreter running the tests does not have."""
    venv = tmp_path / "other-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    write(Path(out.stdout.strip()) / f"{SECOND_VENV_MODULE}.py", "VALUE = 42\n")
    probe = subprocess.run([sys.executable, "-c", f"import {SECOND_VENV_MODULE}"], capture_output=True, timeout=30)
    assert probe.returncode != 0, "the test's own interpreter must not have the module"
    return python


NEEDS_MODULE = (
    SCRIPT_HEAD + f"import {SECOND_VENV_MODULE}\nprint(json.dumps({{'value': {SECOND_VENV_MODULE}.VALUE}}))\n"
)


def test_import_error_names_the_interpreter_and_python_flag_fixes_it(
    tmp_path: Path, marker: str, second_python: Path
) -> None:
    """Regression (issue #13, case 3): every job failed with ModuleNotFoundError, the console said
    only `failed [exit_code]`."""
    root = repo(tmp_path, RESOLVED + '\n[jobs.gpu]\nscript = "src/medres/training/train_gpu.py"\n', marker)
    write(root / "src/medres/training/train_gpu.py", NEEDS_MODULE)
    r = cli(root, "run", "--only", "gpu")
    assert r.returncode == 1
    finished = next(line for line in r.stderr.splitlines() if "job.finished" in line)
    assert "ModuleNotFoundError" in finished and f"it ran with {sys.executable}" in finished
    assert job_entry(root, "gpu")["error"] == f"ModuleNotFoundError: No module named '{SECOND_VENV_MODULE}'"

    r = cli(root, "run", "--only", "gpu", "--python", str(second_python))
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert job_entry(root, "gpu")["metrics"] == {"value": 42}
    assert latest_events(root, "run.started")[0]["interpreter"] == str(second_python)
    assert latest_events(root, "job.started")[0]["interpreter"] == str(second_python)
    assert job_entry(root, "gpu")["command"][0] == str(second_python)


@pytest.mark.parametrize("where", ["supervisor", "job"])
def test_config_chooses_the_interpreter(tmp_path: Path, marker: str, second_python: Path, where: str) -> None:
    rel = second_python.relative_to(tmp_path)  # relative to the config's folder
    table = (f'[supervisor]\npython = "../{rel}"\n' if where == "supervisor" else "") + "[discovery]\nenabled = false\n"
    job = '[jobs.gpu]\nscript = "src/medres/training/train_gpu.py"\n'
    job += f'python = "../{rel}"\n' if where == "job" else ""
    root = repo(tmp_path, table + job, marker)
    write(root / "src/medres/training/train_gpu.py", NEEDS_MODULE)
    r = cli(root, "run")
    assert r.returncode == 0, (r.stdout, r.stderr)
    started = latest_events(root, "job.started")[0]
    assert started["interpreter"] == str(second_python) and started["argv"][0] == str(second_python)


@pytest.mark.parametrize("command", [["validate"], ["list"], ["run", "--dry-run"], ["run"]])
@pytest.mark.parametrize("python", ["missing/bin/python", "./not-executable", "no-such-python3.99"])
def test_a_missing_or_unusable_interpreter_is_a_usage_error(tmp_path: Path, command: list[str], python: str) -> None:
    root = repo(tmp_path, RESOLVED)
    write(root / "not-executable", "#!/bin/sh\n").chmod(0o644)
    r = cli(root, *command, "--python", python)
    line = usage_error(r)
    shown = python if "/" not in python else str((root / python).resolve())  # a bare name is looked up in PATH
    assert f"interpreter {shown} " in line and "als" in line and "--python" in line
    assert not (root / "logs").exists()


def test_an_interpreter_that_only_the_ray_cluster_has_is_not_checked_here(tmp_path: Path) -> None:
    ray = RESOLVED.replace("[supervisor]\n", '[supervisor]\nexecutor = "ray"\npython = "/opt/cluster/bin/python"\n')
    root = repo(tmp_path, ray)
    assert cli(root, "validate").returncode == 0
    assert cli(root, "list").returncode == 0
    local = repo(
        tmp_path / "local", RESOLVED.replace("[supervisor]\n", '[supervisor]\npython = "/opt/cluster/bin/python"\n')
    )
    assert "/opt/cluster/bin/python" in usage_error(cli(local, "validate"))


# ---------------------------------------------------------------- 4. config found like git finds .git


def test_config_is_found_from_a_subfolder_and_named_first(tmp_path: Path, marker: str) -> None:
    """Regression (issue #13, case 4): run from a subfolder, built-in defaults were used silently."""
    root = repo(tmp_path, RESOLVED, marker)
    sub = root / "src" / "medres"
    r = cli(sub, "run", "--only", "als")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == f"config: {root / 'aimedres.toml'} (found in a parent folder)"
    assert (root / "results/als/which").read_text() == "canonical"  # paths relative to the config's folder
    assert (root / "logs" / "latest" / "summary.json").exists() and not (sub / "logs").exists()


def test_lookup_stops_at_the_repository_root_and_says_defaults_are_used(tmp_path: Path) -> None:
    root = repo(tmp_path)
    write(tmp_path / "aimedres.toml", "[supervisor\n")  # above the repository: never read
    sub = root / "src" / "medres"
    write(sub / "train_here.py", SCRIPT_HEAD)
    r = cli(sub, "list")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == (
        f"config: no aimedres.toml in {sub} and its parents up to {root}; using built-in defaults"
    )
    (root / "docs").mkdir()
    r = cli(root / "docs", "run")  # nothing to run: the one error line says why
    assert "using built-in defaults" in usage_error(r)


# ---------------------------------------------------------------- 5. why it failed, where a person looks


def test_a_crash_shows_its_last_stderr_line_everywhere_and_the_logs_command(tmp_path: Path, marker: str) -> None:
    """Regression (issue #13, case 5): `error: null` in summary.json for a traceback; nothing said
    `logs` existed."""
    root = repo(tmp_path, RESOLVED + '\n[jobs.crash]\nscript = "src/medres/training/train_crash.py"\n', marker)
    step = tmp_path / "step.md"
    r = cli(root, "run", "--only", "crash", "--junit-xml", "junit.xml", env={"GITHUB_STEP_SUMMARY": str(step)})
    assert r.returncode == 1
    error = "NameError: name 'nn' is not defined"
    finished = next(line for line in r.stderr.splitlines() if "job.finished" in line)
    assert error in finished
    row = next(line for line in r.stdout.splitlines() if line.startswith("crash "))
    assert f"error: {error}" in row
    entry = job_entry(root, "crash")
    assert entry["error"] == error
    tail = entry["error_tail"]
    assert len(tail) == 20 and tail[-1] == error and "Traceback (most recent call last):" in tail
    start = tail.index("Traceback (most recent call last):")
    assert tail[:start] == [f"epoch {i}" for i in range(30 - start, 30)]  # stdout and stderr, in order
    run_id = entry["log"].split("/")[-3]
    hint = r.stdout.strip().splitlines()[-1]
    assert hint == f"why crash failed: aimedres-async logs crash --run {run_id}"
    command = shlex.split(hint.split(": ", 1)[1])
    shown = subprocess.run(
        [PY, "-m", "aimedres_async", *command[1:]], cwd=root, capture_output=True, text=True, timeout=30
    )
    assert shown.returncode == 0 and error in shown.stdout and "epoch 29" in shown.stdout
    assert "| crash | failed (exit_code) | 1 | " in step.read_text() and f"error: {error} |" in step.read_text()
    junit = (root / "junit.xml").read_text()
    assert 'message="status=failed attempts=1 exit_code=1 failure=exit_code"' in junit  # as before
    assert "error:" not in junit


def test_the_logs_hint_names_the_config_given_on_the_command_line(tmp_path: Path, marker: str) -> None:
    root = repo(tmp_path, RESOLVED + '\n[jobs.crash]\nscript = "src/medres/training/train_crash.py"\n', marker)
    (root / "aimedres.toml").rename(root / "other.toml")
    r = cli(root, "--config", "other.toml", "run", "--only", "crash")
    assert r.returncode == 1
    hint = r.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"why crash failed: aimedres-async --config other\.toml logs crash --run \S+", hint), hint


def test_a_succeeding_run_has_no_hint(tmp_path: Path, marker: str) -> None:
    root = repo(tmp_path, RESOLVED, marker)
    r = cli(root, "run", "--only", "als")
    assert r.returncode == 0 and "why" not in r.stdout
    assert job_entry(root, "als")["error"] is None and job_entry(root, "als")["error_tail"] == []


# ---------------------------------------------------------------- 6. metrics from report files


REPORT_JOB = '\n[jobs.report]\nscript = "src/medres/training/train_report.py"\n'


@pytest.mark.parametrize("where", ["defaults", "job", "glob"])
def test_metrics_file_becomes_final_metrics_under_the_printed_line(tmp_path: Path, marker: str, where: str) -> None:
    """Regression (issue #13, case 6): final metrics were empty for scripts that write a report file."""
    pattern = "metrics/*.json" if where == "glob" else "metrics/training_report.json"
    setting = f'metrics_file = "{pattern}"\n'
    config = RESOLVED + (
        f'\n[defaults]\n{setting}env = {{ TEST_MARKER = "{marker}" }}\n' if where == "defaults" else ""
    )
    config += REPORT_JOB + (setting if where != "defaults" else "")
    root = repo(tmp_path, config, marker)
    r = cli(root, "run", "--only", "report", "--epochs", "4")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert job_entry(root, "report")["metrics"] == {
        "accuracy": 0.85,
        "epochs": 4,  # printed: wins
        "cv.f1": 0.77,
        "cv.auc.macro": 0.9,  # from the file, flattened; its string "model" is no measurement (issue #27)
    }
    row = next(line for line in r.stdout.splitlines() if line.startswith("report "))
    assert "accuracy=0.85" in row and "cv.f1=0.77" in row and "cv.auc.macro=0.9" in row
    assert latest_events(root, "job.finished")[0]["metrics"]["cv.f1"] == 0.77


@pytest.mark.parametrize("content", [None, "{not json", "[1, 2]"])
def test_a_missing_or_invalid_metrics_file_is_a_warning(tmp_path: Path, marker: str, content: str | None) -> None:
    root = repo(
        tmp_path,
        RESOLVED + '\n[jobs.plain]\nscript = "src/medres/training/train_plain.py"\nmetrics_file = "report.json"\n',
        marker,
    )
    body = "print(json.dumps({'loss': 0.5}))\n"
    if content is not None:
        body += f"Path(a.output_dir, 'report.json').write_text({content!r})\n"
    write(root / "src/medres/training/train_plain.py", SCRIPT_HEAD + body)
    r = cli(root, "run", "--only", "plain")
    assert r.returncode == 0, (r.stdout, r.stderr)
    warning = next(line for line in r.stderr.splitlines() if line.startswith("warning: plain: metrics_file"))
    assert "report.json" in warning
    entry = job_entry(root, "plain")
    assert entry["status"] == "succeeded" and entry["metrics"] == {"loss": 0.5}


# ---------------------------------------------------------------- 7. the old command lines


def test_every_old_flag_is_accepted(tmp_path: Path) -> None:
    """The full old command line: every flag of run_all_training.py --help."""
    root = repo(tmp_path, RESOLVED)
    r = cli(
        root,
        "--epochs",
        "80",
        "--folds",
        "5",
        "--sample",
        "100",
        "--batch",
        "64",
        "--only",
        "als",
        "--exclude",
        "crash",
        "--dry-run",
        "--parallel",
        "--max-workers",
        "4",
        "--retries",
        "1",
        "--extra-arg=--seed=3",
        "--extra-arg=--lr",
        "--extra-arg",
        "0.1",
        "--base-output-dir",
        "out",
        "--logs-dir",
        "oldlogs",
        "--summary-dir",
        "sums",
        "--verbose",
        "--allow-partial-success",
        "--discover-root",
        ".",
        "--include-pattern",
        "fit_*.py",
        "--exclude-regex",
        "^(files|training)/",
        "--discovery-limit",
        "50",
        "--allow-discovery-overrides",
        "--no-default-jobs",
        "--mark-discovered-optional",
        "--strict-discovery",
    )
    assert r.returncode == 0, r.stderr
    assert dry_run_commands(r.stdout) == {
        "als": [
            PY,
            "src/medres/training/train_als.py",
            "--output-dir",
            str(root / "out" / "als"),
            "--epochs",
            "80",
            "--seed=3",
            "--lr",
            "0.1",
        ],
    }


def test_an_empty_only_or_exclude_selects_every_job_as_before(tmp_path: Path) -> None:
    """A CI workflow passes `--only $INPUT` with the input left blank: the old tool ran every job."""
    root = repo(tmp_path, RESOLVED)
    r = cli(root, "--dry-run", "--only", "--exclude", "--epochs", "2")
    assert r.returncode == 0, r.stderr
    assert set(dry_run_commands(r.stdout)) == {"als", "crash", "mkdir", "report"}


def test_the_old_yaml_config_flag_names_its_replacement(tmp_path: Path) -> None:
    root = repo(tmp_path, RESOLVED)
    write(root / "jobs.yaml", "jobs: []\n")
    line = usage_error(cli(root, "--config", "jobs.yaml", "--list"))
    assert "init --from-yaml jobs.yaml" in line


def test_summary_dir_writes_the_old_file_name_with_this_runs_summary(tmp_path: Path, marker: str) -> None:
    """Regression (issue #13, case 8): CI workflows upload summaries/training_summary_<timestamp>.json."""
    root = repo(tmp_path, RESOLVED, marker)
    r = cli(root, "--only", "als", "--summary-dir", "summaries")
    assert r.returncode == 0, r.stderr
    files = list((root / "summaries").iterdir())
    assert len(files) == 1 and re.fullmatch(r"training_summary_\d{8}_\d{6}\.json", files[0].name)
    old = json.loads(files[0].read_text())
    ours = json.loads((root / "logs/latest/summary.json").read_text())
    # the old orchestrator's format (issue #27, item 5); summary.json keeps its own
    assert old["pipeline"] == "AiMedRes Medical AI Training" and old["run"] == ours["run"]
    assert (old["start_time_utc"], old["end_time_utc"]) == (ours["started_at"], ours["finished_at"])
    assert old["duration_sec"] == ours["duration_s"] and old["working_directory"] == str(root)
    assert [(j["id"], j["status"], j["attempts"]) for j in old["jobs"]] == [("als", "SUCCESS", 1)]
    assert old["jobs"][0]["command"] == ours["jobs"][0]["command"] and old["jobs"][0]["use_output_dir"] is True
    assert ours["jobs"][0]["status"] == "succeeded"
    assert f"summary: summaries/{files[0].name}" in r.stdout


def test_summary_dir_in_the_config_keeps_writing_summaries_from_any_folder(tmp_path: Path, marker: str) -> None:
    """A workflow that uploads summaries/ without passing --summary-dir (the old tool's default)."""
    root = repo(tmp_path, RESOLVED.replace("[supervisor]\n", '[supervisor]\nsummary_dir = "summaries"\n'), marker)
    r = cli(root / "src", "--only", "als")
    assert r.returncode == 0, r.stderr
    files = list((root / "summaries").iterdir())
    assert len(files) == 1 and files[0].name.startswith("training_summary_")
    assert json.loads(files[0].read_text())["jobs"][0]["status"] == "SUCCESS"


def test_a_ci_step_filtering_on_failed_finds_the_failed_job(tmp_path: Path, marker: str) -> None:
    """Regression (issue #27, item 5): `status == "FAILED"` found nothing in the old file name."""
    root = repo(tmp_path, RESOLVED + '\n[jobs.crash]\nscript = "src/medres/training/train_crash.py"\n', marker)
    r = cli(root, "--only", "als", "crash", "--summary-dir", "summaries")
    assert r.returncode == 1
    data = json.loads(next((root / "summaries").iterdir()).read_text())
    failed = [j for j in data["jobs"] if j["status"] == "FAILED"]
    assert [j["id"] for j in failed] == ["crash"] and failed[0]["error"] == "NameError: name 'nn' is not defined"


def test_include_pattern_exclude_regex_and_discovery_limit(tmp_path: Path) -> None:
    root = repo(tmp_path, '[discovery]\nroots = ["."]\n')
    write(root / "src/medres/training/fit_boost.py", SCRIPT_HEAD)
    r = cli(root, "list", "--include-pattern", "fit_*.py", "--exclude-regex", "^(files|training)/")
    assert r.returncode == 0, r.stderr
    assert [line.split()[0] for line in r.stdout.splitlines()[1:]] == ["fit_boost", "als", "crash", "mkdir", "report"]
    r = cli(root, "list", "--exclude-regex", "^(files|training)/", "--discovery-limit", "2")
    assert r.returncode == 0, r.stderr
    assert [line.split()[0] for line in r.stdout.splitlines()[1:]] == ["als", "crash"]
    assert "--exclude-regex" in usage_error(cli(root, "list", "--exclude-regex", "(unclosed"))


def test_allow_discovery_overrides_and_mark_discovered_optional(tmp_path: Path) -> None:
    root = repo(tmp_path, '[discovery]\nroots = ["src"]\n[jobs.crash]\ncommand = ["true"]\n')
    plain = dry_run_commands(cli(root, "--dry-run", "--only", "crash").stdout)
    assert plain == {"crash": ["true"]}
    over = dry_run_commands(cli(root, "--dry-run", "--only", "crash", "--allow-discovery-overrides").stdout)
    assert over["crash"][1] == "src/medres/training/train_crash.py"
    r = cli(root, "list", "--mark-discovered-optional")
    optional = {line.split()[0]: line.split()[-1] for line in r.stdout.splitlines()[1:]}
    assert optional == {"crash": "no", "als": "yes", "mkdir": "yes", "report": "yes"}


def test_strict_discovery_exits_3_on_a_discovery_problem(tmp_path: Path) -> None:
    root = repo(tmp_path, '[discovery]\nroots = ["src"]\n')
    assert cli(root, "--list", "--strict-discovery").returncode == 0
    write(root / "src/medres/training/train_broken.py", "def f(:\n")
    r = cli(root, "--list", "--strict-discovery")
    assert r.returncode == 3 and "train_broken.py" in r.stderr and "--strict-discovery" in r.stderr
    assert cli(root, "--list").returncode == 0  # without the flag, a warning
    r = cli(root, "--dry-run", "--strict-discovery", "--discover-root", "nowhere")
    assert r.returncode == 3 and "nowhere" in r.stderr


@pytest.mark.parametrize("given", ["ALS", "train_als", "Train_ALS.py"])
def test_old_ids_and_any_case_select_jobs_with_one_note(tmp_path: Path, given: str) -> None:
    root = repo(tmp_path, RESOLVED)
    r = cli(root, "--dry-run", "--only", given, "CRASH", "--exclude", "train_mkdir")
    assert r.returncode == 0, r.stderr
    assert set(dry_run_commands(r.stdout)) == {"als", "crash"}
    notes = [line for line in r.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1
    assert f"{given} -> als" in notes[0] and "CRASH -> crash" in notes[0] and "train_mkdir -> mkdir" in notes[0]
    assert "TRAIN_NOPE" in usage_error(cli(root, "--dry-run", "--only", "TRAIN_NOPE"))


# ---------------------------------------------------------------- the old YAML job list

OLD_YAML = """\
jobs:
  - name: "ALS (Amyotrophic Lateral Sclerosis)"
    id: als
    script: src/medres/training/train_als.py
    output: als_comprehensive_results
    args:
      dataset-choice: als-progression
      epochs: 80
      use_gpu: true
      debug: false
  - name: "Alzheimer's Disease"
    script: files/training/train_als.py
    output: alzheimer_comprehensive_results
    optional: true
    supports_folds: false
"""


def test_init_from_yaml_writes_an_equivalent_commented_config(tmp_path: Path, marker: str) -> None:
    root = repo(tmp_path)
    write(root / "jobs.yaml", OLD_YAML)
    r = cli(root, "init", "--from-yaml", "jobs.yaml")
    assert r.returncode == 0, r.stderr
    text = (root / "aimedres.toml").read_text()
    data = tomllib.loads(text)
    assert data["jobs"]["als"] == {
        "script": "src/medres/training/train_als.py",
        "output_dir": "als_comprehensive_results",
        "epochs": 80,
        "args": ["--dataset-choice", "als-progression", "--use-gpu"],
    }
    assert data["jobs"]["alzheimers_disease"] == {
        "script": "files/training/train_als.py",
        "output_dir": "alzheimer_comprehensive_results",
        "optional": True,
    }
    assert data["supervisor"]["parallel"] is False and data["supervisor"]["summary_dir"] == "summaries"
    assert "# ALS (Amyotrophic Lateral Sclerosis)" in text and "# supports_folds: false" in text
    assert cli(root, "validate").returncode == 0
    # the converted config runs the scripts the YAML named, into the output dirs it named
    commands = dry_run_commands(cli(root, "--dry-run", "--only", "als", "alzheimers_disease").stdout)
    assert commands["als"] == [
        PY,
        "src/medres/training/train_als.py",
        "--output-dir",
        str(root / "results" / "als_comprehensive_results"),
        "--epochs",
        "80",
        "--dataset-choice",
        "als-progression",
        "--use-gpu",
    ]
    assert commands["alzheimers_disease"][1] == "files/training/train_als.py"
    assert usage_error(cli(root, "init", "--from-yaml", "jobs.yaml")).endswith("not overwriting it")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jobs: [\n", "jobs.yaml:2:1: not valid YAML"),
        ("jobs: 3\n", "expected `jobs:` holding a list"),
        ("jobs:\n  - name: x\n", "jobs[1]: needs `script"),
    ],
)
def test_init_from_bad_yaml_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path / "jobs.yaml", text)
    assert expected in usage_error(cli(tmp_path, "init", "--from-yaml", "jobs.yaml"))
    assert not (tmp_path / "aimedres.toml").exists()


def test_init_from_yaml_without_pyyaml_is_one_line(tmp_path: Path) -> None:
    write(tmp_path / "jobs.yaml", OLD_YAML)
    code = (
        "import sys; sys.modules['yaml'] = None\n"  # as if PyYAML were not installed
        "from aimedres_async.cli.app import main\nsys.exit(main(['init', '--from-yaml', 'jobs.yaml']))\n"
    )
    r = subprocess.run([PY, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    line = usage_error(r)
    assert "PyYAML" in line and "aimedres-async[yaml]" in line


# ---------------------------------------------------------------- the live display on a terminal


def run_on_pty(folder: Path, *args: str, columns: int = 250) -> tuple[int, str]:
    """The CLI on a real pseudo-terminal (the live display is on); returns (exit code, what it wrote)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(
        [PY, "-m", "aimedres_async", *args],
        cwd=folder,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    out = b""
    while True:
        try:
            data = os.read(leader, 1 << 16)
        except OSError:  # EIO: the other side is closed
            break
        if not data:
            break
        out += data
    os.close(leader)
    return proc.wait(timeout=60), out.decode("utf-8", "replace")


def test_the_live_display_shows_why_a_job_failed_and_which_python_ran_it(tmp_path: Path, marker: str) -> None:
    root = repo(
        tmp_path,
        RESOLVED + '\n[jobs.crash]\nscript = "src/medres/training/train_crash.py"\n'
        '[jobs.gpu]\nscript = "src/medres/training/train_gpu.py"\n',
        marker,
    )
    write(root / "src/medres/training/train_gpu.py", NEEDS_MODULE)
    code, raw = run_on_pty(root, "run", "--only", "crash", "gpu")
    assert code == 1, raw
    assert "\x1b[?25l" in raw  # the live display hid the cursor: it was on
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    lines = text.splitlines()

    def finished(job: str) -> str:
        """The job's finished line with the lines it wrapped onto (the display wraps between words)."""
        i = next(n for n, line in enumerate(lines) if "failed" in line and f"{job} (attempts" in line)
        return " ".join(line.strip() for line in lines[i : i + 4])

    assert "NameError: name 'nn' is not defined" in finished("crash")
    gpu = finished("gpu")
    assert f"No module named '{SECOND_VENV_MODULE}'" in gpu and f"it ran with {sys.executable}" in gpu
    assert "why crash failed: aimedres-async logs crash --run " in text
