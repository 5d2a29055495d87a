"""The jobs a dead daemon left running: what a daemon records of each job's process, and how the
next one finds them (by that record, or by the environment every daemon job carries) and kills them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson

SPOOL_ENV = "AIMEDRES_SPOOL"  # in every daemon job's environment: the spool it came from


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
        info = orjson.loads(sidecar.read_bytes())
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
