"""The command line's grammar in-process (cli/parser.py, cli/usage.py, cli/app.main): every command's
options and defaults, abbreviations refused, "did you mean", `-j`/`--max-workers auto`, the old
run_all_training.py flags, repeated options, `--` for submit, and exit 2 with one line for every
usage mistake. `main` runs only commands that start nothing: --help, --version, list, --dry-run,
validate and usage errors; tests/test_cli*.py drive the real processes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from aimedres_async import __version__
from aimedres_async.cli.app import EXIT_USAGE, main
from aimedres_async.cli.parser import build_parser, parse, with_default_command
from aimedres_async.cli.usage import UsageError
from aimedres_async.cli.words import COMMANDS, DESCRIPTIONS


def usage(*argv: str) -> str:
    """The one-line UsageError the parser raises for argv."""
    with pytest.raises(UsageError) as e:
        parse(argv)
    line = str(e.value)
    assert "\n" not in line
    return line


def command(name: str) -> str:
    """A TOML command list that leaves ran-<name> behind if it really ran."""
    return json.dumps([sys.executable, "-c", f"open('ran-{name}', 'w')"])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with an aimedres.toml of two command jobs, made the current folder; no GPU probe."""
    (tmp_path / "aimedres.toml").write_text(
        f"[discovery]\nenabled = false\n[jobs.one]\ncommand = {command('one')}\n[jobs.two]\ncommand = {command('two')}\n"
    )
    monkeypatch.chdir(tmp_path)
    for name in ("AIMEDRES_CONFIG", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # capacity() asks no driver and runs no nvidia-smi
    return tmp_path


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The single `aimedres-async: error: ...` line main printed on stderr."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("aimedres-async: error: ")
    return lines[0]


# ---------------------------------------------------------------- run: options and defaults


def test_run_defaults() -> None:
    a = parse(["run"])
    assert a.command == "run" and a.config is None and a.executor is None and a.python is None
    assert (a.parallel, a.epochs, a.folds, a.sample, a.batch) == (None, None, None, None, None)
    assert (a.only, a.exclude, a.extra_arg, a.include_pattern) == ([], [], [], [])
    assert (a.retries, a.timeout, a.resume, a.discover_root, a.base_output_dir) == (None, None, None, None, None)
    assert not (a.list or a.dry_run or a.fail_fast or a.allow_partial_success or a.verbose or a.no_progress)
    assert a.log_format == "auto" and a.logs_dir is None and a.report is None and a.summary_dir is None
    assert "max_workers" not in a  # not given: the config's max_workers stays


def test_no_arguments_means_run() -> None:
    assert with_default_command([]) == ["run"]
    assert parse([]).command == "run"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--parallel", "-j", "4"], ["run", "--parallel", "-j", "4"]),
        (["--config", "x.toml", "--list"], ["--config", "x.toml", "run", "--list"]),
        (["--config=x.toml", "--list"], ["--config=x.toml", "run", "--list"]),
        (["--config", "x.toml"], ["--config", "x.toml", "run"]),
        (["list", "--only", "a"], ["list", "--only", "a"]),
        (["--help"], ["--help"]),
        (["--version"], ["--version"]),
        (["--config"], ["--config"]),  # argparse says the value is missing
        (["rnu"], ["rnu"]),  # a word that is no command: argparse names the nearest one
    ],
)
def test_the_default_command_is_put_where_the_old_flags_start(argv: list[str], expected: list[str]) -> None:
    assert with_default_command(argv) == expected


def test_old_flags_without_a_command_are_run_options() -> None:
    a = parse(["--parallel", "-j", "4", "--epochs", "3"])
    assert (a.command, a.parallel, a.max_workers, a.epochs) == ("run", True, 4, 3)


def test_config_is_accepted_before_and_after_the_command() -> None:
    assert parse(["--config", "a.toml", "run"]).config == "a.toml"
    assert parse(["run", "--config", "b.toml"]).config == "b.toml"
    assert parse(["status", "--config", "c.toml"]).config == "c.toml"


@pytest.mark.parametrize("flag", ["-j", "--max-workers"])
def test_j_is_max_workers(flag: str) -> None:
    assert parse(["run", flag, "8"]).max_workers == 8
    assert parse([flag, "3"]).max_workers == 3


