"""Slurm's side of the Slurm executor: its commands (run in a worker thread, never raising), the
start-up check, the cluster's nodes, an attempt's batch script and sbatch command line, and the job
states of every attempt being waited on from one `squeue` call per poll.
"""

from __future__ import annotations

import asyncio
import math
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.lowlevel

from aimedres_async.plan.config import Resources, SlurmConfig
from aimedres_async.plan.jobs import JobSpec

COMMAND_TIMEOUT = 60.0  # one sbatch/squeue/scontrol call; a busy controller can take a while
CHECK_TIMEOUT = 20.0  # the start-up check (scontrol ping): a controller that is down fails in this
SCANCEL_TIMEOUT = 15.0
MiB = 1 << 20
TOOLS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")


class SlurmUnavailable(Exception):
    """Slurm's commands are missing, the controller does not answer, or the partition is unknown."""


# ---------------------------------------------------------------- Slurm's commands


def run_cmd(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """One Slurm command; a timeout or a missing program is a failed result, not an exception."""
    timeout = COMMAND_TIMEOUT if timeout is None else timeout
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors="backslashreplace",
            env=None if env is None else dict(env),
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(argv), 124, "", f"{argv[0]} did not answer within {timeout:g}s")
    except OSError as e:
        return subprocess.CompletedProcess(list(argv), 127, "", f"cannot run {argv[0]}: {e.strerror or e}")


