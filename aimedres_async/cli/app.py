"""The command line's entry: parse, load the config, hand over to the command's function.

Every usage or config mistake ends as one line per problem on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Callable, Sequence

from aimedres_async.cli.parser import build_parser, parse
from aimedres_async.cli.usage import UsageError, did_you_mean
from aimedres_async.plan.config import Config
from aimedres_async.plan.config_errors import ConfigError, InputError
from aimedres_async.plan.invocation import locate_config, override
from aimedres_async.system import startup_signals

__all__ = ["EXIT_USAGE", "main"]

EXIT_USAGE = 2

# command -> (module of aimedres_async.cli, function): a command imports only its own module, so
# `status` never loads the job planner and `list` never loads the daemon's client.
HANDLERS: dict[str, tuple[str, str]] = {
    "run": ("run", "cmd_run"),
    "list": ("run", "cmd_list"),
    "validate": ("project", "cmd_validate"),
    "serve": ("queue", "cmd_serve"),
    "submit": ("queue", "cmd_submit"),
    "status": ("queue", "cmd_status"),
    "logs": ("queue", "cmd_logs"),
    "cancel": ("queue", "cmd_cancel"),
    "wait": ("queue", "cmd_wait"),
    "pause": ("queue", "cmd_pause"),
    "resume": ("queue", "cmd_resume"),
    "report": ("project", "cmd_report"),
    "leaderboard": ("experiments", "cmd_leaderboard"),
    "compare": ("experiments", "cmd_compare"),
    "restart": ("spool_ops", "cmd_restart"),
    "clean": ("spool_ops", "cmd_clean"),
    "parallel": ("spool_ops", "cmd_parallel"),
    "_tickets": ("spool_ops", "cmd_tickets"),
    "completions": ("completions", "cmd_completions"),
    "export": ("export", "cmd_export"),
}


def handler(command: str) -> Callable[[Config, argparse.Namespace], int]:
    module, function = HANDLERS[command]
    found: Callable[[Config, argparse.Namespace], int] = getattr(
        importlib.import_module(f"aimedres_async.cli.{module}"), function
    )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except (ConfigError, UsageError, InputError) as e:
        for problem in e.problems if isinstance(e, ConfigError) else [str(e)]:
            print(f"aimedres-async: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _dispatch(args: list[str]) -> int:
    a = parse(args)
    if a.command == "help":
        return _help(a.topic)
    if a.command == "init":
        held = startup_signals.release()  # Ctrl+C stops a long conversion like any command
        if held is not None:
            return 128 + held
        from aimedres_async.cli.project import cmd_init

        return cmd_init(a)
    collecting = gc.isenabled()
    if a.command == "run":
        # A run's config and plan live as long as the run: they are made without the cyclic
        # collector, whose full passes grow with the plan (0.6 s of collection in reading and
        # planning 30,000 jobs); the engine freezes them out of its sight and enables it again.
        gc.disable()
    try:
        cfg, a.config_line = locate_config(a.config)
        cfg = override(cfg, executor=getattr(a, "executor", None))
        if a.command not in ("run", "serve"):  # they hand held signals to signals.CapturedSignals
            held = startup_signals.release()
            if held is not None:
                return 128 + held
        code = handler(a.command)(cfg, a)
    finally:
        if collecting:  # run --list, --dry-run, a plan refused: as the caller had it
            gc.enable()
    held = startup_signals.release()  # run --list/--dry-run, or a usage error before the capture
    return 128 + held if held is not None else code


def _help(topic: str | None) -> int:
    """`help [COMMAND]`: what `COMMAND --help` (or `--help`) prints, exit 0."""
    parser = build_parser()
    if topic is None:
        parser.print_help()
        return 0
    commands = parser.subcommands()
    if topic not in commands:
        raise UsageError(f"unknown command {topic!r}{did_you_mean(topic, list(commands))}; see `aimedres-async --help`")
    commands[topic].print_help()
    return 0