def test_max_workers_auto_is_given_as_none() -> None:
    a = parse(["run", "-j", "auto"])
    assert "max_workers" in a and a.max_workers is None


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "must be >= 1, got 0"), ("100001", "must be <= 100000"), ("many", "expected a whole number")],
)
def test_max_workers_out_of_range_is_a_usage_error(value: str, message: str) -> None:
    line = usage("run", "-j", value)
    assert message in line and "argument -j/--max-workers" in line and line.endswith("`aimedres-async run --help`")


def test_numbers_and_durations_are_checked() -> None:
    assert parse(["run", "--timeout", "30m", "--retries", "0"]).timeout == 1800.0
    assert "must be >= 1" in usage("run", "--epochs", "0")
    assert "must be >= 0" in usage("run", "--retries", "-1")
    assert "--timeout" in usage("run", "--timeout", "soon")


def test_resume_takes_an_optional_run_id() -> None:
    assert parse(["run", "--resume"]).resume == "latest"
    assert parse(["run", "--resume", "20261123T114430Z-b31a"]).resume == "20261123T114430Z-b31a"


def test_log_format_and_executor_are_choices() -> None:
    assert parse(["run", "--log-format", "json"]).log_format == "json"
    assert "invalid choice: 'xml'" in usage("run", "--log-format", "xml")
    for cmd in ("run", "list", "validate", "serve"):
        assert parse([cmd, "--executor", "slurm"]).executor == "slurm"
    assert "invalid choice: 'k8s'" in usage("run", "--executor", "k8s")
    assert usage("status", "--executor", "ray").startswith("unknown option '--executor'")


def test_output_options() -> None:
    a = parse(["run", "--logs-dir", "L", "--log-file", "f.jsonl", "--junit-xml", "j.xml", "--report", "r.html"])
    assert (a.logs_dir, a.log_file, a.junit_xml, a.report) == ("L", "f.jsonl", "j.xml", "r.html")
    assert parse(["run", "--verbose", "--no-progress"]).no_progress


# ---------------------------------------------------------------- repeated options


def test_repeated_selection_options_add_up() -> None:
    a = parse(["run", "--only", "a", "b", "--only", "c", "--exclude", "d", "--exclude", "e"])
    assert a.only == ["a", "b", "c"] and a.exclude == ["d", "e"]


def test_an_empty_only_or_exclude_selects_every_job() -> None:
    """A CI input left blank passes `--only` alone: the old tool ran every job."""
    a = parse(["--dry-run", "--only", "--exclude", "--epochs", "2"])
    assert a.only == [] and a.exclude == [] and a.epochs == 2


def test_repeated_extra_arg_keeps_its_order_and_a_repeated_value_option_keeps_the_last() -> None:
    a = parse(["run", "--extra-arg=--seed", "--extra-arg", "3", "--epochs", "2", "--epochs", "5"])
    assert a.extra_arg == ["--seed", "3"] and a.epochs == 5


@pytest.mark.parametrize(("cmd", "flag"), [("run", "--extra-arg"), ("submit", "--arg")])
def test_a_value_starting_with_a_dash_gets_the_equals_hint(cmd: str, flag: str) -> None:
    line = usage(cmd, flag, "--seed")
    assert f"write {flag}=--seed" in line and line.endswith(f"`aimedres-async {cmd} --help`")


