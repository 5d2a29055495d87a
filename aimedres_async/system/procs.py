"""Processes on this machine: the death watch, process groups, /proc snapshots, adopted orphans.

Jobs are spawned by the local executor (`executors.local`) through asyncio's subprocess API; their
main processes are reaped by `UsageChildWatcher` (on a pidfd, with wait4, so the kernel's max-RSS
of each is kept), never by the reapers of adopted processes here. Everything else that becomes
our child (orphans we adopt as subreaper) is found, killed and reaped here, except the death
watch (`deathwatch.py`), which must outlive us.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimedres_async.system.procfs import proc_kib

PIPE_SIZE = 1 << 20  # what a pipe is enlarged to once a job fills one
DEFAULT_PIPE_SIZE = 1 << 16  # Linux: a new pipe holds 16 pages
_F_SETPIPE_SZ = 1031
_PR_SET_CHILD_SUBREAPER = 36
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def own_peak_rss() -> int:
    """This process's high-water RSS (VmHWM), 0 where unknown.

    Not getrusage(RUSAGE_SELF): its ru_maxrss also carries the peak of the process we were
    vforked from (exec records the old mm's mark), e.g. a large test runner or shell.
    """
    return proc_kib("/proc/self/status", b"VmHWM:") or 0


_own_peak_seen = 0


def exceeds_own_peak(child_max_rss: int) -> bool:
    """Whether a child's wait4 ru_maxrss says anything about the child.

    A child's ru_maxrss starts from the mm it was vforked from, i.e. ours, so a figure not above
    our own high-water mark says nothing. The mark only grows, so /proc is read again only
    when a figure is above the last reading (not once per job).
    """
    global _own_peak_seen
    if child_max_rss <= _own_peak_seen:
        return False
    _own_peak_seen = own_peak_rss()
    return child_max_rss > _own_peak_seen


# ---------------------------------------------------------------- reaping spawned jobs

# ru_maxrss (bytes) of job main processes reaped by UsageChildWatcher, until their attempt takes it
EXIT_RSS: dict[int, int] = {}


def _reap_with_usage(pid: int) -> int:
    """Reap a spawned child with wait4: its return code; its ru_maxrss is kept in EXIT_RSS."""
    try:
        _, status, usage = os.wait4(pid, 0)
    except ChildProcessError:
        return 255  # reaped elsewhere: the status is lost
    if pid in LEADERS or _spawns_in_flight:
        EXIT_RSS[pid] = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return os.waitstatus_to_exitcode(status)


def _usage_watcher() -> Any:
    """A child watcher for asyncio's subprocess transports that reaps with wait4 (keeping the
    kernel's max-RSS of the child) on a pidfd, or in a thread per child where there is none.
    None where asyncio no longer has pluggable watchers (3.14): its own watcher is used then."""
    base = getattr(asyncio, "AbstractChildWatcher", None)
    if base is None:
        return None

    class UsageChildWatcher(base):  # type: ignore[misc, valid-type]
        def add_child_handler(self, pid: int, callback: Callable[..., Any], *args: Any) -> None:
            loop = asyncio.get_running_loop()
            try:
                pidfd = os.pidfd_open(pid)
            except (AttributeError, OSError):
                threading.Thread(target=self._wait_thread, args=(loop, pid, callback, args), daemon=True).start()
                return
            loop.add_reader(pidfd, self._on_exit, loop, pid, pidfd, callback, args)

        @staticmethod
        def _on_exit(
            loop: asyncio.AbstractEventLoop, pid: int, pidfd: int, callback: Callable[..., Any], args: tuple[Any, ...]
        ) -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            callback(pid, _reap_with_usage(pid), *args)

        @staticmethod
        def _wait_thread(
            loop: asyncio.AbstractEventLoop, pid: int, callback: Callable[..., Any], args: tuple[Any, ...]
        ) -> None:
            code = _reap_with_usage(pid)
            if not loop.is_closed():
                loop.call_soon_threadsafe(callback, pid, code, *args)

        def remove_child_handler(self, pid: int) -> bool:
            return True  # asyncio never calls it

        def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
            pass

        def close(self) -> None:
            pass

        def is_active(self) -> bool:
            return True

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    return UsageChildWatcher()


_watcher_installed = False


def install_child_watcher() -> None:
    """Make asyncio's subprocess transports reap through UsageChildWatcher (once per process)."""
    global _watcher_installed
    if _watcher_installed:
        return
    _watcher_installed = True
    with warnings.catch_warnings():  # the watcher API is deprecated from 3.12 on (still used by it)
        warnings.simplefilter("ignore", DeprecationWarning)
        watcher = _usage_watcher()
        if watcher is not None:
            asyncio.get_event_loop_policy().set_child_watcher(watcher)


def become_subreaper() -> bool:
    """Adopt orphaned grandchildren (Linux), so they can be found, killed and reaped by us.

    Without this, a grandchild whose parent died is re-parented to PID 1, which in many
    containers never reaps it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes  # only here: a few ms of start-up for one prctl

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


# Pids of job main processes we spawned and asyncio has not reaped yet: its child watcher reaps
# them (with their status); every other child of ours is a process we adopted as subreaper.
LEADERS: set[int] = set()
_spawns_in_flight = 0


@contextlib.contextmanager
def spawning() -> Iterator[None]:
    """Around a spawn: until its pid is in LEADERS, a new child of ours may be a job's main
    process, so adopted zombies are not reaped meanwhile (they are on the next pass)."""
    global _spawns_in_flight
    _spawns_in_flight += 1
    try:
        yield
    finally:
        _spawns_in_flight -= 1


def _spared(pid: int) -> bool:
    """Children of ours that the adopted-process reapers leave alone: job main processes (asyncio
    reaps them, with their status) and the death watch."""
    return pid in LEADERS or pid == _death_watch.pid


def _may_reap() -> bool:
    return _spawns_in_flight == 0


class _DeathWatch:
    """The supervisor's end of `deathwatch.py`: the pipe to it, and what has been told."""

    def __init__(self) -> None:
        self.fd = -1
        self.runs: set[str] = set()
        self.pid = -1
        self.pending: list[str] = []

    def start(self) -> bool:
        if self.fd >= 0:
            return True
        script = Path(__file__).with_name("deathwatch.py")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(script)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl+C on the terminal is for the supervisor, not for it
            )
        except OSError:
            return False
        assert proc.stdin is not None
        self.fd = os.dup(proc.stdin.fileno())  # kept open until we exit: its closing is the news
        os.set_blocking(self.fd, False)
        proc.stdin.close()
        self.pid = proc.pid
        proc.returncode = 0  # never waited for: it outlives us by design
        return True

    def tell(self, line: str) -> None:
        """Queue a line; the queue is written once per event-loop iteration (at once without a loop).
        A group not told yet when we die is still found by the run id in its environment."""
        if self.fd < 0:
            return
        if not self.pending:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self.pending.append(line)
                self.flush()
                return
        self.pending.append(line)

    def flush(self) -> None:
        data = "".join(f"{line}\n" for line in self.pending).encode("utf-8", "surrogateescape")
        self.pending.clear()
        try:
            os.write(self.fd, data)
        except OSError:  # it died, or is stopped with a full pipe: its guard is lost, the run goes on
            pass


