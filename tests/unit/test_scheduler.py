"""engine.scheduler, in-process: resource pools, GPU choice, the backfill rule with its bypass limit,
resizable worker slots, and `--max-workers auto`."""

from __future__ import annotations

import asyncio
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aimedres_async.engine.admission import fits
from aimedres_async.engine.scheduler import (
    MAX_BYPASS,
    Grant,
    Need,
    Pools,
    Slots,
    auto_workers,
    detect_gpus,
    pick_next,
)
from aimedres_async.plan.config import Backoff, Resources, builtin
from aimedres_async.plan.jobs import JobSpec

GiB = 1 << 30


@dataclass
class Job:
    """A waiting job as pick_next sees it (the Waiting protocol)."""

    name: str
    need: Need
    bypassed: int = 0


@dataclass
class Snapshot:
    gpus: dict[str, float] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    memory: int | None = None
    cpus: float | None = None


def snap(p: Pools) -> Snapshot:
    return Snapshot(dict(p.gpus), dict(p.users), p.memory, p.cpus)


# ---------------------------------------------------------------- Pools.take / give


def test_take_reserves_memory_and_cpus_and_give_returns_them() -> None:
    p = Pools.of([], memory=10 * GiB, cpus=4.0)
    grant = p.take(Need(memory=6 * GiB, cpus=3.0))
    assert grant == Grant(gpus=(), memory=6 * GiB, cpus=3.0)
    assert (p.memory, p.cpus) == (4 * GiB, 1.0)
    p.give(grant)
    assert (p.memory, p.cpus) == (10 * GiB, 4.0)


def test_take_that_does_not_fit_changes_nothing() -> None:
    p = Pools.of(["0"], memory=10 * GiB, cpus=4.0)
    assert p.take(Need(memory=4 * GiB, cpus=3.0)) is not None
    before = snap(p)
    assert p.take(Need(memory=7 * GiB)) is None  # memory short
    assert p.take(Need(memory=1 * GiB, cpus=2.0)) is None  # memory fits, CPUs short
    assert p.take(Need(memory=1 * GiB, gpus=2.0)) is None  # memory fits, GPUs short
    assert snap(p) == before


def test_unlimited_pools_fit_any_size() -> None:
    p = Pools.of([], memory=None, cpus=None)
    grant = p.take(Need(memory=1 << 60, cpus=10_000.0))
    assert grant is not None and grant.memory == 1 << 60
    assert p.memory is None and p.cpus is None


def test_fractional_cpus_add_up_exactly() -> None:
    p = Pools.of([], memory=None, cpus=1.0)
    grants = [p.take(Need(cpus=0.1)) for _ in range(10)]  # 0.1 * 10 drifts in floating point
    assert all(g is not None for g in grants)
    assert p.take(Need(cpus=0.1)) is None


def test_a_whole_gpu_job_gets_its_own_devices() -> None:
    p = Pools.of(["0", "1", "2"], memory=None, cpus=None)
    g = p.take(Need(gpus=2.0))
    assert g is not None and g.gpus == (("0", 1.0), ("1", 1.0))
    assert g.visible_devices() == "0,1"
    assert p.take(Need(gpus=2.0)) is None  # one left
    p.give(g)
    assert p.gpus == {"0": 1.0, "1": 1.0, "2": 1.0} and p.users == {"0": 0, "1": 0, "2": 0}


def test_no_gpus_asked_means_no_visible_devices() -> None:
    p = Pools.of(["0"], memory=None, cpus=None)
    g = p.take(Need(cpus=1.0))
    assert g is not None and g.gpus == () and g.visible_devices() is None
    assert p.gpus == {"0": 1.0}


def test_a_fractional_gpu_rounds_up_to_whole_devices_above_one() -> None:
    p = Pools.of(["0", "1", "2"], memory=None, cpus=None)
    g = p.take(Need(gpus=1.5))
    assert g is not None and [d for d, _ in g.gpus] == ["0", "1"] and all(s == 1.0 for _, s in g.gpus)


