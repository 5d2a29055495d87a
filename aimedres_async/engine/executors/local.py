"""The local executor: one attempt of one job as a process on this machine.

The job is spawned through asyncio's subprocess API (`loop.subprocess_exec`) with `AttemptProtocol`,
our own `asyncio.SubprocessProtocol`, in a new session (its pid is its process group), stdin from
/dev/null and both output streams on pipes. The protocol is what makes the API safe here:

- `pipe_data_received` hands each chunk the pipe transport read straight to the stream's `Framer`
  (`attempt.deliver`): no StreamReader, no line splitting in asyncio;
- `process_exited` fires when the main process has been reaped, whoever still holds the pipes.
  `Process.wait()` is never used: it returns only once every pipe has closed as well
  (cpython#119710), so a grandchild that keeps stdout open would hang it;
- after the exit (and the group's end), what is left in the pipes is read for at most
  DRAIN_TIMEOUT, then `transport.close()` closes our ends, so a pipe an escaped process holds
  costs nothing further.

Whatever ends an attempt (exit, timeout, a stop, a supervisor bug, cancellation), its process
group is signalled, killed and reaped before the attempt returns or the exception propagates.
"""

from __future__ import annotations

import asyncio
import math
import signal
import subprocess
import time
from collections.abc import Mapping
from typing import Any, cast

import anyio

from aimedres_async.engine.attempt import (
    AttemptContext,
    AttemptResult,
    JobOutput,
    Live,
    begin_attempt,
    deliver,
    deliver_end,
    emit_exited,
    emit_started,
    output_verdict,
    spawn_failed,
)
from aimedres_async.engine.failures import cgroup_oom_kills, classify
from aimedres_async.plan.jobs import JobSpec, Outcome
from aimedres_async.records.framing import Framer
from aimedres_async.system import children, deathwatch_link, procs

DRAIN_TIMEOUT = 2.0  # after the group is gone, how long a pipe held by an escaped process may stay open
# A chunk is framed a slice at a time: a slice starts at FEED_SLICE_MIN bytes and doubles while
# slices take under a quarter of FEED_BUDGET (up to FEED_SLICE_MAX), halves when one takes more
# than half, and holds at most FEED_RECORDS line ends (a flood of bare \r is a record per byte,
# about a microsecond each); what is left after FEED_BUDGET waits for the loop's next turn.
FEED_SLICE_MIN = 8 * 1024
FEED_SLICE_MAX = 256 * 1024
FEED_RECORDS = 4096
FEED_BUDGET = 0.008
LEFTOVER_KILL_TIMEOUT = 2.0
_SIGNUMS = {s.value for s in signal.Signals}