# ---------------------------------------------------------------- the old run_all_training.py flags


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["--parallel"], "parallel", True),
        (["--max-workers", "4"], "max_workers", 4),
        (["--epochs", "80"], "epochs", 80),
        (["--folds", "5"], "folds", 5),
        (["--sample", "100"], "sample", 100),
        (["--batch", "32"], "batch", 32),
        (["--only", "als"], "only", ["als"]),
        (["--exclude", "als"], "exclude", ["als"]),
        (["--list"], "list", True),
        (["--dry-run"], "dry_run", True),
        (["--retries", "2"], "retries", 2),
        (["--extra-arg=--seed=3"], "extra_arg", ["--seed=3"]),
        (["--verbose"], "verbose", True),
        (["--allow-partial-success"], "allow_partial_success", True),
        (["--no-auto-discover"], "no_auto_discover", True),
        (["--discover-root", "src", "more"], "discover_root", ["src", "more"]),
        (["--base-output-dir", "out"], "base_output_dir", "out"),
        (["--logs-dir", "logs"], "logs_dir", "logs"),
        (
            ["--include-pattern", "*_train.py", "--include-pattern", "t_*.py"],
            "include_pattern",
            ["*_train.py", "t_*.py"],
        ),
        (["--exclude-regex", "^legacy/"], "exclude_regex", "^legacy/"),
        (["--discovery-limit", "50"], "discovery_limit", 50),
        (["--allow-discovery-overrides"], "allow_discovery_overrides", True),
        (["--no-default-jobs"], "no_default_jobs", True),
        (["--mark-discovered-optional"], "mark_discovered_optional", True),
        (["--strict-discovery"], "strict_discovery", True),
        (["--summary-dir", "summaries"], "summary_dir", "summaries"),
    ],
)
def test_the_old_flags_are_kept(argv: list[str], dest: str, value: object) -> None:
    a = parse(argv)  # as the old script was called: no command
    assert a.command == "run" and getattr(a, dest) == value


@pytest.mark.parametrize("name", ["jobs.yaml", "legacy/jobs.YML"])
def test_the_old_yaml_config_is_refused_naming_its_replacement(
    project: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert main(["--config", name, "--list"]) == EXIT_USAGE
    line = error_line(capsys)
    assert f"Convert it once with `aimedres-async init --from-yaml {name}`, then drop --config" in line


def test_the_old_yaml_config_from_the_environment_is_refused_too(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIMEDRES_CONFIG", "jobs.yaml")
    assert main(["list"]) == EXIT_USAGE
    assert "init --from-yaml jobs.yaml" in error_line(capsys)


# ---------------------------------------------------------------- abbreviations and "did you mean"


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["run", "--max-worker", "4"], "--max-worker"),
        (["--paral"], "--paral"),
        (["run", "--dry"], "--dry"),
        (["list", "--onl", "a"], "--onl"),
        (["status", "--js"], "--js"),
        (["logs", "one", "--fol"], "--fol"),
        (["--conf", "x.toml"], "--conf"),
    ],
)
def test_abbreviated_options_are_refused(argv: list[str], shown: str) -> None:
    assert usage(*argv).startswith(f"unknown option {shown!r}")


@pytest.mark.parametrize(
    ("argv", "wrong", "meant", "help_of"),
    [
        (["rnu"], "command 'rnu'", "'run'", "aimedres-async --help"),
        (["lsit"], "command 'lsit'", "'list'", "aimedres-async --help"),
        (["stauts"], "command 'stauts'", "'status'", "aimedres-async --help"),
        (["--paralel"], "option '--paralel'", "'--parallel'", "aimedres-async run --help"),
        (["run", "--max-worker", "2"], "option '--max-worker'", "'--max-workers'", "aimedres-async run --help"),
        (["list", "--ony", "one"], "option '--ony'", "'--only'", "aimedres-async list --help"),
        (["submit", "--priorty", "2"], "option '--priorty'", "'--priority'", "aimedres-async submit --help"),
        (["logs", "one", "--folow"], "option '--folow'", "'--follow'", "aimedres-async logs --help"),
    ],
)
def test_typos_get_the_nearest_spelling_and_the_right_help(
    argv: list[str], wrong: str, meant: str, help_of: str
) -> None:
    assert usage(*argv) == f"unknown {wrong} (did you mean {meant}?); see `{help_of}`"


def test_a_word_near_no_command_lists_the_commands() -> None:
    line = usage("xyzzy")
    assert line.startswith("unknown command 'xyzzy' (commands: run, list, validate, serve, submit, ")


def test_an_option_near_nothing_names_no_guess() -> None:
    assert usage("run", "--qqqqqq") == "unknown option '--qqqqqq'; see `aimedres-async run --help`"


# ---------------------------------------------------------------- list, validate, serve


