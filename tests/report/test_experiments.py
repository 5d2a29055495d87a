"""`leaderboard` and `compare` (SPEC §18) on real runs of the real CLI: run ids, run folders and
summary.json files (also one moved to another folder, and one of log schema 1), runs merged, sort
keys, CSV, JSON checked against the shipped schemas, --fail-if gates and --exact, and every error
as one line with exit 2.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import termios
from pathlib import Path
from typing import Any

import pytest
from conftest import PY, run_dir, write_config
from helpers_cli import cli, usage_error

from aimedres_async.records.schema import load

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed (pip install -e '.[test]')")

# each job prints the metrics in metrics/<job>.json of the project (a test edits them between runs)
PRINT = "import json, sys; print(json.dumps(json.load(open('metrics/' + sys.argv[1] + '.json'))))"
FAIL = "import sys; print('boom', file=sys.stderr); sys.exit(3)"


def project(folder: Path, metrics: dict[str, dict[str, Any] | None], marker: str) -> None:
    """A config with one job per entry of `metrics` (None: the job fails) and their metric files."""
    (folder / "metrics").mkdir(exist_ok=True)
    jobs = ""
    for name, values in metrics.items():
        if values is None:
            jobs += f"[jobs.{name}]\ncommand = {json.dumps([PY, '-c', FAIL])}\noptional = true\n"
        else:
            (folder / "metrics" / f"{name}.json").write_text(json.dumps(values))
            jobs += f"[jobs.{name}]\ncommand = {json.dumps([PY, '-c', PRINT, name])}\n"
    write_config(
        folder,
        f"[supervisor]\nparallel = true\nmax_workers = 2\n[discovery]\nenabled = false\n[defaults]\nretries = 0\n"
        f'env = {{ TEST_MARKER = "{marker}" }}\n{jobs}',
    )


def run(folder: Path) -> str:
    r = cli(folder, "run", "--no-progress", timeout=60)
    assert r.returncode == 0, r.stderr
    return run_dir(folder).name


def validate(data: Any, schema: str) -> None:
    s = load(schema)
    jsonschema.validators.validator_for(s).check_schema(s)
    errors = list(jsonschema.validators.validator_for(s)(s).iter_errors(data))
    assert not errors, errors[0].message


@pytest.fixture
def two_runs(tmp_path: Path, marker: str) -> tuple[Path, str, str]:
    """Run A, then run B with cnn worse by 0.05, mlp better, and `gone` replaced by `fresh`."""
    project(tmp_path, {"cnn": {"accuracy": 0.9, "loss": 0.2}, "mlp": {"accuracy": 0.8, "loss": 0.4}}, marker)
    a = run(tmp_path)
    project(tmp_path, {"cnn": {"accuracy": 0.85, "loss": 0.25}, "mlp": {"accuracy": 0.82, "loss": 0.35}}, marker)
    b = run(tmp_path)
    assert a != b
    return tmp_path, a, b


# ---------------------------------------------------------------- leaderboard


def test_leaderboard_of_the_latest_run_ranks_by_the_first_metric(tmp_path: Path, marker: str) -> None:
    project(
        tmp_path, {"mlp": {"accuracy": 0.8, "loss": 0.4}, "cnn": {"accuracy": 0.9, "loss": 0.2}, "bad": None}, marker
    )
    run_id = run(tmp_path)
    r = cli(tmp_path, "leaderboard")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"run {run_id}; ranked by accuracy:desc"
    assert lines[1].split() == ["RANK", "JOB", "N", "accuracy", "loss"]
    assert lines[2].split() == ["1", "cnn", "1", "0.9", "±", "—", "0.2", "±", "—"]
    assert lines[3].split() == ["2", "mlp", "1", "0.8", "±", "—", "0.4", "±", "—"]
    assert lines[4].split() == ["—", "bad", "0/1", "—", "—"]  # no success: unranked, last
    by_loss = cli(tmp_path, "leaderboard", "--sort", "loss:desc").stdout.splitlines()
    assert [line.split()[1] for line in by_loss[2:]] == ["mlp", "cnn", "bad"]


def test_a_run_is_named_by_id_folder_or_summary_file(two_runs: tuple[Path, str, str]) -> None:
    folder, a, _b = two_runs
    outputs = set()
    for arg in (a, str(folder / "logs" / a), str(folder / "logs" / a / "summary.json")):
        r = cli(folder, "leaderboard", arg)
        assert r.returncode == 0, r.stderr
        outputs.add(r.stdout)
    (text,) = outputs
    assert text.splitlines()[2].split()[:4] == ["1", "cnn", "1", "0.9"]


def test_several_runs_merge_into_mean_and_std_with_their_runs(two_runs: tuple[Path, str, str]) -> None:
    folder, a, b = two_runs
    r = cli(folder, "leaderboard", a, b, a)  # a run named twice counts once
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"runs {a}, {b}; ranked by accuracy:desc"
    assert lines[1].split() == ["RANK", "JOB", "N", "RUNS", "accuracy", "loss"]
    assert lines[2].split() == ["1", "cnn", "2", "2", "0.875", "±", "0.03536", "0.225", "±", "0.03536"]
    assert lines[3].split()[:7] == ["2", "mlp", "2", "2", "0.81", "±", "0.01414"]


def test_csv_and_json_output(two_runs: tuple[Path, str, str]) -> None:
    folder, a, b = two_runs
    r = cli(folder, "leaderboard", a, b, "--csv", "out/board.csv", "--json")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "wrote out/board.csv"
    data = json.loads(r.stdout)
    validate(data, "leaderboard")
    assert [(g["rank"], g["job"], g["n"], g["runs"]) for g in data] == [(1, "cnn", 2, [a, b]), (2, "mlp", 2, [a, b])]
    assert data[0]["params"] == {} and data[0]["metrics"]["accuracy"]["mean"] == pytest.approx(0.875)
    assert data[0]["metrics"]["accuracy"]["std"] == pytest.approx(0.0353553, abs=1e-6)
    rows = list(csv.DictReader((folder / "out" / "board.csv").read_text().splitlines()))
    assert [(row["rank"], row["job"], row["n"], row["runs"]) for row in rows] == [
        ("1", "cnn", "2", f"{a} {b}"),
        ("2", "mlp", "2", f"{a} {b}"),
    ]
    assert float(rows[1]["loss_mean"]) == pytest.approx(0.375)
    printed = cli(folder, "leaderboard", a, b, "--csv", "-")
    assert printed.returncode == 0 and printed.stdout == (folder / "out" / "board.csv").read_text()
    assert "give one" in usage_error(cli(folder, "leaderboard", "--csv", "-", "--json"))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--sort", "acuracy"], "--sort: no job has a final metric 'acuracy'; did you mean 'accuracy'?"),
        (["--sort", "accuracy:best"], "--sort 'accuracy:best': the direction is desc or asc"),
        (["20990101T000000Z-abcd"], "no run 20990101T000000Z-abcd in "),
        (["no/such/place"], "'no/such/place' is neither a run id"),
        (["--csv", "missing-dir/x/../../metrics/cnn.json/board.csv"], "cannot write "),
    ],
)
def test_leaderboard_errors_are_one_line(two_runs: tuple[Path, str, str], args: list[str], expected: str) -> None:
    folder, _a, _b = two_runs
    line = usage_error(cli(folder, "leaderboard", *args))
    assert expected in line, line


def test_leaderboard_without_any_run_says_so(tmp_path: Path) -> None:
    write_config(tmp_path, "[discovery]\nenabled = false\n")
    assert "no run found" in usage_error(cli(tmp_path, "leaderboard"))
    (tmp_path / "logs" / "x").mkdir(parents=True)
    assert "has no summary.json: not a run folder" in usage_error(cli(tmp_path, "leaderboard", "logs/x"))
    (tmp_path / "bad.json").write_text('{"run": "r"')
    assert "is not a readable summary.json" in usage_error(cli(tmp_path, "leaderboard", "bad.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    assert "is not a run summary" in usage_error(cli(tmp_path, "leaderboard", "list.json"))


def on_a_terminal(folder: Path, cols: int, *args: str) -> tuple[int, str]:
    """`python -m aimedres_async ARGS` with its output on a pty `cols` wide; exit code and text."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "AIMEDRES_CONFIG")}
    try:
        proc = subprocess.Popen([PY, "-m", "aimedres_async", *args], cwd=folder, stdout=slave, stderr=slave, env=env)
    finally:
        os.close(slave)
    out = bytearray()
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:  # EIO: the command ended and closed its end
            break
        if not data:
            break
        out += data
    os.close(master)
    return proc.wait(timeout=60), out.decode().replace("\r\n", "\n")


