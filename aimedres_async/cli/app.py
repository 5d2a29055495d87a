"""Command line: parse, load the config, set up the console, hand over. No logic of its own.

Every usage or config mistake ends as one line per problem on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aimedres_async.cli.parser import parse
from aimedres_async.cli.usage import UsageError
from aimedres_async.plan import legacy
from aimedres_async.plan.config import Config, builtin
from aimedres_async.plan.config_errors import ConfigError
from aimedres_async.plan.config_load import find_config, load
from aimedres_async.plan.jobs import SelectionError
from aimedres_async.plan.legacy import LegacyError
from aimedres_async.system import startup_signals

__all__ = ["EXIT_USAGE", "UsageError", "main"]

EXIT_USAGE = 2
EXIT_DISCOVERY = 3  # --strict-discovery, as run_all_training.py


def _find_config(arg: str | None) -> tuple[Config, str]:
    """The config and a line saying which one is used (or that none was found, and where we looked)."""
    explicit = arg or os.environ.get("AIMEDRES_CONFIG")
    if explicit:
        legacy.check_config_path(explicit)
        how = "--config" if arg else "$AIMEDRES_CONFIG"
        return load(Path(explicit)), f"config: {Path(explicit).absolute()} (from {how})"
    cwd = Path.cwd()
    found, top = find_config(cwd)
    if found is not None:
        if found.parent == cwd:  # named as the user would, in messages about it
            return load(Path(found.name)), f"config: {found}"
        return load(found), f"config: {found} (found in a parent folder)"
    upto = f"{cwd}" if top == cwd else f"{cwd} and its parents up to {top}"
    return builtin(cwd), f"config: no aimedres.toml in {upto}; using built-in defaults"


def _apply_cli(cfg: Config, a: argparse.Namespace) -> Config:
    sup = cfg.supervisor
    if getattr(a, "python", None):  # relative to where the command runs, as any path on a command line
        python = a.python if "/" not in a.python else os.path.abspath(os.path.expanduser(a.python))
        sup = dataclasses.replace(sup, python=python)
    if a.parallel:
        sup = dataclasses.replace(sup, parallel=True)
    if "max_workers" in a:
        sup = dataclasses.replace(sup, max_workers=a.max_workers)
    defaults = cfg.defaults
    for name in ("epochs", "folds", "sample", "batch"):
        value = getattr(a, name)
        if value is not None:  # per-job values still win over these
            defaults = dataclasses.replace(defaults, **{name: value})
    return dataclasses.replace(cfg, supervisor=sup, defaults=defaults)


def _plan(cfg: Config, a: argparse.Namespace) -> Any:
    from aimedres_async.plan.jobs import DiscoveryOverrides, Overrides, plan
    from aimedres_async.plan.preflight import interpreter_problems

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
    roots = [str(Path(r).resolve()) for r in a.discover_root] if a.discover_root else None
    p = plan(
        cfg,
        overrides,
        discover_enabled=False if a.no_auto_discover else (True if roots else None),
        roots=roots,
        only=a.only,
        exclude=a.exclude,
        discovery=discovery,
    )
    # on Ray the scripts run on the cluster's machines: their interpreter need not exist here
    problems = [] if cfg.supervisor.executor == "ray" else interpreter_problems(p.jobs)
    if problems:
        raise ConfigError(problems)
    return p


def _print_list(cfg: Config, p: Any) -> None:
    from aimedres_async.engine.scheduler import Need, capacity
    from aimedres_async.plan.jobs import INJECTED

    pools = capacity(cfg) if cfg.supervisor.executor == "local" else None  # Ray: the cluster decides
    cluster: Any = None
    if cfg.supervisor.executor == "slurm":
        from aimedres_async.engine.executors.slurm import SlurmUnavailable, never_fits, nodes

        try:
            cluster = nodes()
        except SlurmUnavailable as e:
            print(f"warning: cannot tell which jobs fit the Slurm cluster: {e}", file=sys.stderr)
    rows = [("ID", "SCRIPT", "ACCEPTS", "RESOURCES", "FITS", "OPTIONAL")]
    for s in p.jobs:
        script = (
            str(s.script.relative_to(cfg.base_dir))
            if s.script and s.script.is_relative_to(cfg.base_dir)
            else str(s.script)
            if s.script
            else "command: " + shlex.join(s.argv)
        )
        if s.script is not None and not s.script.exists():
            script += " (missing!)"
        accepts = ",".join(n.replace("_", "-") for n in INJECTED if n in s.accepts) or "-"
        fits = "-" if pools is None else "NO" if pools.never_fits(Need.of(s.resources)) else "yes"
        if cfg.supervisor.executor == "slurm":
            fits = "?" if cluster is None else "NO" if never_fits(s.resources, cluster, cfg.slurm.partition) else "yes"
        rows.append((s.id, script, accepts, s.resources.describe(), fits, "yes" if s.optional else "no"))
    for info in p.skipped:
        rows.append(("-", str(info.path), f"SKIPPED: {info.error}", "-", "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])


def _console(a: argparse.Namespace, live: bool = False) -> Any:
    """Human lines, JSON lines, or (live=True, on a terminal) the live progress display."""
    from aimedres_async.records.console import Console

    fmt = getattr(a, "log_format", "auto")
    verbose = getattr(a, "verbose", False)
    console = Console("json" if fmt == "json" else "console", verbose=verbose)
    # --verbose streams job output to stdout, which would tear through a live display on stderr
    if live and fmt == "auto" and not verbose and not getattr(a, "no_progress", False) and sys.stderr.isatty():
        console.use_progress()
    return console


def cmd_run(cfg: Config, a: argparse.Namespace) -> int:
    cfg = _apply_cli(cfg, a)
    p = _plan(cfg, a)
    console = _console(a, live=not (a.list or a.dry_run))

    def preamble() -> None:
        """The config in use first (JSON has it in run.started), then notes and discovery warnings.
        Printed once every usage check passed: a usage error stays one line."""
        if not console.json:
            console.info(a.config_line)
        for note in p.notes:
            console.info(note)
        for w in p.warnings:
            console.warning(w)

    if a.strict_discovery and (p.warnings or not p.jobs):
        preamble()
        reason = "it reported the problems above" if p.warnings else "it found no jobs"
        print(f"aimedres-async: error: --strict-discovery: {reason}", file=sys.stderr)
        return EXIT_DISCOVERY
    if a.list:
        preamble()
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
    resume, pools = _check_runnable(cfg, p, logs_dir, a.resume)  # --dry-run refuses what run refuses
    if a.dry_run:
        preamble()
        for s in p.jobs:
            print(f"# {s.id}  (cwd {shlex.quote(str(s.cwd))})")
            print(s.shell_command())
        return 0
    # imported only now: --list and --dry-run never need asyncio, the supervisor, runner or sinks
    import asyncio

    from aimedres_async.engine.run import RunOptions, Supervisor, default_workers, recorded_peaks, results_table
    from aimedres_async.engine.scheduler import auto_workers

    executor = _executor(cfg, logs_dir)
    workers = default_workers(cfg.supervisor.parallel, cfg.supervisor.max_workers)
    auto_note = None
    if cfg.supervisor.parallel and cfg.supervisor.max_workers is None:
        # memory peaks measured on a cluster's nodes say nothing about this machine's memory
        peaks = recorded_peaks(logs_dir, {s.id for s in p.jobs}) if executor is None else []
        cpus = int(pools.total_cpus) if pools.total_cpus else os.cpu_count() or 1
        workers, why = auto_workers(peaks, max(1, cpus), pools.total_memory or 0)
        auto_note = f"max_workers auto: {workers} ({why})"
    opts = RunOptions(
        max_workers=workers,
        logs_dir=logs_dir,
        log_file=Path(a.log_file) if a.log_file else None,
        junit_xml=Path(a.junit_xml) if a.junit_xml else None,
        verbose=a.verbose,
        fail_fast=a.fail_fast,
        allow_partial_success=a.allow_partial_success,
        resume=resume,
        step_summary=Path(os.environ["GITHUB_STEP_SUMMARY"]) if os.environ.get("GITHUB_STEP_SUMMARY") else None,
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
        preamble()  # every usage check passed: the config in use is the first line
        if auto_note is not None:
            console.info(auto_note)

        from aimedres_async.system import procs

        procs.become_subreaper()

        def on_signal(signum: signal.Signals) -> None:
            if sup.stop.requested.is_set():
                console.warning(f"{signum.name} again: killing every job now")
                sup.stop.force()
            else:
                console.warning(
                    f"{signum.name}: stopping; jobs get {cfg.supervisor.stop_signal}, "
                    f"then SIGKILL after {cfg.supervisor.grace_period:g}s (again to force)"
                )
                sup.stop.request(signum.name)

        async def main() -> int:
            with signals.dispatch_to(on_signal):
                return await sup.run()

        console.prepare()
        try:
            code = asyncio.run(main())
        finally:
            console.close()
            if a.report:  # the report even if the run ended in an exception
                _write_run_report(sup.log.dir, Path(a.report))
        procs.sweep_adopted()
        if not console.json:
            import shutil

            width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
            sys.stdout.write("\n" + results_table(sup.summary()["jobs"], width))
            sys.stdout.write(f"logs: {sup.log.dir}\n")
        _after_run(cfg, a, sup, console)
        for late in signals.late:
            print(f"aimedres-async: {late.name} arrived while finishing; the run had already stopped", file=sys.stderr)
        if sup.error is not None:
            from aimedres_async.records.terminal import visible as _visible

            print(
                f"aimedres-async: error: internal error, every running job was stopped: {_visible(sup.error)}",
                file=sys.stderr,
            )
    return code


def _after_run(cfg: Config, a: argparse.Namespace, sup: Any, console: Any) -> None:
    """The old orchestrator's training_summary_<time>.json (--summary-dir, [supervisor] summary_dir),
    and the exact `logs` command of the first failed job."""
    summary_dir = Path(a.summary_dir) if a.summary_dir else None  # the command line's: relative to here
    if summary_dir is None and cfg.supervisor.summary_dir:
        summary_dir = cfg.resolve(cfg.supervisor.summary_dir)
    if summary_dir is not None:
        try:
            path = legacy.write_training_summary(summary_dir, sup.log.dir / "summary.json", sup.summary())
            if console.json:
                console.info(f"summary: {path}")
            else:
                sys.stdout.write(f"summary: {path}\n")
        except OSError as e:
            print(
                f"aimedres-async: warning: could not write a summary into {summary_dir}: {e.strerror or e}",
                file=sys.stderr,
            )
    if not console.json:
        from aimedres_async.report.diagnose import logs_hint

        sys.stdout.write(logs_hint(sup.summary()["jobs"], sup.run_id, getattr(a, "config", None)))
    sys.stdout.flush()


def _pools(cfg: Config) -> Any:
    from aimedres_async.engine.scheduler import capacity

    return capacity(cfg)


def _job_problems(cfg: Config, p: Any) -> tuple[list[str], Any]:
    """What stops `run` before anything starts, one line each: no jobs; a job that can never fit the
    supervisor's GPUs, memory or CPUs (local executor) or any node of the Slurm partition. Returns
    (problems, the resource pools)."""
    from aimedres_async.engine.scheduler import Need

    pools = _pools(cfg)
    if not p.jobs:
        return ["no jobs to run (check [jobs.*], [discovery] roots, --only/--exclude)"], pools
    if cfg.supervisor.executor == "slurm":
        return _slurm_unfit(cfg, p.jobs), pools
    if cfg.supervisor.executor != "local":
        return [], pools
    problems = [
        f"job {s.id} can never run here: it {why} (see [supervisor] gpus/memory/cpus)"
        for s in p.jobs
        if (why := pools.never_fits(Need.of(s.resources)))
    ]
    return problems, pools


def _slurm_unfit(cfg: Config, jobs: Any) -> list[str]:
    """Jobs no node of the partition could ever run (Slurm would keep them pending for good);
    UsageError when Slurm is missing, the controller down or the partition unknown."""
    from aimedres_async.engine.executors.slurm import SlurmUnavailable, check, never_fits, nodes

    try:
        check(cfg.slurm)
        cluster = nodes()
    except SlurmUnavailable as e:
        raise UsageError(str(e)) from None
    return [
        f"job {s.id} can never run on the Slurm cluster: it {why} (see the job's resources, [slurm] partition)"
        for s in jobs
        if (why := never_fits(s.resources, cluster, cfg.slurm.partition))
    ]


def _check_runnable(cfg: Config, p: Any, logs_dir: Path, resume_arg: str | None) -> tuple[Any, Any]:
    """Everything `run` refuses, also for --dry-run: (the summary to resume from, the pools)."""
    problems, pools = _job_problems(cfg, p)
    if problems:
        raise UsageError("; ".join(problems))
    resume = None
    if resume_arg is not None:
        from aimedres_async.engine.run import load_summary

        try:
            resume = load_summary(logs_dir, None if resume_arg == "latest" else resume_arg)
        except ValueError as e:
            raise UsageError(str(e)) from None
    return resume, pools


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


def cmd_report(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.report.html import write_report
    from aimedres_async.report.run_model import ReportError, find_run, parse_since, runs_since

    logs_dir = Path(a.logs_dir).resolve() if a.logs_dir else cfg.resolve(cfg.supervisor.logs_dir)
    try:
        if a.since is not None:
            if a.run is not None:
                raise UsageError("give a RUN or --since, not both")
            since = parse_since(a.since)
            dirs = runs_since(logs_dir, since)
            out = Path(a.output) if a.output else Path("report.html")
        else:
            since = None
            dirs = [find_run(logs_dir, a.run)]
            out = Path(a.output) if a.output else dirs[0] / "report.html"
        write_report(dirs, out, since)
    except ReportError as e:
        raise UsageError(str(e)) from None
    print(f"wrote {out}")
    return 0


def cmd_list(cfg: Config, a: argparse.Namespace) -> int:
    a.list, a.dry_run, a.log_format, a.verbose = True, False, "auto", False
    return cmd_run(cfg, a)


def cmd_validate(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.plan.jobs import plan
    from aimedres_async.plan.preflight import interpreter_problems

    if a.python:
        cfg = _apply_cli(
            cfg, argparse.Namespace(python=a.python, parallel=None, epochs=None, folds=None, sample=None, batch=None)
        )
    p = plan(cfg)
    problems = [] if cfg.supervisor.executor == "ray" else interpreter_problems(p.jobs)
    if problems:
        raise ConfigError(problems)
    problems, _pools = _job_problems(cfg, p)
    if not problems:  # first, unless the answer is an error (then one line per problem)
        print(a.config_line, file=sys.stderr)
    for w in p.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if problems:
        raise ConfigError([f"{cfg.path or 'built-in defaults'}: {problem}" for problem in problems])
    where = cfg.path or "built-in defaults"
    print(f"{where}: ok ({len(p.jobs)} jobs: {', '.join(s.id for s in p.jobs) or 'none'})")
    return 0


def _executor(cfg: Config, logs_dir: Path | None = None) -> Any:
    from aimedres_async.engine.run import make_executor

    try:
        return make_executor(cfg, logs_dir)
    except Exception as e:  # RayUnavailable, SlurmUnavailable: the cluster missing or unreachable
        if type(e).__name__ not in ("RayUnavailable", "SlurmUnavailable"):
            raise
        raise UsageError(str(e)) from None


def _spool(cfg: Config) -> Any:
    from aimedres_async.daemon.spool import Spool

    return Spool(cfg.resolve(cfg.supervisor.spool_dir))


def cmd_serve(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.daemon.serve import serve
    from aimedres_async.daemon.spool import SpoolError

    path = cfg.path

    def reload() -> Config:
        return load(path) if path is not None else cfg

    executor = _executor(cfg)
    try:
        return serve(cfg, _console(a), reload, executor)
    except SpoolError as e:
        raise UsageError(str(e)) from None


def cmd_submit(cfg: Config, a: argparse.Namespace) -> int:
    import tomllib

    import tomli_w

    from aimedres_async.daemon.control import ticket_owner, user_name
    from aimedres_async.daemon.spool import SpoolError
    from aimedres_async.daemon.tickets import TicketError, new_ticket_id
    from aimedres_async.plan.config_load import parse_ticket
    from aimedres_async.plan.jobs import TicketJobError, known_jobs, ticket_spec

    ordering: dict[str, Any] = {}  # --priority / --after: ticket keys
    if a.priority is not None:
        ordering["priority"] = a.priority
    if a.after:
        ordering["after"] = a.after
    texts: list[tuple[str, str]] = []  # (label for the id, ticket text)
    if a.job:
        if a.tickets:
            raise UsageError("give ticket files or --job, not both")
        table: dict[str, Any] = {"job": a.job}
        for name in ("epochs", "folds", "sample", "batch", "retries", "timeout"):
            if getattr(a, name) is not None:
                table[name] = getattr(a, name)
        if a.arg:
            table["args"] = a.arg
        texts.append((a.job, tomli_w.dumps(table | ordering)))
    elif a.tickets:
        for name in a.tickets:
            try:
                text = Path(name).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise UsageError(f"{name}: cannot read: {getattr(e, 'strerror', None) or e}") from None
            if ordering:  # top-level keys go before the first table; a key the file sets itself wins
                try:
                    own = tomllib.loads(text)
                except tomllib.TOMLDecodeError:
                    own = {}  # parse_ticket below says what is wrong
                clash = sorted(k for k in ordering if k in own)
                if clash:
                    raise UsageError(f"{name} sets {', '.join(clash)} itself; drop the option or edit the file")
                text = tomli_w.dumps(ordering) + text
            texts.append((Path(name).stem, text))
    else:
        raise UsageError("nothing to submit: give ticket files or --job ID")
    known = known_jobs(cfg)
    spool = _spool(cfg)
    prepared: list[tuple[str, str]] = []
    for label, text in texts:
        safe = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in label.lower())[:40] or "ticket"
        ticket_id = new_ticket_id(safe)
        try:
            ticket = parse_ticket(text, ticket_id, label)
            ticket_spec(cfg, ticket, known)
        except ConfigError as e:
            raise UsageError("; ".join(e.problems)) from None
        except (TicketJobError, ValueError) as e:
            raise UsageError(f"{label}: {e}") from None
        earlier = {t for t, _ in prepared}
        for dep in ticket.after:
            if dep not in earlier and spool.state_of(dep) is None:
                raise UsageError(f"{label}: after: there is no ticket {dep} in spool {spool.root}")
        prepared.append((ticket_id, text))
    # The daemon reads only tickets owned by its user (or root) and not writable by others: refuse
    # now what it would reject later, or, as root, hand the ticket to its user.
    owner = ticket_owner(spool)
    give: tuple[int, int] | None = None
    if owner is not None and owner[0] not in (0, os.geteuid()):
        if os.geteuid() != 0:
            raise UsageError(
                f"the daemon's user {user_name(owner[0])} could not read a ticket of yours "
                f"({user_name(os.geteuid())}): submit as that user, e.g. "
                f"`runuser -u {user_name(owner[0]).split()[0]} -- python -m aimedres_async submit ...`"
            )
        give = owner
    try:
        spool.ensure(check_secure=False)
        for ticket_id, text in prepared:
            spool.submit(text, ticket_id, owner=give)
            print(ticket_id, flush=True)
    except (SpoolError, TicketError) as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write to spool {spool.root}: {e.strerror or e}") from None
    return 0


EXIT_NO_DAEMON = 3  # as `systemctl is-active` says a unit is not running


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  " + "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows
    )


def cmd_status(cfg: Config, a: argparse.Namespace) -> int:
    import orjson

    from aimedres_async.daemon.control import status
    from aimedres_async.plan.units import format_duration

    spool = _spool(cfg)
    state = status(spool, a.last)
    code = 0 if state["daemon"] else EXIT_NO_DAEMON
    if a.json:
        print(orjson.dumps(state, option=orjson.OPT_INDENT_2).decode())
        return code
    import time

    for d in state["daemons"]:
        up = format_duration(time.time() - float(d.get("started", time.time())))
        print(
            f"daemon: pid {d['pid']} on {d.get('host')}, serving since {d.get('since')} ({up}), "
            f"version {d.get('version')}, config {d.get('config') or 'built-in defaults'}"
        )
        print(f"  workers {d.get('busy')}/{d.get('workers')} busy, {'PAUSED' if d.get('paused') else 'claiming'}")
    if not state["daemons"]:
        print(f"daemon: none is serving spool {spool.root}")
    print(
        f"spool {spool.root}: "
        + ", ".join(f"{k} {v}" for k, v in state["counts"].items())
        + (" (paused: `resume` to claim again)" if state["paused"] else "")
    )
    if state["queued"]:
        print(f"queued, in run order ({len(state['queued'])}):")
        rows: list[tuple[str, ...]] = [("TICKET", "PRIORITY", "AFTER")]
        rows += [(q["ticket"], str(q["priority"]), ",".join(q.get("after", ())) or "-") for q in state["queued"]]
        print(_table(rows))
    if state["running"]:
        print(f"running ({len(state['running'])}):")
        rows = [("TICKET", "JOB", "ATTEMPT", "PID", "ELAPSED", "LAST LINE")]
        rows += [
            (
                str(r.get("ticket")),
                str(r.get("job") or "-"),
                str(r.get("attempt")),
                str(r.get("pid")),
                format_duration(r["elapsed_s"]),
                (r.get("last_line") or "")[:80],
            )
            for r in state["running"]
        ]
        print(_table(rows))
    if state["finished"]:
        print(f"finished (last {len(state['finished'])}):")
        rows = [("TICKET", "STATUS", "EXIT", "DURATION", "FINISHED AT")]
        for f in state["finished"]:
            dur = f["duration_s"]
            rows.append(
                (
                    f["ticket"],
                    f["status"] + (f" [{f['failure']}]" if f.get("failure") else ""),
                    "-" if f["exit_code"] is None else str(f["exit_code"]),
                    format_duration(dur) if isinstance(dur, int | float) else "-",
                    f["finished_at"] or "-",
                )
            )
        print(_table(rows))
    return code


def cmd_logs(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.cli.render import find_log, show
    from aimedres_async.plan.config import JOB_ID_RE

    spool = _spool(cfg)
    if a.follow and a.run is None and JOB_ID_RE.fullmatch(a.target) and spool.state_of(a.target) is not None:
        from aimedres_async.daemon.control import follow

        return follow(spool, a.target, lambda path, running: show(path, follow=running is not None, running=running))
    try:
        path = find_log(cfg, spool, a.target, a.run)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return show(path, follow=a.follow)


def _ticket_ids(tickets: list[str]) -> list[str]:
    from aimedres_async.plan.config import JOB_ID_RE

    bad = [t for t in tickets if not JOB_ID_RE.fullmatch(t)]
    if bad:
        raise UsageError(f"not a ticket id: {', '.join(repr(t) for t in bad)}")
    return tickets


def cmd_cancel(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.daemon.control import cancel, describe, wait

    if a.all == bool(a.tickets):
        raise UsageError("give ticket ids or --all (not both)")
    spool = _spool(cfg)
    tickets = _ticket_ids(a.tickets)
    try:
        spool.ensure(check_secure=False)  # a spool from before control/ existed gets it
        report = cancel(spool, tickets, a.all)
    except OSError as e:
        raise UsageError(f"cannot write to spool {spool.root}: {e.strerror or e}") from None
    for line in report.lines:
        print(line, flush=True)
    if report.running:
        if not spool.daemons():
            for t in report.running:
                print(f"{t} will be cancelled when a daemon serves spool {spool.root} (none does now)")
        elif a.no_wait:
            for t in report.running:
                print(f"{t} is being stopped (`wait {t}` to see it end)")
        else:
            print(
                f"stopping {', '.join(report.running)} ({cfg.supervisor.stop_signal}, then SIGKILL after "
                f"{cfg.supervisor.grace_period:g}s)",
                file=sys.stderr,
                flush=True,
            )
            wait(spool, report.running, None, lambda t, state, res: print(describe(t, state, res), flush=True))
    if report.unknown:
        raise UsageError(f"no such ticket in spool {spool.root}: {', '.join(report.unknown)}")
    return 0


def cmd_wait(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.daemon.control import EXIT_TIMEOUT, describe, exit_code, wait

    spool = _spool(cfg)
    tickets = _ticket_ids(a.tickets)
    unknown = [t for t in tickets if spool.state_of(t) is None]
    if unknown:
        raise UsageError(f"no such ticket in spool {spool.root}: {', '.join(unknown)}")
    done, pending = wait(spool, tickets, a.timeout, lambda t, state, res: print(describe(t, state, res), flush=True))
    if pending:
        print(f"aimedres-async: timed out after {a.timeout:g}s; not finished: {', '.join(pending)}", file=sys.stderr)
        return EXIT_TIMEOUT
    return exit_code(done.values())


def cmd_pause(cfg: Config, a: argparse.Namespace, paused: bool = True) -> int:
    spool = _spool(cfg)
    try:
        spool.ensure(check_secure=False)
        spool.set_paused(paused)
    except OSError as e:
        raise UsageError(f"cannot write to spool {spool.root}: {e.strerror or e}") from None
    if paused:
        print(f"paused: no new ticket is claimed from {spool.root} until `resume` (running ones go on)")
    else:
        print(f"resumed: tickets in {spool.root} are claimed again")
    return 0


def cmd_resume(cfg: Config, a: argparse.Namespace) -> int:
    return cmd_pause(cfg, a, paused=False)


def cmd_init(a: argparse.Namespace) -> int:
    from aimedres_async.plan.starter import starter_text

    path = Path(a.path)
    if a.from_yaml:
        from aimedres_async.plan.config_load import parse

        text = legacy.convert_yaml(Path(a.from_yaml))
        try:
            parse(text, path, path.absolute().parent)  # what is written must load
        except ConfigError as e:
            raise LegacyError(f"{a.from_yaml}: converts to an invalid config: {e.problems[0]}") from None
    else:
        text = starter_text()
    if path.exists():
        raise UsageError(f"{path} already exists; not overwriting it")
    try:
        with open(path, "x", encoding="utf-8") as f:  # "x": refuse to overwrite
            f.write(text)
    except FileExistsError:
        raise UsageError(f"{path} already exists; not overwriting it") from None
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
    print(f"wrote {path}; check it with `aimedres-async --config {path} validate`")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        a = parse(args)
        if a.command == "init":
            return cmd_init(a)
        cfg, a.config_line = _find_config(a.config)
        if getattr(a, "executor", None):
            cfg = dataclasses.replace(cfg, supervisor=dataclasses.replace(cfg.supervisor, executor=a.executor))
        handler = {
            "run": cmd_run,
            "list": cmd_list,
            "validate": cmd_validate,
            "serve": cmd_serve,
            "submit": cmd_submit,
            "status": cmd_status,
            "logs": cmd_logs,
            "cancel": cmd_cancel,
            "wait": cmd_wait,
            "pause": cmd_pause,
            "resume": cmd_resume,
            "report": cmd_report,
        }[a.command]
        if a.command not in ("run", "serve"):  # they hand held signals to shutdown.CapturedSignals
            held = startup_signals.release()
            if held is not None:
                return 128 + held
        code = handler(cfg, a)
        held = startup_signals.release()  # run --list/--dry-run, or a usage error before the capture
        return 128 + held if held is not None else code
    except ConfigError as e:
        for problem in e.problems:
            print(f"aimedres-async: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as e:
        print(f"aimedres-async: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (SelectionError, LegacyError) as e:
        print(f"aimedres-async: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