def test_list_takes_the_selection_options_only() -> None:
    a = parse(["list", "--only", "one", "--exclude", "two", "--discover-root", "src", "--python", "py3"])
    assert (a.only, a.exclude, a.discover_root, a.python) == (["one"], ["two"], ["src"], "py3")
    # what run --list accepts but list would ignore is there as defaults for the shared code
    assert (a.epochs, a.extra_arg, a.parallel, a.summary_dir) == (None, [], None, None)


@pytest.mark.parametrize("argv", [["--epochs", "3"], ["-j", "4"], ["--parallel"], ["--dry-run"], ["--log-file", "f"]])
def test_list_refuses_options_it_would_ignore(argv: list[str]) -> None:
    assert usage("list", *argv).startswith(f"unknown option {argv[0]!r}")


def test_validate_and_serve_options() -> None:
    assert parse(["validate", "--python", "/opt/py"]).python == "/opt/py"
    assert usage("validate", "--only", "a").startswith("unknown option '--only'")
    assert parse(["serve"]).executor is None
    assert usage("serve", "--python", "p").startswith("unknown option '--python'")


# ---------------------------------------------------------------- the spool's commands


def test_submit_options_and_defaults() -> None:
    a = parse(["submit", "--job", "als"])
    assert (a.job, a.tickets, a.arg, a.after, a.priority) == ("als", [], [], [], None)
    assert (a.epochs, a.folds, a.sample, a.batch, a.retries, a.timeout) == (None,) * 6
    overrides = ["--epochs", "2", "--batch", "8", "--retries", "0", "--timeout", "1h"]
    ordering = ["--priority", "-5", "--after", "t1", "--after", "t2"]
    a = parse(["submit", "--job", "als", *overrides, "--arg=--seed", "--arg", "3", *ordering])
    assert (a.epochs, a.batch, a.retries, a.timeout) == (2, 8, 0, "1h")  # a ticket's timeout: its own text
    assert a.arg == ["--seed", "3"] and a.after == ["t1", "t2"] and a.priority == -5


def test_submit_double_dash_starts_the_command() -> None:
    """`submit [options] -- CMD ARG...` as pueue's `add -- cmd`: what follows `--` is the command,
    taken as it is (its own options are not submit's)."""
    a = parse(["submit", "--label", "lr", "--", "python3", "train.py", "--lr", "0.1", "--job", "x"])
    assert a.command_argv == ["python3", "train.py", "--lr", "0.1", "--job", "x"]
    assert (a.label, a.job, a.tickets) == ("lr", None, [])
    assert parse(["submit", "a.toml"]).command_argv is None
    assert parse(["submit", "a.toml", "--"]).command_argv == []


def test_submit_with_files_and_job_is_one_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", "--job", "one", "t.toml"]) == EXIT_USAGE
    assert error_line(capsys).endswith("give ticket files, --job ID or `-- CMD ARG...`, only one of them")
    assert main(["submit", "--job", "one", "--", "true"]) == EXIT_USAGE
    assert error_line(capsys).endswith("give ticket files, --job ID or `-- CMD ARG...`, only one of them")
    assert main(["submit"]) == EXIT_USAGE
    assert error_line(capsys).endswith("nothing to submit: give ticket files, --job ID or `-- CMD ARG...`")
    assert not (project / "spool").exists()


def test_status_logs_cancel_wait_options() -> None:
    a = parse(["status"])
    assert (a.json, a.last) == (False, 10)
    assert parse(["status", "--json", "--last", "0"]).last == 0
    assert "must be >= 0" in usage("status", "--last", "-1")
    a = parse(["logs", "one", "-f", "--run", "20261123T114430Z-b31a"])
    assert (a.target, a.follow, a.run) == ("one", True, "20261123T114430Z-b31a")
    assert usage("logs") == "the following arguments are required: JOB|TICKET; see `aimedres-async logs --help`"
    a = parse(["cancel", "t1", "t2", "--no-wait"])
    assert (a.tickets, a.all, a.no_wait) == (["t1", "t2"], False, True)
    assert parse(["wait", "t1", "--timeout", "10s"]).timeout == 10.0
    assert usage("wait").startswith("the following arguments are required: TICKET")
    assert parse(["pause"]).command == "pause" and parse(["resume"]).command == "resume"


