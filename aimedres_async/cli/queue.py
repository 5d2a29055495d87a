"""The spool: `serve` (the daemon) and its client commands, `submit`, `status`, `logs`, `cancel`,
`wait`, `pause` and `resume`; each finds the spool from the config and hands over to daemon/.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aimedres_async.cli.usage import UsageError, one_run
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
    import os

    from aimedres_async.daemon import submit

    spool = spool_of(cfg)
    try:
        after = resolve_tickets(spool, a.after, unknown_ok=True)  # prepare() names one that is not there
        more = {"label": a.label, "group": a.group, "not_before": submit.not_before(a.delay)}
        keys = submit.ordering(a.priority, after, **more)
        if sum(map(bool, (a.job, a.tickets, a.command_argv is not None))) > 1:
            raise UsageError("give ticket files, --job ID or `-- CMD ARG...`, only one of them")
        if a.cwd is not None and a.command_argv is None:
            raise UsageError("--cwd is for a command given after `--`")
        if a.command_argv is not None:
            job_only = [f"--{n}" for n in ("epochs", "folds", "sample", "batch") if getattr(a, n) is not None]
            if job_only or a.arg:
                flags = ", ".join(job_only + ["--arg"] * bool(a.arg))
                raise UsageError(f"{flags}: only for --job tickets; give the command's own arguments after `--`")
            values = {"retries": a.retries, "timeout": a.timeout}
            cwd = os.path.abspath(a.cwd or os.getcwd())
            drafts = [submit.from_command(a.command_argv, cwd, values, keys)]
        elif a.job:
            values = {name: getattr(a, name) for name in ("epochs", "folds", "sample", "batch", "retries", "timeout")}
            drafts = submit.from_job(cfg, a.job, values, a.arg, keys)
        elif a.tickets:
            drafts = submit.from_files(a.tickets, keys)
        else:
            raise UsageError("nothing to submit: give ticket files, --job ID or `-- CMD ARG...`")
        prepared = submit.prepare(cfg, spool, drafts)
        owner = submit.owner_for(spool)
        submit.enqueue(spool, prepared, owner, lambda number, ticket_id: print(number, ticket_id, flush=True))
    except submit.SubmitError as e:
        raise UsageError(str(e)) from None
    return 0


def resolve_tickets(spool: Spool, tokens: Sequence[str], unknown_ok: bool = False) -> list[str]:
    """What the user typed for tickets (numbers, ids, unique id prefixes) as ticket ids. A token
    that names several tickets is exit 2 listing them; one naming none is exit 2 too, or, with
    unknown_ok, passed on as it is (for a caller that reports unknown tickets itself)."""
    from aimedres_async.daemon.numbers import TicketNameError, resolve
    from aimedres_async.plan.config import JOB_ID_RE

    ids = []
    for token in tokens:
        try:
            ids.append(resolve(spool.root, token))
        except TicketNameError as e:
            if not (unknown_ok and str(e).startswith("no such ticket")):
                raise UsageError(f"{e} (in spool {spool.root})") from None
            if not JOB_ID_RE.fullmatch(token):
                raise UsageError(f"not a ticket number or id: {token!r}") from None
            ids.append(token)
    return list(dict.fromkeys(ids))


def _table(cells: Sequence[Sequence[str]]) -> str:
    from aimedres_async.records.terminal import visible  # a label's control and bidi characters shown

    rows = [[visible(c) for c in r] for r in cells]
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
    from aimedres_async.plan.config import groups_of

    _print_groups(state, groups_of(cfg))
    if state["queued"]:
        print(f"queued, in run order ({len(state['queued'])}):")
        rows: list[tuple[str, ...]] = [("#", "TICKET", "LABEL", "GROUP", "PRIORITY", "NOT BEFORE", "AFTER")]
        rows += [
            (
                _number(q),
                q["ticket"],
                _cell(q.get("label")),
                q["group"],
                str(q["priority"]),
                q.get("not_before") or "-",
                ",".join(q.get("after", ())) or "-",
            )
            for q in state["queued"]
        ]
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


def _number(entry: dict[str, Any]) -> str:
    return "-" if entry.get("number") is None else str(entry["number"])


def _cell(text: object, width: int = 30) -> str:
    """A free-text cell (a label) kept to one short line."""
    if not text:
        return "-"
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _print_groups(state: dict[str, Any], configured: list[str]) -> None:
    """One line per group: workers busy (from the oldest daemon), its budget's use, queued, paused."""
    daemon = state["daemon"] or {}
    view: dict[str, dict[str, Any]] = daemon.get("groups") or {}
    queued: dict[str, int] = {}
    for q in state["queued"]:
        queued[q["group"]] = queued.get(q["group"], 0) + 1
    names = set(view or configured) | set(queued)
    if names <= {"default"} and not view.get("default", {}).get("budget"):
        return  # one queue: the lines above say it all
    for g in sorted(names, key=lambda g: (g != "default", g)):
        v = view.get(g)
        if g not in view and g not in configured:
            print(f"  group {g}: not in the config, {queued.get(g, 0)} queued (they will be rejected)")
            continue
        workers = ""
        if v is not None:
            set_by = " (set by `parallel`)" if v.get("parallel") else ""
            workers = f"workers {v['busy']}/{v['workers']} busy{set_by}, {_budget(v)}"
        paused = ", PAUSED" if v and v.get("paused") else ""
        print(f"  group {g}: {workers}{queued.get(g, 0)} queued{paused}")


