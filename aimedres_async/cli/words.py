"""The command line's words: its commands and what each is for, the options every command takes,
the value types options take (a bad value is one line of error, as argparse's own are), which
command a command line names, and the rule that naming none means `run` (as run_all_training.py
was called).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from aimedres_async.cli.usage import UsageError, closest
from aimedres_async.plan.config import MAX_WORKERS
from aimedres_async.plan.sweeps import Value, parse_matrix_option, parse_seeds_option
from aimedres_async.plan.units import MAX_INT, parse_duration

COMMANDS = (
    "run",
    "list",
    "validate",
    "serve",
    "submit",
    "status",
    "logs",
    "init",
    "cancel",
    "wait",
    "pause",
    "resume",
    "report",
    "leaderboard",
    "compare",
    "export",
    "help",
    "restart",
    "clean",
    "parallel",
    "completions",
    "_tickets",
)

# Options every command takes, before or after the command's name (as ruff's and uv's do).
GLOBAL_FLAGS = ("-q", "--quiet", "-v", "--verbose", "-h", "--help", "-V", "--version")
GLOBAL_VALUED = ("--config", "--color")
COLOR_CHOICES = ("auto", "always", "never")


def int_at_least(lo: int, hi: int = MAX_INT) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:40]!r}") from None
        if n < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {n}")
        if n > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi}")
        return n

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def workers_value(text: str) -> int | None:
    return None if text == "auto" else int_at_least(1, MAX_WORKERS)(text)


def matrix_value(text: str) -> tuple[str, tuple[Value, ...]]:
    try:
        return parse_matrix_option(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def seeds_value(text: str) -> tuple[int, ...]:
    try:
        return parse_seeds_option(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def duration_value(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


DESCRIPTIONS = {
    "run": "Run the selected jobs and exit. The exit code says whether every required job succeeded "
    "(0), one failed (1), the command line or config is wrong (2), --strict-discovery found nothing or "
    "a problem (3), or a signal stopped it (130 SIGINT, 143 SIGTERM, 129 SIGHUP).",
    "list": "Show the jobs the config defines and discovery finds: id, script, which of "
    "output-dir/epochs/folds/sample/batch it accepts, resources, whether they fit here, optional.",
    "validate": "Check the config and the jobs it makes; print every problem (exit 2) or one OK line. "
    "It reports what `run` would refuse: no jobs, a job that can never fit the resources.",
    "serve": "The spool daemon: run the job tickets dropped into spool_dir/incoming with the same "
    "supervisor as `run`, and file each under done/, failed/ or rejected/. Meant for systemd. "
    "Exits 0 on SIGTERM, 130 on SIGINT (running tickets go back to incoming/), 2 on a config or "
    "spool error, 1 on an internal error.",
    "submit": "Validate tickets and enqueue them into the spool atomically; prints each ticket's number "
    "and id. Either ticket files, --job ID with overrides, or a command after `--` (run as an argv "
    "list, never through a shell, in this folder unless --cwd).",
    "status": "Whether a daemon serves the spool (pid, since, version, config, workers, paused; exit 3 "
    "if none), the queued tickets in run order, the running ones (job, attempt, pid, Slurm job id "
    "on Slurm, elapsed, last line) and the last finished.",
    "cancel": "Cancel tickets: a queued one goes to failed/ as cancelled at once; a running one gets "
    "stop_signal, then SIGKILL after grace_period, is not retried, and is filed as cancelled. "
    "Exit 0, or 2 naming an unknown ticket.",
    "wait": "Block until every ticket is filed. Exit 0 if all succeeded, 1 if any failed, 130 if any "
    "was cancelled, 124 on timeout, 2 for an unknown ticket.",
    "pause": "Daemons on this spool claim no new ticket until `resume`; running tickets go on. Kept in "
    "the spool (control/paused), so a restarted daemon stays paused.",
    "resume": "Undo `pause`: daemons on this spool claim tickets again.",
    "restart": "Queue finished tickets again as new tickets (a new number and id, with restarted_from "
    "naming the old one); --edit opens $EDITOR on a copy first.",
    "clean": "Remove finished tickets (done/, failed/, rejected/) and their job logs from the spool; "
    "never a queued or running one, nor one a queued ticket waits for (after).",
    "parallel": "Change how many tickets the daemons on this spool run at once (of one group with "
    "--group), at once and kept across restarts; running tickets go on when it is lowered.",
    "_tickets": "The numbers of the spool's tickets, newest first (for the completion scripts).",
    "completions": "Print a shell completion script: `source <(aimedres-async completions bash)`; "
    "ticket numbers are completed from the spool.",
    "logs": "A job's or ticket's JSON-lines log rendered for people: timestamps, attempt separators, "
    "'!' for stderr, a printed JSON object as its key=value pairs.",
    "help": "Describe a command, as `COMMAND --help` does; without one, the commands and the global options.",
    "init": "Write a commented starter aimedres.toml (never overwrites a file). Discovered copies of one script "
    "are excluded in it (the canonical one kept, a comment on each), and the JSON files scripts write are "
    "suggested as their metrics_file. --from-orchestrator or --from-yaml converts the old orchestrator's job "
    "list instead, keeping its arguments, output folders and defaults (see the migration guide).",
    "report": "Write one self-contained HTML file (no network, opens from disk) that draws a run: a timeline "
    "of every attempt, metric curves from the jobs' JSON records, final metrics side by side, "
    "memory, provenance. Default: the latest run, into its folder as report.html.",
    "leaderboard": "Rank the job groups of one or more runs (default: the latest). A group is a base job id "
    "with one combination of parameters; its seeds (and the same group in other runs) fold into mean ± std "
    "(sample std, n-1) of every final metric, with n = the jobs that succeeded. Failed jobs are not in the "
    "statistics; a group without a success is listed last, unranked.",
    "compare": "Compare two runs group by group: each final metric's change NEW - BASE of the means, with the "
    "pooled std across seeds when both sides have two or more (a smaller change is 'within noise'), groups "
    "added or removed, jobs whose outcome changed. Exit 1 when a --fail-if gate fails or, with --exact, "
    "anything differs; 2 for a bad expression or a missing run.",
    "export": "Send a run's jobs to an experiment tracker. `export mlflow`: each job becomes an MLflow run "
    "(params: swept values, epochs, folds, batch, script, interpreter; per-epoch metrics with step = the "
    "epoch; final metrics; tags: run id, job id, attempts, outcome, failure, git commit, config hash; its "
    "JSON-lines log as an artifact; status FAILED for a failed job, KILLED for a cancelled one), in MLflow's "
    "local store here unless told otherwise; exporting again adds no duplicate and completes an export cut "
    "short. `export tensorboard --logdir DIR`: one event folder per job, DIR/<run>/<job>. Needs the extra: "
    "pip install 'aimedres-async[mlflow]' or 'aimedres-async[tensorboard]' (else exit 2).",
}
TICKET_HELP = "a ticket's number, its id, or a unique prefix of the id"
EPILOG = """With no command, `run` is meant: `aimedres-async --parallel -j 4 --epochs 3` is
`aimedres-async run --parallel -j 4 --epochs 3`, and `aimedres-async` alone runs every job of the
config, as run_all_training.py did. `aimedres-async COMMAND --help` describes a command."""


def command_named(argv: Sequence[str]) -> str | None:
    """The command `argv` names after its global options, if it names one."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in GLOBAL_VALUED:
            i += 2
        elif a.split("=", 1)[0] in GLOBAL_VALUED or a in GLOBAL_FLAGS:
            i += 1
        else:
            return a if a in COMMANDS else None
    return None


