"""The jobs a dead daemon left running: what a daemon records of each job's process, and how the
next one finds them (by that record, or by the environment every local daemon job carries) and kills
them; and the Slurm jobs a dead daemon's ledger names, which it scancels.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson

from aimedres_async.plan.limits import read_regular_file

SPOOL_ENV = "AIMEDRES_SPOOL"  # in every local daemon job's environment: the spool it came from


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        return int(raw[raw.rfind(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_identity(pid: int) -> dict[str, Any]:
    """pid plus its start time, so a recycled pid is never mistaken for our job."""
    return {"pid": pid, "pgid": pid, "start_time": start_time(pid)}


def kill_recorded(sidecar: Path) -> None:
    try:
        info = orjson.loads(read_regular_file(sidecar, 1 << 20))
        pgid, started = int(info["pgid"]), info.get("start_time")
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return
    # The leader may be gone while its group lives on; only trust the pgid if the leader is the
    # same process we started, or is gone (then no new process can have taken that group id
    # while group members remain, since a pgid is not reused while the group exists).
    now = start_time(pgid)
    if now is not None and started is not None and now != started:
        return  # the pid was recycled by an unrelated process
    kill_groups({pgid})


def job_groups(spool: str) -> dict[str, set[int]]:
    """The process groups of this spool's jobs that are alive, by ticket id, found by environment.

    A daemon killed between a spawn and the write of its sidecar (a few hundred microseconds), or
    between a retry's spawn and the sidecar's update, leaves a job that no record names. Every
    daemon job carries AIMEDRES_JOB_ID=<ticket id> and AIMEDRES_SPOOL=<this spool> in its
    environment, and its children inherit both, so /proc/<pid>/environ finds them; the spool keeps
    a same-named ticket of another spool's daemon safe.
    """
    groups: dict[str, set[int]] = {}
    if not os.path.isdir("/proc/self"):
        return groups
    spool_var = f"{SPOOL_ENV}={spool}".encode("utf-8", "surrogateescape")
    ours = {os.getpid(), os.getpgrp()}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in ours:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
            if spool_var not in env:
                continue
            job = next((v[len(b"AIMEDRES_JOB_ID=") :] for v in env if v.startswith(b"AIMEDRES_JOB_ID=")), None)
            pgid = os.getpgid(int(name))
        except OSError:  # gone, or not ours
            continue
        if job is not None and pgid not in ours:
            groups.setdefault(job.decode("utf-8", "surrogateescape"), set()).add(pgid)
    return groups


def kill_groups(pgids: set[int]) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0  # gone before the ticket can run again
    from aimedres_async.system import procs  # the death watch and subprocess: only to kill

    while any(procs.live_members(pgid) for pgid in pgids) and time.monotonic() < deadline:
        time.sleep(0.02)


# ---------------------------------------------------------------- cluster jobs (Slurm)

LEDGERS = "slurm"  # <spool>/slurm/<daemon pid>-<its start time>/: each daemon's Slurm submissions


def ledger_of(spool_root: Path, pid: int) -> Path:
    """The folder where the daemon `pid` records the Slurm jobs it submits (slurm_ledger)."""
    return spool_root / LEDGERS / f"{pid}-{start_time(pid)}"


def _dead_ledgers(spool_root: Path) -> list[Path]:
    """Ledger folders whose daemon is gone (or is another process now that has its pid)."""
    try:
        names = sorted(os.listdir(spool_root / LEDGERS))
    except (FileNotFoundError, NotADirectoryError):
        return []
    dead = []
    for name in names:
        pid_text, _, started = name.partition("-")
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if not (pid_alive(pid) and str(start_time(pid)) == started):
            dead.append(spool_root / LEDGERS / name)
    return dead


def cancel_cluster_leftovers(spool_root: Path) -> list[dict[str, Any]]:
    """scancel every Slurm job a dead daemon of this spool recorded and did not see end.

    One dict per record (ticket, attempt, orphan_run, slurm_job_name, slurm_job_id, error). A
    record whose scancel failed (Slurm unreachable) is kept for the next start; a folder left empty
    is removed."""
    from aimedres_async.engine.executors import slurm_ledger  # Slurm's commands: only when needed

    done: list[dict[str, Any]] = []
    failed: str | None = None  # Slurm did not answer: the other records wait too (a start stays quick)
    for folder in _dead_ledgers(spool_root):
        for entry in slurm_ledger.entries(folder):
            ids, error = ([], f"not tried: {failed}") if failed else slurm_ledger.cancel(entry)
            failed = failed or error
            done.append(
                {
                    "ticket": entry.ticket,
                    "attempt": entry.attempt,
                    "orphan_run": entry.run,
                    "slurm_job_name": entry.name,
                    "slurm_job_id": ",".join(ids) or entry.job_id,
                    "error": error,
                }
            )
            if error is None:
                slurm_ledger.forget(entry.path)
        with contextlib.suppress(OSError):  # a dead writer's temp file of a record
            for name in os.listdir(folder):
                if name.startswith("."):
                    os.unlink(folder / name)
        with contextlib.suppress(OSError):  # not empty: a record kept for the next start
            folder.rmdir()
    return done
