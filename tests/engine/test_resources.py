"""Resource-aware scheduling (SPEC §6, §9, §12): GPU, memory and CPU pools, fractional GPUs, bounded
backfill, never-fitting jobs, peak RSS, failure classification (oom_killed, cuda_oom, stalled) and
`--max-workers auto`.

The first half drives `scheduler.Pools` / `pick_next` directly (pure, no processes). The second half
runs the real CLI with fake GPU ids (`[supervisor] gpus = [0, 1, 2]`): every job is a real process
that appends `start|end <job> <time> <CUDA_VISIBLE_DEVICES> <attempt>` to a shared file with one
O_APPEND write. A job writes `end` before it exits and the supervisor frees its resources only after
it has exited, so the order of the lines in that file is a valid order of events: the checks sweep
the file in order (and events.jsonl, whose order is the supervisor's own) and never compare durations.
Jobs that must overlap to make a test meaningful wait for each other through the same file
(with a generous deadline, so a wrong scheduler fails an assertion instead of hanging).
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import subprocess
import textwrap
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import PY, events, job_summary, read_jsonl, run_dir, summary, write_config
from helpers_cli import cli

from aimedres_async.engine.scheduler import (
    MAX_BYPASS,
    Grant,
    Need,
    Pools,
    auto_workers,
    available_memory,
    capacity,
    detect_gpus,
    pick_next,
)
from aimedres_async.plan.config import Resources
from aimedres_async.plan.config_load import load

MIB = 1 << 20
GIB = 1 << 30

# ================================================================ pure: Pools and pick_next


@dataclass(eq=False)
class W:
    """A waiting job as pick_next sees it."""

    name: str
    need: Need
    bypassed: int = 0

    def __repr__(self) -> str:
        return self.name


def state(pools: Pools) -> dict[str, Any]:
    return copy.deepcopy(vars(pools))


def devices(grant: Grant | None) -> list[str]:
    assert grant is not None
    return [g for g, _share in grant.gpus]


def gpu_pools(n: int = 3, memory: int | None = None, cpus: float | None = None) -> Pools:
    return Pools.of([str(i) for i in range(n)], memory, cpus)


def test_need_of_resources_and_grant_visible_devices() -> None:
    assert Need.of(Resources(gpus=0.5, memory=3 * MIB, cpus=2)) == Need(gpus=0.5, memory=3 * MIB, cpus=2.0)
    assert Need.of(Resources()) == Need()
    assert Grant().visible_devices() is None
    assert Grant(gpus=(("2", 1.0), ("0", 1.0))).visible_devices() == "2,0"


def test_whole_gpus_are_never_double_booked() -> None:
    pools = gpu_pools(3)
    grants = [pools.take(Need(gpus=1)) for _ in range(3)]
    held = [devices(g) for g in grants]
    assert sorted(d for ds in held for d in ds) == ["0", "1", "2"]  # three different GPUs
    before = state(pools)
    assert pools.take(Need(gpus=1)) is None
    assert pools.take(Need(gpus=0.5)) is None  # nothing left to share either
    assert pools.take(Need(gpus=2)) is None
    assert state(pools) == before  # a refusal changes nothing
    assert grants[1] is not None
    pools.give(grants[1])  # one GPU back
    assert pools.take(Need(gpus=2)) is None
    again = pools.take(Need(gpus=1))
    assert devices(again) == held[1]
    assert pools.users == {"0": 1, "1": 1, "2": 1}


def test_multi_gpu_job_gets_that_many_distinct_whole_gpus() -> None:
    pools = gpu_pools(3)
    two = pools.take(Need(gpus=2))
    assert two is not None and len(set(devices(two))) == 2 and all(s == 1.0 for _, s in two.gpus)
    assert two.visible_devices() == ",".join(devices(two))
    assert pools.take(Need(gpus=2)) is None
    one = pools.take(Need(gpus=1))
    assert one is not None and set(devices(one)).isdisjoint(devices(two))
    pools.give(two)
    pools.give(one)
    three = pools.take(Need(gpus=3))
    assert three is not None and sorted(devices(three)) == ["0", "1", "2"]


def test_fractions_pack_onto_one_gpu_and_a_third_goes_to_the_next() -> None:
    pools = gpu_pools(3)
    a, b, c = (pools.take(Need(gpus=0.5)) for _ in range(3))
    assert devices(a) == devices(b) == ["0"]  # two halves share GPU 0
    assert devices(c) == ["1"]  # the third half goes to the next GPU
    assert a is not None and a.gpus == (("0", 0.5),)
    assert pools.users["0"] == 2 and pools.gpus["0"] == pytest.approx(0.0)
    d = pools.take(Need(gpus=0.5))
    assert devices(d) == ["1"]  # the fullest GPU it fits on, not the empty GPU 2
    assert devices(pools.take(Need(gpus=1))) == ["2"]  # a whole GPU is still free for a whole job
    assert pools.take(Need(gpus=0.5)) is None


def test_uneven_fractions_fill_the_fullest_gpu_first() -> None:
    pools = gpu_pools(2)
    assert devices(pools.take(Need(gpus=0.25))) == ["0"]
    assert devices(pools.take(Need(gpus=0.5))) == ["0"]  # 0.75 used
    assert devices(pools.take(Need(gpus=0.5))) == ["1"]  # does not fit the 0.25 left on GPU 0
    assert devices(pools.take(Need(gpus=0.25))) == ["0"]  # fills GPU 0 exactly
    for _ in range(5):  # many small shares: never more than the GPU
        g = pools.take(Need(gpus=0.1))
        if g is None:
            break
        assert devices(g) == ["1"]
    assert all(-1e-9 <= free <= 1.0 for free in pools.gpus.values())


def test_a_whole_gpu_job_does_not_take_a_partly_used_gpu() -> None:
    pools = gpu_pools(2)
    half = pools.take(Need(gpus=0.25))
    assert devices(half) == ["0"]
    assert devices(pools.take(Need(gpus=1))) == ["1"]
    before = state(pools)
    assert pools.take(Need(gpus=1)) is None  # GPU 0 is 3/4 free but not unused
    assert state(pools) == before
    other = pools.take(Need(gpus=0.5))
    assert devices(other) == ["0"]
    assert half is not None and other is not None
    pools.give(half)
    assert pools.take(Need(gpus=1)) is None  # still one holder on GPU 0
    pools.give(other)
    assert devices(pools.take(Need(gpus=1))) == ["0"]


def test_exclusive_gpu_takes_a_whole_unused_gpu_and_nobody_joins_it() -> None:
    pools = gpu_pools(2)
    half = pools.take(Need(gpus=0.5))
    assert devices(half) == ["0"]
    excl = pools.take(Need(gpus=0.5, exclusive_gpu=True))
    assert excl is not None and excl.gpus == (("1", 1.0),)  # the whole GPU, though it asked for half
    assert pools.take(Need(gpus=0.5, exclusive_gpu=True)) is None  # GPU 0 is shared: not for it
    assert devices(pools.take(Need(gpus=0.5))) == ["0"]  # a fraction may still fill GPU 0 ...
    assert pools.take(Need(gpus=0.1)) is None  # ... but never join the exclusive holder on GPU 1
    pools.give(excl)
    assert pools.gpus["1"] == 1.0 and pools.users["1"] == 0


def test_memory_and_cpu_accounting() -> None:
    pools = Pools.of([], 1000, 2.0)
    a = pools.take(Need(memory=600, cpus=1.5))
    assert a is not None and a.memory == 600 and a.cpus == 1.5 and a.gpus == ()
    assert (pools.memory, pools.cpus) == (400, 0.5)
    before = state(pools)
    assert pools.take(Need(memory=401)) is None
    assert pools.take(Need(cpus=0.75)) is None
    assert pools.take(Need(memory=100, cpus=1)) is None  # memory would fit, the CPUs do not
    assert state(pools) == before
    b = pools.take(Need(memory=400, cpus=0.5))  # exactly what is left
    assert b is not None and (pools.memory, pools.cpus) == (0, 0.0)
    assert pools.take(Need()) is not None  # a job that declares nothing only needs a slot
    pools.give(a)
    assert (pools.memory, pools.cpus) == (600, 1.5)
    pools.give(b)
    assert (pools.memory, pools.cpus) == (1000, 2.0)
    assert (pools.total_memory, pools.total_cpus) == (1000, 2.0)


def test_unlimited_pools_and_a_refused_gpu_take_reserves_no_memory() -> None:
    free = Pools.of([], None, None)
    for _ in range(100):
        assert free.take(Need(memory=GIB, cpus=64)) is not None
    pools = Pools.of(["0"], 1000, None)
    assert pools.take(Need(gpus=1, memory=100)) is not None
    before = state(pools)
    assert pools.take(Need(gpus=1, memory=100)) is None  # memory fits, the GPU does not
    assert state(pools) == before  # ... and the memory was not taken anyway


def test_give_restores_everything_after_a_random_workload() -> None:
    for seed in range(40):
        rng = random.Random(seed)
        pools = Pools.of(["a", "b", "c", "d"], 10_000, 8.0)
        initial = state(pools)
        held: list[tuple[Need, Grant]] = []
        for _ in range(300):
            if held and rng.random() < 0.45:
                need, grant = held.pop(rng.randrange(len(held)))
                pools.give(grant)
            else:
                need = Need(
                    gpus=rng.choice([0, 0, 0.25, 0.5, 0.5, 1, 1, 2, 3]),
                    memory=rng.choice([0, 500, 1500, 4000]),
                    cpus=rng.choice([0, 0.5, 1, 2]),
                    exclusive_gpu=rng.random() < 0.1,
                )
                got = pools.take(need)
                if got is None:
                    continue
                held.append((need, got))
            _check_invariants(pools, [g for _n, g in held], [n for n, _g in held], seed)
        for _need, grant in held:
            pools.give(grant)
        assert pools.gpus == pytest.approx(initial["gpus"]), seed
        assert {k: v for k, v in state(pools).items() if k != "gpus"} == {
            k: v for k, v in initial.items() if k != "gpus"
        }, seed


def _check_invariants(pools: Pools, grants: list[Grant], needs: list[Need], seed: int) -> None:
    shares: dict[str, list[float]] = {g: [] for g in pools.gpus}
    for need, grant in zip(needs, grants, strict=True):
        ids = devices(grant) if grant.gpus else []
        assert len(ids) == len(set(ids)), seed
        if need.gpus:
            assert len(ids) == (1 if need.gpus < 1 else math.ceil(need.gpus)), (seed, need, grant)
        for g, share in grant.gpus:
            shares[g].append(share)
            if need.exclusive_gpu or need.gpus >= 1:
                assert share == 1.0, (seed, need, grant)
    for g, held in shares.items():
        assert sum(held) <= 1.0 + 1e-9, (seed, g, held)  # never over-booked
        if 1.0 in held:
            assert len(held) == 1, (seed, g, held)  # a whole (or exclusive) holder is alone
        assert pools.users[g] == len(held), seed
        assert pools.gpus[g] == pytest.approx(1.0 - sum(held)), seed
    assert pools.memory == 10_000 - sum(g.memory for g in grants), seed
    assert pools.cpus == pytest.approx(8.0 - sum(g.cpus for g in grants)), seed


def test_never_fits_says_why() -> None:
    pools = Pools.of(["0", "1", "2"], 8 * GIB, 4.0)
    assert pools.never_fits(Need(gpus=4)) == "needs 4 GPU(s), the supervisor has 3"
    assert pools.never_fits(Need(memory=1 << 40)) == "needs 1.0TiB of memory, the supervisor has 8.0GiB"
    assert pools.never_fits(Need(cpus=6)) == "needs 6 CPUs, the supervisor has 4"
    for fits in (Need(), Need(gpus=3), Need(gpus=0.5), Need(memory=8 * GIB), Need(cpus=4), Need(gpus=3, cpus=4)):
        assert pools.never_fits(fits) is None, fits
    # while everything is in use, a need that fits the machine still "fits": only capacity counts
    assert pools.take(Need(gpus=3, memory=8 * GIB, cpus=4)) is not None
    assert pools.never_fits(Need(gpus=3, memory=8 * GIB, cpus=4)) is None
    none = Pools.of([], None, None)
    assert none.never_fits(Need(gpus=0.5)) == "needs 0.5 GPU(s), the supervisor has 0"
    assert none.never_fits(Need(memory=1 << 50, cpus=1000)) is None  # unlimited budgets


def test_pick_next_takes_jobs_in_order_while_they_fit() -> None:
    pools = gpu_pools(3)
    waiting = [W("a", Need(gpus=1)), W("b", Need(gpus=1)), W("c", Need(gpus=1)), W("d", Need(gpus=1))]
    started = []
    while (picked := pick_next(waiting, pools)) is not None:
        job, _grant = picked
        waiting.remove(job)
        started.append(job.name)
    assert started == ["a", "b", "c"]
    assert [w.bypassed for w in waiting] == [0]  # nobody was passed over
    before = state(pools)
    assert pick_next(waiting, pools) is None
    assert state(pools) == before


def test_backfill_a_small_job_starts_ahead_of_a_big_one_that_does_not_fit() -> None:
    pools = gpu_pools(3)
    running = pools.take(Need(gpus=1))
    big, small, later = W("big", Need(gpus=3)), W("small", Need(gpus=1)), W("later", Need(gpus=1))
    picked = pick_next([big, small, later], pools)
    assert picked is not None and picked[0] is small
    assert big.bypassed == 1 and small.bypassed == 0 and later.bypassed == 0
    assert running is not None


def test_backfill_by_memory_and_cpus_too() -> None:
    pools = Pools.of([], 1000, 4.0)
    pools.take(Need(memory=500, cpus=3))
    big_mem, big_cpu, small = W("m", Need(memory=800)), W("c", Need(cpus=2)), W("s", Need(memory=400, cpus=1))
    picked = pick_next([big_mem, big_cpu, small], pools)
    assert picked is not None and picked[0] is small
    assert (big_mem.bypassed, big_cpu.bypassed) == (1, 1)


def _simulate_stream(pools: Pools, first: list[W], big: W, small_need: Need, steps: int = 200) -> tuple[list[str], int]:
    """Start what fits; then, each step, the oldest running job ends and one more small job arrives
    (an endless stream). Returns the names in start order, up to and including `big`, and how many
    times a small job would have fitted while the blocked big job held everything back."""
    waiting: list[W] = [*first, big]
    running: deque[Grant] = deque()
    started: list[str] = []
    counter = len(first)
    blocked = False  # big has been passed over MAX_BYPASS times
    held_back = 0
    for _ in range(steps):
        while (picked := pick_next(waiting, pools)) is not None:
            job, grant = picked
            # once it has waited long enough, nothing behind it may start first
            assert job is big or not blocked, f"{job.name} started ahead of a blocked big job: {started}"
            waiting.remove(job)
            running.append(grant)
            started.append(job.name)
            if job is big:
                return started, held_back
        if big.bypassed >= MAX_BYPASS:
            blocked = True
            if copy.deepcopy(pools).take(small_need) is not None:
                held_back += 1  # a small job would fit right now, yet none started
        assert running, "nothing running and the big job still does not start"
        pools.give(running.popleft())
        waiting.append(W(f"s{counter}", small_need))
        counter += 1
    raise AssertionError(f"the big job never started: {started}")


def test_bypass_limit_stops_backfill_and_the_big_job_starts_no_starvation() -> None:
    pools = gpu_pools(3)
    first = [W(f"s{i}", Need(gpus=1)) for i in range(3)]
    big = W("big", Need(gpus=3))
    started, held_back = _simulate_stream(pools, first, big, Need(gpus=1))
    assert started[-1] == "big"
    # the three that were running, then exactly MAX_BYPASS backfilled ahead of it, then it
    assert len(started) == 3 + MAX_BYPASS + 1, started
    assert big.bypassed == MAX_BYPASS
    assert held_back == 2  # two GPUs stayed free for it (the third freed it)


def test_no_starvation_with_fractional_and_memory_streams() -> None:
    # halves keep GPU 0 and 1 busy; a 2-GPU job must still get in
    pools = gpu_pools(2)
    first = [W(f"s{i}", Need(gpus=0.5)) for i in range(4)]
    big = W("big", Need(gpus=2))
    started, held_back = _simulate_stream(pools, first, big, Need(gpus=0.5))
    assert started[-1] == "big" and big.bypassed == MAX_BYPASS and held_back > 0
    # memory: a stream of 300-byte jobs on a 1000-byte budget must not starve a 1000-byte one
    pools = Pools.of([], 1000, None)
    first = [W(f"m{i}", Need(memory=300)) for i in range(3)]
    big = W("big", Need(memory=1000))
    started, held_back = _simulate_stream(pools, first, big, Need(memory=300))
    assert started[-1] == "big" and big.bypassed == MAX_BYPASS and held_back > 0


def test_a_blocked_job_does_not_block_jobs_queued_ahead_of_it() -> None:
    pools = gpu_pools(3)
    holder = pools.take(Need(gpus=2))
    ahead, big, behind = W("ahead", Need(gpus=1)), W("big", Need(gpus=3), bypassed=MAX_BYPASS), W("b", Need(gpus=1))
    picked = pick_next([ahead, big, behind], pools)
    assert picked is not None and picked[0] is ahead
    assert pick_next([big, behind], pools) is None  # nothing left anyway
    assert holder is not None


def test_capacity_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, '[supervisor]\ngpus = [0, 1, "7"]\nmemory = "1GiB"\ncpus = 3\n')
    pools = capacity(load(path))
    assert list(pools.gpus) == ["0", "1", "7"] and pools.total_memory == GIB and pools.total_cpus == 3.0
    path = write_config(tmp_path, '[supervisor]\ngpus = 2\nmemory = "auto"\ncpus = "auto"\n')
    pools = capacity(load(path))
    assert list(pools.gpus) == ["0", "1"]
    assert pools.total_memory is not None and pools.total_memory > 0
    assert pools.total_cpus == float(os.cpu_count() or 1)
    path = write_config(tmp_path, "[supervisor]\ngpus = 0\n")
    assert capacity(load(path)).gpus == {}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5")
    path = write_config(tmp_path, '[supervisor]\ngpus = "auto"\n')
    assert list(capacity(load(path)).gpus) == ["3", "5"]
    for hidden in ("", "-1", "NoDevFiles"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert detect_gpus() == ()


def test_auto_workers_is_the_cpu_count_lowered_by_the_largest_peak() -> None:
    assert auto_workers([], 4, 8 * GIB) == (4, "4 CPU(s); no peak memory recorded yet")
    n, why = auto_workers([GIB, 3 * GIB], 8, 8 * GIB)
    assert n == 2 and "largest recorded peak 3.0GiB of 8.0GiB available allows 2" in why
    assert auto_workers([100 * MIB], 2, 8 * GIB)[0] == 2  # the CPUs bind
    assert auto_workers([16 * GIB], 8, 8 * GIB)[0] == 1  # never below one


# ================================================================ end to end: helpers

PROBE = '''\
"""Record start/end in $PROBE_LOG; optionally wait for other jobs first, fail with a CUDA OOM, hold."""
import json, os, sys, time

args = dict(a.split("=", 1) for a in sys.argv[1:])
name = args["name"]
log = os.environ["PROBE_LOG"]
attempt = os.environ.get("AIMEDRES_ATTEMPT", "?")
cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
print(json.dumps({"cvd": cvd}), flush=True)


def record(kind):
    shown = "-" if cvd is None else cvd or "<empty>"
    line = f"{kind} {name} {time.time():.6f} {shown} {attempt}\\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def seen(kind, who, att):
    try:
        with open(log) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return False
    return any(p[0] == kind and p[1] == who and (not att or p[4] == att) for p in (x.split() for x in lines))


def wait_for(spec):
    """spec: "start:a,end:b@1" -- a has started, attempt 1 of b has ended."""
    deadline = time.monotonic() + 30
    for item in spec.split(","):
        kind, _, who = item.partition(":")
        who, _, att = who.partition("@")
        while not seen(kind, who, att):
            if time.monotonic() > deadline:
                return item
            time.sleep(0.02)
    return None


record("start")
missed = wait_for(args["await"]) if args.get("await") else None
if missed:
    print(f"gave up waiting for {missed}", file=sys.stderr, flush=True)
elif args.get("cuda_oom_on") == attempt:
    print("Traceback (most recent call last):", file=sys.stderr)
    print("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr, flush=True)
else:
    time.sleep(float(args.get("hold", "0.3")))
record("end")
sys.exit(7 if missed else 1 if args.get("cuda_oom_on") == attempt else 0)
'''


@dataclass(frozen=True)
class Line:
    kind: str  # start | end
    job: str
    t: float
    cvd: str | None
    attempt: int


def cfg(marker: str, tmp_path: Path, jobs: str, supervisor: str = "", workers: int = 8) -> str:
    (tmp_path / "probe.py").write_text(PROBE)
    return f"""
