"""The spool: `serve` (the daemon) and its client commands, `submit`, `status`, `logs`, `cancel`,
`wait`, `pause` and `resume`; each finds the spool from the config and hands over to daemon/.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aimedres_async.cli.usage import UsageError
from aimedres_async.plan.config import Config

if TYPE_CHECKING:
    from aimedres_async.daemon.spool import Spool

EXIT_NO_DAEMON = 3  # as `systemctl is-active` says a unit is not running


def spool_of(cfg: Config) -> Spool:
    from aimedres_async.daemon.spool import Spool

    return Spool(cfg.resolve(cfg.supervisor.spool_dir))


def cmd_serve(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.cli.run import console_for, executor_for
    from aimedres_async.daemon.serve import serve
    from aimedres_async.daemon.spool import SpoolError
    from aimedres_async.plan.config_load import load

    path = cfg.path

    def reload() -> Config:
        return load(path) if path is not None else cfg

    executor = executor_for(cfg)
    try:
        return serve(cfg, console_for(a), reload, executor)
    except SpoolError as e:
        raise UsageError(str(e)) from None


def cmd_submit(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.daemon import submit

    try:
        keys = submit.ordering(a.priority, a.after)
        if a.job:
            if a.tickets:
                raise UsageError("give ticket files or --job, not both")
            values = {name: getattr(a, name) for name in ("epochs", "folds", "sample", "batch", "retries", "timeout")}
            drafts = [submit.from_options(a.job, values, a.arg, keys)]
        elif a.tickets:
            drafts = submit.from_files(a.tickets, keys)
        else:
            raise UsageError("nothing to submit: give ticket files or --job ID")
        spool = spool_of(cfg)
        prepared = submit.prepare(cfg, spool, drafts)
        owner = submit.owner_for(spool)
        submit.enqueue(spool, prepared, owner, lambda ticket_id: print(ticket_id, flush=True))
    except submit.SubmitError as e:
        raise UsageError(str(e)) from None
    return 0


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  " + "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows
    )


def cmd_status(cfg: Config, a: argparse.Namespace) -> int:
    import orjson

    from aimedres_async.daemon.control import status

    spool = spool_of(cfg)
    state = status(spool, a.last)
    code = 0 if state["daemon"] else EXIT_NO_DAEMON
    if a.json:
        print(orjson.dumps(state, option=orjson.OPT_INDENT_2).decode())
        return code
    _print_daemons(state, spool)
    if state["queued"]:
        print(f"queued, in run order ({len(state['queued'])}):")
        rows: list[tuple[str, ...]] = [("TICKET", "PRIORITY", "AFTER")]
        rows += [(q["ticket"], str(q["priority"]), ",".join(q.get("after", ())) or "-") for q in state["queued"]]
        print(_table(rows))
    _print_running(state)
    _print_finished(state)
    return code


def _print_daemons(state: dict[str, Any], spool: Spool) -> None:
    import time

    from aimedres_async.plan.units import format_duration

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


def _print_running(state: dict[str, Any]) -> None:
    from aimedres_async.plan.units import format_duration

    if not state["running"]:
        return
    print(f"running ({len(state['running'])}):")
    # a SLURM JOB column (squeue's JOBID) only when some ticket runs on Slurm
    slurm = any(r.get("slurm_job_id") for r in state["running"])
    rows = [("TICKET", "JOB", "ATTEMPT", "PID", *(("SLURM JOB",) if slurm else ()), "ELAPSED", "LAST LINE")]
    rows += [
        (
            str(r.get("ticket")),
            str(r.get("job") or "-"),
            str(r.get("attempt")),
            "-" if r.get("pid") is None else str(r["pid"]),
            *((str(r.get("slurm_job_id") or "-"),) if slurm else ()),
            format_duration(r["elapsed_s"]),
            (r.get("last_line") or "")[:80],
        )
        for r in state["running"]
    ]
    print(_table(rows))


def _print_finished(state: dict[str, Any]) -> None:
    from aimedres_async.plan.units import format_duration

    if not state["finished"]:
        return
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


def cmd_logs(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.cli.render import find_log, show
    from aimedres_async.plan.config import JOB_ID_RE

    spool = spool_of(cfg)
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
    spool = spool_of(cfg)
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

    spool = spool_of(cfg)
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
    spool = spool_of(cfg)
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
