"""Command-line conventions (SPEC §2, §16; docs/reference/cli.md): no abbreviated options, "did you
mean" for commands and options, `-j`, help text for every option and command, options a command
ignores refused, and `--dry-run`/`validate` refusing what `run` refuses. Real subprocesses throughout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from helpers_cli import PY, cli, dry_run_commands, usage_error

from aimedres_async.cli.parser import build_parser


def leaves(name: str) -> str:
    """A TOML command that leaves the file ran-<name> behind when it really runs."""
    return json.dumps([PY, "-c", f"open('ran-{name}', 'w')"])


def project(tmp_path: Path) -> Path:
    (tmp_path / "aimedres.toml").write_text(
        f"[discovery]\nenabled = false\n[jobs.one]\ncommand = {leaves('one')}\n[jobs.two]\ncommand = {leaves('two')}\n"
    )
    return tmp_path


def ran(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("ran-*"))


# ---------------------------------------------------------------- did you mean


@pytest.mark.parametrize(
    ("args", "wrong", "meant", "help_of"),
    [
        (["rnu"], "'rnu'", "'run'", "aimedres-async --help"),
        (["lsit"], "'lsit'", "'list'", "aimedres-async --help"),
        (["run", "--paralel"], "'--paralel'", "'--parallel'", "aimedres-async run --help"),
        (["--paralel"], "'--paralel'", "'--parallel'", "aimedres-async run --help"),
        (["list", "--ony", "one"], "'--ony'", "'--only'", "aimedres-async list --help"),
        (["status", "--jsn"], "'--jsn'", "'--json'", "aimedres-async status --help"),
        (["logs", "one", "--folow"], "'--folow'", "'--follow'", "aimedres-async logs --help"),
    ],
)
def test_typos_get_one_line_with_the_nearest_spelling(
    tmp_path: Path, args: list[str], wrong: str, meant: str, help_of: str
) -> None:
    line = usage_error(cli(project(tmp_path), *args))
    assert wrong in line and f"did you mean {meant}?" in line and f"`{help_of}`" in line, line
    assert ran(tmp_path) == []


def test_a_typo_with_nothing_near_lists_the_commands(tmp_path: Path) -> None:
    line = usage_error(cli(project(tmp_path), "xyzzy"))
    assert "unknown command 'xyzzy'" in line and "run, list, validate" in line


@pytest.mark.parametrize(
    "args",
    [
        ["--max-worker", "3", "--dry-run"],
        ["--epoch", "3", "--dry-run"],
        ["run", "--dry", "--only", "one"],
        ["submit", "--jo", "one"],
    ],
)
def test_abbreviated_options_are_refused(tmp_path: Path, args: list[str]) -> None:
    """Regression: argparse's allow_abbrev took `--max-worker 3` for `--max-workers 3` silently."""
    line = usage_error(cli(project(tmp_path), *args))
    assert "did you mean" in line
    assert ran(tmp_path) == []


@pytest.mark.parametrize("flag", ["--arg", "--extra-arg"])
def test_a_value_starting_with_a_dash_gets_the_equals_hint(tmp_path: Path, flag: str) -> None:
    args = ["submit", "--job", "one", "--arg", "--seed"] if flag == "--arg" else ["run", "--extra-arg", "--seed"]
    line = usage_error(cli(project(tmp_path), *args))
    assert f"write {flag}=--seed" in line, line


# ---------------------------------------------------------------- -j, help, groups


def test_j_is_max_workers(tmp_path: Path) -> None:
    project(tmp_path)
    short = cli(tmp_path, "--parallel", "-j", "2", "--dry-run")
    assert short.returncode == 0, short.stderr
    assert set(dry_run_commands(short.stdout)) == {"one", "two"}
    assert usage_error(cli(tmp_path, "-j", "0", "--dry-run")).count("-j/--max-workers") == 1


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_option_has_help_and_every_command_a_description() -> None:
    parser = build_parser()
    subs = _subparsers(parser)
    assert {"run", "list", "validate", "serve", "submit", "status", "logs", "init"} <= set(subs)
    for name, sp in [("", parser), *subs.items()]:
        assert sp.allow_abbrev is False, name
        if name:
            assert sp.description and len(sp.description) > 20, name
        for action in sp._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, (name, action.option_strings or action.dest)


def test_run_help_groups_execution_options_apart_from_selection(tmp_path: Path) -> None:
    out = cli(tmp_path, "run", "--help").stdout
    groups: dict[str, str] = {}
    current = ""
    for line in out.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = line[:-1]
        elif current and line.startswith("  -"):
            groups[line.split()[0].rstrip(",")] = current
    assert groups["--only"] == groups["--exclude"] == "job selection"
    for flag in ("--parallel", "-j", "--retries", "--timeout"):
        assert groups[flag] == "execution", (flag, groups)
    assert groups["--epochs"].startswith("passed to the scripts")
    assert groups["--log-file"] == "output"


@pytest.mark.parametrize("command", ["serve", "validate", "submit", "status", "logs", "init", "list"])
def test_each_command_help_describes_it(tmp_path: Path, command: str) -> None:
    r = cli(tmp_path, command, "--help")
    assert r.returncode == 0
    description = r.stdout.split("\n\n")[1]
    assert len(description) > 40 and not description.lstrip().startswith(("options", "positional")), r.stdout