[supervisor]
parallel = true
max_workers = {workers}
grace_period = "1s"
{supervisor}
[discovery]
enabled = false
[defaults]
retries = 0
backoff = {{ initial = "50ms", factor = 1.0, max = "1s", jitter = 0.0 }}
env = {{ TEST_MARKER = "{marker}", PROBE_LOG = "{tmp_path / "probe.log"}" }}
{jobs}
"""


def probe_job(name: str, gpus: float | None = None, extra: str = "", **args: Any) -> str:
    argv = [PY, "probe.py", f"name={name}", *(f"{k}={v}" for k, v in args.items())]
    res = f"resources = {{ gpus = {gpus} }}\n" if gpus is not None else ""
    return f"[jobs.{name}]\ncommand = {json.dumps(argv)}\n{res}{extra}"


def py_job(name: str, code: str, extra: str = "") -> str:
    return f"[jobs.{name}]\ncommand = {json.dumps([PY, '-c', textwrap.dedent(code)])}\n{extra}"


def probe_lines(tmp_path: Path) -> list[Line]:
    out = []
    for raw in (tmp_path / "probe.log").read_text().splitlines():
        kind, job, t, cvd, attempt = raw.split()
        shown = {"-": None, "<empty>": ""}.get(cvd, cvd)
        out.append(Line(kind, job, float(t), shown, int(attempt)))
    return out


def index_of(lines: list[Line], kind: str, job: str, attempt: int = 1) -> int:
    return next(i for i, x in enumerate(lines) if (x.kind, x.job, x.attempt) == (kind, job, attempt))


def ids(cvd: str | None) -> list[str]:
    return [] if cvd is None else cvd.split(",")


def sweep(order: list[tuple[str, str, int, str | None]], shares: dict[str, float]) -> dict[str, Any]:
    """Replay (start|end, job, attempt, devices) in order; fail on any over-booked GPU.

    A whole-GPU holder counts 1.0 on each of its GPUs, a fraction its share: the sum on a GPU may
    never pass 1 (so one whole holder, or two halves). Returns the most jobs running at once and the
    GPUs that ever had two holders at once."""
    holders: dict[str, dict[tuple[str, int], float]] = {}
    running: dict[tuple[str, int], list[str]] = {}
    most, packed = 0, set()
    for kind, job, attempt, cvd in order:
        key = (job, attempt)
        if kind == "start":
            assert key not in running, f"{key} started twice"
            gpus = ids(cvd) if shares.get(job) else []
            running[key] = gpus
            most = max(most, len(running))
            share = shares.get(job, 0.0)
            for g in gpus:
                on = holders.setdefault(g, {})
                on[key] = share if share < 1 else 1.0
                assert sum(on.values()) <= 1.0 + 1e-9, f"GPU {g} over-booked: {on}"
                if len(on) > 1:
                    packed.add(g)
        else:
            for g in running.pop(key):
                del holders[g][key]
    assert not running, f"started but never ended: {sorted(running)}"
    return {"most": most, "packed": packed}


def file_order(lines: list[Line]) -> list[tuple[str, str, int, str | None]]:
    return [(x.kind, x.job, x.attempt, x.cvd) for x in lines]


def event_order(folder: Path) -> list[tuple[str, str, int, str | None]]:
    out = []
    for e in events(folder):
        if e["event"] == "job.started":
            out.append(("start", e["job"], e["attempt"], e["gpus"]))
        elif e["event"] == "job.exited":
            out.append(("end", e["job"], e["attempt"], None))
    return out


def exited(folder: Path, job: str) -> list[dict[str, Any]]:
    return [e for e in events(folder, "job.exited") if e["job"] == job]


# ================================================================ end to end: GPUs


def test_gpus_are_handed_out_without_double_booking(tmp_path: Path, marker: str) -> None:
    """18 jobs on 3 fake GPUs and 8 slots: halves, whole GPUs, pairs and CPU-only jobs."""
    plan: list[tuple[str, float | None, dict[str, str]]] = [
        ("h0", 0.5, {"await": "start:h1"}),  # the first two halves must share a GPU ...
        ("h1", 0.5, {"await": "start:h0"}),  # ... and really run side by side
        *((f"w{i}", 1, {}) for i in range(4)),
        ("d0", 2, {}),
        ("d1", 2, {}),
        *((f"h{i}", 0.5, {}) for i in range(2, 6)),
        ("w4", 1, {}),
        ("w5", 1, {}),
        *((f"c{i}", None, {}) for i in range(4)),
    ]
    jobs = "".join(probe_job(name, gpus, **args) for name, gpus, args in plan)
    write_config(tmp_path, cfg(marker, tmp_path, jobs, supervisor="gpus = [0, 1, 2]"))
    r = cli(tmp_path, "run", "--no-progress")
    assert r.returncode == 0, r.stderr + r.stdout
    shares = {name: float(gpus or 0) for name, gpus, _ in plan}
    lines = probe_lines(tmp_path)
    assert sorted(x.job for x in lines if x.kind == "start") == sorted(shares)
    # each job got as many distinct GPU ids as it asked for, from the configured ones
    started = {e["job"]: e for e in events(tmp_path, "job.started")}
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    for x in lines:
        if x.kind != "start":
            continue
        want = shares[x.job]
        if want:
            got = ids(x.cvd)
            assert len(got) == len(set(got)) == max(1, math.ceil(want)), (x.job, x.cvd)
            assert set(got) <= {"0", "1", "2"}, (x.job, x.cvd)
        else:
            # no GPU assigned: CUDA_VISIBLE_DEVICES untouched (or hidden: "" would be fine too)
            assert x.cvd in (inherited, ""), (x.job, x.cvd)
        assert started[x.job]["gpus"] == x.cvd, x.job  # job.started says the same
        s = job_summary(tmp_path, x.job)
        assert s["status"] == "succeeded" and s["metrics"] == {"cvd": x.cvd}
    # never an over-booked GPU, never more than max_workers at once: from the jobs' own records ...
    seen = sweep(file_order(lines), shares)
    assert seen["most"] <= 8
    # ... and from the supervisor's events
    logged = sweep(event_order(tmp_path), shares)
    assert logged["most"] <= 8
    # the halves did pack: the first two shared one GPU while both were running
    h0 = next(x for x in lines if x.job == "h0")
    h1 = next(x for x in lines if x.job == "h1")
    assert h0.cvd == h1.cvd and h0.cvd in seen["packed"]
    assert events(tmp_path, "run.started")[0]["max_workers"] == 8


def test_fractional_and_whole_gpu_jobs_with_one_gpu(tmp_path: Path, marker: str) -> None:
    """One GPU: halves pair up, a whole-GPU job waits until both halves are gone."""
    jobs = (
        probe_job("a", 0.5, **{"await": "start:b"})
        + probe_job("b", 0.5, **{"await": "start:a"})
        + probe_job("whole", 1)
        + probe_job("c", 0.5)
    )
    write_config(tmp_path, cfg(marker, tmp_path, jobs, supervisor="gpus = [0]"))
    r = cli(tmp_path, "run", "--no-progress")
    assert r.returncode == 0, r.stderr
    lines = probe_lines(tmp_path)
    sweep(file_order(lines), {"a": 0.5, "b": 0.5, "c": 0.5, "whole": 1.0})
    assert all(x.cvd == "0" for x in lines)
    assert index_of(lines, "start", "whole") > max(index_of(lines, "end", "a"), index_of(lines, "end", "b"))


def test_memory_and_cpu_budgets_limit_what_runs_at_once(tmp_path: Path, marker: str) -> None:
    """A 1 GiB memory budget and 2 CPUs: declared needs of running jobs never add up to more."""
    mem = {"m0": 600, "m1": 400, "m2": 500, "m3": 300, "m4": 100}  # MiB
    cpu = {"c0": 1.5, "c1": 1, "c2": 0.5, "c3": 1}
    jobs = "".join(probe_job(j, None, f'resources = {{ memory = "{m}MiB" }}\n') for j, m in mem.items())
    jobs += "".join(probe_job(j, None, f"resources = {{ cpus = {c} }}\n") for j, c in cpu.items())
    jobs += probe_job("free", None)  # declares nothing: only needs a slot
    write_config(tmp_path, cfg(marker, tmp_path, jobs, supervisor='memory = "1GiB"\ncpus = 2'))
    r = cli(tmp_path, "run", "--no-progress")
    assert r.returncode == 0, r.stderr
    for order in (file_order(probe_lines(tmp_path)), event_order(tmp_path)):
        running: set[str] = set()
        for kind, job, _attempt, _cvd in order:
            if kind == "start":
                running.add(job)
                assert sum(mem.get(j, 0) for j in running) <= 1024, running
                assert sum(cpu.get(j, 0) for j in running) <= 2, running
            else:
                running.discard(job)
    assert all(job_summary(tmp_path, j)["status"] == "succeeded" for j in [*mem, *cpu, "free"])


def test_a_big_job_behind_a_stream_of_small_ones_is_not_starved(tmp_path: Path, marker: str) -> None:
    """Three 1-GPU jobs hold the 3 GPUs; a 3-GPU job is queued next, then 17 more 1-GPU jobs.

    s1 and s2 keep their GPUs until s3 has started, so s3 can only have started by backfill, ahead of
    the big job. After MAX_BYPASS such bypasses the big job blocks the rest and gets all three GPUs."""
    n_small = 20
    holds = {0: {"hold": "0.3"}, 1: {"await": "start:s3", "hold": "0.2"}, 2: {"await": "start:s3", "hold": "0.4"}}
    jobs = "".join(probe_job(f"s{i}", 1, **holds.get(i, {"hold": "0.3"})) for i in range(3))
    jobs += probe_job("big", 3)
    jobs += "".join(probe_job(f"s{i}", 1, hold="0.3") for i in range(3, n_small))
    write_config(tmp_path, cfg(marker, tmp_path, jobs, supervisor="gpus = [0, 1, 2]"))
    r = cli(tmp_path, "run", "--no-progress", timeout=120)
    assert r.returncode == 0, r.stderr
    big = job_summary(tmp_path, "big")
    assert big["status"] == "succeeded" and big["attempts"] == 1
    order = [e["job"] for e in events(tmp_path, "job.started")]
    before = order.index("big")
    after = len(order) - before - 1
    assert before > 3, f"no backfill happened: {order}"  # s3 started ahead of it
    assert before <= 3 + MAX_BYPASS, f"bypassed more than {MAX_BYPASS} times: {order}"
    assert after >= n_small - 3 - MAX_BYPASS  # it started before the last small jobs
    assert events(tmp_path, "job.started")[before]["gpus"].count(",") == 2
    lines = probe_lines(tmp_path)
    sweep(file_order(lines), {**{f"s{i}": 1.0 for i in range(n_small)}, "big": 1.0})
    # every small job that started after it waited for it to end (it held every GPU)
    big_end = index_of(lines, "end", "big")
    for job in order[before + 1 :]:
        assert index_of(lines, "start", job) > big_end, job


def test_jobs_that_can_never_fit_stop_the_run_before_anything_starts(tmp_path: Path, marker: str) -> None:
    touch = py_job("ok", "open('ok-ran', 'w').close()")
    cases = [
        (
            '[jobs.big]\ncommand = ["true"]\nresources = { gpus = 4 }\n',
            "gpus = [0, 1, 2]",
            "job big can never run here: it needs 4 GPU(s), the supervisor has 3",
        ),
        (
            '[jobs.huge]\ncommand = ["true"]\nresources = { memory = "1TiB" }\n',
            'memory = "auto"',
            "job huge can never run here: it needs 1.0TiB of memory, the supervisor has ",
        ),
        (
            '[jobs.wide]\ncommand = ["true"]\nresources = { cpus = 3 }\n',
            "cpus = 2",
            "job wide can never run here: it needs 3 CPUs, the supervisor has 2",
        ),
        (
            '[jobs.half]\ncommand = ["true"]\nresources = { gpus = 0.5 }\n',
            "gpus = 0",
            "job half can never run here: it needs 0.5 GPU(s), the supervisor has 0",
        ),
    ]
    for job, supervisor, message in cases:
        write_config(tmp_path, cfg(marker, tmp_path, touch + job, supervisor=supervisor))
        r = cli(tmp_path, "run", "--no-progress")
        assert r.returncode == 2, (job, r.stdout, r.stderr)
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and message in err[0] and "Traceback" not in r.stderr, err
        assert not (tmp_path / "logs").exists()  # no run folder, no events: nothing started
        assert not (tmp_path / "ok-ran").exists()
        # `list` still works and points at it
        lst = cli(tmp_path, "list")
        assert lst.returncode == 0, lst.stderr
        rows = {line.split()[0]: line.split() for line in lst.stdout.splitlines()}
        header = rows["ID"]
        fits = header.index("FITS") - len(header)  # count from the right: SCRIPT may hold spaces
        bad = job.split("]")[0].removeprefix("[jobs.")
        assert rows[bad][fits] == "NO", lst.stdout
        assert rows["ok"][fits] == "yes", lst.stdout


def test_list_fits_is_not_judged_locally_with_the_ray_executor(tmp_path: Path) -> None:
    jobs = '[jobs.g]\ncommand = ["true"]\nresources = { gpus = 1 }\n'
    write_config(tmp_path, f'[supervisor]\nexecutor = "ray"\ngpus = 0\n[discovery]\nenabled = false\n{jobs}')
    lst = cli(tmp_path, "list")
    assert lst.returncode == 0, lst.stderr
    header, row = (line.split() for line in lst.stdout.splitlines()[:2])
    assert row[header.index("FITS") - len(header)] != "NO", lst.stdout


def test_two_never_fitting_jobs_are_both_named(tmp_path: Path, marker: str) -> None:
    jobs = (
        '[jobs.big]\ncommand = ["true"]\nresources = { gpus = 4 }\n'
        '[jobs.huge]\ncommand = ["true"]\nresources = { memory = "1TiB" }\n'
        '[jobs.fine]\ncommand = ["true"]\nresources = { gpus = 3 }\n'
    )
    write_config(tmp_path, cfg(marker, tmp_path, jobs, supervisor="gpus = [0, 1, 2]"))
    r = cli(tmp_path, "run")
    assert r.returncode == 2
    assert "job big can never run here" in r.stderr and "job huge can never run here" in r.stderr
    assert "fine" not in r.stderr and not (tmp_path / "logs").exists()


# ================================================================ end to end: peak memory

ALLOC = """\
import sys, time
n = int(sys.argv[1])
block = bytearray(n)
for i in range(0, n, 4096):  # touch every page
    block[i] = 1
