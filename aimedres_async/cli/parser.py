"""The command line's grammar: the argparse parser, built one command family at a time (at
start-up only the named command's), from the words in cli/words.py.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from aimedres_async import __version__
from aimedres_async.cli.usage import Commands, Parser, UnbuiltCommand
from aimedres_async.cli.words import (
    COLOR_CHOICES,
    DESCRIPTIONS,
    EPILOG,
    TICKET_HELP,
    command_named,
    duration_value,
    int_at_least,
    matrix_value,
    non_negative_int,
    positive_int,
    seeds_value,
    with_default_command,
    workers_value,
)
from aimedres_async.plan import legacy
from aimedres_async.plan.config import EXECUTORS, MAX_WORKERS
from aimedres_async.plan.limits import PRIORITY_MAX, PRIORITY_MIN


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The command line as a namespace; a mistake raises UsageError (one line, exit 2).

    Only the parser of the command `argv` names (else `run`'s, the default) is built: the others
    are names and help lines until one of them is chosen after all, and then all are built."""
    named = command_named(argv)
    try:
        parser = build_parser(only=named or "run")
        # a command named: nothing to insert (with_default_command would return argv as it is)
        args = list(argv) if named else with_default_command(list(argv), parser.subcommands()["run"].options())
        namespace: argparse.Namespace = parser.parse_args(args)
    except UnbuiltCommand:
        parser = build_parser()
        args = with_default_command(list(argv), parser.subcommands()["run"].options())
        namespace = parser.parse_args(args)
    if namespace.command == "submit":
        namespace.command_argv = None
        if "--" in args:  # `submit [options] -- CMD ARG...`: the rest is the command, as it is
            cut = args.index("--")
            namespace = parser.parse_args(args[:cut])
            namespace.command_argv = args[cut + 1 :]
    return namespace


def _global_options(p: Parser, top: bool, config: bool = True) -> None:
    """-q, -v, --color and --config: on the top parser with their defaults, on every command
    without (so a value given before the command is not reset by the command's parser)."""

    def add(*names: str, default: Any, help: str, **kw: Any) -> None:
        hidden = argparse.SUPPRESS
        p.add_argument(*names, default=default if top else hidden, help=help if top else hidden, **kw)

    if config:
        add(
            "--config",
            metavar="PATH",
            default=None,
            help="config file (default: $AIMEDRES_CONFIG, else ./aimedres.toml)",
        )
    add(
        "-q",
        "--quiet",
        action="store_true",
        default=False,
        help="print only problems and results: no live display, no line per job event",
    )
    add(
        "-v",
        "--verbose",
        action="store_true",
        default=False,
        help="also stream every output line of the jobs, prefixed by job id (run, serve)",
    )
    add(
        "--color",
        choices=COLOR_CHOICES,
        default="auto",
        help="colour the live display: auto (a terminal, unless NO_COLOR is set), always, never",
    )


