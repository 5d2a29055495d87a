"""Processes on this machine: process groups, /proc snapshots, signalling, and the orphans we
adopt as subreaper (found by the attempt marks in their environment, killed and reaped here).

Our spawned jobs' main processes and the death watch are spared (`children.spared`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from dataclasses import dataclass

from aimedres_async.system.children import may_reap, spared
from aimedres_async.system.deathwatch_link import watch_pid
from aimedres_async.system.procfs import proc_kib

PIPE_SIZE = 1 << 20  # what a pipe is enlarged to once a job fills one
DEFAULT_PIPE_SIZE = 1 << 16  # Linux: a new pipe holds 16 pages
_F_SETPIPE_SZ = 1031
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


_devnull = -1


def devnull() -> int:
    """One /dev/null, opened once, that every job gets as its standard input."""
    global _devnull
    if _devnull < 0:
        _devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull


def grow_pipe(fd: int) -> None:
    """Raise a pipe's capacity to PIPE_SIZE (fewer, larger reads for a job that prints a lot)."""
    with contextlib.suppress(OSError):  # over the per-user pipe limit: keep the default size
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)


# ---------------------------------------------------------------- process groups


def signal_group(pgid: int, sig: int) -> bool:
    """Send sig to a whole process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists but is not ours (should not happen for our own sessions)


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    state: str
    rss_bytes: int


def processes() -> list[ProcInfo]:
    """A snapshot of every process (Linux /proc; psutil elsewhere)."""
    if not os.path.isdir("/proc/self"):
        return _processes_psutil()
    out: list[ProcInfo] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        rest = raw[raw.rfind(b")") + 2 :].split()
        # fields after the command: state ppid pgrp session ... rss is the 24th field overall
        out.append(ProcInfo(int(name), int(rest[1]), int(rest[2]), rest[0].decode(), int(rest[21]) * _PAGE))
    return out


def _processes_psutil() -> list[ProcInfo]:
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "ppid", "status", "memory_info"]):
        try:
            out.append(
                ProcInfo(
                    p.pid,
                    p.info["ppid"],
                    os.getpgid(p.pid),
                    "Z" if p.info["status"] == psutil.STATUS_ZOMBIE else "R",
                    p.info["memory_info"].rss if p.info["memory_info"] else 0,
                )
            )
        except (OSError, psutil.Error):
            continue
    return out


def group_members(pgid: int, snapshot: list[ProcInfo] | None = None) -> list[ProcInfo]:
    return [p for p in (snapshot if snapshot is not None else processes()) if p.pgid == pgid]


def reap_adopted(members: list[ProcInfo]) -> None:
    """Reap zombies re-parented to us (we are a subreaper); never touches other children."""
    me = os.getpid()
    for p in members:
        # a job's main process is reaped by its own watcher, with its status
        if p.ppid == me and p.state == "Z" and not spared(p.pid) and may_reap():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p.pid, os.WNOHANG)


def group_exists(pgid: int) -> bool:
    """Whether any process (a zombie too) is in the group: one kill(2), no /proc scan."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def live_members(pgid: int) -> list[ProcInfo]:
    """The group's processes that are not zombies (reaping the zombies we adopted): a scan of
    /proc unless the group is empty."""
    if not group_exists(pgid):
        return []
    members = group_members(pgid)
    reap_adopted(members)
    return [p for p in members if p.state != "Z"]


async def wait_group_gone(pgid: int, timeout: float, poll: float = 0.02) -> bool:
    """Wait until no live process is left in the group; True if it emptied in time. The /proc
    scans run in worker threads: the event loop only sleeps between them."""
    import anyio  # here: `status` and the spool read processes without an event loop

    deadline = time.monotonic() + timeout
    while True:
        if not group_exists(pgid) or not await anyio.to_thread.run_sync(live_members, pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        await anyio.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        poll = min(poll * 1.5, 0.25)


def kill_group_now(pgid: int) -> None:
    """SIGKILL the group and reap what we adopted; synchronous, for last-resort cleanup."""
    if signal_group(pgid, signal.SIGKILL):
        deadline = time.monotonic() + 2.0
        while live_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.01)


def sweep_adopted(timeout: float = 5.0) -> list[int]:
    """Kill and reap every process adopted by this supervisor (orphans of finished jobs), chains
    included: killing an adopted process re-parents its own children to us, so this looks again
    until no child is left (or `timeout` passes)."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    me = os.getpid()
    while has_children() and time.monotonic() < deadline:
        victims = [p for p in processes() if p.ppid == me and not spared(p.pid)]
        if not victims:
            break
        for p in victims:
            if p.state != "Z":
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p.pid, signal.SIGKILL)
                killed.append(p.pid)
        for p in victims:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(p.pid, 0)
    return killed


@dataclass(frozen=True)
class Adopted:
    """A live process re-parented to us, and which attempt's environment it carries."""

    pid: int
    start_time: int
    marks: tuple[str, str, str] | None  # (AIMEDRES_RUN_ID, AIMEDRES_JOB_ID, AIMEDRES_ATTEMPT)