def test_on_a_narrow_terminal_the_table_fits_and_says_what_it_left_out(tmp_path: Path, marker: str) -> None:
    metrics = {f"metric_{i}": 0.5 + i / 100 for i in range(6)}
    project(tmp_path, {"a_rather_long_model_name_for_a_narrow_tty": metrics, "b": metrics}, marker)
    run(tmp_path)
    code, text = on_a_terminal(tmp_path, 60, "leaderboard")
    assert code == 0, text
    lines = text.rstrip("\n").split("\n")
    assert all(len(line) <= 60 for line in lines), text
    assert lines[1].split()[:4] == ["RANK", "JOB", "N", "metric_0"]
    cut = next(line.split()[1] for line in lines if line.startswith("1 "))
    assert cut.endswith("…") and "a_rather_long_model_name_for_a_narrow_tty".startswith(cut[:-1]), text
    assert "more metric(s) left out to fit the terminal" in text and "metric_5" in text
    piped = cli(tmp_path, "leaderboard").stdout  # a pipe: nothing cut, every column
    assert "a_rather_long_model_name_for_a_narrow_tty" in piped and "metric_5" in piped.splitlines()[1]


# ---------------------------------------------------------------- compare


def test_compare_shows_changes_and_passes_without_gates(two_runs: tuple[Path, str, str]) -> None:
    folder, a, b = two_runs
    r = cli(folder, "compare", a, b)
    assert r.returncode == 0, r.stderr
    latest = cli(folder, "compare", a, "latest").stdout.splitlines()
    assert latest[1].startswith(f"NEW  {b}  (") and latest[2:] == r.stdout.splitlines()[2:]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in r.stdout.splitlines()[3:] if line.strip()}
    assert rows[("cnn", "accuracy")] == ["0.9", "0.85", "-0.05"]
    assert rows[("mlp", "loss")] == ["0.4", "0.35", "-0.05"]


