"""What every executor shares: attempt results, the stop state, the run-wide attempt context, job
environment, output delivery through the framer, `job.exited`, failure classification and the retry
policy (`should_retry`, `backoff_delay`; the supervisor only re-queues).

The local executor (processes on this machine) is `executors.local.run_attempt`; it is also
reachable here as `runner.run_attempt`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import random
import re
import signal
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import Backoff
from .jobs import JobSpec, Outcome
from .sinks import ATTEMPT_MARK, TAIL_BLOCKS, Buffer, Framer

READ_SIZE = 1 << 20  # how much an executor reads from a log stream at once
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
        self._futures: dict[asyncio.Event, asyncio.Future[None]] = {}

    def request(self, reason: str) -> None:
        if not self.requested.is_set():
            self.reason = reason
            self.requested.set()
            self._resolve(self.requested)
        for c in self._children:
            c.request(reason)

    def force(self) -> None:
        self.requested.set()
        self.forced.set()
        self._resolve(self.requested)
        self._resolve(self.forced)
        for c in self._children:
            c.force()

    def when_requested(self) -> asyncio.Future[None]:
        """A future that is done once a stop is requested: for `asyncio.wait` beside others,
        without a task per waiter. Shared: never cancel it."""
        return self._future(self.requested)

    def when_forced(self) -> asyncio.Future[None]:
        return self._future(self.forced)

    def _future(self, event: asyncio.Event) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut = self._futures.get(event)
        if fut is None or fut.get_loop() is not loop:
            fut = self._futures[event] = loop.create_future()
            if event.is_set():
                fut.set_result(None)
        return fut

    def _resolve(self, event: asyncio.Event) -> None:
        fut = self._futures.get(event)
        if fut is not None and not fut.done() and not fut.get_loop().is_closed():
            fut.set_result(None)

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
        # the supervisor's own service variables never reach a job (`replace()` of a context
        # filters again: cheap when there is nothing left to filter)
        if any(k in self.base_env for k in SCRUBBED_ENV):
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
    env.update(AIMEDRES_JOB_ID=spec.id, AIMEDRES_RUN_ID=ctx.run_id, AIMEDRES_ATTEMPT=str(attempt))
    return env


def file_sha256(path: os.PathLike[str] | str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


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


def classify(
    code: int, peak: int, declared_memory: int, oom_before: int | None, oom_after: int | None, output: JobOutput
) -> str | None:
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


def __getattr__(name: str) -> Any:
    """`runner.run_attempt`: the local executor, imported on first use (it imports this module)."""
    if name == "run_attempt":
        from .executors.local import run_attempt

        return run_attempt
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