if len(sys.argv) > 3:
    print(sys.argv[3], flush=True)
time.sleep(float(sys.argv[2]))
"""

FAMILY = """\
import subprocess, sys, time
n, hold = int(sys.argv[1]), float(sys.argv[2])
block = bytearray(n)
for i in range(0, n, 4096):
    block[i] = 1
kid = subprocess.Popen([sys.executable, "alloc.py", str(n), str(hold), "ready"], stdout=subprocess.PIPE, text=True)
assert kid.stdout is not None and kid.stdout.readline() == "ready\\n"
print("both allocated", flush=True)
time.sleep(hold)
sys.exit(kid.wait())
"""


def test_peak_rss_of_a_job_and_of_its_whole_process_group(tmp_path: Path, marker: str) -> None:
    (tmp_path / "alloc.py").write_text(ALLOC)
    (tmp_path / "family.py").write_text(FAMILY)
    jobs = (
        f"[jobs.solo]\ncommand = {json.dumps([PY, 'alloc.py', '300000000', '1.5'])}\n"
        # parent and child hold 150 MB each at the same time for 3 s: only the group sum is
        # >= 280 MB (the kernel's max-RSS of the parent is the larger of the two, ~160 MB)
        f"[jobs.family]\ncommand = {json.dumps([PY, 'family.py', '150000000', '3'])}\n"
    )
    write_config(tmp_path, cfg(marker, tmp_path, jobs, workers=1))
    r = cli(tmp_path, "run", "--no-progress")
    assert r.returncode == 0, r.stderr
    for job in ("solo", "family"):
        (ex,) = exited(tmp_path, job)
        assert ex["peak_rss_bytes"] >= 280_000_000, (job, ex)
        assert job_summary(tmp_path, job)["peak_rss_bytes"] == ex["peak_rss_bytes"]
    assert exited(tmp_path, "family")[0]["peak_rss_bytes"] < 1_000_000_000  # a sum, not a runaway


def test_peak_rss_of_a_small_job_is_its_own_not_the_supervisors(tmp_path: Path, marker: str) -> None:
    """wait4's ru_maxrss starts from the memory the child was forked from (the supervisor's ~30 MiB):
    a `sleep` (~1 MiB) must not be recorded at that. Too short for a sample, it may be recorded as 0
    (not measured); long enough for the 1 s sampler, it is its own ~1 MiB."""
    jobs = '[jobs.tiny]\ncommand = ["sleep", "0.2"]\n[jobs.sampled]\ncommand = ["sleep", "3"]\n'
    write_config(tmp_path, cfg(marker, tmp_path, jobs))
    assert cli(tmp_path, "run", "--no-progress").returncode == 0
    (tiny,) = exited(tmp_path, "tiny")
    assert 0 <= tiny["peak_rss_bytes"] < 10 * MIB, tiny
    (sampled,) = exited(tmp_path, "sampled")
    assert 0 < sampled["peak_rss_bytes"] < 10 * MIB, sampled
    assert job_summary(tmp_path, "sampled")["peak_rss_bytes"] == sampled["peak_rss_bytes"]


def test_peak_rss_is_trusted_when_a_big_process_started_the_supervisor(tmp_path: Path, marker: str) -> None:
    """Regression: with our own peak taken from getrusage(RUSAGE_SELF), a supervisor started (via
    vfork+exec) by a 400 MB process, e.g. a grown pytest, inherited that 400 MB as its "own" peak
    and threw away every smaller job's wait4 figure: a 150 MB job was recorded as 0 (and a SIGKILL
    near the declared memory was not seen as oom_killed). VmHWM is the supervisor's own."""
    (tmp_path / "alloc.py").write_text(ALLOC)
    jobs = f"[jobs.mid]\ncommand = {json.dumps([PY, 'alloc.py', '150000000', '0'])}\n"
    write_config(tmp_path, cfg(marker, tmp_path, jobs))
    parent = (
        "import subprocess, sys\n"
        "ballast = bytearray(400_000_000)\n"
        "for i in range(0, len(ballast), 4096): ballast[i] = 1\n"
        "sys.exit(subprocess.run([sys.executable, '-m', 'aimedres_async', 'run', '--no-progress'],"
        " capture_output=True).returncode)\n"
    )
    assert subprocess.run([PY, "-c", parent], cwd=tmp_path, timeout=120).returncode == 0
    (ex,) = exited(tmp_path, "mid")
    assert 150_000_000 <= ex["peak_rss_bytes"] < 400_000_000, ex