class AttemptProtocol(asyncio.SubprocessProtocol):
    """One attempt's process as asyncio reports it: output chunks, pipe ends, the exit.

    `exited` resolves with the return code (negative for a signal) as soon as the main process
    is reaped; `eof` holds one future per pipe, resolved when that pipe reaches end of file (or
    is closed by us).
    """

    def __init__(self, job: str, ctx: AttemptContext, framers: dict[int, Framer], live: Live) -> None:
        loop = asyncio.get_running_loop()
        self.job = job
        self.ctx = ctx
        self.framers = framers
        self.live = live
        self.transport: asyncio.SubprocessTransport | None = None
        self.exited: asyncio.Future[int] = loop.create_future()
        self.eof: dict[int, asyncio.Future[None]] = {fd: loop.create_future() for fd in framers}
        self._small = set(framers)  # pipes still at the kernel's default size
        self._behind: dict[int, bytearray] = {}  # output not framed yet, per pipe (its reading is paused)
        self._slice = dict.fromkeys(framers, FEED_SLICE_MIN)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.SubprocessTransport, transport)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd in self._small and len(data) >= procs.DEFAULT_PIPE_SIZE:  # it filled a default pipe: enlarge it, once
            self._small.discard(fd)
            self._grow(fd)
        self.live.last_output = time.monotonic()
        behind = self._behind.get(fd)
        if behind is not None:  # its reading could not be paused: keep the order
            behind += data
            return
        self._feed(fd, data)

    def _feed(self, fd: int, data: bytes) -> None:
        """Frame a chunk a slice at a time. A slow chunk (thousands of tiny records, bytes that
        need escaping) that is not done within FEED_BUDGET keeps the rest for the loop's next
        turn, with the pipe's reading paused meanwhile (so order is kept): no step of the loop
        frames output for long, whatever a job prints."""
        began = now = time.perf_counter()
        start = 0
        while start < len(data):
            size = self._slice[fd]
            piece = data if start == 0 and size >= len(data) else data[start : start + size]
            ends = piece.count(b"\n") + piece.count(b"\r")
            if ends > FEED_RECORDS:
                size = max(1024, size * FEED_RECORDS // ends)
                piece = data[start : start + size]
            deliver(self.ctx, self.job, self.framers[fd], piece)
            start += size
            t = time.perf_counter()
            took, now = t - now, t
            if took > FEED_BUDGET / 2:
                self._slice[fd] = max(FEED_SLICE_MIN, size // 2)
            elif took < FEED_BUDGET / 4 and start <= len(data):
                self._slice[fd] = min(FEED_SLICE_MAX, size * 2)
            if start < len(data) and now - began > FEED_BUDGET:
                self._behind[fd] = bytearray(data[start:])
                self._pipe_reading(fd, False)
                asyncio.get_running_loop().call_soon(self._catch_up, fd)
                return

    def _catch_up(self, fd: int) -> None:
        rest = self._behind.pop(fd, None)
        if rest is None:
            return
        self._feed(fd, bytes(rest))
        if fd not in self._behind:
            self._pipe_reading(fd, True)

    def finish_feeding(self) -> None:
        """Frame whatever is still behind, at once (the attempt is ending)."""
        for fd in list(self._behind):
            deliver(self.ctx, self.job, self.framers[fd], bytes(self._behind.pop(fd)))

    def _pipe_reading(self, fd: int, on: bool) -> None:
        pipe = self.transport.get_pipe_transport(fd) if self.transport is not None else None
        if isinstance(pipe, asyncio.ReadTransport) and not pipe.is_closing():
            if on:
                pipe.resume_reading()
            else:
                pipe.pause_reading()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        eof = self.eof.get(fd)
        if eof is not None and not eof.done():
            eof.set_result(None)

    def process_exited(self) -> None:
        assert self.transport is not None
        code = self.transport.get_returncode()
        pid = self.transport.get_pid()
        children.LEADERS.discard(pid)
        max_rss = children.EXIT_RSS.pop(pid, 0)
        # ru_maxrss counts from our own memory (inherited through vfork/exec): only trust it above that
        if children.exceeds_own_peak(max_rss):
            self.live.peak_rss = max(self.live.peak_rss, max_rss)
        if not self.exited.done():
            self.exited.set_result(code if code is not None else 255)

    def _grow(self, fd: int) -> None:
        pipe = self.transport.get_pipe_transport(fd) if self.transport is not None else None
        raw = pipe.get_extra_info("pipe") if pipe is not None else None
        if raw is None or pipe is None or pipe.is_closing():
            return
        try:
            procs.grow_pipe(raw.fileno())
        except (ValueError, OSError):  # the transport closed the pipe in this same callback (its EOF)
            return


async def run_attempt(
    spec: JobSpec, attempt: int, ctx: AttemptContext, output: JobOutput, extra_env: Mapping[str, str] | None = None
) -> AttemptResult:
    """Run one attempt to its end and return how it ended. Never leaves a process behind."""
    # The script is hashed before the spawn (what is about to run), so that job.started, and the
    # daemon's record of the pid that crash recovery relies on, follow the spawn at once.
    start = begin_attempt(spec, attempt, ctx, output, extra_env)
    if isinstance(start, AttemptResult):
        return start
    t0, env = start.t0, start.env
    oom_kills = ctx.oom_kills  # as last read, off the loop (the sampler, once a tick)
    framers = {fd: output.framer(attempt, name, ctx) for fd, name in ((1, "stdout"), (2, "stderr"))}
    # Listed as running before the spawn: the escaped-process sweep spares the attempt's processes
    # from the moment they exist (pgid 0 names no group until the pid is known).
    live = Live(pgid=0, started=t0, last_output=t0, attempt=attempt)
    ctx.live[spec.id] = live
    try:
        proto, pid = await _spawn(spec, ctx, env, framers, live)
    except OSError as e:
        ctx.live.pop(spec.id, None)
        return spawn_failed(spec, attempt, ctx, t0, f"cannot execute {spec.argv[0]}: {e.strerror or e}")
    except (ValueError, TypeError) as e:  # e.g. a NUL byte in an argument
        ctx.live.pop(spec.id, None)
        return spawn_failed(spec, attempt, ctx, t0, f"cannot execute {spec.argv[0]}: {e}")
    except BaseException:
        ctx.live.pop(spec.id, None)
        raise

    pgid = live.pgid = pid  # start_new_session: the child leads its own group
    emit_started(spec, attempt, ctx, start, pid, gpus=env.get("CUDA_VISIBLE_DEVICES"))
    reason: str | None = None
    matched = _when_matched(output)
    try:
        reason = await _supervise(proto, pgid, spec, ctx, live, matched)
        await _end_group(pgid, ctx, graceful=reason is None and not ctx.stop.requested.is_set())
        await _drain(proto)
    except BaseException:
        await _kill_shielded(proto, pgid)
        raise
    finally:
        assert proto.transport is not None
        proto.transport.close()  # frees the pipes, even one an escaped process still holds
        proto.finish_feeding()
        for fd, framer in framers.items():
            proto.pipe_connection_lost(fd, None)
            deliver_end(ctx, spec.id, framer, output)
        output.scan.on_match = None  # no more lines: the finished job does not keep the future
        ctx.live.pop(spec.id, None)
        deathwatch_link.unwatch_group(pgid)

    code = proto.exited.result()
    oom_now = None
    if reason is None and code == -signal.SIGKILL:  # killed: was it the kernel's OOM killer?
        oom_now = await anyio.to_thread.run_sync(cgroup_oom_kills)
    result = output_verdict(_result(spec, code, reason, live.peak_rss, (oom_kills, oom_now), output, t0), output)
    emit_exited(spec, attempt, ctx, result)
    return result


def _result(
    spec: JobSpec,
    code: int,
    reason: str | None,
    peak: int,
    oom_kills: tuple[int | None, int | None],
    output: JobOutput,
    t0: float,
) -> AttemptResult:
    """How the attempt ended: its exit code or signal, and the failure named as closely as the
    exit, the memory peak, the cgroup's OOM-kill count (before, after) and the output allow."""
    failure = _failure(reason, code)
    if failure is not None and reason is None:
        failure = classify(code, peak, spec.resources.memory, *oom_kills, output) or failure
    return AttemptResult(
        outcome=_outcome(reason, code),
        exit_code=code if code >= 0 else None,
        signal=signal.Signals(-code).name if code < 0 and -code in _SIGNUMS else None,
        failure=failure,
        duration_s=round(time.monotonic() - t0, 6),
        peak_rss_bytes=peak,
    )


async def _spawn(
    spec: JobSpec, ctx: AttemptContext, env: Mapping[str, str], framers: dict[int, Framer], live: Live
) -> tuple[AttemptProtocol, int]:
    """Start argv (never through a shell) under the death watch; raises OSError when it cannot be
    executed. The pid is a LEADER (reaped by asyncio's child watcher, with its status) from the
    moment it exists: `children.spawning()` keeps our own reapers off while its number is not known."""
    deathwatch_link.death_watch(ctx.run_id)
    children.install_child_watcher()
    loop = asyncio.get_running_loop()
    with children.spawning():
        transport, proto = await loop.subprocess_exec(
            lambda: AttemptProtocol(spec.id, ctx, framers, live),
            *spec.argv,
            stdin=procs.devnull(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=spec.cwd,
            env=dict(env),
            start_new_session=True,
        )
        pid = transport.get_pid()
        if not proto.exited.done():  # else already reaped while the spawn was completing
            children.LEADERS.add(pid)
    deathwatch_link.watch_group(pid)
    return proto, pid


def _when_matched(output: JobOutput) -> asyncio.Future[None]:
    """A future done when a `fail_on` pattern matches a line of this attempt (or already has)."""
    matched: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_match(_line: str) -> None:
        if not matched.done():
            matched.set_result(None)

    output.scan.on_match = on_match
    if output.scan.matched is not None:
        matched.set_result(None)
    return matched


async def _supervise(
    proto: AttemptProtocol, pgid: int, spec: JobSpec, ctx: AttemptContext, live: Live, matched: asyncio.Future[None]
) -> str | None:
    """Wait for exit, timeout, silence, a `fail_on` match or stop: None (exited), "timeout",
    "stalled", "output_match" or "cancelled". A match stops the job at once: it is training on
    what it must not."""
    waiters: set[asyncio.Future[Any]] = {proto.exited, ctx.stop.when_requested(), matched}
    deadline = live.started + spec.timeout if spec.timeout else math.inf
    reason = None
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
        await asyncio.wait(
            waiters, timeout=None if wake == math.inf else wake - now, return_when=asyncio.FIRST_COMPLETED
        )
        if proto.exited.done():
            return None
        if matched.done():
            reason = "output_match"
            break
        if ctx.stop.requested.is_set():
            reason = "cancelled"
            break
    await _terminate(proto, pgid, ctx)
    return reason


async def _terminate(proto: AttemptProtocol, pgid: int, ctx: AttemptContext) -> None:
    """stop_signal to the group, up to grace_period for the main process, then SIGKILL."""
    if not ctx.stop.forced.is_set():
        procs.signal_group(pgid, ctx.stop_signal)
        waiters: set[asyncio.Future[Any]] = {proto.exited, ctx.stop.when_forced()}
        await asyncio.wait(waiters, timeout=ctx.grace_period, return_when=asyncio.FIRST_COMPLETED)
    if not proto.exited.done():
        procs.signal_group(pgid, signal.SIGKILL)
        await proto.exited


async def _end_group(pgid: int, ctx: AttemptContext, graceful: bool) -> None:
    """The main process has exited: signal and reap whatever is left in its group."""
    if not procs.group_exists(pgid) or not await anyio.to_thread.run_sync(procs.live_members, pgid):
        return
    if graceful and not ctx.stop.forced.is_set():
        procs.signal_group(pgid, ctx.stop_signal)
        if await procs.wait_group_gone(pgid, ctx.grace_period):
            return
    procs.signal_group(pgid, signal.SIGKILL)
    await procs.wait_group_gone(pgid, LEFTOVER_KILL_TIMEOUT)


async def _kill_shielded(proto: AttemptProtocol, pgid: int) -> None:
    """Last-resort cleanup on cancellation or error: SIGKILL to the group at once, then up to
    LEFTOVER_KILL_TIMEOUT to see it gone, in a shielded cancel scope (the cancellation that
    brought us here cannot cut it short). Whatever is left then is killed again and waited for
    in a worker thread, still shielded; the child watcher reaps the main process."""
    procs.signal_group(pgid, signal.SIGKILL)
    with anyio.CancelScope(shield=True):
        try:
            with anyio.move_on_after(LEFTOVER_KILL_TIMEOUT):
                await asyncio.wait({proto.exited})  # never cancels the future itself
                await procs.wait_group_gone(pgid, LEFTOVER_KILL_TIMEOUT)
        finally:
            if procs.group_exists(pgid):  # what is left: killed and waited for in a worker thread
                await anyio.to_thread.run_sync(procs.kill_group_now, pgid)


async def _drain(proto: AttemptProtocol) -> None:
    """Read what is left in the pipes; give up on a pipe an escaped process keeps open."""
    pending = [eof for eof in proto.eof.values() if not eof.done()]
    if pending:
        await asyncio.wait(pending, timeout=DRAIN_TIMEOUT)


def _outcome(reason: str | None, code: int) -> Outcome:
    if reason == "output_match":
        return Outcome.FAILED
    if reason == "timeout":
        return Outcome.TIMED_OUT
    if reason == "stalled":
        return Outcome.STALLED
    if reason == "cancelled":
        return Outcome.CANCELLED
    return Outcome.SUCCEEDED if code == 0 else Outcome.FAILED


def _failure(reason: str | None, code: int) -> str | None:
    if reason in ("timeout", "stalled", "output_match"):
        return reason
    if reason == "cancelled" or code == 0:
        return None
    return "signal" if code < 0 else "exit_code"
