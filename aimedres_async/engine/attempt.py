"""What every executor shares: attempt results, the stop state, the run-wide attempt context, the
start of an attempt (`begin_attempt`: script check, environment, script hash), output delivery
through the framer, and `job.exited` (`emit_exited`, `spawn_failed`).

How a failure is named is in `failures`; whether and when it is retried, in `retries`.

The local executor (processes on this machine) is `executors.local.run_attempt`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimedres_async.plan.jobs import JobSpec, Outcome
from aimedres_async.records.framing import ATTEMPT_MARK, TAIL_BLOCKS, Buffer, Framer
from aimedres_async.records.scan import OutputScan

READ_SIZE = 1 << 20  # how much an executor reads from a log stream at once
SCRUBBED_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: Outcome
    exit_code: int | None = None
    signal: str | None = None
    failure: str | None = None  # exit_code | signal | timeout | spawn_failed | output_match | ...
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
    # each script's sha256, hashed once per run (in a worker thread, before its first attempt);
    # shared by every copy of the context (`replace()` keeps the same dict)
    script_hashes: dict[str, str | None] = field(default_factory=dict)
    # the cgroup's OOM-kill count as last read off the loop (at the start, then by the sampler once
    # a tick); an attempt compares it with a fresh read when it ends killed (failures.classify)
    oom_kills: int | None = None
    # the daemon's folder where a cluster executor records each job it submits, durably, so that
    # a restarted daemon cancels the jobs its dead self left (executors.slurm_ledger); None in `run`
    ledger: Path | None = None
    warn: Callable[[str], None] | None = None  # one line on the supervisor's console (Console.warning)

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


@dataclass(slots=True)
class JobOutput:
    """What a job printed that outlives its attempts: final metrics, the last lines, and what the
    scan of its output found (warnings; the line a `fail_on` pattern matched in this attempt)."""

    # a deque while attempts run; a tuple before the first (nothing yet) and once the job has
    # finished (`settle`): a deque's first block is ~600 bytes, a 100,000-job run holds them all
    tail: deque[tuple[str, bytes]] | tuple[tuple[str, bytes], ...] = ()
    metrics: dict[str, Any] | None = None
    scan: OutputScan = field(default_factory=OutputScan)

    def begin(self, attempt: int) -> None:
        """An attempt starts: its output joins the tail after a mark."""
        if not isinstance(self.tail, deque):
            self.tail = deque(self.tail, maxlen=TAIL_BLOCKS)
        self.tail.append((ATTEMPT_MARK, b"%d" % attempt))
        self.scan.new_attempt()

    def settle(self) -> None:
        """The job finished: no attempt will add to its tail, which shrinks to what it holds."""
        self.tail = tuple(self.tail)

    def framer(self, attempt: int, stream: str, ctx: AttemptContext) -> Framer:
        """A framer for one of this attempt's streams, feeding this job's tail and scan."""
        if not isinstance(self.tail, deque):  # an executor driven without begin() (tests)
            self.tail = deque(self.tail, maxlen=TAIL_BLOCKS)
        return Framer(attempt, stream, ctx.max_line_bytes, self.tail, ctx.redact, self.scan)


def output_verdict(result: AttemptResult, output: JobOutput) -> AttemptResult:
    """An attempt that printed a line its `fail_on` matched has failed (`output_match`, that line
    its error), whatever its exit code said; a timeout, a signal or a stop keeps its own name."""
    matched = output.scan.matched
    if matched is None or result.outcome not in (Outcome.SUCCEEDED, Outcome.FAILED):
        return result
    if result.failure not in (None, "exit_code", "output_match"):
        return result
    return dataclasses.replace(result, outcome=Outcome.FAILED, failure="output_match", error=matched)


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


def emit_started(
    spec: JobSpec, attempt: int, ctx: AttemptContext, start: AttemptStart, pid: int | None, **extra: Any
) -> None:
    """`job.started` for an attempt of a local or batch executor; `extra` adds its own fields."""
    if spec.params is not None:  # a sweep's combination (SPEC §18)
        extra["params"] = spec.params
    ctx.emit(
        "job.started",
        job=spec.id,
        attempt=attempt,
        pid=pid,
        argv=ctx.redact_argv(spec.argv),
        cwd=str(spec.cwd),
        gpus=extra.pop("gpus", None),
        script_sha256=start.script_sha256,
        env_keys=sorted(set(spec.env) | {"AIMEDRES_JOB_ID", "AIMEDRES_RUN_ID", "AIMEDRES_ATTEMPT"}),
        **extra,
    )


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


@dataclass(frozen=True)
class AttemptStart:
    """What an executor knows once an attempt may go ahead."""

    t0: float  # time.monotonic() at the attempt's start
    env: dict[str, str]  # the job's whole environment for this attempt
    script_sha256: str | None  # of the script about to run (hashed before it runs)


def begin_attempt(
    spec: JobSpec, attempt: int, ctx: AttemptContext, output: JobOutput, extra_env: Mapping[str, str] | None
) -> AttemptStart | AttemptResult:
    """The start every executor shares: a missing script ends the attempt at once (`spawn_failed`,
    returned as its result); else the environment, the script's hash, and the attempt's mark in
    the output tail (classification and JUnit split the output by attempt)."""
    t0 = time.monotonic()
    if spec.script is not None and not spec.script.is_file():
        return spawn_failed(spec, attempt, ctx, t0, f"script not found: {spec.script}")
    env = job_env(spec, ctx, attempt)
    env.update(extra_env or {})
    script_sha = None
    if spec.script is not None:
        key = str(spec.script)
        if key in ctx.script_hashes:
            script_sha = ctx.script_hashes[key]
        else:  # an executor driven without the dispatcher (tests)
            script_sha = ctx.script_hashes[key] = file_sha256(key)
    output.begin(attempt)
    return AttemptStart(t0, env, script_sha)


def spawn_failed(spec: JobSpec, attempt: int, ctx: AttemptContext, t0: float, error: str) -> AttemptResult:
    """An attempt that never ran (no script, no executable, refused by the cluster): `job.exited`
    with the reason, redacted like everything recorded."""
    if ctx.redact is not None:
        error = ctx.redact(error.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")
    result = AttemptResult(
        outcome=Outcome.SPAWN_FAILED, failure="spawn_failed", duration_s=round(time.monotonic() - t0, 6), error=error
    )
    emit_exited(spec, attempt, ctx, result)
    return result
