"""`run` (with --list and --dry-run) and `list`: the options become a plan and run options, and the
jobs go to the supervisor; also the console and the executor, which `serve` sets up the same way.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aimedres_async.cli.usage import UsageError
from aimedres_async.plan import legacy
from aimedres_async.plan.config import Config
from aimedres_async.plan.invocation import KEEP, override, select_jobs
from aimedres_async.plan.jobs import DiscoveryOverrides, JobSpec, Overrides, Plan
from aimedres_async.plan.sweeps import SweepOverrides

if TYPE_CHECKING:
    from aimedres_async.engine.scheduler import Pools
    from aimedres_async.records.console import Console
    from aimedres_async.system.signals import CapturedSignals

EXIT_DISCOVERY = 3  # --strict-discovery, as run_all_training.py


def console_for(a: argparse.Namespace, live: bool = False) -> Console:
    """Human lines, JSON lines, or (live=True, on a terminal) the live progress display."""
    from aimedres_async.records.console import Console

    fmt = getattr(a, "log_format", "auto")
    verbose = getattr(a, "verbose", False)
    quiet = getattr(a, "quiet", False)
    console = Console("json" if fmt == "json" else "console", verbose=verbose, quiet=quiet)
    # --verbose streams job output to stdout, which would tear through a live display on stderr
    shown = not (verbose or quiet or getattr(a, "no_progress", False))
    if live and fmt == "auto" and shown and sys.stderr.isatty():
        console.use_progress(getattr(a, "color", "auto"))
    return console


def executor_for(cfg: Config, logs_dir: Path | None = None) -> Any:
    """The config's executor (None: local processes); a cluster that is missing is a usage error."""
    from aimedres_async.engine.executors.choose import make_executor

    try:
        return make_executor(cfg, logs_dir)
    except Exception as e:  # RayUnavailable, SlurmUnavailable: the cluster missing or unreachable
        if type(e).__name__ not in ("RayUnavailable", "SlurmUnavailable"):
            raise
        raise UsageError(str(e)) from None


def cmd_list(cfg: Config, a: argparse.Namespace) -> int:
    a.list, a.dry_run, a.log_format, a.verbose = True, False, "auto", False
    return cmd_run(cfg, a)


def cmd_run(cfg: Config, a: argparse.Namespace) -> int:
    cfg = override(
        cfg,
        python=a.python,
        parallel=a.parallel,
        max_workers=a.max_workers if "max_workers" in a else KEEP,
        epochs=a.epochs,
        folds=a.folds,
        sample=a.sample,
        batch=a.batch,
    )
    p = _selection(cfg, a)
    console = console_for(a, live=not (a.list or a.dry_run))
    if a.strict_discovery and (p.warnings or not p.jobs):
        _preamble(console, a, p)
        reason = "it reported the problems above" if p.warnings else "it found no jobs"
        print(f"aimedres-async: error: --strict-discovery: {reason}", file=sys.stderr)
        return EXIT_DISCOVERY
    if a.list:
        _preamble(console, a, p)
        _print_list(cfg, p)
        return 0
    if not p.jobs:
        for w in p.warnings:  # they may say why
            console.warning(w)
        raise UsageError(f"no jobs to run (check [jobs.*], [discovery] roots, --only/--exclude); {a.config_line}")
    logs_dir = Path(a.logs_dir).resolve() if a.logs_dir else cfg.resolve(cfg.supervisor.logs_dir)
    if not a.dry_run:
        from aimedres_async.report.summary import mark_interrupted

        for dead in mark_interrupted(logs_dir):  # before --resume reads the latest summary
            console.warning(f"run {dead} was cut short (its supervisor died): its summary now says interrupted")
    resume, pools = _admit(cfg, p, logs_dir, a.resume)  # --dry-run refuses what run refuses
    if a.dry_run:
        _preamble(console, a, p)
        for s in p.jobs:
            print(f"# {s.id}  (cwd {shlex.quote(str(s.cwd))})")
            print(s.shell_command())
        return 0
    return _supervise(cfg, a, p, console, logs_dir, resume, pools)


def _selection(cfg: Config, a: argparse.Namespace) -> Plan:
    discovery = DiscoveryOverrides(
        include=tuple(a.include_pattern),
        exclude_regex=a.exclude_regex,
        limit=a.discovery_limit,
        allow_overrides=a.allow_discovery_overrides,
        optional=a.mark_discovered_optional,
    )
    overrides = Overrides(
        retries=a.retries,
        timeout=a.timeout,
        extra_args=tuple(a.extra_arg),
        output_dir=Path(a.base_output_dir).resolve() if a.base_output_dir else None,
    )
    return select_jobs(
        cfg,
        overrides,
        discovery,
        only=a.only,
        exclude=a.exclude,
        roots=a.discover_root,
        auto_discover=not a.no_auto_discover,
        sweeps=SweepOverrides(
            matrix=tuple(a.matrix),
            seeds=a.seeds,
            yes=a.yes,
            limit=not a.list,  # `list` shows any expansion; run and --dry-run refuse a large one
        ),
    )


