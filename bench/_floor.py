"""The dispatch floor of the design's spawn shape: N x /bin/true, W at once, with nothing else.

    python bench/_floor.py asyncio N W   # loop.subprocess_exec + an own SubprocessProtocol + Semaphore(W)
    python bench/_floor.py popen N W     # subprocess.Popen + pidfd + epoll, no event loop

Both give the job the supervisor's environment, stdin from /dev/null, stdout and stderr on pipes
and a new session, as the local executor does; neither writes a log, a summary or anything else.
`bench/dispatch.py --floor` times them beside the supervisor: what is left between the supervisor
and the asyncio floor is the supervisor's own work per job; what is between the floor and xargs
is the cost of the spawn shape itself (Python's Popen, asyncio's transports, the child watcher).
Exit 0 when every job exited 0.
"""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import sys

ARGV = ["/bin/true"]


class _Exit(asyncio.SubprocessProtocol):
    def __init__(self) -> None:
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def process_exited(self) -> None:
        self.exited.set_result(None)


async def _one(sem: asyncio.Semaphore, failed: list[int]) -> None:
    async with sem:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(
            _Exit,
            *ARGV,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        await proto.exited
        if transport.get_returncode() != 0:
            failed.append(1)
        transport.close()


async def _asyncio_floor(n: int, workers: int) -> int:
    sem = asyncio.Semaphore(workers)
    failed: list[int] = []
    await asyncio.gather(*(_one(sem, failed) for _ in range(n)))
    return len(failed)


def _popen_floor(n: int, workers: int) -> int:
    ep = select.epoll()
    running: dict[int, subprocess.Popen[bytes]] = {}
    started = failed = 0
    while started < n or running:
        while started < n and len(running) < workers:
            p = subprocess.Popen(
                ARGV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
            )
            fd = os.pidfd_open(p.pid)
            ep.register(fd, select.EPOLLIN)
            running[fd] = p
            started += 1
        for fd, _ in ep.poll():
            p = running.pop(fd)
            ep.unregister(fd)
            os.close(fd)
            failed += p.wait() != 0
            for pipe in (p.stdout, p.stderr):
                assert pipe is not None
                pipe.close()
    return failed


def main() -> int:
    mode, n, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    failed = asyncio.run(_asyncio_floor(n, workers)) if mode == "asyncio" else _popen_floor(n, workers)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