def test_fractions_share_the_fullest_gpu_so_whole_gpus_stay_free() -> None:
    p = Pools.of(["0", "1"], memory=None, cpus=None)
    a = p.take(Need(gpus=0.5))
    b = p.take(Need(gpus=0.25))
    assert a is not None and b is not None
    assert a.gpus[0][0] == b.gpus[0][0]  # packed on one device
    whole = p.take(Need(gpus=1.0))
    assert whole is not None and whole.gpus[0][0] != a.gpus[0][0]


def test_a_whole_gpu_is_never_one_with_a_fractional_user() -> None:
    p = Pools.of(["0", "1"], memory=None, cpus=None)
    part = p.take(Need(gpus=0.3))
    assert part is not None
    first = p.take(Need(gpus=1.0))
    assert first is not None and first.gpus[0][0] != part.gpus[0][0]
    assert p.take(Need(gpus=1.0)) is None  # the other one has 0.7 free, not a whole GPU


def test_a_fraction_waits_when_no_gpu_has_room_left() -> None:
    p = Pools.of(["0"], memory=None, cpus=None)
    assert p.take(Need(gpus=0.75)) is not None
    assert p.take(Need(gpus=0.5)) is None
    assert p.take(Need(gpus=0.25)) is not None


def test_an_exclusive_fraction_takes_a_whole_unused_gpu() -> None:
    p = Pools.of(["0", "1"], memory=None, cpus=None)
    g = p.take(Need(gpus=0.5, exclusive_gpu=True))
    assert g is not None and len(g.gpus) == 1 and g.gpus[0][1] == 1.0
    used = g.gpus[0][0]
    shared = p.take(Need(gpus=0.1))  # nobody shares the exclusive one
    assert shared is not None and shared.gpus[0][0] != used


def test_an_exclusive_job_waits_while_every_gpu_has_a_user() -> None:
    p = Pools.of(["0", "1"], memory=None, cpus=None)
    assert p.take(Need(gpus=0.1)) is not None
    assert p.take(Need(gpus=1.0)) is not None
    assert p.take(Need(gpus=0.2, exclusive_gpu=True)) is None


def test_giving_back_a_fraction_frees_the_whole_gpu_again() -> None:
    p = Pools.of(["0"], memory=None, cpus=None)
    a = p.take(Need(gpus=0.5))
    b = p.take(Need(gpus=0.5))
    assert a is not None and b is not None and p.take(Need(gpus=1.0)) is None
    p.give(a)
    assert p.take(Need(gpus=1.0)) is None  # b still holds its half
    p.give(b)
    assert p.take(Need(gpus=1.0)) is not None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.1, 0.25, 0.3, 0.5, 1.0, 2.0]), max_size=12), st.randoms(use_true_random=False))
def test_taking_then_giving_back_in_any_order_restores_the_pools(shares: list[float], rnd: random.Random) -> None:
    p = Pools.of(["0", "1", "2"], memory=8 * GiB, cpus=4.0)
    grants = []
    for share in shares:
        g = p.take(Need(gpus=share, memory=GiB, cpus=0.5))
        if g is not None:
            grants.append(g)
        assert all(-1e-9 <= free <= 1.0 for free in p.gpus.values())
        assert p.memory is not None and p.memory >= 0 and p.cpus is not None and p.cpus >= -1e-9
    rnd.shuffle(grants)
    for g in grants:
        p.give(g)
    assert p.users == {"0": 0, "1": 0, "2": 0}
    assert all(free == pytest.approx(1.0) for free in p.gpus.values())
    assert (p.memory, p.cpus) == (8 * GiB, pytest.approx(4.0))


# ---------------------------------------------------------------- never_fits