# ================================================================ end to end: failure kinds

OOM = """
    import os
    block = bytearray(190_000_000)
    for i in range(0, len(block), 4096):
        block[i] = 1
    print("allocated", flush=True)
    os.kill(os.getpid(), 9)
"""


def test_sigkill_near_the_declared_memory_is_oom_killed_and_retried(tmp_path: Path, marker: str) -> None:
    jobs = py_job("oom", OOM, 'resources = { memory = "200MiB" }\nretries = 1\n') + py_job("sig", OOM)
    write_config(tmp_path, cfg(marker, tmp_path, jobs, workers=2))
    r = cli(tmp_path, "run", "--no-progress")
    assert r.returncode == 1
    oom = exited(tmp_path, "oom")
    assert [e["failure"] for e in oom] == ["oom_killed", "oom_killed"]
    assert all(e["outcome"] == "failed" and e["signal"] == "SIGKILL" for e in oom)
    assert [e["next_attempt"] for e in events(tmp_path, "job.retrying") if e["job"] == "oom"] == [2]
    s = job_summary(tmp_path, "oom")
    assert s["status"] == "failed" and s["failure"] == "oom_killed" and s["attempts"] == 2
    # the same death without a memory declaration is just a signal
    (sig,) = exited(tmp_path, "sig")
    assert sig["failure"] == "signal" and sig["signal"] == "SIGKILL"
    assert job_summary(tmp_path, "sig")["failure"] == "signal"
    assert "oom_killed" in r.stdout  # the results table shows the kind