def _budget(view: dict[str, Any]) -> str:
    """A budgeted group's use of its budget: "memory 600.0MiB/1.0GiB, cpus 2/4 in use, "."""
    from aimedres_async.plan.units import format_size

    budget, used = view.get("budget") or {}, view.get("in_use") or {}
    parts = [
        f"{key} {format_size(used.get(key, 0))}/{format_size(cap)}"
        if key == "memory"
        else f"{key} {used.get(key, 0):g}/{cap:g}"
        for key, cap in budget.items()
    ]
    return f"{', '.join(parts)} in use, " if parts else ""


def _print_running(state: dict[str, Any]) -> None:
    from aimedres_async.plan.units import format_duration

    if not state["running"]:
        return
    print(f"running ({len(state['running'])}):")
    # a SLURM JOB column (squeue's JOBID) only when some ticket runs on Slurm
    slurm = any(r.get("slurm_job_id") for r in state["running"])
    rows = [
        ("#", "TICKET", "LABEL", "GROUP", "ATTEMPT", "PID", *(("SLURM JOB",) if slurm else ()), "ELAPSED", "LAST LINE")
    ]
    rows += [
        (
            _number(r),
            str(r.get("ticket")),
            _cell(r.get("label") or r.get("job")),
            str(r.get("group")),
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
    rows = [("#", "TICKET", "LABEL", "GROUP", "STATUS", "ATTEMPTS", "EXIT", "DURATION", "FINISHED AT")]
    for f in state["finished"]:
        dur = f["duration_s"]
        rows.append(
            (
                _number(f),
                f["ticket"],
                _cell(f.get("label")),
                str(f.get("group")),
                f["status"] + (f" [{f['failure']}]" if f.get("failure") else ""),
                "-" if f.get("attempts") is None else str(f["attempts"]),
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
    a.run = one_run(a)
    if a.run is None:  # a ticket's number, id or id prefix; else a job (plain or swept) of the latest run
        a.target = _ticket_or_job(spool, a.target)
    if a.follow and a.run is None and JOB_ID_RE.fullmatch(a.target) and spool.state_of(a.target) is not None:
        from aimedres_async.daemon.control import follow

        return follow(spool, a.target, lambda path, running: show(path, follow=running is not None, running=running))
    try:
        path = find_log(cfg, spool, a.target, a.run)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return show(path, follow=a.follow)


def _ticket_or_job(spool: Spool, token: str) -> str:
    """The ticket id a token names (number, id or unique prefix), or the token itself when it names
    no ticket: a job id of the latest run, swept ids such as `train[lr=0.1,seed=3]` included."""
    from aimedres_async.daemon.numbers import TicketNameError, resolve

    try:
        return resolve(spool.root, token)
    except TicketNameError as e:
        if str(e).startswith("no such ticket"):
            return token
        raise UsageError(f"{e} (in spool {spool.root})") from None


def cmd_cancel(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.daemon.control import cancel, describe, wait

    if a.all == bool(a.tickets):
        raise UsageError("give ticket ids or --all (not both)")
    spool = spool_of(cfg)
    tickets = resolve_tickets(spool, a.tickets, unknown_ok=True)
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
    tickets = resolve_tickets(spool, a.tickets, unknown_ok=True)
    unknown = [t for t in tickets if spool.state_of(t) is None]
    if unknown:
        raise UsageError(f"no such ticket in spool {spool.root}: {', '.join(unknown)}")
    done, pending = wait(spool, tickets, a.timeout, lambda t, state, res: print(describe(t, state, res), flush=True))
    if pending:
        print(f"aimedres-async: timed out after {a.timeout:g}s; not finished: {', '.join(pending)}", file=sys.stderr)
        return EXIT_TIMEOUT
    return exit_code(done.values())


def check_group(cfg: Config, group: str) -> None:
    from aimedres_async.plan.config import groups_of

    if group not in groups_of(cfg):
        raise UsageError(f"--group: no group {group!r} in the config ({', '.join(groups_of(cfg))})")


def cmd_pause(cfg: Config, a: argparse.Namespace, paused: bool = True) -> int:
    spool = spool_of(cfg)
    if a.group is not None:
        check_group(cfg, a.group)
    try:
        spool.ensure(check_secure=False)
        if a.group is None:
            spool.set_paused(paused)
        else:
            from aimedres_async.daemon.groups import set_group_paused

            set_group_paused(spool, a.group, paused)
    except OSError as e:
        raise UsageError(f"cannot write to spool {spool.root}: {e.strerror or e}") from None
    if a.group is not None:
        done = "paused" if paused else "resumed"
        what = "no new ticket of it is claimed until `resume --group`" if paused else "its tickets are claimed again"
        print(f"{done} group {a.group} of {spool.root}: {what}")
    elif paused:
        print(f"paused: no new ticket is claimed from {spool.root} until `resume` (running ones go on)")
    else:
        print(f"resumed: tickets in {spool.root} are claimed again")
    return 0


def cmd_resume(cfg: Config, a: argparse.Namespace) -> int:
    return cmd_pause(cfg, a, paused=False)