def test_never_fits_names_what_the_machine_lacks() -> None:
    p = Pools.of(["0", "1"], memory=4 * GiB, cpus=8.0)
    assert p.never_fits(Need(gpus=3.0)) == "needs 3 GPU(s), the supervisor has 2"
    assert p.never_fits(Need(memory=6 * GiB)) == "needs 6.0GiB of memory, the supervisor has 4.0GiB"
    assert p.never_fits(Need(cpus=9.0)) == "needs 9 CPUs, the supervisor has 8"


def test_never_fits_is_none_for_what_fits_the_whole_machine() -> None:
    p = Pools.of(["0", "1"], memory=4 * GiB, cpus=8.0)
    assert p.never_fits(Need(gpus=2.0, memory=4 * GiB, cpus=8.0)) is None
    assert p.never_fits(Need(gpus=0.5)) is None


def test_never_fits_judges_the_totals_not_what_is_free_now() -> None:
    p = Pools.of(["0"], memory=4 * GiB, cpus=2.0)
    assert p.take(Need(gpus=1.0, memory=4 * GiB, cpus=2.0)) is not None
    assert p.never_fits(Need(gpus=1.0, memory=4 * GiB, cpus=2.0)) is None  # it only has to wait


def test_never_fits_with_no_gpus_and_unlimited_memory() -> None:
    p = Pools.of([], memory=None, cpus=None)
    assert p.never_fits(Need(memory=1 << 60, cpus=1e6)) is None
    assert p.never_fits(Need(gpus=0.5)) == "needs 0.5 GPU(s), the supervisor has 0"


# ---------------------------------------------------------------- pick_next


def test_pick_next_takes_the_first_that_fits_and_its_resources() -> None:
    p = Pools.of([], memory=None, cpus=4.0)
    a, b = Job("a", Need(cpus=2.0)), Job("b", Need(cpus=2.0))
    picked = pick_next([a, b], p)
    assert picked is not None and picked[0] is a and picked[1].cpus == 2.0
    assert p.cpus == 2.0 and a.bypassed == 0 and b.bypassed == 0


def test_pick_next_backfills_a_smaller_job_and_counts_the_bypass() -> None:
    p = Pools.of([], memory=None, cpus=2.0)
    big, small, after = Job("big", Need(cpus=4.0)), Job("small", Need(cpus=1.0)), Job("after", Need(cpus=1.0))
    picked = pick_next([big, small, after], p)
    assert picked is not None and picked[0] is small
    assert big.bypassed == 1  # skipped over
    assert after.bypassed == 0  # behind the one that started: not bypassed


def test_pick_next_with_nothing_fitting_changes_nothing() -> None:
    p = Pools.of(["0"], memory=GiB, cpus=1.0)
    jobs = [Job("a", Need(gpus=2.0)), Job("b", Need(memory=2 * GiB))]
    before = snap(p)
    assert pick_next(jobs, p) is None
    assert snap(p) == before and [j.bypassed for j in jobs] == [0, 0]  # no start, no bypass
    assert pick_next([], p) is None


def test_a_job_bypassed_max_times_blocks_everything_behind_it() -> None:
    p = Pools.of([], memory=None, cpus=2.0)
    big, small = Job("big", Need(cpus=2.0), bypassed=MAX_BYPASS), Job("small", Need(cpus=1.0))
    assert p.take(Need(cpus=1.0)) is not None  # something running holds half
    assert pick_next([big, small], p) is None
    assert p.cpus == 1.0 and small.bypassed == 0