CUDA_OOM = """
    import sys
    print("epoch 1", flush=True)
    print("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr)
    sys.exit(1)
"""


def test_cuda_out_of_memory_is_classified(tmp_path: Path, marker: str) -> None:
    write_config(tmp_path, cfg(marker, tmp_path, py_job("gpu", CUDA_OOM) + py_job("plain", "import sys; sys.exit(1)")))
    r = cli(tmp_path, "run", "--no-progress")
    assert r.returncode == 1
    (ex,) = exited(tmp_path, "gpu")
    assert ex["failure"] == "cuda_oom" and ex["exit_code"] == 1
    assert job_summary(tmp_path, "gpu")["failure"] == "cuda_oom"
    assert job_summary(tmp_path, "plain")["failure"] == "exit_code"


def test_cuda_oom_retry_waits_until_it_has_the_gpu_to_itself(tmp_path: Path, marker: str) -> None:
    """Two halves share GPU 0. `a` fails with CUDA OOM (once `b` is running); its retry may start only
    when `b` has given GPU 0 back. `b` holds on for a while after a's failure (its retry's backoff is
    50 ms), so a retry that ignored this would start while b still runs."""
    jobs = probe_job("a", 0.5, "retries = 1\n", **{"await": "start:b", "cuda_oom_on": "1"}) + probe_job(
        "b", 0.5, **{"await": "end:a@1", "hold": "1.5"}
    )
    write_config(tmp_path, cfg(marker, tmp_path, jobs, supervisor="gpus = [0]"))
    r = cli(tmp_path, "run", "--no-progress")
    assert r.returncode == 0, r.stderr
    a = exited(tmp_path, "a")
    assert [(e["attempt"], e.get("failure")) for e in a] == [(1, "cuda_oom"), (2, None)]
    assert job_summary(tmp_path, "a")["attempts"] == 2
    lines = probe_lines(tmp_path)
    # they did share the GPU: b started before a's first attempt ended
    assert index_of(lines, "start", "b") < index_of(lines, "end", "a", 1)
    # the retry started only after b had ended
    assert index_of(lines, "start", "a", 2) > index_of(lines, "end", "b")
    end_b = lines[index_of(lines, "end", "b")].t
    assert lines[index_of(lines, "start", "a", 2)].t >= end_b
    retry = [e for e in events(tmp_path, "job.started") if e["job"] == "a"][1]
    assert retry["gpus"] == "0"
    sweep(file_order(lines), {"a": 0.5, "b": 0.5})