def build_parser(only: str | None = None) -> Parser:
    """The whole grammar: global options, then each command family (commands listed in this order).

    With `only`, the other commands keep their names and help lines but get no parser of their
    own (start-up: building all of them costs a few milliseconds on every call)."""
    p = Parser(
        prog="aimedres-async",
        description="Train a folder of ML training scripts in parallel, unattended.",
        epilog=EPILOG,
    )
    _global_options(p, top=True)
    p.add_argument("-V", "--version", action="version", version=f"aimedres-async {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser, action=Commands)
    assert isinstance(sub, Commands)
    sub.only = only
    run = _subcommand(sub, "run", "run the selected jobs and exit (the default command)")
    lst = _subcommand(sub, "list", "show the jobs: script, accepted flags, resources")
    val = _subcommand(sub, "validate", "check the config and print every problem")
    srv = _subcommand(sub, "serve", "the spool daemon: run the tickets dropped into spool_dir/incoming")
    _submit_command(sub)
    _queue_commands(sub)
    _spool_commands(sub)
    _project_commands(sub)
    _experiment_commands(sub)
    _export_command(sub)
    hlp = _subcommand(sub, "help", "describe a command: `help run` is `run --help`")
    hlp.add_argument("topic", nargs="?", metavar="COMMAND", help="the command to describe (default: all of them)")
    _run_commands(run, lst, val, srv)
    for name, sp in p.subcommands().items():  # `run --config X`, `status -q` too
        _global_options(sp, top=False, config=name != "init")  # init's file is its PATH
    return p


def _subcommand(sub: Any, name: str, help: str) -> Parser:
    parser: Parser = sub.add_parser(name, help=help, description=DESCRIPTIONS[name])
    return parser


def _run_commands(run: Parser, lst: Parser, val: Parser, srv: Parser) -> None:
    """What `run`, `list`, `validate` and `serve` share, then `run`'s own option groups."""
    for sp in (run, lst, val, srv):
        sp.add_argument(
            "--executor",
            choices=EXECUTORS,
            default=None,
            help="where attempts run: local processes, Ray or Slurm (wins over [supervisor] executor)",
        )
    _selection_options(run).add_argument(
        "--list", action="store_true", help="list the jobs and exit (the `list` command)"
    )
    _selection_options(lst)
    _sweep_options(run).add_argument(
        "--yes",
        action="store_true",
        help="run the sweeps even if they expand beyond [supervisor] max_jobs (default 1000)",
    )
    _sweep_options(lst)
    # `list` shows what it would run; these change nothing it shows, but `run --list` accepts them.
    lst.set_defaults(
        epochs=None,
        folds=None,
        sample=None,
        batch=None,
        extra_arg=[],
        base_output_dir=None,
        parallel=None,
        retries=None,
        timeout=None,
        summary_dir=None,
        yes=False,
    )
    for sp in (run, lst, val):
        sp.add_argument(
            "--python", metavar="PATH", help="interpreter for .py scripts (default: [supervisor] python, else this one)"
        )
    _passed_options(run)
    _execution_options(run)
    _output_options(run)


def _selection_options(sp: Parser) -> Any:
    g = sp.add_argument_group("job selection")
    # nargs="*": an empty `--only` selects every job, as run_all_training.py did (a CI input left blank)
    g.add_argument(
        "--only",
        nargs="*",
        action="extend",
        metavar="ID",
        default=[],
        help="run only these jobs (also old ids: train_als, ALS); a swept job's id selects all its "
        "combinations, a full id one: 'train[lr=0.1,seed=0]' (quoted: brackets are shell patterns)",
    )
    g.add_argument(
        "--exclude",
        nargs="*",
        action="extend",
        metavar="ID",
        default=[],
        help="skip these jobs (a swept job's id: all its combinations; a full id: one)",
    )
    g.add_argument("--no-auto-discover", action="store_true", help="only the jobs in [jobs.*], no discovery")
    g.add_argument(
        "--discover-root",
        nargs="+",
        metavar="DIR",
        help="discover scripts under these folders instead of [discovery] roots",
    )
    legacy.add_discovery_flags(sp.add_argument_group("discovery (run_all_training.py flags)"), positive_int)
    return g


def _sweep_options(sp: Parser) -> Any:
    g = sp.add_argument_group("sweeps (one job per combination; see [jobs.<id>] matrix)")
    g.add_argument(
        "--matrix",
        type=matrix_value,
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="sweep KEY over these values in every selected job, replacing its matrix's KEY or "
        "adding one (repeatable); passed as --KEY V to the scripts",
    )
    g.add_argument(
        "--seeds",
        type=seeds_value,
        metavar="0-4|0,3",
        help="the seed axis of every selected job (replaces seeds/repeat); passed as --seed S",
    )
    return g


def _passed_options(run: Parser) -> None:
    g = run.add_argument_group("passed to the scripts (a job's own config value wins)")
    g.add_argument("--epochs", type=positive_int, metavar="N", help="passed as --epochs to scripts that accept it")
    g.add_argument("--folds", type=positive_int, metavar="N", help="passed as --folds to scripts that accept it")
    g.add_argument("--sample", type=positive_int, metavar="N", help="passed as --sample to scripts that accept it")
    g.add_argument("--batch", type=positive_int, metavar="N", help="passed as --batch-size to scripts that accept it")
    g.add_argument(
        "--extra-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="append ARG to every script's command (repeatable; --extra-arg=--flag)",
    )
    g.add_argument("--base-output-dir", metavar="DIR", help="each job writes to DIR/<id> (passed as --output-dir)")


def _execution_options(run: Parser) -> None:
    g = run.add_argument_group("execution")
    g.add_argument("--parallel", action="store_true", default=None, help="run jobs in parallel (parallel = true)")
    g.add_argument(
        "-j",
        "--max-workers",
        type=workers_value,
        metavar="N|auto",
        default=argparse.SUPPRESS,
        help="at most N jobs at once; auto = one per CPU, fitted to recorded memory peaks",
    )
    g.add_argument("--retries", type=non_negative_int, metavar="N", help="retries per job (wins over the config)")
    g.add_argument("--timeout", type=duration_value, metavar="DURATION", help="per attempt, e.g. 30m (0 = none)")
    g.add_argument("--fail-fast", action="store_true", help="stop everything at the first required failure")
    g.add_argument("--allow-partial-success", action="store_true", help="exit 0 even if a required job failed")
    g.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="RUN_ID",
        help="skip jobs that succeeded in RUN_ID (default: the latest run) with the same command",
    )
    g.add_argument(
        "--dry-run", action="store_true", help="print each job's exact command and check what run would; run nothing"
    )


