"""Run the command line with every event-loop step timed, as asyncio's debug mode times them.

    python bench/_slow_callbacks.py LOG plain|inject ARGS...   # ARGS as for `python -m aimedres_async`

Every callback and task step (around `asyncio.events.Handle._run`) that holds the loop longer than
20 ms is logged in debug mode's words, "Executing <callback> took N seconds", to LOG. Not counted,
to measure the supervisor rather than the machine: the time the thread waited for a CPU (run_delay
in /proc/thread-self/schedstat; other work shares the cores) and the kernel's fork/exec of a job
inside subprocess.Popen, which waits for the child's exec and runs on the loop whatever the spawn
API (asyncio's subprocess_exec calls Popen there too). Debug mode's other checks stay off: they
record a stack at every call_soon, inside the timed callbacks. `inject` adds one 50 ms blocking call
when the first job finishes, to show that the check catches one.

Used by tests/engine/test_slow_callbacks.py and by `bench/chaos.py --slow-callbacks`.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import logging
import subprocess
import sys
import time
from typing import Any

LIMIT = 0.02
log = logging.getLogger("asyncio")
spawning = [0.0]  # seconds spent in Popen's fork/exec so far


def run_delay() -> float:
    with open("/proc/thread-self/schedstat", "rb") as f:
        return int(f.read().split()[1]) / 1e9


def install(log_path: str) -> None:
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False
    real_run = asyncio.events.Handle._run
    real_exec = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def timed_run(self: asyncio.events.Handle) -> None:
        t0, d0, s0 = time.monotonic(), run_delay(), spawning[0]
        try:
            real_run(self)
        finally:
            wall = time.monotonic() - t0
            if wall > LIMIT:
                waited, spawned = run_delay() - d0, spawning[0] - s0
                if wall - waited - spawned > LIMIT:
                    what = getattr(self._callback, "__self__", self)  # type: ignore[attr-defined]  # a task step: the task
                    where = ""
                    coro = what.get_coro() if isinstance(what, asyncio.Task) else None
                    while coro is not None and getattr(coro, "cr_frame", None) is not None:  # where it waits now
                        where += f" {coro.cr_frame.f_code.co_name}:{coro.cr_frame.f_lineno}"
                        coro = coro.cr_await
                    log.warning(
                        "Executing %r took %.3f seconds (%.3f s more waiting for a CPU, %.3f s in fork/exec)%s",
                        what,
                        wall - waited - spawned,
                        waited,
                        spawned,
                        f"; now at {where}" if where else "",
                    )

    def timed_exec(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        try:
            return real_exec(self, *args, **kwargs)
        finally:
            spawning[0] += time.monotonic() - t0

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
    subprocess.Popen._execute_child = timed_exec  # type: ignore[attr-defined]


def inject_block() -> None:
    """One 50 ms blocking call on the loop, when the first job finishes."""
    from aimedres_async.engine.recorder import Recorder

    real = Recorder._finished
    done: list[int] = []

    def finished(self: Any, change: Any, job: Any) -> None:
        if not done:
            done.append(1)
            time.sleep(0.05)
        real(self, change, job)

    Recorder._finished = finished  # type: ignore[method-assign]


def main() -> int:
    install(sys.argv[1])
    if sys.argv[2] == "inject":
        inject_block()
    from aimedres_async.cli import app as cli

    return cli.main(sys.argv[3:])


if __name__ == "__main__":
    sys.exit(main())