_MARK_KEYS = (b"AIMEDRES_RUN_ID=", b"AIMEDRES_JOB_ID=", b"AIMEDRES_ATTEMPT=")


def attempt_marks(pid: int) -> tuple[str, str, str] | None:
    """The attempt a process belongs to, from the variables every job and its children inherit."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read().split(b"\0")
    except OSError:
        return None
    found: dict[bytes, str] = {}
    for item in env:
        for key in _MARK_KEYS:
            if item.startswith(key):
                found[key] = item[len(key) :].decode("utf-8", "surrogateescape")
    if len(found) != len(_MARK_KEYS):
        return None
    run, job, attempt = (found[k] for k in _MARK_KEYS)
    return run, job, attempt


def adopted(snapshot: list[ProcInfo]) -> tuple[list[Adopted], list[int]]:
    """Our adopted children in a snapshot: (the live ones, the zombies). Runs in a worker thread;
    the caller checks LEADERS again on the loop, where spawns happen, before acting."""
    me = os.getpid()
    live: list[Adopted] = []
    zombies: list[int] = []
    for p in snapshot:
        if p.ppid != me or spared(p.pid):
            continue
        if p.state == "Z":
            zombies.append(p.pid)
            continue
        started = start_time(p.pid)
        if started is not None:
            live.append(Adopted(p.pid, started, attempt_marks(p.pid)))
    return live, zombies


def kill_adopted(p: Adopted) -> bool:
    """SIGKILL an adopted process, unless its pid now names another process; True if sent."""
    if spared(p.pid):  # a job's main process being spawned is spared by its attempt's marks
        return False
    try:
        fd = os.pidfd_open(p.pid)
    except (AttributeError, OSError):
        fd = -1
    try:
        # after the pidfd is open the pid cannot be recycled under it: check it is the same one
        if start_time(p.pid) != p.start_time:
            return False
        if fd >= 0:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        else:
            os.kill(p.pid, signal.SIGKILL)
        return True
    except OSError:
        return False
    finally:
        if fd >= 0:
            os.close(fd)


def reap_zombies(pids: list[int]) -> None:
    """Reap adopted zombies (never a job's main process: its watcher wants its status)."""
    for pid in pids:
        if not spared(pid) and may_reap():
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)


def start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (with the pid, a unique identity)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        return int(raw[raw.rfind(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def has_children() -> bool:
    """Whether any child of ours other than the death watch exists (running or a zombie): each of
    our threads' `children` list in /proc (a few small reads, no scan of every process), else one
    waitid(2), which cannot leave the death watch out."""
    try:
        listed: list[bytes] = []
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children", "rb") as f:
                listed += f.read().split()
        return any(int(pid) != watch_pid() for pid in listed)
    except (OSError, ValueError):  # no /proc, a kernel without CONFIG_PROC_CHILDREN, a thread that just ended
        pass
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False  # ECHILD: no children at all
    except (AttributeError, OSError):
        pass  # no waitid here: assume there may be
    return True


def group_rss(pgid: int, snapshot: list[ProcInfo]) -> int:
    return sum(p.rss_bytes for p in snapshot if p.pgid == pgid and p.state != "Z")


def group_peak(pgid: int, snapshot: list[ProcInfo]) -> int:
    """The group's peak memory as far as its live members show it: the sum of their high-water
    marks (VmHWM), each member's RSS where its mark cannot be read. A member's mark covers its
    whole life, so a spike between two samples still counts; members' peaks need not have been
    simultaneous, so the sum is an upper bound. Only reads /proc/PID/status of the group's own
    members."""
    total = 0
    for p in snapshot:
        if p.pgid == pgid and p.state != "Z":
            hwm = proc_kib(f"/proc/{p.pid}/status", b"VmHWM:")
            total += max(hwm or 0, p.rss_bytes)
    return total


def kill_run_leftovers(run_id: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process whose environment carries AIMEDRES_RUN_ID=run_id (a dead run's jobs
    and their children, re-parented away from us), looking again until none is left."""
    if not os.path.isdir("/proc/self"):
        return []
    needle = f"AIMEDRES_RUN_ID={run_id}".encode("utf-8", "surrogateescape")
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = []
        for p in processes():
            if p.state == "Z" or p.pid == os.getpid():
                continue
            try:
                with open(f"/proc/{p.pid}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        found.append(p.pid)
            except OSError:
                continue
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed += found
        time.sleep(0.02)
    return killed