def _preamble(console: Console, a: argparse.Namespace, p: Plan) -> None:
    """The config in use first (JSON has it in run.started), then notes and discovery warnings.
    Printed once every usage check passed: a usage error stays one line."""
    if not console.json:
        console.info(a.config_line)
    for note in p.notes:
        console.info(note)
    for w in p.warnings:
        console.warning(w)


def _admit(cfg: Config, p: Plan, logs_dir: Path, resume: str | None) -> tuple[dict[str, Any] | None, Pools]:
    """Everything `run` refuses, also for --dry-run: (the summary to resume from, the pools)."""
    from aimedres_async.engine.admission import Refused, check_runnable

    try:
        return check_runnable(cfg, p.jobs, logs_dir, resume)
    except Refused as e:
        raise UsageError(str(e)) from None


def _print_list(cfg: Config, p: Plan) -> None:
    from aimedres_async.engine.admission import fits
    from aimedres_async.plan.jobs import INJECTED

    cells, warning = fits(cfg, p.jobs)
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr)
    rows = [("ID", "SCRIPT", "ACCEPTS", "RESOURCES", "FITS", "OPTIONAL")]
    for s, fit in zip(p.jobs, cells, strict=True):
        accepts = ",".join(n.replace("_", "-") for n in INJECTED if n in s.accepts) or "-"
        rows.append((s.id, _script_cell(cfg, s), accepts, s.resources.describe(), fit, "yes" if s.optional else "no"))
    for info in p.skipped:
        rows.append(("-", str(info.path), f"SKIPPED: {info.error}", "-", "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])


def _script_cell(cfg: Config, s: JobSpec) -> str:
    script = (
        str(s.script.relative_to(cfg.base_dir))
        if s.script and s.script.is_relative_to(cfg.base_dir)
        else str(s.script)
        if s.script
        else "command: " + shlex.join(s.argv)
    )
    if s.script is not None and not s.script.exists():
        script += " (missing!)"
    return script


def _supervise(
    cfg: Config,
    a: argparse.Namespace,
    p: Plan,
    console: Console,
    logs_dir: Path,
    resume: dict[str, Any] | None,
    pools: Pools,
) -> int:
    """Run the jobs under the supervisor, signals captured from before it exists until its final
    sweep is done; then the results, the summaries and the report."""
    # imported only now: --list and --dry-run never need asyncio, the engine or the run's log files
    from aimedres_async.engine.admission import worker_count
    from aimedres_async.engine.run import RunOptions, Supervisor

    executor = executor_for(cfg, logs_dir)
    workers, auto_note = worker_count(cfg, p.jobs, pools, logs_dir, local=executor is None)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    opts = RunOptions(
        max_workers=workers,
        logs_dir=logs_dir,
        log_file=Path(a.log_file) if a.log_file else None,
        junit_xml=Path(a.junit_xml) if a.junit_xml else None,
        verbose=a.verbose,
        fail_fast=a.fail_fast,
        allow_partial_success=a.allow_partial_success,
        resume=resume,
        step_summary=Path(summary) if summary else None,
    )
    # From here on, a signal is handled (or recorded), never left to its default action: it
    # cannot kill the supervisor between two steps, nor while it sweeps up at the end.
    from aimedres_async.system.signals import EXIT_CODES, CapturedSignals

    with CapturedSignals(linger=True) as signals:
        if signals.first is not None:
            return EXIT_CODES[signals.first]  # nothing has started yet
        try:
            logs_dir.mkdir(parents=True, exist_ok=True)
            sup = Supervisor(cfg, p.jobs, opts, console, pools, executor)
        except OSError as e:
            raise UsageError(f"cannot write logs under {logs_dir}: {e.strerror or e}") from None
        _preamble(console, a, p)  # every usage check passed: the config in use is the first line
        if auto_note is not None:
            console.info(auto_note)
        code = _run_loop(cfg, a, sup, console, signals)
        _after_run(cfg, a, sup, console, signals)
    return code


def _run_loop(cfg: Config, a: argparse.Namespace, sup: Any, console: Console, signals: CapturedSignals) -> int:
    """The supervisor's event loop, as this process's subreaper; the report is written even if
    the run ended in an exception."""
    import asyncio

    from aimedres_async.system import children, procs

    children.become_subreaper()

    async def main() -> int:
        with signals.dispatch_to(_on_signal(cfg, sup, console)):
            code: int = await sup.run()
            return code

    console.prepare()
    try:
        code = asyncio.run(main())
    finally:
        console.close()
        if a.report:
            _write_run_report(sup.log.dir, Path(a.report))
    procs.sweep_adopted()
    return code


def _on_signal(cfg: Config, sup: Any, console: Console) -> Callable[[signal.Signals], None]:
    """The first SIGINT/SIGTERM stops the run gracefully (with `stop = "drain"`, the running jobs
    are let finish and the next signal stops them); the next one forces it."""

    def on_signal(signum: signal.Signals) -> None:
        if sup.stop.requested.is_set():
            console.warning(f"{signum.name} again: killing every job now")
            sup.stop.force()
        elif cfg.supervisor.stop == "drain" and sup.drained_by is None:
            running = sup.state.running_count()
            console.warning(
                f"{signum.name}: draining: no new job starts; the {running} running "
                f"job{'' if running == 1 else 's'} may finish and save ({signum.name} again to cancel "
                f"{'it' if running == 1 else 'them'}: {cfg.supervisor.stop_signal}, then SIGKILL after "
                f"{cfg.supervisor.grace_period:g}s)"
            )
            sup.drain(signum.name)
        else:
            console.warning(
                f"{signum.name}: stopping; jobs get {cfg.supervisor.stop_signal}, "
                f"then SIGKILL after {cfg.supervisor.grace_period:g}s (again to force)"
            )
            sup.stop.request(signum.name)

    return on_signal


def _after_run(cfg: Config, a: argparse.Namespace, sup: Any, console: Console, signals: CapturedSignals) -> None:
    """The results table, the old orchestrator's summary, the `logs` hint, then what went wrong
    around the run itself: signals that came too late, an internal error."""
    if not console.json:
        import shutil

        from aimedres_async.report.summary import results_table

        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        sys.stdout.write("\n" + results_table(sup.summary()["jobs"], width))
        sys.stdout.write(f"logs: {sup.log.dir}\n")
    _training_summary(cfg, a, sup, console)
    if not console.json:
        from aimedres_async.report.diagnose import logs_hint

        sys.stdout.write(logs_hint(sup.summary()["jobs"], sup.run_id, getattr(a, "config", None)))
    sys.stdout.flush()
    for late in signals.late:
        print(f"aimedres-async: {late.name} arrived while finishing; the run had already stopped", file=sys.stderr)
    if sup.error is not None:
        from aimedres_async.records.terminal import visible

        print(
            f"aimedres-async: error: internal error, every running job was stopped: {visible(sup.error)}",
            file=sys.stderr,
        )


def _training_summary(cfg: Config, a: argparse.Namespace, sup: Any, console: Console) -> None:
    """The old orchestrator's training_summary_<time>.json in its own format (--summary-dir,
    [supervisor] summary_dir)."""
    summary_dir = Path(a.summary_dir) if a.summary_dir else None  # the command line's: relative to here
    if summary_dir is None and cfg.supervisor.summary_dir:
        summary_dir = cfg.resolve(cfg.supervisor.summary_dir)
    if summary_dir is None:
        return
    import orjson

    from aimedres_async.report.legacy_summary import training_summary

    old = training_summary(
        sup.summary(),
        sup.log.dir / "events.jsonl",
        {j.spec.id: j.spec.accepts for j in sup.jobs},
        vars(a),
        cfg.base_dir,
        sup.pools.gpus,
    )
    try:
        path = legacy.write_training_summary(summary_dir, orjson.dumps(old, option=orjson.OPT_INDENT_2))
        if console.json:
            console.info(f"summary: {path}")
        else:
            sys.stdout.write(f"summary: {path}\n")
    except OSError as e:
        print(
            f"aimedres-async: warning: could not write a summary into {summary_dir}: {e.strerror or e}",
            file=sys.stderr,
        )


def _write_run_report(run_dir: Path, out: Path) -> None:
    """`run --report`: the run's HTML report; a problem is a warning, never the run's exit code."""
    from aimedres_async.report.html import write_report
    from aimedres_async.report.run_model import ReportError

    try:
        write_report([run_dir], out)
    except ReportError as e:
        print(f"aimedres-async: warning: no report: {e}", file=sys.stderr)
        return
    print(f"report: {out}", file=sys.stderr)