def test_a_big_job_is_bypassed_exactly_max_bypass_times_then_starts() -> None:
    """No starvation: small jobs keep coming and each would fit, yet the big one starts after
    MAX_BYPASS of them, as soon as the running ones have given back enough."""
    p = Pools.of([], memory=None, cpus=2.0)
    big = Job("big", Need(cpus=2.0))
    queue: list[Job] = [big, *(Job(f"s{i}", Need(cpus=1.0)) for i in range(3 * MAX_BYPASS))]
    first = p.take(Need(cpus=1.0))  # one small job already runs when the big one arrives
    assert first is not None
    running: list[tuple[Job, Grant]] = [(Job("s-first", Need(cpus=1.0)), first)]
    started_before_big = 0
    while True:
        picked = pick_next(queue, p)
        if picked is None:
            assert running, "nothing runs and nothing starts: a deadlock"
            job, grant = running.pop(0)  # the oldest running job ends
            p.give(grant)
            continue
        job, grant = picked
        queue.remove(job)
        if job is big:
            break
        started_before_big += 1
        running.append((job, grant))
    assert started_before_big == MAX_BYPASS
    assert big.bypassed == MAX_BYPASS


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 4), st.integers(0, MAX_BYPASS)), max_size=8),
    st.integers(0, 4),
)
def test_pick_next_starts_the_first_fitting_job_ahead_of_any_at_the_limit(
    waiting: list[tuple[int, int]], free: int
) -> None:
    p = Pools.of([], memory=None, cpus=float(free))
    jobs = [Job(f"j{i}", Need(cpus=float(c)), bypassed=b) for i, (c, b) in enumerate(waiting)]
    before = [j.bypassed for j in jobs]
    fitting = [i for i, j in enumerate(jobs) if j.need.cpus <= free]
    blocked = [i for i, j in enumerate(jobs) if j.bypassed >= MAX_BYPASS and j.need.cpus > free]
    picked = pick_next(jobs, p)
    if not fitting or (blocked and blocked[0] < fitting[0]):
        assert picked is None and p.cpus == free
        assert [j.bypassed for j in jobs] == before
        return
    assert picked is not None and picked[0] is jobs[fitting[0]]
    assert p.cpus == free - jobs[fitting[0]].need.cpus
    for i, j in enumerate(jobs):
        assert j.bypassed == before[i] + (1 if i < fitting[0] else 0)


# ---------------------------------------------------------------- Slots


async def _settle() -> None:
    for _ in range(5):  # let woken tasks run as far as they can
        await asyncio.sleep(0)


async def _blocked(task: asyncio.Task[None]) -> bool:
    await _settle()
    return not task.done()


@pytest.mark.asyncio
async def test_slots_hold_up_to_the_limit() -> None:
    s = Slots(2)
    await s.acquire()
    await s.acquire()
    assert (s.busy, s.free(), s.locked()) == (2, 0, True)
    third = asyncio.create_task(s.acquire())
    assert await _blocked(third)
    s.release()
    await asyncio.wait_for(third, 1)
    assert s.busy == 2


@pytest.mark.asyncio
async def test_growing_while_busy_lets_waiters_in_at_once() -> None:
    s = Slots(1)
    await s.acquire()
    waiters = [asyncio.create_task(s.acquire()) for _ in range(3)]
    assert await _blocked(waiters[0])
    s.resize(3)
    await _settle()
    assert [w.done() for w in waiters] == [True, True, False]  # in the order they came
    assert (s.busy, s.limit, s.free()) == (3, 3, 0)
    s.release()
    await asyncio.wait_for(waiters[2], 1)


@pytest.mark.asyncio
async def test_shrinking_while_busy_never_touches_running_jobs_and_retires_permits_as_they_return() -> None:
    s = Slots(3)
    for _ in range(3):
        await s.acquire()
    s.resize(1)
    assert (s.busy, s.free(), s.locked()) == (3, 0, True)  # the three keep running
    waiter = asyncio.create_task(s.acquire())
    s.release()
    assert await _blocked(waiter)  # 2 still run, the limit is 1
    s.release()
    assert await _blocked(waiter)  # 1 runs: the limit is reached
    s.release()
    await asyncio.wait_for(waiter, 1)
    assert (s.busy, s.limit) == (1, 1)
    second = asyncio.create_task(s.acquire())
    assert await _blocked(second)  # and it stays at one
    s.release()
    await asyncio.wait_for(second, 1)