async def arun_cmd(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """`run_cmd` in a worker thread."""
    return await asyncio.to_thread(run_cmd, argv, env, timeout)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def check(cfg: SlurmConfig) -> None:
    """Slurm's commands are on PATH, the controller answers and the partition exists, or
    SlurmUnavailable with a one-line reason."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise SlurmUnavailable(f'executor = "slurm" needs Slurm\'s commands on PATH; not found: {", ".join(missing)}')
    r = run_cmd(["scontrol", "ping"], timeout=CHECK_TIMEOUT)
    if r.returncode != 0 or " is UP" not in r.stdout:
        why = last_line(r.stdout if " is DOWN" in r.stdout else r.stderr or r.stdout)
        raise SlurmUnavailable(f"the Slurm controller does not answer (scontrol ping: {why})")
    if cfg.partition:
        r = run_cmd(["scontrol", "show", "partition", "--oneliner", cfg.partition], timeout=CHECK_TIMEOUT)
        if r.returncode != 0 or f"PartitionName={cfg.partition} " not in r.stdout + " ":
            known = run_cmd(["sinfo", "--noheader", "--format=%R"], timeout=CHECK_TIMEOUT).stdout.split()
            raise SlurmUnavailable(
                f"[slurm] partition = {cfg.partition!r}: Slurm has no such partition "
                f"(it has: {', '.join(sorted(set(known))) or 'none'})"
            )


def oneliner_fields(line: str) -> dict[str, str]:
    """`scontrol show ... --oneliner` as a dict (values with spaces are cut at the first one)."""
    return {m.group(1): m.group(2) for m in re.finditer(r"(?:^|\s)([A-Za-z][\w:/]*)=(\S*)", line)}


# ---------------------------------------------------------------- the cluster's nodes


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    memory_mib: int
    gpus: int
    partitions: frozenset[str]


def nodes() -> list[Node]:
    """The cluster's nodes (`scontrol show node`); SlurmUnavailable when it does not answer."""
    r = run_cmd(["scontrol", "show", "node", "--oneliner"], timeout=CHECK_TIMEOUT)
    if r.returncode != 0:
        raise SlurmUnavailable(f"scontrol show node: {last_line(r.stderr)}")
    found = []
    for line in r.stdout.splitlines():
        f = oneliner_fields(line)
        if "NodeName" not in f:
            continue
        gpus = sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[^:,(]+)?:(\d+)", f.get("Gres", "")))
        found.append(
            Node(
                f["NodeName"],
                _int(f.get("CPUTot")),
                _int(f.get("RealMemory")),
                gpus,
                frozenset(p for p in f.get("Partitions", "").split(",") if p),
            )
        )
    return found


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def never_fits(resources: Resources, cluster: Sequence[Node], partition: str = "") -> str | None:
    """Why no node of the partition (or of the cluster) could ever run a job asking for this."""
    pool = [n for n in cluster if not partition or partition in n.partitions]
    if not pool:
        return f"finds no node in partition {partition!r}" if partition else "finds no node in the cluster"
    cpus, mem, gpus = math.ceil(resources.cpus), math.ceil(resources.memory / MiB), math.ceil(resources.gpus)
    if any(n.cpus >= cpus and n.memory_mib >= mem and n.gpus >= gpus for n in pool):
        return None
    most = max(pool, key=lambda n: (n.gpus, n.memory_mib, n.cpus))
    return (
        f"asks for {resources.describe()} and the largest node ({most.name}) has cpus={most.cpus} "
        f"memory={most.memory_mib}MiB gpus={most.gpus}"
    )


# ---------------------------------------------------------------- submitting an attempt


def write_batch(path: Path, name: str, spec: JobSpec) -> None:
    """The batch script: cd to the job's folder, then exec its argv, every argument quoted for sh.

    exec makes the job's program the batch step itself: scancel's signals reach it, and its exit
    status is the job's. The environment is not in the script: sbatch exports its own.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        f"#!/bin/sh\n# {name}: written by aimedres-async; submitted with sbatch --export=ALL\n"
        f"cd {shlex.quote(str(spec.cwd))} || exit 127\nexec {shlex.join(spec.argv)}\n"
    )
    path.write_bytes(text.encode("utf-8", "surrogateescape"))


def sbatch_argv(cfg: SlurmConfig, spec: JobSpec, name: str, folder: Path, stem: str, grace: float) -> list[str]:
    """The sbatch command line of one attempt: its files, resources, time limit and [slurm] options."""
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name={name}",
        f"--chdir={spec.cwd}",
        f"--output={folder / (stem + '.out')}",
        f"--error={folder / (stem + '.err')}",
        "--export=ALL",
        "--no-requeue",
    ]
    r = spec.resources
    if r.cpus:
        argv.append(f"--cpus-per-task={math.ceil(r.cpus)}")
    if r.memory:
        argv.append(f"--mem={math.ceil(r.memory / MiB)}M")
    if r.gpus:
        argv.append(f"--gres=gpu:{math.ceil(r.gpus)}")  # a GPU is not shared: a fraction asks for one
    if spec.timeout:
        argv.append(f"--time={math.ceil((spec.timeout + grace) / 60)}")  # minutes; our own timer is first
    for flag, value in (
        ("--partition", cfg.partition),
        ("--account", cfg.account),
        ("--qos", cfg.qos),
    ):
        if value:
            argv.append(f"{flag}={value}")
    argv += cfg.sbatch_options  # last, so that they win
    argv.append(str(folder / (stem + ".sh")))
    return argv


async def submit(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """sbatch, shielded from cancellation: an attempt cancelled meanwhile waits for its answer and
    cancels the job it submitted, which would otherwise be left to run with no one waiting for it."""
    with anyio.CancelScope(shield=True):
        r = await arun_cmd(argv, env)
    try:
        await anyio.lowlevel.checkpoint_if_cancelled()
    except BaseException:
        job_id = r.stdout.strip().split(";")[0]
        if r.returncode == 0 and job_id.isdigit():
            run_cmd(["scancel", job_id], timeout=SCANCEL_TIMEOUT)  # synchronous: nothing can interrupt it
        raise
    return r


async def cancel_by_name(name: str) -> None:
    """Cancel whatever job carries this attempt's (unique) name: one sbatch gave no id for."""
    r = await arun_cmd(["squeue", "--noheader", f"--name={name}", "--format=%i"])
    ids = [i for i in r.stdout.split() if i.isdigit()]
    if ids:
        await arun_cmd(["scancel", *ids], timeout=SCANCEL_TIMEOUT)


# ---------------------------------------------------------------- a running job's state


_SIZE_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


async def max_rss(job_id: str) -> int:
    """The batch step's peak RSS so far (sstat, from the node's job accounting); 0 if unknown."""
    r = await arun_cmd(
        ["sstat", "--noheader", "--parsable2", "--format=MaxRSS", "--jobs", f"{job_id}.batch"], timeout=CHECK_TIMEOUT
    )
    m = re.match(r"\s*(\d+(?:\.\d+)?)([KMGT]?)", r.stdout) if r.returncode == 0 else None
    return int(float(m.group(1)) * _SIZE_SUFFIX[m.group(2)]) if m else 0


class Squeue:
    """Job states from one `squeue` call per poll for every job being waited on, not one each.

    No task of its own: the first waiter that finds the states stale asks squeue, shielded, and
    the others wait for its answer (an event), so one waiter's cancellation never cancels theirs.
    """

    NO_ANSWER: tuple[str, str] = ("?", "")  # squeue failed (controller busy or restarting): no news

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.watched: set[str] = set()
        self._rows: dict[str, tuple[str, str]] = {}
        self._asked: frozenset[str] = frozenset()
        self._answered = False
        self._at = -math.inf
        self._inflight: anyio.Event | None = None

    def forget(self, job_id: str) -> None:
        self.watched.discard(job_id)

    async def state(self, job_id: str) -> tuple[str, str] | None:
        """(state, reason) as of at most half a poll interval ago; None if squeue does not list it."""
        self.watched.add(job_id)
        fresh = time.monotonic() - self._at < self.interval / 2
        if self._inflight is None and not (fresh and job_id in self._asked):
            await self._query(frozenset(self.watched))
        elif self._inflight is not None:
            await self._inflight.wait()
        if job_id not in self._asked:  # it was added after that query had left
            return await self.state(job_id)
        if not self._answered:
            return self.NO_ANSWER
        return self._rows.get(job_id)

    async def _query(self, ids: frozenset[str]) -> None:
        self._inflight = done = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):  # the other waiters need its answer
                r = await arun_cmd(
                    ["squeue", "--noheader", "--states=all", f"--jobs={','.join(sorted(ids))}", "--format=%i|%T|%r"]
                )
            rows: dict[str, tuple[str, str]] = {}
            for line in r.stdout.splitlines():
                parts = line.strip().split("|", 2)
                if len(parts) == 3:
                    rows[parts[0]] = (parts[1], parts[2])
            # squeue exits 1 when none of the ids is known any more: that is an answer too
            self._answered = r.returncode == 0 or "Invalid job id" in r.stderr
            self._rows, self._asked, self._at = rows, ids, time.monotonic()
        finally:
            self._inflight = None
            done.set()