# ---------------------------------------------------------------- what a command accepts


@pytest.mark.parametrize("flag", [["--retries", "2"], ["--parallel"], ["--timeout", "5s"], ["-j", "2"]])
def test_list_refuses_options_it_would_ignore(tmp_path: Path, flag: list[str]) -> None:
    line = usage_error(cli(project(tmp_path), "list", *flag))
    assert flag[0] in line and "aimedres-async list --help" in line


def test_list_still_takes_selection_options(tmp_path: Path) -> None:
    r = cli(project(tmp_path), "list", "--only", "one")
    assert r.returncode == 0, r.stderr
    assert [line.split()[0] for line in r.stdout.splitlines()[1:]] == ["one"]


# ---------------------------------------------------------------- --dry-run and validate refuse what run refuses


def test_dry_run_resume_of_a_missing_run_exits_2_like_run(tmp_path: Path) -> None:
    project(tmp_path)
    for extra in ([], ["--dry-run"]):
        line = usage_error(cli(tmp_path, "run", "--resume", "20200101T000000Z-abcd", *extra))
        assert "no run to resume" in line
    assert ran(tmp_path) == []


@pytest.mark.parametrize("args", [["run"], ["run", "--dry-run"], ["validate"]])
def test_no_jobs_exits_2_for_run_dry_run_and_validate(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "aimedres.toml").write_text("[discovery]\nenabled = false\n")
    line = usage_error(cli(tmp_path, *args))
    assert "no jobs" in line


@pytest.mark.parametrize("args", [["run"], ["run", "--dry-run"], ["validate"]])
def test_a_job_that_can_never_fit_exits_2_for_run_dry_run_and_validate(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "aimedres.toml").write_text(
        '[supervisor]\nmemory = "1GiB"\n[discovery]\nenabled = false\n'
        f"[jobs.big]\ncommand = {leaves('big')}\n"
        'resources = { memory = "4GiB" }\n'
    )
    line = usage_error(cli(tmp_path, *args))
    assert "job big can never run here" in line
    assert ran(tmp_path) == []


def test_no_arguments_runs_the_config_like_the_old_script(tmp_path: Path) -> None:
    r = cli(project(tmp_path))
    assert r.returncode == 0, r.stderr
    assert ran(tmp_path) == ["ran-one", "ran-two"]


# ---------------------------------------------------------------- global options (ruff's, uv's, pueue's)


def test_a_typo_in_a_global_option_points_at_the_global_help(tmp_path: Path) -> None:
    """Not at `run --help`: the user typed no `run`, and --config is no option of it."""
    line = usage_error(cli(project(tmp_path), "--confg", "x", "status"))
    assert "'--confg'" in line and "did you mean '--config'?" in line and "`aimedres-async --help`" in line, line


def test_short_version_and_help_command(tmp_path: Path) -> None:
    version = cli(tmp_path, "-V")
    assert version.returncode == 0 and version.stdout.startswith("aimedres-async "), version
    assert version.stdout == cli(tmp_path, "--version").stdout
    for command in ("run", "status", "help"):
        shown = cli(tmp_path, "help", command)
        assert shown.returncode == 0 and shown.stdout == cli(tmp_path, command, "--help").stdout, command
    top = cli(tmp_path, "help")
    assert top.returncode == 0 and top.stdout == cli(tmp_path, "--help").stdout
    assert "-q, --quiet" in top.stdout and "--color {auto,always,never}" in top.stdout
    line = usage_error(cli(tmp_path, "help", "stauts"))
    assert "did you mean 'status'?" in line


def test_run_help_lists_every_exit_code(tmp_path: Path) -> None:
    text = " ".join(cli(tmp_path, "run", "--help").stdout.split())
    for code in ("(0)", "(1)", "(2)", "(3)", "130", "143", "129"):
        assert code in text, code


def test_global_options_go_before_or_after_the_command(tmp_path: Path) -> None:
    project(tmp_path)
    before = cli(tmp_path, "-q", "--color", "never", "validate")
    after = cli(tmp_path, "validate", "-q", "--color=never")
    assert before.returncode == after.returncode == 0, (before.stderr, after.stderr)
    assert cli(tmp_path, "--color", "sometimes", "validate").returncode == 2


def test_quiet_run_prints_what_went_wrong_and_the_results_only(tmp_path: Path) -> None:
    (tmp_path / "aimedres.toml").write_text(
        "[discovery]\nenabled = false\n"
        f"[jobs.good]\ncommand = {leaves('good')}\n"
        f"[jobs.bad]\ncommand = {json.dumps([PY, '-c', 'raise SystemExit(3)'])}\n"
    )
    loud, quiet = cli(tmp_path, "run"), cli(tmp_path, "-q", "run")
    assert loud.returncode == quiet.returncode == 1
    assert "job.started" in loud.stderr and "job.started" not in quiet.stderr, quiet.stderr
    assert "job.finished  good" in loud.stderr and "good" not in quiet.stderr, quiet.stderr
    assert "job.finished  bad status=failed" in quiet.stderr, quiet.stderr
    assert "succeeded" in quiet.stdout + quiet.stderr and "bad" in quiet.stdout + quiet.stderr  # the results table
