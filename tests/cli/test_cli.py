"""The command line as users run it: a real `python -m aimedres_async` subprocess per test, checking
exit codes, what is printed, and that bad input gives one clean line and never a traceback (SPEC §2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_cli import PY, cli, dry_run_commands, usage_error, write_script

OLD_FLAGS = [
    "--parallel",
    "--max-workers",
    "6",
    "--epochs",
    "80",
    "--folds",
    "5",
    "--only",
    "als",
    "alzheimers",
    "--dry-run",
    "--retries",
    "2",
    "--verbose",
]

PROJECT = """\
[supervisor]
max_workers = 2

[discovery]
roots = ["scripts"]

[jobs.als]
script = "scripts/train_als.py"

[jobs.alzheimers]
script = "scripts/train_alzheimers.py"
epochs = 3
optional = true
"""


def project(tmp_path: Path) -> Path:
    """als declares --epochs --folds --output-dir; alzheimers only --epochs (other flags only in text);
    `other` is discovered. Each script leaves a file behind when it really runs."""
    write_script(tmp_path, "scripts/train_als.py", "--epochs", "--folds", "--output-dir", body="open('ran-als', 'w')")
    write_script(
        tmp_path,
        "scripts/train_alzheimers.py",
        "--epochs",
        body="# also understands --folds and --output-dir, one day\nprint('--folds', '--output-dir')\n"
        "open('ran-alzheimers', 'w')",
    )
    write_script(tmp_path, "scripts/train_other.py", "--epochs", body="open('ran-other', 'w')")
    (tmp_path / "aimedres.toml").write_text(PROJECT)
    return tmp_path.resolve()


def ran(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("ran-*"))


# ---------------------------------------------------------------- the old run_all_training.py flags


@pytest.mark.parametrize("prefix", [["run"], []], ids=["run", "no-command"])
def test_old_orchestrator_flags_print_exact_commands(tmp_path: Path, prefix: list[str]) -> None:
    base = project(tmp_path)
    result = cli(tmp_path, *prefix, *OLD_FLAGS)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    als = [PY, "scripts/train_als.py", "--output-dir", str(base / "results" / "als"), "--epochs", "80", "--folds", "5"]
    assert dry_run_commands(result.stdout) == {
        "als": als,
        "alzheimers": [PY, "scripts/train_alzheimers.py", "--epochs", "3"],  # per-job epochs beat --epochs
    }
    assert f"(cwd {base})" in result.stdout
    assert ran(tmp_path) == []


def test_dry_run_runs_nothing(tmp_path: Path) -> None:
    project(tmp_path)
    (tmp_path / "aimedres.toml").write_text(
        PROJECT + f'\n[jobs.cmd]\ncommand = ["{PY}", "-c", "open(\'ran-cmd\', \'w\')"]\n'
    )
    result = cli(tmp_path, "run", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert set(dry_run_commands(result.stdout)) == {"als", "alzheimers", "cmd", "other"}
    assert ran(tmp_path) == []
    assert not (tmp_path / "results").exists()


def test_without_dry_run_the_same_job_really_runs(tmp_path: Path) -> None:
    """The counterpart of test_dry_run_runs_nothing: the marker file does appear on a real run."""
    project(tmp_path)
    result = cli(tmp_path, "run", "--only", "als", "--no-progress", "--logs-dir", "runlogs")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert ran(tmp_path) == ["ran-als"]


def test_cli_extras_batch_base_output_dir_and_discovery_switches(tmp_path: Path) -> None:
    project(tmp_path)
    write_script(tmp_path, "more/train_big.py", "--batch-size", "--output_dir", "--sample")
    result = cli(
        tmp_path,
        "run",
        "--dry-run",
        "--discover-root",
        "more",
        "--batch",
        "16",
        "--sample",
        "9",
        "--base-output-dir",
        "out",
        "--extra-arg=--seed=3",
        "--extra-arg",
        "x y",
        "--exclude",
        "als",
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path.resolve() / "out"
    big = [
        PY,
        "more/train_big.py",
        "--output_dir",
        str(out / "big"),
        "--sample",
        "9",
        "--batch-size",
        "16",
        "--seed=3",
        "x y",
    ]
    assert dry_run_commands(result.stdout) == {
        "alzheimers": [PY, "scripts/train_alzheimers.py", "--epochs", "3", "--seed=3", "x y"],
        "big": big,
    }
    result = cli(tmp_path, "run", "--dry-run", "--no-auto-discover")
    assert set(dry_run_commands(result.stdout)) == {"als", "alzheimers"}


# ---------------------------------------------------------------- selection errors


@pytest.mark.parametrize(
    "args", [["--only", "nosuch"], ["run", "--only", "als", "nosuch"], ["list", "--exclude", "nosuch"]]
)
def test_unknown_job_id_exits_2_naming_it(tmp_path: Path, args: list[str]) -> None:
    project(tmp_path)
    line = usage_error(cli(tmp_path, *args))
    assert "nosuch" in line
    assert ran(tmp_path) == []


def test_no_jobs_at_all_is_a_usage_error(tmp_path: Path) -> None:
    line = usage_error(cli(tmp_path, "run"))
    assert "no jobs" in line


# ---------------------------------------------------------------- config errors


TYPO = """\
# a config with a typo
[supervisor]
parallel = true
max_wokers = 4
"""


@pytest.mark.parametrize("args", [["run", "--dry-run"], ["--parallel"], ["list"], ["validate"]])
def test_typo_in_config_exits_2_naming_file_key_and_line(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "aimedres.toml").write_text(TYPO)
    line = usage_error(cli(tmp_path, *args))
    assert "aimedres.toml:4:" in line
    assert "supervisor.max_wokers" in line
    assert "'max_workers'" in line


def test_toml_syntax_error_exits_2_with_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "aimedres.toml").write_text("[supervisor]\nparallel = tru\n")
    line = usage_error(cli(tmp_path, "run", "--dry-run"))
    assert "aimedres.toml:2:12: TOML syntax error" in line


def test_every_config_problem_is_printed(tmp_path: Path) -> None:
    (tmp_path / "aimedres.toml").write_text(
        '[supervisor]\nmax_workers = 0\n[defaults]\nretries = -1\n[jobs."Bad Id"]\nscript = "x.py"\n'
    )
    result = cli(tmp_path, "validate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(": ")[2:4] for line in lines] == [
        ["aimedres.toml:2", "supervisor.max_workers"],
        ["aimedres.toml:4", "defaults.retries"],
        ["aimedres.toml:5", "jobs.Bad Id"],
    ]
    assert all(line.startswith("aimedres-async: error: ") for line in lines)


def test_a_bad_group_budget_is_a_one_line_error_from_validate(tmp_path: Path) -> None:
    (tmp_path / "aimedres.toml").write_text('[groups.gpu]\nmax_workers = 2\nmemory = "lots"\ncpus = 0\ngpus = 1.5\n')
    result = cli(tmp_path, "validate")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(": ")[2:4] for line in lines] == [
        ["aimedres.toml:3", "groups.gpu.memory"],
        ["aimedres.toml:4", "groups.gpu.cpus"],
        ["aimedres.toml:5", "groups.gpu.gpus"],
    ]
    assert "'lots' is not a size" in lines[0] and "must be > 0" in lines[1] and "whole number of GPUs" in lines[2]


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    project(tmp_path)  # an ./aimedres.toml exists but --config names another file
    line = usage_error(cli(tmp_path, "--config", "missing.toml", "run", "--dry-run"))
    assert "missing.toml" in line


def test_non_utf8_config_exits_2(tmp_path: Path) -> None:
    (tmp_path / "aimedres.toml").write_bytes(b"[supervisor]\nlogs_dir = '\xff'\n")
    line = usage_error(cli(tmp_path, "validate"))
    assert "aimedres.toml" in line and "UTF-8" in line


# ---------------------------------------------------------------- bad command-line values


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--max-workers", "0"], "--max-workers"),
        (["run", "--max-workers", "0", "--dry-run"], "--max-workers"),
        (["--max-workers", "lots"], "--max-workers"),
        (["--epochs", "x"], "--epochs"),
        (["run", "--folds", "0"], "--folds"),
        (["run", "--retries", "-1"], "--retries"),
        (["run", "--timeout", "soon"], "--timeout"),
        (["run", "--log-format", "xml"], "--log-format"),
        (["run", "--no-such-flag"], "--no-such-flag"),
    ],
)
def test_bad_command_line_values_exit_2_with_one_line(tmp_path: Path, args: list[str], named: str) -> None:
    project(tmp_path)
    line = usage_error(cli(tmp_path, *args))
    assert named in line
    assert ran(tmp_path) == []


def test_max_workers_auto_is_accepted(tmp_path: Path) -> None:
    project(tmp_path)
    result = cli(tmp_path, "--max-workers", "auto", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert set(dry_run_commands(result.stdout)) == {"als", "alzheimers", "other"}


def test_help_exits_0(tmp_path: Path) -> None:
    result = cli(tmp_path, "run", "--help")
    assert result.returncode == 0
    for flag in ("--parallel", "--max-workers", "--dry-run", "--only", "--extra-arg", "--timeout"):
        assert flag in result.stdout


# ---------------------------------------------------------------- list and validate


def table(stdout: str) -> dict[str, list[str]]:
    rows = [line.split() for line in stdout.strip().splitlines()]
    assert rows[0] == ["ID", "SCRIPT", "ACCEPTS", "RESOURCES", "FITS", "OPTIONAL"], rows[0]
    return {r[0]: r[1:] for r in rows[1:]}


def test_list_shows_id_script_flags_resources_optional(tmp_path: Path) -> None:
    project(tmp_path)
    config = PROJECT.replace("epochs = 3", "epochs = 3\nresources = { gpus = 1 }")
    (tmp_path / "aimedres.toml").write_text(config.replace("max_workers = 2", "max_workers = 2\ngpus = 0"))
    result = cli(tmp_path, "list")
    assert result.returncode == 0, result.stderr
    assert table(result.stdout) == {
        "als": ["scripts/train_als.py", "output-dir,epochs,folds", "-", "yes", "no"],
        "alzheimers": ["scripts/train_alzheimers.py", "epochs", "gpus=1", "NO", "yes"],  # no GPU configured
        "other": ["scripts/train_other.py", "epochs", "-", "yes", "no"],
    }
    assert ran(tmp_path) == []
    assert cli(tmp_path, "run", "--list").stdout == result.stdout


def test_list_shows_unparsable_script_as_skipped_with_a_warning(tmp_path: Path) -> None:
    project(tmp_path)
    (tmp_path / "scripts" / "train_broken.py").write_text("def f(:\n")
    result = cli(tmp_path, "list")
    assert result.returncode == 0, result.stderr
    assert "train_broken.py" in result.stderr and "warning" in result.stderr
    skipped = [line for line in result.stdout.splitlines() if "train_broken.py" in line]
    assert len(skipped) == 1 and "SKIPPED" in skipped[0]
    assert {"als", "alzheimers", "other"} <= set(table("\n".join(result.stdout.splitlines()[:4])))


def test_validate_good_config(tmp_path: Path) -> None:
    project(tmp_path)
    result = cli(tmp_path, "validate")
    assert result.returncode == 0, result.stderr
    assert "aimedres.toml" in result.stdout and "ok" in result.stdout
    for job in ("als", "alzheimers", "other"):
        assert job in result.stdout
    assert ran(tmp_path) == []


# ---------------------------------------------------------------- where the config comes from


def env_config(tmp_path: Path) -> Path:
    folder = tmp_path / "cfg"
    folder.mkdir()
    path = folder / "custom.toml"
    path.write_text(f'[discovery]\nenabled = false\n[jobs.fromenv]\ncommand = ["{PY}", "-c", "pass"]\n')
    return path


def test_aimedres_config_env_is_used_without_config_flag(tmp_path: Path) -> None:
    path = env_config(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    result = cli(work, "run", "--dry-run", env={"AIMEDRES_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    assert dry_run_commands(result.stdout) == {"fromenv": [PY, "-c", "pass"]}
    assert f"(cwd {path.parent.resolve()})" in result.stdout  # jobs run in the config's folder


def test_aimedres_config_env_beats_local_file_and_config_flag_beats_both(tmp_path: Path) -> None:
    path = env_config(tmp_path)
    project(tmp_path)
    env = {"AIMEDRES_CONFIG": str(path)}
    assert set(dry_run_commands(cli(tmp_path, "--dry-run").stdout)) == {"als", "alzheimers", "other"}
    assert set(dry_run_commands(cli(tmp_path, "--dry-run", env=env).stdout)) == {"fromenv"}
    result = cli(tmp_path, "--config", "aimedres.toml", "--dry-run", env=env)
    assert set(dry_run_commands(result.stdout)) == {"als", "alzheimers", "other"}


def test_aimedres_config_env_pointing_nowhere_exits_2(tmp_path: Path) -> None:
    line = usage_error(cli(tmp_path, "validate", env={"AIMEDRES_CONFIG": str(tmp_path / "gone.toml")}))
    assert "gone.toml" in line


@pytest.mark.parametrize(
    "args",
    [
        ["--config", "cfg/custom.toml", "--parallel", "--dry-run"],
        ["--config=cfg/custom.toml", "--dry-run"],
        ["--config", "cfg/custom.toml", "run", "--dry-run"],
    ],
)
def test_config_flag_before_old_style_flags(tmp_path: Path, args: list[str]) -> None:
    env_config(tmp_path)
    project(tmp_path)
    result = cli(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert set(dry_run_commands(result.stdout)) == {"fromenv"}


def test_config_flag_without_value_says_so(tmp_path: Path) -> None:
    line = usage_error(cli(tmp_path, "--config"))
    assert "--config" in line
    assert "cannot read config" not in line


def test_builtin_defaults_without_a_config_file(tmp_path: Path) -> None:
    write_script(tmp_path, "sub/train_foo.py", "--epochs", "--output-dir")
    write_script(tmp_path, "train_bar.py")
    write_script(tmp_path, "helper.py", "--epochs")
    result = cli(tmp_path, "--dry-run")
    assert result.returncode == 0, result.stderr
    out = tmp_path.resolve() / "results"
    assert dry_run_commands(result.stdout) == {
        "bar": [PY, "train_bar.py"],
        "foo": [PY, "sub/train_foo.py", "--output-dir", str(out / "foo")],  # no epochs value is known
    }
    result = cli(tmp_path, "--epochs", "2", "--dry-run")
    assert dry_run_commands(result.stdout)["foo"][-2:] == ["--epochs", "2"]
    result = cli(tmp_path, "validate")
    assert result.returncode == 0
    assert "built-in defaults" in result.stdout and "bar" in result.stdout and "foo" in result.stdout


HEAVY = ("asyncio", "structlog", "rich", "watchfiles", "ray", "psutil")
PROBE_IMPORTS = """\
import runpy, sys
sys.argv = ["aimedres_async", *sys.argv[1:]]
try:
    runpy.run_module("aimedres_async", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print("LOADED", *sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["run", "--list"], ["run", "--dry-run"], ["list"]])
def test_quick_commands_import_nothing_heavy(tmp_path: Path, args: list[str]) -> None:
    """--help, --list and --dry-run stay quick (issue #4: under 0.3 s; bench/startup.py times them):
    no event loop, console library, terminal UI, inotify, Ray or psutil is imported for them."""
    import subprocess

    (tmp_path / "aimedres.toml").write_text(PROJECT)
    write_script(tmp_path, "scripts/train_als.py", "--epochs")
    write_script(tmp_path, "scripts/train_alzheimers.py", "--epochs")
    r = subprocess.run(
        [PY, "-c", PROBE_IMPORTS.format(heavy=HEAVY), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    loaded = [line for line in r.stderr.splitlines() if line.startswith("LOADED")]
    assert loaded == ["LOADED"], (loaded, r.stderr[-2000:])
    assert "als" in r.stdout or args == ["--help"], r.stdout
