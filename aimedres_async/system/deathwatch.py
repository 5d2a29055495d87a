"""The death watch: one small process per supervisor that kills its jobs if the supervisor dies.

`run` and `serve` start it (through `deathwatch_link.death_watch`) before their first local job.
It reads its standard input, a pipe whose only writer is the supervisor, one line at a time:

    r RUN_ID    every process whose environment carries AIMEDRES_RUN_ID=RUN_ID belongs to us
    + PGID      a job's process group started
    - PGID      that group has ended

End of file means the supervisor has gone, however it went: an orderly exit, a crash or
`kill -9` (the kernel closes the pipe then). It SIGKILLs every process that carries a listed run
id (a job's escaped descendants included) and the whole of every listed group one of them is in,
looking again until none is left or DEADLINE has passed, and exits. After an orderly exit there is
nothing left to kill and the scan finds nothing.

This is what `PR_SET_PDEATHSIG` would give each job's main process, for the whole tree and for
one process per supervisor instead of one more `exec` per job. The file runs as a script
(`python -I -S deathwatch.py`): standard library only, no import of the package.
"""

from __future__ import annotations

import os
import signal
import sys
import time

DEADLINE = 5.0  # how long to keep looking for processes of the dead run


def run_processes(needles: list[bytes]) -> dict[int, int]:
    """Live processes whose environment holds one of the needles (KEY=VALUE): pid -> pgid."""
    me = os.getpid()
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
            if any(n in env for n in needles):
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
                found[int(name)] = int(stat[stat.rfind(b")") + 2 :].split()[2])
        except (OSError, ValueError, IndexError):
            continue
    return found


def kill_all(groups: set[int], needles: list[bytes]) -> None:
    """SIGKILL what belongs to the dead supervisor, looking again until nothing is left.

    A listed group is killed whole (a member may have cleared its environment) only while a
    member still carries the run id: a group whose end we were not told of (a lost line) may
    have been reused by now, and is then left alone.
    """
    if not os.path.isdir("/proc/self"):  # nothing to check a group against: trust the list
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        return
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        ours = run_processes(needles)
        if not ours:
            return
        for pgid in groups & set(ours.values()):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        for pid in ours:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.02)


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP):  # a terminal's signals are the supervisor's to handle
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    needles: list[bytes] = []
    for line in sys.stdin.buffer:
        kind, _, value = line.rstrip(b"\n").partition(b" ")
        try:
            if kind == b"+":
                groups.add(int(value))
            elif kind == b"-":
                groups.discard(int(value))
            elif kind == b"r":
                needles.append(b"AIMEDRES_RUN_ID=" + value)
        except ValueError:
            continue
    kill_all(groups, needles)


if __name__ == "__main__":
    main()