def with_default_command(argv: list[str], run_options: Sequence[str] = ()) -> list[str]:
    """`aimedres-async --parallel ...` (the old run_all_training.py way) means `run --parallel ...`.

    Global options may come first; an option that is neither global nor `run`'s is named here
    (with the nearest of both), rather than blamed on a `run` the user never typed."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in GLOBAL_VALUED:
            if i + 1 >= len(argv):
                return argv  # let argparse say the value is missing
            i += 2
            continue
        if a.split("=", 1)[0] in GLOBAL_VALUED or a in GLOBAL_FLAGS[:4]:
            i += 1
            continue
        if a in GLOBAL_FLAGS or a in COMMANDS or not a.startswith("-"):
            return argv  # a word that is no command: argparse names it, with the nearest command
        name = a.split("=", 1)[0]
        if run_options and name not in run_options:
            meant = closest(name, [*GLOBAL_FLAGS, *GLOBAL_VALUED, *run_options])
            hint = f" (did you mean {meant!r}?)" if meant else ""
            own = meant is not None and meant not in (*GLOBAL_FLAGS, *GLOBAL_VALUED)  # one of run's own
            where = "aimedres-async run --help" if own else "aimedres-async --help"
            raise UsageError(f"unknown option {name!r}{hint}; see `{where}`")
        return [*argv[:i], "run", *argv[i:]]
    return [*argv, "run"] if not argv or argv[-1] != "--help" else argv
