"""Worker slots and resource pools: which waiting job starts next, and which GPUs it gets.

A job starts when a slot and its declared resources are free. A smaller job may start ahead of a
bigger one that does not fit yet (backfill), but only MAX_BYPASS times: after that nothing behind
the big job starts until it does, so it is never starved.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    import asyncio

from aimedres_async.plan.config import Config, Resources
from aimedres_async.plan.units import format_size
from aimedres_async.system.procfs import proc_kib

MAX_BYPASS = 8
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Need:
    """What one attempt asks for (a job's resources, adjusted after an out-of-memory failure)."""

    gpus: float = 0.0
    memory: int = 0
    cpus: float = 0.0
    exclusive_gpu: bool = False  # after a CUDA OOM: whole GPUs nobody else uses

    @classmethod
    def of(cls, r: Resources) -> Need:
        if not (r.gpus or r.memory or r.cpus):
            return NOTHING  # frozen: the jobs that ask for nothing share one
        return cls(gpus=r.gpus, memory=r.memory, cpus=r.cpus)


NOTHING = Need()


@dataclass(frozen=True, slots=True)
class Grant:
    gpus: tuple[tuple[str, float], ...] = ()  # (device id, share)
    memory: int = 0
    cpus: float = 0.0

    def visible_devices(self) -> str | None:
        return ",".join(g for g, _ in self.gpus) if self.gpus else None


@dataclass
class Pools:
    gpus: dict[str, float]  # device id -> free share (1.0 = unused)
    memory: int | None  # free bytes; None = not limited
    cpus: float | None
    total_memory: int | None = None
    total_cpus: float | None = None
    users: dict[str, int] = field(default_factory=dict)  # device id -> running holders

    @classmethod
    def of(cls, gpus: Sequence[str], memory: int | None, cpus: float | None) -> Pools:
        return cls(
            gpus={g: 1.0 for g in gpus},
            memory=memory,
            cpus=cpus,
            total_memory=memory,
            total_cpus=cpus,
            users={g: 0 for g in gpus},
        )

    def never_fits(self, need: Need) -> str | None:
        """Why this need can never be met on this machine, or None."""
        if need.gpus and need.gpus > len(self.gpus) + _EPS:
            return f"needs {need.gpus:g} GPU(s), the supervisor has {len(self.gpus)}"
        if self.total_memory is not None and need.memory > self.total_memory:
            return f"needs {format_size(need.memory)} of memory, the supervisor has {format_size(self.total_memory)}"
        if self.total_cpus is not None and need.cpus > self.total_cpus + _EPS:
            return f"needs {need.cpus:g} CPUs, the supervisor has {self.total_cpus:g}"
        return None

    def take(self, need: Need) -> Grant | None:
        """Reserve what `need` asks for, or None (and change nothing) if it does not fit now."""
        if self.memory is not None and need.memory > self.memory:
            return None
        if self.cpus is not None and need.cpus > self.cpus + _EPS:
            return None
        gpus = self._pick_gpus(need)
        if gpus is None:
            return None
        for g, share in gpus:
            self.gpus[g] -= share
            self.users[g] += 1
        if self.memory is not None:
            self.memory -= need.memory
        if self.cpus is not None:
            self.cpus -= need.cpus
        return Grant(gpus=gpus, memory=need.memory, cpus=need.cpus)

    def give(self, grant: Grant) -> None:
        for g, share in grant.gpus:
            self.gpus[g] = min(1.0, self.gpus[g] + share)
            self.users[g] -= 1
        if self.memory is not None:
            self.memory += grant.memory
        if self.cpus is not None:
            self.cpus += grant.cpus

    def _pick_gpus(self, need: Need) -> tuple[tuple[str, float], ...] | None:
        if not need.gpus:
            return ()
        unused = [g for g, free in self.gpus.items() if free >= 1.0 - _EPS and self.users[g] == 0]
        if need.exclusive_gpu or need.gpus >= 1:
            n = max(1, math.ceil(need.gpus - _EPS))
            return tuple((g, 1.0) for g in unused[:n]) if len(unused) >= n else None
        # A fraction: the fullest GPU it still fits on, so whole GPUs stay free for whole jobs.
        fits = [(free, g) for g, free in self.gpus.items() if free + _EPS >= need.gpus]
        if not fits:
            return None
        _free, g = min(fits)
        return ((g, need.gpus),)


class Slots:
    """Worker slots: an `asyncio.Semaphore(max_workers)` the dispatcher acquires before it picks
    the next job that fits, released when that job's attempt ends. Resizable while running: a
    larger limit releases new permits at once; a smaller one retires permits as they come back,
    so running jobs are never touched and no more than the new limit run once they have ended.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        import asyncio  # here, not at the top: `list` and `--dry-run` never load asyncio

        self.busy = 0  # permits held by attempts
        self._sem: asyncio.Semaphore = asyncio.Semaphore(limit)
        self._retire = 0  # permits to take out of circulation (after a shrinking resize)

    def locked(self) -> bool:
        return self._sem.locked() or self.free() == 0

    def free(self) -> int:
        return max(0, self.limit - self.busy)

    async def acquire(self) -> None:
        while True:
            await self._sem.acquire()
            if self._retire:
                self._retire -= 1
                continue
            self.busy += 1
            return

    def release(self) -> None:
        self.busy -= 1
        self._sem.release()

    def resize(self, limit: int) -> None:
        grow = limit - self.limit
        self.limit = limit
        if grow >= 0:
            repaid = min(grow, self._retire)
            self._retire -= repaid
            for _ in range(grow - repaid):
                self._sem.release()
        else:
            self._retire -= grow


class Waiting(Protocol):
    need: Need
    bypassed: int


T = TypeVar("T", bound=Waiting)


def pick_next(waiting: Iterable[T], pools: Pools) -> tuple[T, Grant] | None:
    """The first waiting job that fits (taking its resources), honouring the bypass limit."""
    skipped: list[T] = []
    for job in waiting:
        grant = pools.take(job.need)
        if grant is not None:
            for earlier in skipped:
                earlier.bypassed += 1
            return job, grant
        if job.bypassed >= MAX_BYPASS:
            return None  # it has waited long enough: nothing behind it may start first
        skipped.append(job)
    return None


# ---------------------------------------------------------------- what the machine has


def detect_gpus() -> tuple[str, ...]:
    """GPU ids from CUDA_VISIBLE_DEVICES, else NVML (nvidia-ml-py), else `nvidia-smi -L`."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [x.strip() for x in visible.split(",") if x.strip()]
        return () if not ids or ids[0] in ("-1", "NoDevFiles") else tuple(ids)
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return tuple(str(i) for i in range(pynvml.nvmlDeviceGetCount()))
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # not installed, no driver: try the command line tool
        pass
    import shutil  # `list` and `validate` load this module; only a GPU lookup needs these
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ()
        return tuple(str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU "))
    return ()


def available_memory() -> int:
    """Memory available for new work (Linux MemAvailable; psutil elsewhere)."""
    available = proc_kib("/proc/meminfo", b"MemAvailable:")
    if available is not None:
        return available
    try:
        import psutil  # imported only here: ~10 ms of start-up that Linux does not need

        return int(psutil.virtual_memory().available)
    except Exception:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def capacity(cfg: Config, look_for_gpus: bool = True) -> Pools:
    """What the supervisor may hand out. `look_for_gpus=False` skips the GPU lookup (NVML or a run
    of `nvidia-smi`) for a question no GPU can change: whether jobs that ask for none fit."""
    sup = cfg.supervisor
    gpus = sup.gpus if sup.gpus is not None else detect_gpus() if look_for_gpus else ()
    memory = sup.memory if sup.memory is not None else available_memory()
    cpus = sup.cpus if sup.cpus is not None else float(os.cpu_count() or 1)
    return Pools.of(gpus, memory, cpus)


def auto_workers(peaks: Sequence[int], cpus: int, memory: int) -> tuple[int, str]:
    """`--max-workers auto`: one per CPU, fewer if the largest recorded peak RSS says so."""
    if not peaks:
        return cpus, f"{cpus} CPU(s); no peak memory recorded yet"
    peak = max(peaks)
    by_memory = max(1, memory // max(peak, 1))
    n = max(1, min(cpus, by_memory))
    why = (
        f"{cpus} CPU(s); largest recorded peak {format_size(peak)} of {format_size(memory)} available "
        f"allows {by_memory}"
    )
    return n, why
