"""The operator's side of the spool daemon: cancel, wait, follow, status, through the spool alone.

The spool is the daemon's API: a queued ticket is cancelled by filing it under the spool lock, a
running one by a request file in control/ that its daemon acts on. Nothing here talks to a process.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from aimedres_async.daemon.spool import Spool
from aimedres_async.daemon.tickets import SUFFIX, cancelled_result, filed_ticket, order_of
from aimedres_async.plan.config import DEFAULT_GROUP

FINAL = ("done", "failed", "rejected")
EXIT_FAILED = 1
EXIT_CANCELLED = 130
EXIT_TIMEOUT = 124
POLL = 0.1


def outcome(state: str, res: dict[str, Any]) -> str:
    """A filed ticket's end in one word: succeeded, failed, timed_out, ..., cancelled, rejected."""
    if state == "done":
        return "succeeded"
    if state == "rejected":
        return "rejected"
    return str(res.get("status") or "failed")


def exit_code(outcomes: Iterable[str]) -> int:
    """`wait`'s exit code: 130 if any was cancelled, else 1 if any did not succeed, else 0."""
    seen = set(outcomes)
    if "cancelled" in seen:
        return EXIT_CANCELLED
    return EXIT_FAILED if seen - {"succeeded"} else 0


def describe(ticket: str, state: str, res: dict[str, Any]) -> str:
    """One line for a filed ticket: `<id> failed (exit 3, 2 attempts): <error>`."""
    word = outcome(state, res)
    bits = []
    if res.get("exit_code") is not None and word != "succeeded":
        bits.append(f"exit {res['exit_code']}")
    if res.get("signal"):
        bits.append(str(res["signal"]))
    if res.get("failure") and res["failure"] not in ("exit_code", "signal"):  # those say it already
        bits.append(str(res["failure"]))
    if isinstance(res.get("duration_s"), int | float):
        bits.append(f"{res['duration_s']:.1f}s")
    line = f"{ticket} {word}" + (f" ({', '.join(bits)})" if bits else "")
    if word != "succeeded" and res.get("error"):
        line += f": {str(res['error']).splitlines()[0][:200]}"
    return line


# ---------------------------------------------------------------- submit


def ticket_owner(spool: Spool) -> tuple[int, int] | None:
    """Who a ticket must belong to for the daemon to read it: the serving daemon's user, else the
    owner of incoming/ (the daemon creates it; tmpfiles gives it to the service user)."""
    for info in spool.daemons():
        if isinstance(info.get("uid"), int):
            try:
                st = os.stat(spool.dir("incoming"))
                return info["uid"], st.st_gid
            except OSError:
                return info["uid"], os.getegid()
    try:
        st = os.stat(spool.dir("incoming"))
    except OSError:
        return None
    return st.st_uid, st.st_gid


