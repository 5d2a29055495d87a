"""`leaderboard` and `compare`: the commands that read finished runs' summaries and rank or compare
their job groups (seeds folded into mean ± std); neither runs a job.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import orjson

from aimedres_async.cli.usage import UsageError
from aimedres_async.plan.config import Config
from aimedres_async.report.groups import LoadedRun, RunError, load_run


def _logs_dir(cfg: Config, a: argparse.Namespace) -> Path:
    return Path(a.logs_dir).resolve() if a.logs_dir else cfg.resolve(cfg.supervisor.logs_dir)


def _load(arg: str | None, logs_dir: Path) -> LoadedRun:
    try:
        return load_run(arg, logs_dir)
    except RunError as e:
        raise UsageError(str(e)) from None


def cmd_leaderboard(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.records.sinks import atomic_write
    from aimedres_async.report import leaderboard as lb

    logs_dir = _logs_dir(cfg, a)
    runs: dict[str, LoadedRun] = {}
    for arg in a.runs or [None]:
        run = _load(arg, logs_dir)
        runs.setdefault(run.run, run)  # the same run named twice counts once
    try:
        ranked, metrics, keys = lb.leaderboard(runs.values(), a.sort)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if a.csv == "-":
        if a.json:
            raise UsageError("--csv - and --json both print on stdout: give one")
        sys.stdout.write(lb.csv_text(ranked, metrics))
        return 0
    if a.csv:
        try:
            atomic_write(Path(a.csv), lb.csv_text(ranked, metrics).encode())
        except OSError as e:
            raise UsageError(f"cannot write {a.csv}: {e.strerror or e}") from None
        print(f"wrote {a.csv}", file=sys.stderr)
    if a.json:
        sys.stdout.write(orjson.dumps(lb.to_json(ranked), option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    order = ", ".join(str(k) for k in keys) or "nothing (no final metric)"
    print(f"{'runs' if len(runs) > 1 else 'run'} {', '.join(runs)}; ranked by {order}")
    if not ranked:
        print("(no jobs)")
        return 0
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    sys.stdout.write(lb.table(ranked, metrics, width, show_runs=len(runs) > 1))
    return 0


def cmd_compare(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.report import compare as cmp

    logs_dir = _logs_dir(cfg, a)
    base, new = _load(a.base, logs_dir), _load(a.new, logs_dir)
    try:
        c = cmp.compare(base, new, a.fail_if, exact=a.exact)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if a.json:
        sys.stdout.write(orjson.dumps(cmp.to_json(c), option=orjson.OPT_INDENT_2).decode() + "\n")
    elif a.markdown:
        sys.stdout.write(cmp.markdown(c))
    else:
        sys.stdout.write(cmp.text(c))
    return 1 if c.failed else 0
