"""Watching a supervisor run from the side (bench/scale.py): its peak memory, and the files renamed
into its run folder, seen with inotify (through ctypes: the benchmarks use the standard library only).

`run_watched` spawns the supervisor, reaps it with `wait4` (keeping the rusage: CPU time and
`ru_maxrss`), and meanwhile a side thread reads the inotify events every 50 ms at most and the
supervisor's VmHWM from /proc. Linux only.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from _helpers import proc_mem

IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_Q_OVERFLOW = 0x4000
IN_ISDIR = 0x40000000
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then len bytes of name


class RenameWatch:
    """The renames into `logs_dir` ("logs/<name>") and into each run folder made in it ("<name>"),
    each with the time it was read, in seconds after `t0` (set it just before the spawn).

    A run folder is watched from when its creation is read; a summary.json already in it then was
    renamed earlier and is counted at that moment.
    """

    def __init__(self, logs_dir: Path) -> None:
        self.logs_dir = logs_dir
        self.t0 = time.perf_counter()
        self.renames: dict[str, list[float]] = {}
        self.problems: list[str] = []
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._dirs: dict[int, str] = {}  # watch descriptor -> the prefix of its names
        self._add(logs_dir, "logs/", IN_CREATE | IN_MOVED_TO)

    def __enter__(self) -> RenameWatch:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        os.close(self.fd)

    def _add(self, path: Path, prefix: str, mask: int) -> None:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            self.problems.append(f"inotify cannot watch {path}: {os.strerror(ctypes.get_errno())}")
        else:
            self._dirs[wd] = prefix

    def _seen(self, name: str, now: float) -> None:
        self.renames.setdefault(name, []).append(now)

    def poll(self, timeout: float) -> None:
        """Read the events that came (waiting up to timeout for one)."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return
        now = time.perf_counter() - self.t0
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return
            off = 0
            while off < len(buf):
                wd, mask, _cookie, n = EVENT.unpack_from(buf, off)
                name = buf[off + EVENT.size : off + EVENT.size + n].rstrip(b"\0").decode("utf-8", "replace")
                off += EVENT.size + n
                self._event(wd, mask, name, now)

    def _event(self, wd: int, mask: int, name: str, now: float) -> None:
        if mask & IN_Q_OVERFLOW:
            self.problems.append("the inotify queue overflowed: renames were missed")
        prefix = self._dirs.get(wd)
        if prefix is None:
            return
        if prefix == "logs/" and mask & IN_CREATE and mask & IN_ISDIR and not name.startswith("."):
            self._add(self.logs_dir / name, "", IN_MOVED_TO)
            if (self.logs_dir / name / "summary.json").exists():
                self._seen("summary.json", now)
        elif mask & IN_MOVED_TO:
            self._seen(prefix + name, now)


@dataclass
class Watched:
    """A reaped supervisor: its wall time, rusage, exit status and the peak RSS seen in /proc."""

    wall_s: float
    cpu_s: float  # user+sys of it and the children it reaped
    maxrss: int  # bytes; Linux: the larger of its own peak RSS and its largest reaped child's
    hwm: int | None  # its own VmHWM, last read before it exited (read every 50 ms at most)
    returncode: int | None  # None: killed after the timeout
    timed_out: bool


def run_watched(
    cmd: Sequence[str],
    watch: RenameWatch,
    *,
    stderr: IO[Any],
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
) -> Watched:
    """Run cmd (stdin and stdout /dev/null) to its end, reaped with a blocking wait4; a side thread
    reads `watch` and the process's VmHWM meanwhile. Past the timeout the process is killed."""
    stop, killed = threading.Event(), threading.Event()
    hwm: list[int] = []
    watch.t0 = t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, cwd=cwd, env=dict(env)
    )

    def side() -> None:
        while not stop.is_set():
            watch.poll(0.05)
            mem = proc_mem(proc.pid)
            if mem is not None and "VmHWM" in mem and not stop.is_set():
                hwm[:] = [mem["VmHWM"]]

    def kill() -> None:
        killed.set()
        proc.kill()

    thread = threading.Thread(target=side, daemon=True)
    thread.start()
    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    timer.start()
    try:
        _, status, ru = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # so that Popen does not reap it again
    stop.set()
    thread.join()
    watch.poll(0)  # the renames of the run's very end
    return Watched(
        wall,
        ru.ru_utime + ru.ru_stime,
        ru.ru_maxrss * 1024,
        hwm[0] if hwm else None,
        None if killed.is_set() else proc.returncode,
        killed.is_set(),
    )
