"""One attempt of one job: spawn in its own session, stream both pipes, time out, kill the group.

Whatever ends an attempt (exit, timeout, a stop, a supervisor bug, cancellation), its process
group is signalled, killed and reaped before the attempt returns or the exception propagates.
Retry decisions (`should_retry`, `backoff_delay`) live here too; the supervisor only re-queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import os
import random
import re
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from . import procs
from .config import Backoff
from .jobs import JobSpec, Outcome
from .sinks import ATTEMPT_MARK, TAIL_BLOCKS, Buffer, Framer

READ_SIZE = 1 << 20
DRAIN_TIMEOUT = 2.0  # after the group is gone, how long a pipe held by an escaped process may stay open
LEFTOVER_KILL_TIMEOUT = 2.0
SCRUBBED_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


@dataclass(frozen=True)
class AttemptResult:
    outcome: Outcome
    exit_code: int | None = None
    signal: str | None = None
    failure: str | None = None  # exit_code | signal | timeout | spawn_failed
    duration_s: float = 0.0
    peak_rss_bytes: int = 0
    error: str | None = None


class StopRequest:
    """The run's stop state: `requested` (graceful) and `forced` (skip the grace period).

    `child()` gives one attempt a stop of its own: the run's stop reaches it, and it can also be
    requested alone (the daemon's `cancel` of one ticket).
    """

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()
        self.reason: str | None = None  # "SIGINT", "SIGTERM", "fail-fast", "cancelled", ...
        self._children: set[StopRequest] = set()

    def request(self, reason: str) -> None:
        if not self.requested.is_set():
            self.reason = reason
            self.requested.set()
        for c in self._children:
            c.request(reason)

    def force(self) -> None:
        self.requested.set()
        self.forced.set()
        for c in self._children:
            c.force()

    def child(self) -> StopRequest:
        c = StopRequest()
        if self.requested.is_set():
            c.request(self.reason or "stop")
        if self.forced.is_set():
            c.force()
        self._children.add(c)
        return c

    def release(self, c: StopRequest) -> None:
        self._children.discard(c)


@dataclass
class Live:
    """What the supervisor can see of a running attempt (for sampling and the console)."""

    pgid: int
    started: float
    last_output: float  # for the stall watchdog
    peak_rss: int = 0
    attempt: int = 0


@dataclass
class AttemptContext:
    """Run-wide settings every attempt shares."""

    run_id: str
    emit: Callable[..., Any]  # RunLog.emit
    write_output: Callable[[str, list[Buffer]], None]  # (job id, record pieces)
    stop: StopRequest
    stop_signal: int = signal.SIGINT
    grace_period: float = 10.0
    max_line_bytes: int = 1 << 20
    echo: Callable[[str, str, bytes], None] | None = None  # --verbose: (job, stream, lines)
    redact: Callable[[bytes], bytes] | None = None  # [logging] redact, applied before any write
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    live: dict[str, Live] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # the supervisor's own service variables never reach a job; filtered once, not per spawn
        self.base_env = {k: v for k, v in self.base_env.items() if k not in SCRUBBED_ENV}

    def redact_argv(self, argv: tuple[str, ...]) -> list[str]:
        """A command as it may be recorded: identifiers in arguments are redacted too."""
        if self.redact is None:
            return list(argv)
        return [self.redact(a.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape") for a in argv]


@dataclass
class JobOutput:
    """What a job printed that outlives its attempts: final metrics and the last lines."""

    tail: deque[tuple[str, bytes]] = field(default_factory=lambda: deque(maxlen=TAIL_BLOCKS))
    metrics: dict[str, Any] | None = None


def job_env(spec: JobSpec, ctx: AttemptContext, attempt: int) -> dict[str, str]:
    env = dict(ctx.base_env)
    env.update(spec.env)
    env.update(
        AIMEDRES_JOB_ID=spec.id, AIMEDRES_RUN_ID=ctx.run_id, AIMEDRES_ATTEMPT=str(attempt)
    )
    return env


def file_sha256(path: os.PathLike[str] | str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


async def run_attempt(
    spec: JobSpec, attempt: int, ctx: AttemptContext, output: JobOutput, extra_env: Mapping[str, str] | None = None
) -> AttemptResult:
    """Run one attempt to its end and return how it ended. Never leaves a process behind."""
    t0 = time.monotonic()
    if spec.script is not None and not spec.script.is_file():
        return _spawn_failed(spec, attempt, ctx, t0, f"script not found: {spec.script}")
    env = job_env(spec, ctx, attempt)
    env.update(extra_env or {})
    # Hashed before the spawn (what is about to run), so that job.started, and the daemon's record
    # of the pid that crash recovery relies on, follow the spawn at once.
    script_sha = file_sha256(spec.script) if spec.script else None
    oom_kills = cgroup_oom_kills()
    output.tail.append((ATTEMPT_MARK, b"%d" % attempt))  # classify() and JUnit split the output by attempt
    try:
        child = procs.Child.spawn(spec.argv, spec.cwd, env)
    except OSError as e:
        return _spawn_failed(spec, attempt, ctx, t0, f"cannot execute {spec.argv[0]}: {e.strerror or e}")
    except (ValueError, TypeError) as e:  # e.g. a NUL byte in an argument
        return _spawn_failed(spec, attempt, ctx, t0, f"cannot execute {spec.argv[0]}: {e}")

    pgid = child.pid  # start_new_session: the child leads its own group
    live = Live(pgid=pgid, started=t0, last_output=t0, attempt=attempt)
    ctx.live[spec.id] = live
    ctx.emit(
        "job.started", job=spec.id, attempt=attempt, pid=child.pid, argv=ctx.redact_argv(spec.argv),
        cwd=str(spec.cwd), gpus=env.get("CUDA_VISIBLE_DEVICES"),
        script_sha256=script_sha,
        env_keys=sorted(set(spec.env) | {"AIMEDRES_JOB_ID", "AIMEDRES_RUN_ID", "AIMEDRES_ATTEMPT"}),
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    readers: dict[int, tuple[Framer, asyncio.Future[None]]] = {}
    small: set[int] = set()  # pipes still at the kernel's default size
    for name, fd in (("stdout", child.stdout), ("stderr", child.stderr)):
        assert fd is not None
        framer = Framer(ctx.run_id, spec.id, attempt, name, ctx.max_line_bytes, output.tail, ctx.redact)
        readers[fd] = (framer, loop.create_future())
        small.add(fd)
        loop.add_reader(fd, _on_readable, fd, readers, small, spec.id, ctx)

    reason: str | None = None
    try:
        reason = await _supervise(child, spec, ctx, live)
        await _end_group(pgid, ctx, graceful=reason is None and not ctx.stop.requested.is_set())
        await _drain(readers)
    except BaseException:
        await _kill_shielded(child, pgid)
        raise
    finally:
        for fd, (framer, eof) in readers.items():
            loop.remove_reader(fd)
            if not eof.done():
                eof.set_result(None)
            deliver_end(ctx, spec.id, framer, output)
        child.close_pipes()
        ctx.live.pop(spec.id, None)

    exit_ = child.exited.result()
    code = exit_.returncode
    # ru_maxrss counts from our own memory (inherited through vfork/exec): only trust it above that
    peak = max(live.peak_rss, exit_.max_rss_bytes if procs.exceeds_own_peak(exit_.max_rss_bytes) else 0)
    failure = _failure(reason, code)
    if failure is not None and reason is None:
        failure = classify(code, peak, spec.resources.memory, oom_kills, cgroup_oom_kills(), output) or failure
    result = AttemptResult(
        outcome=_outcome(reason, code),
        exit_code=code if code >= 0 else None,
        signal=signal.Signals(-code).name if code < 0 and -code in _SIGNUMS else None,
        failure=failure,
        duration_s=round(time.monotonic() - t0, 6),
        peak_rss_bytes=peak,
    )
    emit_exited(spec, attempt, ctx, result)
    return result


_SIGNUMS = {s.value for s in signal.Signals}


def _on_readable(
    fd: int, readers: dict[int, tuple[Framer, asyncio.Future[None]]], small: set[int], job: str, ctx: AttemptContext
) -> None:
    framer, eof = readers[fd]
    try:
        data = os.read(fd, READ_SIZE)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if not data:
        asyncio.get_running_loop().remove_reader(fd)
        if not eof.done():
            eof.set_result(None)
        return
    if fd in small and len(data) >= procs.DEFAULT_PIPE_SIZE:  # it filled a default-sized pipe: enlarge it, once
        small.discard(fd)
        procs.grow_pipe(fd)
    live = ctx.live.get(job)
    if live is not None:
        live.last_output = time.monotonic()
    deliver(ctx, job, framer, data)


def deliver(ctx: AttemptContext, job: str, framer: Framer, data: bytes) -> None:
    """Output as it arrives, from any executor: frame it, write the records, echo (--verbose)."""
    records, lines = framer.feed(data)
    if records:
        ctx.write_output(job, records)
    if ctx.echo is not None and lines:
        ctx.echo(job, framer.stream, lines)


def deliver_end(ctx: AttemptContext, job: str, framer: Framer, output: JobOutput) -> None:
    """The end of a stream: its unterminated last line, and the final metrics it printed."""
    tail = framer.flush()
    if tail:
        ctx.write_output(job, [tail])
        if ctx.echo is not None and framer.flushed:
            ctx.echo(job, framer.stream, framer.flushed + b"\n")
    if framer.last_data is not None:
        output.metrics = framer.last_data


async def _supervise(child: procs.Child, spec: JobSpec, ctx: AttemptContext, live: Live) -> str | None:
    """Wait for exit, timeout, silence or stop: None (exited), "timeout", "stalled" or "cancelled"."""
    stop_wait = asyncio.ensure_future(ctx.stop.requested.wait())
    waiters: set[asyncio.Future[Any]] = {child.exited, stop_wait}
    deadline = live.started + spec.timeout if spec.timeout else math.inf
    reason = None
    try:
        while True:
            now = time.monotonic()
            silent_until = live.last_output + spec.stall_timeout if spec.stall_timeout else math.inf
            if now >= deadline:
                reason = "timeout"
                break
            if now >= silent_until:
                reason = "stalled"
                break
            wake = min(deadline, silent_until)
            await asyncio.wait(waiters, timeout=None if wake == math.inf else wake - now,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if child.exited.done():
                return None
            if ctx.stop.requested.is_set():
                reason = "cancelled"
                break
    finally:
        stop_wait.cancel()
    await _terminate(child, child.pid, ctx)
    return reason


async def _terminate(child: procs.Child, pgid: int, ctx: AttemptContext) -> None:
    """stop_signal to the group, up to grace_period for the main process, then SIGKILL."""
    if not ctx.stop.forced.is_set():
        procs.signal_group(pgid, ctx.stop_signal)
        forced = asyncio.ensure_future(ctx.stop.forced.wait())
        waiters: set[asyncio.Future[Any]] = {child.exited, forced}
        try:
            await asyncio.wait(waiters, timeout=ctx.grace_period,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            forced.cancel()
    if not child.exited.done():
        procs.signal_group(pgid, signal.SIGKILL)
        await child.exited


async def _end_group(pgid: int, ctx: AttemptContext, graceful: bool) -> None:
    """The main process has exited: signal and reap whatever is left in its group."""
    if not procs.live_members(pgid):
        return
    if graceful and not ctx.stop.forced.is_set():
        procs.signal_group(pgid, ctx.stop_signal)
        if await procs.wait_group_gone(pgid, ctx.grace_period):
            return
    procs.signal_group(pgid, signal.SIGKILL)
    await procs.wait_group_gone(pgid, LEFTOVER_KILL_TIMEOUT)


async def _drain(readers: dict[int, tuple[Framer, asyncio.Future[None]]]) -> None:
    """Read what is left in the pipes; give up on a pipe an escaped process keeps open."""
    pending = [eof for _framer, eof in readers.values() if not eof.done()]
    if pending:
        await asyncio.wait(pending, timeout=DRAIN_TIMEOUT)


async def _kill_shielded(child: procs.Child, pgid: int) -> None:
    """Last-resort cleanup on cancellation or error: SIGKILL to the group at once, then up to
    LEFTOVER_KILL_TIMEOUT to see it gone, in a shielded cancel scope (the cancellation that
    brought us here cannot cut it short). Whatever is left then is killed and reaped synchronously."""
    procs.signal_group(pgid, signal.SIGKILL)
    try:
        with anyio.CancelScope(shield=True), anyio.move_on_after(LEFTOVER_KILL_TIMEOUT):
            await asyncio.wait({child.exited})  # never cancels the future itself
            await procs.wait_group_gone(pgid, LEFTOVER_KILL_TIMEOUT)
    finally:
        if not child.exited.done() or procs.live_members(pgid):
            _kill_now(child, pgid)


def _kill_now(child: procs.Child, pgid: int) -> None:
    """The synchronous fallback of _kill_shielded: nothing can interrupt it."""
    procs.signal_group(pgid, signal.SIGKILL)
    if not child.exited.done():
        with contextlib.suppress(OSError):
            child._reap(0)
    procs.kill_group_now(pgid)


def _outcome(reason: str | None, code: int) -> Outcome:
    if reason == "timeout":
        return Outcome.TIMED_OUT
    if reason == "stalled":
        return Outcome.STALLED
    if reason == "cancelled":
        return Outcome.CANCELLED
    return Outcome.SUCCEEDED if code == 0 else Outcome.FAILED


def _failure(reason: str | None, code: int) -> str | None:
    if reason in ("timeout", "stalled"):
        return reason
    if reason == "cancelled" or code == 0:
        return None
    return "signal" if code < 0 else "exit_code"


def _spawn_failed(spec: JobSpec, attempt: int, ctx: AttemptContext, t0: float, error: str) -> AttemptResult:
    if ctx.redact is not None:
        error = ctx.redact(error.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")
    result = AttemptResult(
        outcome=Outcome.SPAWN_FAILED, failure="spawn_failed",
        duration_s=round(time.monotonic() - t0, 6), error=error,
    )  # fmt: skip
    emit_exited(spec, attempt, ctx, result)
    return result


def emit_exited(spec: JobSpec, attempt: int, ctx: AttemptContext, r: AttemptResult, **extra: Any) -> None:
    """`job.exited` for an attempt; `extra` adds an executor's own fields (e.g. Slurm's queued_s)."""
    fields: dict[str, Any] = {"outcome": r.outcome.value}
    if r.exit_code is not None:
        fields["exit_code"] = r.exit_code
    if r.signal is not None:
        fields["signal"] = r.signal
    if r.failure is not None:
        fields["failure"] = r.failure
    if r.error is not None:
        fields["error"] = r.error
    fields.update(duration_s=r.duration_s, peak_rss_bytes=r.peak_rss_bytes, **extra)
    ctx.emit("job.exited", job=spec.id, attempt=attempt, **fields)


# ---------------------------------------------------------------- failure classification

_CUDA_OOM = re.compile(
    rb"CUDA out of memory|CUDA error: out of memory|CUBLAS_STATUS_ALLOC_FAILED|OutOfMemoryError: CUDA"
)
NEAR_LIMIT = 0.9  # a SIGKILL at >= 90% of the declared memory is taken for the OOM killer


def classify(code: int, peak: int, declared_memory: int, oom_before: int | None, oom_after: int | None,
             output: JobOutput) -> str | None:  # fmt: skip
    """A closer name for a failure than exit_code/signal: oom_killed or cuda_oom, else None."""
    if code == -signal.SIGKILL:
        if oom_before is not None and oom_after is not None and oom_after > oom_before:
            return "oom_killed"  # the kernel's OOM killer acted in our cgroup meanwhile
        if declared_memory and peak >= NEAR_LIMIT * declared_memory:
            return "oom_killed"
    recent: list[bytes] = []
    for stream, block in reversed(output.tail):
        if stream == ATTEMPT_MARK:
            break
        recent.append(block)
    if any(_CUDA_OOM.search(block) for block in recent[:8]):
        return "cuda_oom"
    return None


def cgroup_oom_kills() -> int | None:
    """oom_kill count of our cgroup (v2), or None where it cannot be read."""
    path = _memory_events_path()
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            for line in f:
                key, _, value = line.partition(b" ")
                if key == b"oom_kill":
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


@functools.cache
def _memory_events_path() -> str | None:
    """Our cgroup's memory.events, looked up once (a process does not change cgroup by itself)."""
    try:
        with open("/proc/self/cgroup") as f:
            cgroup = next((line.split("::", 1)[1].strip() for line in f if line.startswith("0::")), None)
    except OSError:
        return None
    if cgroup is None:
        return None
    path = f"/sys/fs/cgroup{cgroup}/memory.events"
    return path if os.path.exists(path) else None


# ---------------------------------------------------------------- retries


def should_retry(result: AttemptResult, spec: JobSpec, attempt: int) -> bool:
    """Failed and timed-out attempts are retried; cancelled and unspawnable ones never are, nor a
    cluster job someone else cancelled (`scancel` by its user or an admin)."""
    if result.failure == "cancelled_externally":
        return False
    return result.outcome in (Outcome.FAILED, Outcome.TIMED_OUT, Outcome.STALLED) and attempt <= spec.retries


def backoff_delay(b: Backoff, retry: int, rng: random.Random | None = None) -> float:
    """Delay before retry number `retry` (1-based): min(max, initial*factor**(n-1)) +/- jitter."""
    base = min(b.max, b.initial * b.factor ** (retry - 1))
    jitter = (rng or random).uniform(1 - b.jitter, 1 + b.jitter) if b.jitter else 1.0
    return max(0.0, base * jitter)