def test_cuda_oom_of_an_earlier_attempt_does_not_label_the_next_failure(tmp_path: Path, marker: str) -> None:
    """classify() must look at this attempt's output only (the tail it reads outlives attempts)."""
    code = """
        import os, sys
        if os.environ["AIMEDRES_ATTEMPT"] == "1":
            print("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr)
            sys.exit(1)
        print("bad config: no such column", file=sys.stderr)
        sys.exit(3)
    """
    write_config(tmp_path, cfg(marker, tmp_path, py_job("gpu", code, "retries = 1\n")))
    assert cli(tmp_path, "run", "--no-progress").returncode == 1
    assert [(e["exit_code"], e["failure"]) for e in exited(tmp_path, "gpu")] == [(1, "cuda_oom"), (3, "exit_code")]


def test_stall_watchdog_stops_and_retries_a_silent_job_but_not_a_chatty_one(tmp_path: Path, marker: str) -> None:
    silent = """
        import time
        print("loading data", flush=True)
        time.sleep(30)
    """
    chatty = """
        import time
        for i in range(10):
            print(f"step {i}", flush=True)
            time.sleep(0.3)
    """
    jobs = py_job("silent", silent, 'stall_timeout = "1s"\nretries = 1\n') + py_job(
        "chatty", chatty, 'stall_timeout = "1s"\n'
    )
    write_config(tmp_path, cfg(marker, tmp_path, jobs, workers=2))
    r = cli(tmp_path, "run", "--no-progress")
    assert r.returncode == 1
    ex = exited(tmp_path, "silent")
    assert [(e["attempt"], e["outcome"], e["failure"]) for e in ex] == [
        (1, "stalled", "stalled"),
        (2, "stalled", "stalled"),
    ]
    assert [e["next_attempt"] for e in events(tmp_path, "job.retrying") if e["job"] == "silent"] == [2]
    s = job_summary(tmp_path, "silent")
    assert s["status"] == "stalled" and s["failure"] == "stalled" and s["attempts"] == 2
    # it was stopped, not left to sleep 30 s: its output ended with what it printed
    out = [x for x in read_jsonl(run_dir(tmp_path) / "jobs" / "silent.jsonl") if x["event"] == "job.output"]
    assert [x["line"] for x in out if x["stream"] == "stdout"] == ["loading data", "loading data"]
    (c,) = exited(tmp_path, "chatty")
    assert c["outcome"] == "succeeded" and "failure" not in c
    assert job_summary(tmp_path, "chatty")["status"] == "succeeded"