def _output_options(run: Parser) -> None:
    g = run.add_argument_group("output")
    g.add_argument("--no-progress", action="store_true", help="plain lines even on a terminal")
    g.add_argument(
        "--log-format",
        choices=("auto", "console", "json"),
        default="auto",
        help="lifecycle lines on stderr: human (auto: live display on a terminal) or JSON",
    )
    g.add_argument("--logs-dir", metavar="DIR", help="where run folders go (default: [supervisor] logs_dir)")
    g.add_argument("--log-file", metavar="PATH", help="also write the complete JSON-lines stream here")
    g.add_argument("--junit-xml", metavar="PATH", help="write a JUnit report, one testcase per job")
    g.add_argument(
        "--report",
        metavar="FILE",
        help="at the end (also after Ctrl+C) write the run's self-contained HTML report to FILE",
    )
    legacy.add_summary_flag(g)


def _submit_command(sub: Any) -> Parser:
    smt = _subcommand(sub, "submit", "enqueue tickets into the spool; prints each ticket's number and id")
    smt.add_argument("tickets", nargs="*", metavar="TICKET.toml", help="ticket files to submit (or use --job)")
    smt.add_argument("--job", metavar="ID", help="a ticket naming this configured (or discovered) job")
    smt.add_argument("--epochs", type=positive_int, metavar="N", help="the ticket's epochs (passed as --epochs)")
    smt.add_argument("--folds", type=positive_int, metavar="N", help="the ticket's folds (passed as --folds)")
    smt.add_argument("--sample", type=positive_int, metavar="N", help="passed as --sample")
    smt.add_argument("--batch", type=positive_int, metavar="N", help="passed as --batch-size")
    smt.add_argument("--retries", type=non_negative_int, metavar="N", help="retries for the ticket's job")
    smt.add_argument("--timeout", metavar="DURATION", help="per attempt, e.g. 30m (0 = none)")
    smt.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="ARG",
        help="append ARG to the job's command (repeatable; --arg=--seed for dashes)",
    )
    smt.add_argument(
        "--priority",
        type=int_at_least(PRIORITY_MIN, PRIORITY_MAX),
        metavar="N",
        help="higher runs first (default 0, within 32 bits; FIFO within a priority); ticket key `priority`",
    )
    smt.add_argument(
        "--after",
        action="append",
        default=[],
        metavar="TICKET",
        help="start only once TICKET succeeded; if it fails or is cancelled this one fails "
        'with failure = "dependency" (repeatable); ticket key `after`',
    )
    _queue_options(smt)
    smt.add_argument("--cwd", metavar="DIR", help="with `-- CMD`: run it in DIR (default: where submit runs)")
    return smt