def test_fail_if_gates_exit_1_naming_the_group(two_runs: tuple[Path, str, str]) -> None:
    folder, a, b = two_runs
    r = cli(folder, "compare", a, b, "--fail-if", "accuracy < -0.01", "--fail-if", "loss > 0.5")
    assert r.returncode == 1, r.stderr
    assert "accuracy < -0.01: FAILED for cnn (-0.05)" in r.stdout and "loss > 0.5: passed" in r.stdout
    loss = cli(folder, "compare", a, b, "--fail-if", "loss > 0.04")
    assert loss.returncode == 1 and "loss > 0.04: FAILED for cnn (+0.05)" in loss.stdout
    ok = cli(folder, "compare", a, b, "--fail-if", "accuracy < -0.1", "--fail-if", "loss > 0.06")
    assert ok.returncode == 0, ok.stdout
    assert "accuracy < -0.1: passed" in ok.stdout and "loss > 0.06: passed" in ok.stdout
    back = cli(folder, "compare", b, a, "--fail-if", "loss > 0.04")  # the other way round: mlp's loss rose
    assert back.returncode == 1 and "loss > 0.04: FAILED for mlp (+0.05)" in back.stdout


def test_a_gate_fails_when_a_group_stopped_succeeding(tmp_path: Path, marker: str) -> None:
    project(tmp_path, {"cnn": {"accuracy": 0.9}}, marker)
    a = run(tmp_path)
    project(tmp_path, {"cnn": None}, marker)  # optional: the run itself exits 0
    b = run(tmp_path)
    r = cli(tmp_path, "compare", a, b, "--fail-if", "accuracy < -0.01")
    assert r.returncode == 1
    assert "accuracy < -0.01: FAILED for cnn (missing in NEW)" in r.stdout
    assert "cnn: succeeded → failed" in r.stdout