# ================================================================ end to end: --max-workers auto

AUTO_LINE = re.compile(r"max_workers auto: (\d+) \((.+)\)")


def test_max_workers_auto_uses_recorded_peaks(tmp_path: Path, marker: str) -> None:
    (tmp_path / "alloc.py").write_text(ALLOC)
    jobs = f"[jobs.big]\ncommand = {json.dumps([PY, 'alloc.py', '300000000', '0.2'])}\n"
    write_config(tmp_path, cfg(marker, tmp_path, jobs, supervisor='memory = "500MiB"'))
    cpus = os.cpu_count() or 1
    # no run recorded yet: one worker per CPU
    first = cli(tmp_path, "run", "--no-progress", "--max-workers", "auto")
    assert first.returncode == 0, first.stderr
    m = AUTO_LINE.search(first.stderr)
    assert m is not None, first.stderr
    assert int(m.group(1)) == cpus and "no peak memory recorded yet" in m.group(2)
    assert events(tmp_path, "run.started")[0]["max_workers"] == cpus
    peak = job_summary(tmp_path, "big")["peak_rss_bytes"]
    assert peak >= 280_000_000
    # now a ~300 MB peak is on record: 500 MiB holds one such job
    second = cli(tmp_path, "run", "--no-progress", "--max-workers", "auto")
    assert second.returncode == 0, second.stderr
    m = AUTO_LINE.search(second.stderr)
    assert m is not None, second.stderr
    n = int(m.group(1))
    assert n == max(1, min(cpus, 500 * MIB // peak)) == 1
    assert "largest recorded peak" in m.group(2) and "500.0MiB" in m.group(2)
    assert events(tmp_path, "run.started")[0]["max_workers"] == n
    # an explicit count is taken as given, with no such line
    third = cli(tmp_path, "run", "--no-progress", "--max-workers", "3")
    assert third.returncode == 0 and "max_workers auto" not in third.stderr
    assert events(tmp_path, "run.started")[0]["max_workers"] == 3
    assert summary(tmp_path)["max_workers"] == 3


def test_available_memory_agrees_with_psutil() -> None:
    """On Linux it is read from /proc/meminfo (no psutil import at start-up); same figure."""
    psutil = pytest.importorskip("psutil")
    ours, theirs = available_memory(), psutil.virtual_memory().available
    assert ours > 0 and abs(ours - theirs) <= 0.05 * theirs