def _queue_options(sp: Parser) -> None:
    """What `submit` gives a new ticket besides its job."""
    sp.add_argument("--label", metavar="TEXT", help="what `status` calls the ticket; ticket key `label`")
    sp.add_argument("--group", metavar="NAME", help="the daemon queue ([groups.<name>]) it waits in (default: default)")
    sp.add_argument(
        "--delay",
        type=duration_value,
        metavar="DURATION",
        help="claim it no sooner than this from now, e.g. 10m; ticket key `not_before`",
    )


def _spool_commands(sub: Any) -> tuple[Parser, ...]:
    """restart, clean, parallel, completions (SPEC §15), and the hidden helper of completions."""
    rst = _subcommand(sub, "restart", "queue finished tickets again as new tickets")
    rst.add_argument("tickets", nargs="+", metavar="TICKET", help=TICKET_HELP)
    rst.add_argument("--edit", action="store_true", help="edit a copy of each ticket in $EDITOR first")
    cln = _subcommand(sub, "clean", "remove finished tickets and their logs from the spool")
    which = cln.add_mutually_exclusive_group()
    which.add_argument("--failed", action="store_true", help="only failed, cancelled and rejected tickets")
    which.add_argument("--succeeded", action="store_true", help="only tickets that succeeded")
    cln.add_argument(
        "--older-than", type=duration_value, metavar="DURATION", help="only tickets filed longer ago than this, e.g. 7d"
    )
    par = _subcommand(sub, "parallel", "change the daemons' worker count now (kept across restarts)")
    par.add_argument("workers", nargs="?", type=int_at_least(1, MAX_WORKERS), metavar="N", help="tickets at once")
    par.add_argument("--group", metavar="NAME", help="the group to change (default: default)")
    par.add_argument("--reset", action="store_true", help="go back to the config's worker count")
    cmp = _subcommand(sub, "completions", "print a shell completion script")
    cmp.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell to complete in")
    hidden: Parser = sub.add_parser("_tickets", description=DESCRIPTIONS["_tickets"])  # no help=: not listed
    return rst, cln, par, hidden


def _queue_commands(sub: Any) -> tuple[Parser, ...]:
    """The spool's client commands besides `submit`: status, logs, cancel, wait, pause, resume."""
    sts = _subcommand(sub, "status", "what the spool daemon is doing")
    sts.add_argument("--json", action="store_true", help="one JSON object, for machines")
    sts.add_argument(
        "--last", type=non_negative_int, default=10, metavar="N", help="finished tickets to list (default 10)"
    )
    lgs = _subcommand(sub, "logs", "a job's or ticket's log, for humans")
    lgs.add_argument(
        "target", metavar="JOB|TICKET", help="a job id of a run, or a ticket (number, id or unique id prefix)"
    )
    lgs.add_argument(
        "run_positional", nargs="?", metavar="RUN", help="which run, as --run says (report takes it the same way)"
    )
    lgs.add_argument("--run", metavar="RUN_ID", help="which run (default: the ticket's, else the latest)")
    lgs.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep printing until the job finishes; a queued ticket is waited for, and the exit code is `wait`'s",
    )
    cnc = _subcommand(sub, "cancel", "cancel queued or running tickets")
    cnc.add_argument(
        "tickets", nargs="*", metavar="TICKET", help="tickets to cancel: numbers, ids or unique id prefixes"
    )
    cnc.add_argument("--all", action="store_true", help="cancel every queued and running ticket")
    cnc.add_argument("--no-wait", action="store_true", help="do not wait for running tickets to stop")
    wat = _subcommand(sub, "wait", "wait until tickets have finished")
    wat.add_argument(
        "tickets", nargs="+", metavar="TICKET", help="tickets to wait for: numbers, ids or unique id prefixes"
    )
    wat.add_argument("--timeout", type=duration_value, metavar="DURATION", help="give up after this long (exit 124)")
    pse = _subcommand(sub, "pause", "stop claiming new tickets (running ones go on)")
    rsm = _subcommand(sub, "resume", "claim tickets again after `pause`")
    for sp in (pse, rsm):
        sp.add_argument("--group", metavar="NAME", help="only this group's queue (default: every group)")
    return sts, lgs, cnc, wat, pse, rsm