_death_watch = _DeathWatch()


def death_watch(run_id: str) -> None:
    """Make sure every process carrying AIMEDRES_RUN_ID=run_id dies with this supervisor, even by
    SIGKILL: starts `deathwatch.py` on first use (Linux; elsewhere nothing happens)."""
    if run_id in _death_watch.runs or not sys.platform.startswith("linux"):
        return
    if _death_watch.start():
        _death_watch.runs.add(run_id)
        _death_watch.tell(f"r {run_id}")


def watch_group(pgid: int) -> None:
    """A job's process group: SIGKILLed at once if the supervisor dies while it runs."""
    _death_watch.tell(f"+ {pgid}")


def unwatch_group(pgid: int) -> None:
    _death_watch.tell(f"- {pgid}")


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
        if p.ppid == me and p.state == "Z" and not _spared(p.pid) and _may_reap():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p.pid, os.WNOHANG)


def live_members(pgid: int) -> list[ProcInfo]:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []  # the group is empty: no need to scan /proc
    except PermissionError:
        pass
    members = group_members(pgid)
    reap_adopted(members)
    return [p for p in members if p.state != "Z"]


async def wait_group_gone(pgid: int, timeout: float, poll: float = 0.02) -> bool:
    """Wait until no live process is left in the group; True if it emptied in time."""
    deadline = time.monotonic() + timeout
    while True:
        if not live_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(min(poll, max(0.0, deadline - time.monotonic())))
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
        victims = [p for p in processes() if p.ppid == me and not _spared(p.pid)]
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
        if p.ppid != me or _spared(p.pid):
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
    if _spared(p.pid):  # a job's main process being spawned is spared by its attempt's marks
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
        if not _spared(pid) and _may_reap():
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
        return any(int(pid) != _death_watch.pid for pid in listed)
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