@pytest.mark.asyncio
async def test_shrink_then_grow_back_releases_no_extra_permits() -> None:
    s = Slots(3)
    for _ in range(3):
        await s.acquire()
    s.resize(1)
    s.resize(3)  # back where it was: the retired permits are repaid, none added
    waiter = asyncio.create_task(s.acquire())
    assert await _blocked(waiter)  # three run already
    s.release()
    await asyncio.wait_for(waiter, 1)
    assert s.busy == 3


@pytest.mark.asyncio
async def test_grow_after_a_partial_shrink_adds_only_the_difference() -> None:
    s = Slots(2)
    await s.acquire()
    await s.acquire()
    s.resize(1)  # one permit to retire
    s.resize(4)  # repays it, then two new permits
    got = [asyncio.create_task(s.acquire()) for _ in range(3)]
    await _settle()
    assert [t.done() for t in got] == [True, True, False] and s.busy == 4
    s.release()
    await asyncio.wait_for(got[2], 1)


# ---------------------------------------------------------------- --max-workers auto


def test_auto_workers_without_history_is_one_per_cpu() -> None:
    assert auto_workers([], cpus=6, memory=8 * GiB) == (6, "6 CPU(s); no peak memory recorded yet")


def test_auto_workers_is_bounded_by_the_largest_peak() -> None:
    n, why = auto_workers([GiB, 2 * GiB], cpus=16, memory=9 * GiB)
    assert n == 4  # 9 GiB // 2 GiB
    assert why == "16 CPU(s); largest recorded peak 2.0GiB of 9.0GiB available allows 4"


def test_auto_workers_is_bounded_by_cpus_when_memory_is_plenty() -> None:
    assert auto_workers([GiB], cpus=2, memory=64 * GiB)[0] == 2


def test_auto_workers_is_never_below_one() -> None:
    assert auto_workers([32 * GiB], cpus=8, memory=GiB)[0] == 1
    assert auto_workers([0], cpus=3, memory=GiB)[0] == 3  # a zero peak divides nothing by zero


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 1 << 40), max_size=5), st.integers(1, 256), st.integers(1, 1 << 40))
def test_auto_workers_stays_between_one_and_the_cpus(peaks: list[int], cpus: int, memory: int) -> None:
    n, why = auto_workers(peaks, cpus, memory)
    assert 1 <= n <= cpus and why.startswith(f"{cpus} CPU(s); ")
    if peaks and max(peaks) > 0:
        assert n * max(peaks) <= memory or n == 1  # never more workers than the memory holds


# ---------------------------------------------------------------- GPUs of the machine


@pytest.mark.parametrize(
    ("visible", "ids"),
    [("0,2", ("0", "2")), (" 1 , 3 ", ("1", "3")), ("", ()), ("-1", ()), ("NoDevFiles", ()), ("GPU-abc", ("GPU-abc",))],
)
def test_cuda_visible_devices_decides_the_gpus(
    monkeypatch: pytest.MonkeyPatch, visible: str, ids: tuple[str, ...]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert detect_gpus() == ids  # and no nvidia-smi: the guard fails a test that starts one


# ---------------------------------------------------------------- `list`'s FITS column and the GPU lookup


def _job(gpus: float) -> JobSpec:
    return JobSpec(
        id="j",
        argv=("true",),
        cwd=Path("/"),
        env={},
        output_dir=None,
        script=None,
        accepts=frozenset(),
        retries=0,
        backoff=Backoff(),
        timeout=None,
        optional=False,
        resources=Resources(gpus=gpus),
        origin="config",
    )


@pytest.fixture
def nvidia_smi_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `nvidia-smi` the GPU lookup would run (a process start fails a test in this tier)."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: fake'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # NVML absent: the lookup falls back to the tool


def test_fits_of_jobs_that_ask_for_no_gpu_looks_for_none(nvidia_smi_on_path: None, tmp_path: Path) -> None:
    """`run --list` on CPU-only jobs must not run `nvidia-smi` (up to seconds with a driver loaded)."""
    assert fits(builtin(tmp_path), [_job(0.0), _job(0.0)]) == (["yes", "yes"], None)