def _project_commands(sub: Any) -> Parser:
    """`report` and `init`; returns `report`, as `init` takes no --config (it writes one)."""
    rep = _subcommand(sub, "report", "write one self-contained HTML report of a run (default: the latest)")
    rep.add_argument(
        "run_positional", nargs="?", metavar="RUN", help="a run id or a run folder (default: the latest run)"
    )
    rep.add_argument("--run", metavar="RUN_ID", help="the same as RUN (as `logs JOB --run RUN_ID` takes it)")
    rep.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write it (default: report.html in the run folder; with --since, ./report.html)",
    )
    rep.add_argument(
        "--since",
        metavar="T",
        help="instead of one run: every job with a record since T (12h, 2d, 2026-11-27T08:00 UTC), "
        "e.g. the spool daemon's tickets over a window",
    )
    rep.add_argument("--logs-dir", metavar="DIR", help="where run folders are (default: [supervisor] logs_dir)")
    ini = _subcommand(sub, "init", "write a commented starter aimedres.toml (never overwrites)")
    ini.add_argument("path", nargs="?", default="aimedres.toml", help="where to write it (default: ./aimedres.toml)")
    legacy.add_init_flags(ini)
    return rep


def _experiment_commands(sub: Any) -> tuple[Parser, Parser]:
    """`leaderboard` and `compare`: job groups of finished runs ranked, or two runs compared."""
    run_help = "a run id (or latest), a run folder or a summary.json file"
    lbd = _subcommand(sub, "leaderboard", "rank job groups by their final metrics (mean ± std over seeds)")
    lbd.add_argument("runs", nargs="*", metavar="RUN", help=f"{run_help} (default: the latest run); several merge")
    lbd.add_argument(
        "--sort",
        metavar="METRIC[:desc|asc],...",
        help="sort keys in order (default: the first metric; direction default desc, asc for loss/error-like names)",
    )
    lbd.add_argument(
        "--csv", metavar="FILE", help="also write the leaderboard as CSV to FILE (-: print it, not the table)"
    )
    lbd.add_argument("--json", action="store_true", help="print the leaderboard as JSON (a list of groups)")
    cmp = _subcommand(sub, "compare", "compare two runs' final metrics group by group; gate on regressions")
    cmp.add_argument("base", metavar="BASE", help=run_help)
    cmp.add_argument("new", metavar="NEW", help=run_help)
    cmp.add_argument(
        "--fail-if",
        action="append",
        default=[],
        metavar="EXPR",
        help='exit 1 when a group\'s change NEW - BASE satisfies EXPR, e.g. "accuracy < -0.01" or '
        '"rmse > 0.5" (repeatable; OP is <, <=, >, >=)',
    )
    cmp.add_argument(
        "--exact", action="store_true", help="list every final metric or outcome that differs at all; exit 1 on any"
    )
    fmt = cmp.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the comparison as JSON")
    fmt.add_argument("--markdown", action="store_true", help="print the comparison as Markdown (a PR comment)")
    for sp in (lbd, cmp):
        sp.add_argument("--logs-dir", metavar="DIR", help="where run folders are (default: [supervisor] logs_dir)")
    return lbd, cmp


def _export_command(sub: Any) -> Parser:
    """`export mlflow|tensorboard [RUN]`: a run's jobs into an experiment tracker."""
    exp = _subcommand(sub, "export", "send a run's jobs to MLflow or TensorBoard (default: the latest run)")
    exp.add_argument("tracker", choices=("mlflow", "tensorboard"), metavar="mlflow|tensorboard", help="where to")
    exp.add_argument("run", nargs="?", metavar="RUN", help="a run id or a run folder (default: the latest run)")
    exp.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="mlflow: where to write (default: $MLFLOW_TRACKING_URI, else MLflow's local default "
        "sqlite:///mlflow.db in this folder)",
    )
    exp.add_argument("--experiment", metavar="NAME", help="mlflow: the experiment (default: the config folder's name)")
    exp.add_argument("--logdir", metavar="DIR", help="tensorboard (required): the log folder to write under")
    exp.add_argument("--logs-dir", metavar="DIR", help="where run folders are (default: [supervisor] logs_dir)")
    return exp
