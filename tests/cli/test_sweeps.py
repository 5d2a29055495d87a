"""Sweeps run for real (SPEC §18): a matrix and seeds become jobs whose parameters reach the
script's argv, job.started, summary.json (checked against its schema) and JUnit; the errors
(an undeclared option, max_jobs) are one line and exit 2; --matrix, --seeds, --only and --resume."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import events, read_jsonl, run_dir, summary, write_config
from helpers_cli import cli, dry_run_commands, usage_error
from helpers_schema import check_run_folder

# Prints its options as its final metrics; fails while a file fail-<lr> exists (to test --resume).
SCRIPT = """\
import argparse, json, os, sys
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, required=True)
p.add_argument("--model", default="none")
p.add_argument("--seed", type=int, default=-1)
p.add_argument("--output-dir")
p.add_argument("--fast", action="store_true")
a = p.parse_args()
if os.path.exists(f"fail-{a.lr}"):
    sys.exit(f"told to fail at lr={a.lr}")
print(json.dumps({"lr": a.lr, "model": a.model, "seed": a.seed, "fast": a.fast, "out": a.output_dir}))
"""


def project(tmp_path: Path, job: str, supervisor: str = "") -> Path:
    (tmp_path / "train.py").write_text(SCRIPT)
    write_config(
        tmp_path,
        f"[supervisor]\nparallel = true\nmax_workers = 4\n{supervisor}\n[discovery]\nenabled = false\n"
        f'[jobs.t]\nscript = "train.py"\n{job}\n',
    )
    return tmp_path


SWEEP = 'matrix = { lr = [0.1, 0.5], model = ["mlp", "sgd"] }\nmatrix_exclude = [{ lr = 0.5, model = "sgd" }]\nseeds = [0, 1]'
IDS = [
    "t[lr=0.1,model=mlp,seed=0]",
    "t[lr=0.1,model=mlp,seed=1]",
    "t[lr=0.1,model=sgd,seed=0]",
    "t[lr=0.1,model=sgd,seed=1]",
    "t[lr=0.5,model=mlp,seed=0]",
    "t[lr=0.5,model=mlp,seed=1]",
]


def test_a_sweep_runs_every_combination_with_its_parameters(tmp_path: Path) -> None:
    folder = project(tmp_path, SWEEP)
    r = cli(folder, "run", "--junit-xml", "junit.xml")
    assert r.returncode == 0, r.stderr
    data = summary(folder)
    assert [j["id"] for j in data["jobs"]] == IDS
    for job in data["jobs"]:
        params = job["params"]
        assert list(params) == ["lr", "model", "seed"]
        assert isinstance(params["lr"], float) and isinstance(params["seed"], int)
        # what the script parsed from its argv is what the id and params say
        assert {k: job["metrics"][k] for k in params} == params
        assert job["command"][-6:] == [
            "--lr",
            str(params["lr"]),
            "--model",
            params["model"],
            "--seed",
            str(params["seed"]),
        ]
        stem = job["id"].replace("[", "@").removesuffix("]")
        assert Path(job["log"]) == run_dir(folder) / "jobs" / f"{stem}.jsonl"
        assert Path(job["log"]).is_file()
        assert job["output_dir"] == str(folder / "results" / stem) == job["metrics"]["out"]
        assert Path(job["output_dir"]).is_dir()
    started = {e["job"]: e["params"] for e in events(folder) if e["event"] == "job.started"}
    assert started == {j["id"]: j["params"] for j in data["jobs"]}
    check_run_folder(folder)  # job.started and summary.json against their schemas
    cases = ET.parse(folder / "junit.xml").getroot().iter("testcase")
    props = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")} for c in cases}
    assert props["t[lr=0.5,model=mlp,seed=1]"] == {"lr": "0.5", "model": "mlp", "seed": "1"}
    assert len(props) == 6


def test_a_job_without_a_sweep_has_no_params(tmp_path: Path) -> None:
    folder = project(tmp_path, 'args = ["--lr", "1"]')
    r = cli(folder, "run", "--junit-xml", "junit.xml")
    assert r.returncode == 0, r.stderr
    job = summary(folder)["jobs"][0]
    assert job["id"] == "t" and "params" not in job
    assert all("params" not in e for e in events(folder))
    assert "<properties" not in (folder / "junit.xml").read_text()


def test_booleans_and_includes_reach_the_script(tmp_path: Path) -> None:
    folder = project(
        tmp_path, "matrix = { lr = [1.0] }\nmatrix_include = [{ fast = true }, { lr = 2.0, fast = false }]"
    )
    assert cli(folder, "run").returncode == 0
    jobs = {j["id"]: j["metrics"]["fast"] for j in summary(folder)["jobs"]}
    assert jobs == {"t[lr=1.0,fast=true]": True, "t[lr=2.0,fast=false]": False}


def test_an_undeclared_option_is_exit_2_naming_the_job_and_the_option(tmp_path: Path) -> None:
    folder = project(tmp_path, "matrix = { lr = [0.1], wd = [0.01] }")
    for command in (["run"], ["validate"], ["run", "--dry-run"]):
        line = usage_error(cli(folder, *command))
        assert "job t:" in line and "--wd" in line, line
    assert not (folder / "logs").exists()


def test_max_jobs_needs_yes(tmp_path: Path) -> None:
    folder = project(tmp_path, "matrix = { lr = [1, 2, 3] }", supervisor="max_jobs = 2")
    line = usage_error(cli(folder, "run"))
    assert "3 jobs, more than max_jobs = 2" in line and "--yes" in line
    usage_error(cli(folder, "run", "--dry-run"))
    assert not (folder / "logs").exists()
    assert cli(folder, "list").returncode == 0  # a listing shows what it would run
    checked = cli(folder, "validate")
    assert checked.returncode == 0, checked.stderr
    assert "more than max_jobs = 2" in checked.stderr and "`run` needs --yes" in checked.stderr
    r = cli(folder, "run", "--yes")
    assert r.returncode == 0, r.stderr
    assert len(summary(folder)["jobs"]) == 3


def test_matrix_and_seeds_from_the_command_line(tmp_path: Path) -> None:
    folder = project(tmp_path, 'matrix = { lr = [0.1, 0.5], model = ["mlp"] }\nrepeat = 3')
    r = cli(folder, "run", "--dry-run", "--matrix", "lr=0.2", "--matrix", "model=a,b", "--seeds", "4,6-7")
    assert r.returncode == 0, r.stderr
    ids = list(dry_run_commands(r.stdout))
    assert ids == [f"t[lr=0.2,model={m},seed={s}]" for m in "ab" for s in (4, 6, 7)]
    r = cli(folder, "run", "--matrix", "lr=0.3", "--seeds", "0-1")
    assert r.returncode == 0, r.stderr
    assert [j["metrics"]["seed"] for j in summary(folder)["jobs"]] == [0, 1]
    line = usage_error(cli(folder, "run", "--matrix", "lr"))
    assert "--matrix" in line and "KEY=V1,V2" in line
    line = usage_error(cli(folder, "run", "--seeds", "2-1"))
    assert "--seeds" in line


def test_only_takes_the_base_id_or_a_full_id(tmp_path: Path) -> None:
    folder = project(tmp_path, SWEEP)
    r = cli(folder, "run", "--only", "t[lr=0.5,model=mlp,seed=1]", "t[lr=0.1,model=sgd,seed=0]")
    assert r.returncode == 0, r.stderr
    assert [j["id"] for j in summary(folder)["jobs"]] == ["t[lr=0.1,model=sgd,seed=0]", "t[lr=0.5,model=mlp,seed=1]"]
    r = cli(folder, "run", "--dry-run", "--only", "t", "--exclude", "t[lr=0.1,model=mlp,seed=0]")
    assert list(dry_run_commands(r.stdout)) == IDS[1:]
    line = usage_error(cli(folder, "run", "--only", "t[lr=9,model=mlp,seed=0]"))
    assert "no such combination: t[lr=9,model=mlp,seed=0]" in line


def test_list_and_dry_run_show_the_expansion(tmp_path: Path) -> None:
    folder = project(tmp_path, SWEEP)
    listed = cli(folder, "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert rows == IDS
    commands = dry_run_commands(cli(folder, "run", "--dry-run").stdout)
    assert commands["t[lr=0.5,model=mlp,seed=1]"][-6:] == ["--lr", "0.5", "--model", "mlp", "--seed", "1"]


def test_resume_skips_the_combinations_that_succeeded(tmp_path: Path) -> None:
    folder = project(tmp_path, "matrix = { lr = [0.1, 0.5] }\nseeds = [0, 1]")
    (folder / "fail-0.5").write_text("")
    first = cli(folder, "run")
    assert first.returncode == 1
    statuses = {j["id"]: j["status"] for j in summary(folder)["jobs"]}
    assert statuses == {
        "t[lr=0.1,seed=0]": "succeeded",
        "t[lr=0.1,seed=1]": "succeeded",
        "t[lr=0.5,seed=0]": "failed",
        "t[lr=0.5,seed=1]": "failed",
    }
    (folder / "fail-0.5").unlink()
    second = cli(folder, "run", "--resume")
    assert second.returncode == 0, second.stderr
    statuses = {j["id"]: j["status"] for j in summary(folder)["jobs"]}
    assert statuses == {
        "t[lr=0.1,seed=0]": "skipped",
        "t[lr=0.1,seed=1]": "skipped",
        "t[lr=0.5,seed=0]": "succeeded",
        "t[lr=0.5,seed=1]": "succeeded",
    }
    started = [e["job"] for e in events(folder) if e["event"] == "job.started"]
    assert sorted(started) == ["t[lr=0.5,seed=0]", "t[lr=0.5,seed=1]"]


def test_logs_of_a_swept_job(tmp_path: Path) -> None:
    folder = project(tmp_path, "matrix = { lr = [0.1] }\nseeds = [3]")
    assert cli(folder, "run").returncode == 0
    r = cli(folder, "logs", "t[lr=0.1,seed=3]")
    assert r.returncode == 0, r.stderr
    assert '"seed": 3' in r.stdout or '"seed":3' in r.stdout
    log = run_dir(folder) / "jobs" / "t@lr=0.1,seed=3.jsonl"
    assert any(json.dumps(rec).find('"seed": 3') >= 0 for rec in read_jsonl(log))


def test_the_example_sweep(tmp_path: Path) -> None:
    """examples/sweep.toml: two parameters and three seeds of a bundled script, its options
    declared (validate passes), small epochs and folds; the default config stays unswept."""
    repo = Path(__file__).resolve().parents[2]
    r = cli(tmp_path, "--config", str(repo / "examples" / "sweep.toml"), "run", "--dry-run")
    assert r.returncode == 0, r.stderr
    commands = dry_run_commands(r.stdout)
    assert len(commands) == 12
    argv = commands["breast_cancer[batch_size=64,epochs=4,seed=2]"]
    assert argv[1] == "training/train_breast_cancer.py"
    assert argv[argv.index("--batch-size") + 1] == "64" and argv[argv.index("--seed") + 1] == "2"
    assert argv.count("--epochs") == 1 and argv[argv.index("--epochs") + 1] == "4"
    assert argv[argv.index("--folds") + 1] == "2"
    checked = cli(tmp_path, "--config", str(repo / "examples" / "sweep.toml"), "validate")
    assert checked.returncode == 0, checked.stderr
    assert "ok (12 jobs: breast_cancer (12 combinations))" in checked.stdout
    default = cli(repo, "list")
    assert default.returncode == 0 and "[" not in default.stdout
