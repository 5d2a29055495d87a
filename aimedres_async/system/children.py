"""Our own children: the child watcher that reaps job main processes with wait4 (keeping each one's
max RSS), the subreaper flag, and which children the reapers of adopted processes must spare.

Jobs are spawned by the local executor through asyncio's subprocess API; their main processes are
reaped by `UsageChildWatcher` (on a pidfd), never by the reapers of adopted processes (`procs`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from aimedres_async.system.deathwatch_link import watch_pid
from aimedres_async.system.procfs import proc_kib

_PR_SET_CHILD_SUBREAPER = 36


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
    import asyncio  # here: `status` and the spool's readers of processes never start an event loop

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
    import asyncio

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


def spared(pid: int) -> bool:
    """Children of ours that the adopted-process reapers leave alone: job main processes (asyncio
    reaps them, with their status) and the death watch."""
    return pid in LEADERS or pid == watch_pid()


def may_reap() -> bool:
    return _spawns_in_flight == 0