def user_name(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


# ---------------------------------------------------------------- cancel


@dataclass
class CancelReport:
    lines: list[str]
    unknown: list[str]
    running: list[str]  # asked to stop: the daemon files them as cancelled


def cancel(spool: Spool, tickets: list[str], every: bool) -> CancelReport:
    """Cancel queued tickets at once (filed under failed/ as cancelled) and ask the daemon to stop
    running ones (stop_signal, grace, SIGKILL of the group; never retried)."""
    if every:
        tickets = [q.ticket_id for q in spool.queue()] + sorted(
            n[: -len(SUFFIX)] for n in _listdir(spool.dir("active")) if n.endswith(SUFFIX) and not n.startswith(".")
        )
    report = CancelReport([], [], [])
    for ticket in dict.fromkeys(tickets):
        state = spool.state_of(ticket)
        if state is None:
            report.unknown.append(ticket)
            continue
        where, res = state
        if where == "incoming":
            if spool.cancel_waiting(ticket, cancelled_result()) is not None:
                report.lines.append(f"{ticket} cancelled (it was queued)")
                continue
            state = spool.state_of(ticket)  # claimed meanwhile: it runs now
            if state is None:
                report.unknown.append(ticket)
                continue
            where, res = state
        if where in FINAL:
            report.lines.append(f"{ticket} had already finished: {outcome(where, res)}")
            continue
        spool.request_cancel(ticket)
        report.running.append(ticket)
    return report


# ---------------------------------------------------------------- wait


def wait(
    spool: Spool, tickets: list[str], timeout: float | None, on_final: Callable[[str, str, dict[str, Any]], None]
) -> tuple[dict[str, str], list[str]]:
    """Until every ticket is filed or `timeout` passes: (outcome per filed ticket, those still open).
    on_final(ticket, state, result) is called once for each, as it is filed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    open_ = list(dict.fromkeys(tickets))
    done: dict[str, str] = {}
    while True:
        for ticket in list(open_):
            state = spool.state_of(ticket)
            if state is not None and state[0] in FINAL:
                done[ticket] = outcome(*state)
                open_.remove(ticket)
                on_final(ticket, *state)
        if not open_ or (deadline is not None and time.monotonic() >= deadline):
            return done, open_
        time.sleep(POLL if deadline is None else max(0.0, min(POLL, deadline - time.monotonic())))


# ---------------------------------------------------------------- logs -f


def running_log(spool: Spool, ticket: str) -> Path | None:
    """The log of a ticket that runs now (from its daemon's record in active/)."""
    for info in spool.running():
        if info.get("ticket") == ticket and info.get("log"):
            return Path(info["log"])
    return None


def follow(spool: Spool, ticket: str, show: Callable[[Path, Callable[[], bool] | None], int]) -> int:
    """`logs -f TICKET`: wait for a queued ticket to start, follow each log it gets (a daemon stopped
    in between puts it back in the queue; the next one starts a new log) until it is filed; exit
    as `wait` does. show(path, running) prints a log and follows it while running() is true."""
    shown: set[Path] = set()
    said_waiting = False
    while True:
        state = spool.state_of(ticket)
        if state is None:
            raise ValueError(f"no ticket {ticket!r} in spool {spool.root}")
        where, res = state
        if where in FINAL:
            log = Path(res["log"]) if res.get("log") else None
            if log is not None and log not in shown and log.exists():
                show(log, None)
            if where == "rejected":
                print(f"{ticket} was rejected: {res.get('error')}", file=sys.stderr)
            else:
                print(f"== {describe(ticket, where, res)}", file=sys.stderr)
            return exit_code([outcome(where, res)])
        log = running_log(spool, ticket) if where == "active" else None
        if log is not None and log not in shown:
            shown.add(log)
            show(log, _still_running(spool, ticket, log))
            continue
        if where == "incoming" and not said_waiting:
            print(f"{ticket} is queued; waiting for it to start", file=sys.stderr, flush=True)
            said_waiting = True
        time.sleep(POLL)


def _still_running(spool: Spool, ticket: str, log: Path) -> Callable[[], bool]:
    return lambda: running_log(spool, ticket) == log


# ---------------------------------------------------------------- status


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def last_line(log: Path, limit: int = 65536) -> str | None:
    """The last output line in a job's log (its tail only is read)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
            lines = f.read().splitlines()
    except OSError:
        return None
    for raw in reversed(lines):
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if rec.get("event") == "job.output":
            if "line" in rec:
                return str(rec["line"])[:200]
            if "data" in rec:
                return orjson.dumps(rec["data"]).decode()[:200]
    return None


def _finished(spool: Spool, state: str, ticket: str) -> dict[str, Any]:
    """A filed ticket as `status` lists it."""
    raw = filed_ticket(spool.dir(state) / f"{ticket}{SUFFIX}")
    if state == "rejected":
        found = spool.state_of(ticket)
        raw["result"] = found[1] if found else {}
    found = raw.get("result")
    res: dict[str, Any] = found if isinstance(found, dict) else {}
    o = order_of(raw)
    return {
        "ticket": ticket,
        "state": state,
        "status": outcome(state, res),
        "exit_code": res.get("exit_code"),
        "duration_s": res.get("duration_s"),
        "finished_at": res.get("finished_at"),
        "failure": res.get("failure"),
        "number": o.number,
        "label": o.label,
        "group": o.group,
        "attempts": res.get("attempts"),
        "restarted_from": raw.get("restarted_from"),
    }


def status(spool: Spool, last: int = 10) -> dict[str, Any]:
    """What `status` shows: the daemons serving the spool, queued tickets in run order, running ones,
    the last few filed, and counts per state."""
    now = time.time()
    queued = []
    for q in spool.queue():
        o = q.order
        entry: dict[str, Any] = {"ticket": q.ticket_id, "priority": q.priority}
        if q.after:
            entry["after"] = list(q.after)
        entry |= {"number": o.number, "label": o.label, "group": o.group}
        if o.not_before is not None:
            entry["not_before"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(o.not_before))
        queued.append(entry)
    running = []
    for r in spool.running():
        r["elapsed_s"] = round(now - float(r.get("started", now)), 1)
        r["last_line"] = last_line(Path(r["log"])) if r.get("log") else None
        r.setdefault("slurm_job_id", None)  # the Slurm job of the attempt, when it runs on Slurm
        r.setdefault("group", DEFAULT_GROUP)
        running.append(r)
    filed = []
    for state in FINAL:
        for name in _listdir(spool.dir(state)):
            if name.endswith(SUFFIX) and not name.startswith("."):
                try:
                    filed.append((os.lstat(spool.dir(state) / name).st_mtime, state, name[: -len(SUFFIX)]))
                except FileNotFoundError:
                    continue
    finished = [_finished(spool, state, ticket) for _mtime, state, ticket in sorted(filed, reverse=True)[:last]]
    daemons = spool.daemons()
    return {
        "spool": str(spool.root),
        "daemon": daemons[0] if daemons else None,
        "daemons": daemons,
        "paused": spool.paused(),
        "counts": spool.counts(),
        "queued": queued,
        "running": running,
        "finished": finished,
    }