def test_cancel_needs_ids_or_all_but_not_both(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cancel"]) == EXIT_USAGE
    assert error_line(capsys).endswith("give ticket ids or --all (not both)")
    assert main(["cancel", "--all", "t1"]) == EXIT_USAGE
    assert error_line(capsys).endswith("give ticket ids or --all (not both)")


# ---------------------------------------------------------------- report, init


def test_report_and_init_options() -> None:
    a = parse(["report"])
    assert (a.run, a.output, a.since, a.logs_dir) == (None, None, None, None)
    a = parse(["report", "R", "-o", "out.html", "--since", "12h", "--logs-dir", "L"])
    assert (a.run_positional, a.output, a.since, a.logs_dir) == ("R", "out.html", "12h", "L")
    assert parse(["report", "--run", "R"]).run == "R"  # as `logs JOB --run R` takes it
    assert parse(["logs", "als", "R"]).run_positional == "R"
    a = parse(["init"])
    assert (a.path, a.from_yaml, a.from_orchestrator) == ("aimedres.toml", None, None)
    assert parse(["init", "p.toml", "--from-yaml", "jobs.yaml"]).from_yaml == "jobs.yaml"
    assert parse(["init", "--from-orchestrator", "train.py"]).from_orchestrator == "train.py"
    assert usage("init", "--config", "x") == "unknown option '--config'; see `aimedres-async init --help`"


def test_init_never_overwrites(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (project / "aimedres.toml").read_text()
    assert main(["init"]) == EXIT_USAGE
    assert error_line(capsys).endswith("aimedres.toml already exists; not overwriting it")
    assert (project / "aimedres.toml").read_text() == before


# ---------------------------------------------------------------- help and version


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"aimedres-async {__version__}\n"


def test_help_lists_every_command_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith(
        "usage: aimedres-async [-h] [--config PATH] [-q] [-v] [--color {auto,always,never}] [-V] COMMAND"
    )
    listed = [line.split()[0] for line in out.split("  COMMAND\n", 1)[1].split("\n\n", 1)[0].splitlines()]
    order = ["run", "list", "validate", "serve", "submit", "status", "logs", "cancel", "wait", "pause", "resume"]
    order += ["restart", "clean", "parallel", "completions"]
    assert listed == [*order, "report", "init", "leaderboard", "compare", "export", "help"]
    assert "With no command, `run` is meant" in out


def test_run_help_groups_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    titles = ["job selection:", "discovery (run_all_training.py flags):", "passed to the scripts", "execution:"]
    positions = [out.index(t) for t in [*titles, "output:"]]
    assert positions == sorted(positions)
    assert "-j N|auto, --max-workers N|auto" in out and "--config" not in out  # hidden: it is global


def test_every_option_has_help_and_every_command_a_description() -> None:
    parser = build_parser()
    commands = parser.subcommands()
    assert set(commands) == set(COMMANDS) == set(DESCRIPTIONS)
    for name, sub in commands.items():
        assert sub.description == DESCRIPTIONS[name] and sub.allow_abbrev is False
        for action in sub._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help, (name, action.option_strings)
    assert parser.allow_abbrev is False


def _grammar(parser: argparse.ArgumentParser) -> list[tuple[object, ...]]:
    return [(a.option_strings, a.dest, a.default, a.nargs, a.choices, a.help) for a in parser._actions]


@pytest.mark.parametrize("name", COMMANDS)
def test_a_command_built_alone_has_the_whole_grammar_s_options_and_help(name: str) -> None:
    full, alone = build_parser(), build_parser(only=name)
    assert _grammar(alone.subcommands()[name]) == _grammar(full.subcommands()[name])
    assert set(alone.subcommands()) == set(COMMANDS)  # the others keep their names ...
    assert alone.format_help() == full.format_help()  # ... and their help lines


@pytest.mark.parametrize(
    ("argv", "built"),
    [
        (["status"], ["status"]),
        (["--config", "x.toml", "-q", "submit", "--", "true"], ["submit"]),
        (["--color=never", "cancel", "3"], ["cancel"]),
        (["--parallel", "-j", "2"], ["run"]),
        ([], ["run"]),
    ],
)
def test_parsing_builds_the_named_command_s_parser_only(
    argv: list[str], built: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aimedres_async.cli import parser as grammar

    calls: list[str | None] = []
    whole = grammar.build_parser

    def counted(only: str | None = None) -> grammar.Parser:
        calls.append(only)
        return whole(only)

    monkeypatch.setattr(grammar, "build_parser", counted)
    parse(argv)
    assert calls == built


def test_a_command_that_was_not_built_is_parsed_by_the_whole_grammar(monkeypatch: pytest.MonkeyPatch) -> None:
    from aimedres_async.cli import parser as grammar
    from aimedres_async.cli.usage import UnbuiltCommand

    with pytest.raises(UnbuiltCommand):
        build_parser(only="run").parse_args(["status", "--json"])
    monkeypatch.setattr(grammar, "command_named", lambda argv: "run")  # a wrong guess
    assert vars(parse(["status", "--json"])) == vars(build_parser().parse_args(["status", "--json"]))


# ---------------------------------------------------------------- main on a project: nothing runs


def test_list_prints_the_jobs_and_runs_nothing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "SCRIPT", "ACCEPTS", "RESOURCES", "FITS", "OPTIONAL"]
    assert [line.split()[0] for line in out[1:]] == ["one", "two"]
    assert "command:" in out[1] and out[1].split()[-2:] == ["yes", "no"]
    assert not list(project.glob("ran-*")) and not (project / "logs").exists()


def test_a_run_s_plan_is_made_without_the_cyclic_collector_which_is_on_again_after(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import gc

    from aimedres_async.cli import app

    seen: list[bool] = []
    locate = app.locate_config

    def located(path: str | None) -> Any:
        seen.append(gc.isenabled())
        return locate(path)

    monkeypatch.setattr(app, "locate_config", located)
    assert main(["run", "--list"]) == 0
    assert main(["run", "--only", "three"]) == EXIT_USAGE  # a plan refused
    assert main(["list"]) == 0
    assert seen == [False, False, True] and gc.isenabled()


def test_run_list_with_selection(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list", "--only", "two"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["two"]


def test_dry_run_prints_each_command_and_runs_nothing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dry-run", "--exclude", "one"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"# two  (cwd {project})"
    assert out[1].startswith(sys.executable) and "ran-two" in out[1] and len(out) == 2
    assert not list(project.glob("ran-*")) and not (project / "logs").exists()


def test_dry_run_refuses_a_run_to_resume_that_is_not_there(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--dry-run", "--resume"]) == EXIT_USAGE
    assert "no run to resume" in error_line(capsys)


def test_an_unknown_only_id_is_one_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dry-run", "--only", "three"]) == EXIT_USAGE
    assert "three" in error_line(capsys)


def test_strict_discovery_that_finds_nothing_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "aimedres.toml").write_text('[discovery]\nenabled = true\nroots = ["scripts"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AIMEDRES_CONFIG", raising=False)
    assert main(["--strict-discovery", "--list"]) == 3
    assert capsys.readouterr().err.strip().endswith("aimedres-async: error: --strict-discovery: it found no jobs")


def test_validate_says_ok(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "aimedres.toml: ok (2 jobs: one, two)\n"
    assert "config: " in captured.err


def test_validate_counts_one_job_as_one_job(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "aimedres.toml").write_text(f"[discovery]\nenabled = false\n[jobs.one]\ncommand = {command('one')}\n")
    assert main(["validate"]) == 0
    assert capsys.readouterr().out == "aimedres.toml: ok (1 job: one)\n"


def test_a_missing_config_is_one_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", "gone.toml", "list"]) == EXIT_USAGE
    assert "gone.toml" in error_line(capsys)


@pytest.mark.parametrize(
    "argv",
    [["rnu"], ["run", "--paralel"], ["-j", "0"], ["--config"], ["logs"], ["status", "--last", "x"], ["init", "-x"]],
)
def test_usage_errors_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    line = error_line(capsys)
    assert "Traceback" not in line and line.endswith("--help`")
    assert capsys.readouterr().out == ""


def test_the_hidden_helper_of_completions_is_never_offered() -> None:
    """`_tickets` runs (the completion scripts call it) but no list of commands names it."""
    assert parse(["_tickets"]).command == "_tickets"
    line = usage("xyzzy")
    assert "_tickets" not in line and "completions" in line