@pytest.mark.parametrize(
    ("gate", "expected"),
    [
        ("accuracy", "--fail-if 'accuracy': expected METRIC OP NUMBER"),
        ("accuracy < -1%", "--fail-if 'accuracy < -1%': expected METRIC OP NUMBER"),
        ("acuracy < 0", "--fail-if 'acuracy < 0': no job has a final metric 'acuracy'; did you mean 'accuracy'?"),
    ],
)
def test_a_bad_gate_is_exit_2_with_one_line(two_runs: tuple[Path, str, str], gate: str, expected: str) -> None:
    folder, a, b = two_runs
    assert usage_error(cli(folder, "compare", a, b, "--fail-if", gate)).startswith(f"aimedres-async: error: {expected}")


def test_a_missing_run_is_exit_2_with_one_line(two_runs: tuple[Path, str, str]) -> None:
    folder, a, _b = two_runs
    assert "no run 20990101T000000Z-abcd in " in usage_error(cli(folder, "compare", a, "20990101T000000Z-abcd"))
    assert "missing.json" in usage_error(cli(folder, "compare", "missing.json", a))


def test_compare_reads_summaries_copied_from_another_machine(
    two_runs: tuple[Path, str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A CI artifact: only summary.json, in another folder, the run's logs and paths gone."""
    folder, a, b = two_runs
    elsewhere = tmp_path_factory.mktemp("artifact")
    shutil.copy(folder / "logs" / a / "summary.json", elsewhere / "base.json")
    shutil.copy(folder / "logs" / b / "summary.json", elsewhere / "new.json")
    shutil.rmtree(folder / "logs")
    write_config(elsewhere, "[discovery]\nenabled = false\n")
    r = cli(elsewhere, "compare", "base.json", "new.json", "--json", "--fail-if", "accuracy < -0.01")
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    validate(data, "compare")
    assert (data["base"]["run"], data["new"]["run"]) == (a, b)
    cnn = next(g for g in data["groups"] if g["job"] == "cnn")
    assert cnn["kind"] == "both" and cnn["metrics"]["accuracy"]["change"] == pytest.approx(-0.05)
    assert data["gates"][0]["failed"] is True and data["gates"][0]["groups"][0]["job"] == "cnn"


def test_markdown_for_a_pull_request_comment(two_runs: tuple[Path, str, str]) -> None:
    folder, a, b = two_runs
    r = cli(folder, "compare", a, b, "--markdown")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"### Compare `{a}` → `{b}`")
    assert "| cnn | accuracy | 0.9 | 0.85 | -0.05 |  |" in r.stdout
    line = usage_error(cli(folder, "compare", a, b, "--markdown", "--json"))
    assert "argument --json: not allowed with argument --markdown" in line


def test_exact_is_0_for_the_same_results_and_1_naming_each_difference(
    two_runs: tuple[Path, str, str], marker: str
) -> None:
    folder, a, b = two_runs
    again = run(folder)  # the same metric files as run b
    same = cli(folder, "compare", b, again, "--exact")
    assert same.returncode == 0, same.stdout
    assert "exact: no difference (2 jobs: every status and final metric identical)" in same.stdout
    diff = cli(folder, "compare", a, b, "--exact", "--json")
    assert diff.returncode == 1
    data = json.loads(diff.stdout)
    validate(data, "compare")
    assert {(d["id"], d["what"], d["base"], d["new"]) for d in data["exact"]} == {
        ("cnn", "metric accuracy", 0.9, 0.85),
        ("cnn", "metric loss", 0.2, 0.25),
        ("mlp", "metric accuracy", 0.8, 0.82),
        ("mlp", "metric loss", 0.4, 0.35),
    }


SCHEMA_1 = {
    "schema": 1,
    "run": "20261123T114430Z-b31a",
    "started_at": "2026-11-23T11:44:30.000000Z",
    "config": "/elsewhere/aimedres.toml",
    "host": "vm",
    "python": "3.11.7",
    "platform": "Linux",
    "max_workers": 1,
    "logs_dir": "/elsewhere/logs/20261123T114430Z-b31a",
    "finished_at": "2026-11-23T11:44:33.100000Z",
    "duration_s": 3.1,
    "exit_code": 0,
    "counts": {"succeeded": 2},
    "stopped_by": None,
}


def _schema_1_job(name: str, metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": name,
        "status": "succeeded",
        "optional": False,
        "attempts": 1,
        "exit_code": 0,
        "signal": None,
        "failure": None,
        "duration_s": 1.5,
        "peak_rss_bytes": 2 << 20,
        "command": [PY, "-c", "print()"],
        "command_line": f"{PY} -c 'print()'",
        "log": f"/elsewhere/logs/20261123T114430Z-b31a/jobs/{name}.jsonl",
        "metrics": metrics,
    }


def test_a_schema_1_summary_is_read_by_both_commands(two_runs: tuple[Path, str, str]) -> None:
    folder, _a, b = two_runs
    old = {
        **SCHEMA_1,
        "jobs": [_schema_1_job("cnn", {"accuracy": 0.95, "loss": 0.1}), _schema_1_job("mlp", {"accuracy": 0.7})],
    }
    validate(old, "summary")
    (folder / "old.json").write_text(json.dumps(old, indent=2))
    board = cli(folder, "leaderboard", "old.json")
    assert board.returncode == 0, board.stderr
    assert board.stdout.splitlines()[0] == "run 20261123T114430Z-b31a; ranked by accuracy:desc"
    assert board.stdout.splitlines()[2].split()[:4] == ["1", "cnn", "1", "0.95"]
    r = cli(folder, "compare", "old.json", b, "--fail-if", "accuracy < -0.05")
    assert r.returncode == 1, r.stderr
    assert "accuracy < -0.05: FAILED for cnn (-0.1)" in r.stdout


# ---------------------------------------------------------------- sweeps

# accuracy falls with the distance of lr from 0.1 and rises a little with the seed; lr=0.5 with
# seed 2 fails, and a file `worse` takes 0.05 off every accuracy
SWEPT = """\
import argparse, json, os, sys
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, required=True)
p.add_argument("--model", default="mlp")
p.add_argument("--seed", type=int, required=True)
p.add_argument("--output-dir")
a = p.parse_args()
if a.lr == 0.5 and a.seed == 2:
    sys.exit("diverged")
acc = 0.9 - abs(a.lr - 0.1) + a.seed * 0.01 - (0.05 if os.path.exists("worse") else 0)
print(json.dumps({"accuracy": round(acc, 4), "loss": round(1 - acc, 4), "model": a.model}))
"""


def sweep_project(folder: Path, marker: str) -> None:
    (folder / "train.py").write_text(SWEPT)
    write_config(
        folder,
        "[supervisor]\nparallel = true\nmax_workers = 3\n[discovery]\nenabled = false\n"
        f'[defaults]\nretries = 0\nenv = {{ TEST_MARKER = "{marker}" }}\n'
        '[jobs.t]\nscript = "train.py"\noptional = true\nmatrix = { lr = [0.1, 0.5], model = ["mlp", "sgd"] }\n'
        "seeds = [0, 1, 2]\n",
    )


def test_a_sweep_folds_its_seeds_in_the_leaderboard_and_the_step_summary(tmp_path: Path, marker: str) -> None:
    sweep_project(tmp_path, marker)
    step = tmp_path / "step.md"
    r = cli(tmp_path, "run", "--no-progress", env={"GITHUB_STEP_SUMMARY": str(step)}, timeout=120)
    assert r.returncode == 0, r.stderr
    r = cli(tmp_path, "leaderboard", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    validate(data, "leaderboard")
    got = [(g["rank"], g["job"], g["params"], g["n"], g["jobs"], g["failed"]) for g in data]
    assert got == [
        (1, "t", {"lr": 0.1, "model": "mlp"}, 3, 3, 0),
        (1, "t", {"lr": 0.1, "model": "sgd"}, 3, 3, 0),
        (3, "t", {"lr": 0.5, "model": "mlp"}, 2, 3, 1),
        (3, "t", {"lr": 0.5, "model": "sgd"}, 2, 3, 1),
    ]
    assert data[0]["metrics"]["accuracy"] == {"mean": pytest.approx(0.91), "std": pytest.approx(0.01), "n": 3}
    assert data[2]["metrics"]["accuracy"] == {"mean": pytest.approx(0.505), "std": pytest.approx(0.00707107), "n": 2}
    table = cli(tmp_path, "leaderboard", "--sort", "loss").stdout.splitlines()
    assert table[2].split()[:7] == ["1", "t[lr=0.1,model=mlp]", "3", "0.91", "±", "0.01", "0.09"]
    assert table[4].split()[:3] == ["3", "t[lr=0.5,model=mlp]", "2/3"]
    md = step.read_text()
    assert "### Leaderboard" in md and "Ranked by accuracy:desc" in md
    assert "| 1 | t[lr=0.1,model=mlp] | 3 | 0.91 ± 0.01 | 0.09 ± 0.01 |" in md
    assert "| 3 | t[lr=0.5,model=sgd] | 2 of 3 | 0.505 ± 0.007071 | 0.495 ± 0.007071 |" in md


def test_compare_of_two_sweeps_marks_noise_and_gates(tmp_path: Path, marker: str) -> None:
    sweep_project(tmp_path, marker)
    base = run(tmp_path)
    (tmp_path / "worse").write_text("")
    new = run(tmp_path)
    r = cli(tmp_path, "compare", base, new, "--json", "--fail-if", "accuracy < -0.04")
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    validate(data, "compare")
    by_label = {(g["job"], g["params"]["lr"], g["params"]["model"]): g for g in data["groups"]}
    acc = by_label[("t", 0.1, "mlp")]["metrics"]["accuracy"]
    assert acc["change"] == pytest.approx(-0.05) and acc["spread"] == pytest.approx(0.01)
    assert acc["within_noise"] is False
    assert [g["job"] for g in data["gates"][0]["groups"]] == [
        "t[lr=0.1,model=mlp]",
        "t[lr=0.1,model=sgd]",
        "t[lr=0.5,model=mlp]",
        "t[lr=0.5,model=sgd]",
    ]
    assert cli(tmp_path, "compare", base, new, "--fail-if", "accuracy < -0.06").returncode == 0
    # one seed less in NEW: the spread of lr=0.5 (n=2 on both sides) is still there
    text = cli(tmp_path, "compare", base, new).stdout
    assert "t[lr=0.5,model=mlp]  accuracy  0.505 ± 0.007071 (n=2)  0.455 ± 0.007071 (n=2)  -0.05" in text
    assert "beyond noise (spread 0.007071)" in text
