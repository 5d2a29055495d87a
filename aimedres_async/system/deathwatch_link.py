"""The supervisor's end of the death watch (`deathwatch.py`): starting it, and telling it which
process groups to kill should the supervisor die, SIGKILL included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


class _DeathWatch:
    """The supervisor's end of `deathwatch.py`: the pipe to it, and what has been told."""

    def __init__(self) -> None:
        self.fd = -1
        self.runs: set[str] = set()
        self.pid = -1
        self.pending: list[str] = []
        self.groups: set[int] = set()  # told with "+" and not yet with "-": re-told to a new one

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
            # without asyncio imported no loop can be running: `status` and the spool never load it
            asyncio = sys.modules.get("asyncio")
            try:
                if asyncio is None:
                    raise RuntimeError("no event loop")
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self.pending.append(line)
                self.flush()
                return
        self.pending.append(line)

    def dead(self) -> bool:
        """Whether the death watch has exited (it is our child: reaped here, never by the watchers)."""
        if self.pid <= 0:
            return False
        try:
            pid, _status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return True
        return pid == self.pid

    def restart(self) -> int:
        """A new death watch in place of a dead one, told every run and group the dead one knew;
        returns the dead one's pid."""
        old = self.pid
        os.close(self.fd)
        self.fd, self.pid = -1, -1
        self.pending.clear()  # for the dead one; the new one is told everything below
        if self.start():
            for run_id in sorted(self.runs):
                self.tell(f"r {run_id}")
            for pgid in sorted(self.groups):
                self.tell(f"+ {pgid}")
        return old

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
    _death_watch.groups.add(pgid)
    _death_watch.tell(f"+ {pgid}")


def unwatch_group(pgid: int) -> None:
    _death_watch.groups.discard(pgid)
    _death_watch.tell(f"- {pgid}")


def revive() -> tuple[int, int] | None:
    """If the death watch has died (killed by someone, the OOM killer), start another and tell it
    what the dead one knew: (dead pid, new pid, -1 if it could not start). None: it is alive, or
    was never started."""
    if _death_watch.fd < 0 or not _death_watch.dead():
        return None
    old = _death_watch.restart()
    return old, _death_watch.pid


def watch_pid() -> int:
    """The death watch's pid (-1 before it starts): a child of ours that must never be reaped."""
    return _death_watch.pid
