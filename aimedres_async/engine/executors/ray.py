"""The Ray executor: one attempt = one Ray job, through the Ray Jobs API.

Same interface as the local executor (`run_attempt`), so everything above it is unchanged: the same
events, per-job JSONL (output streamed with `tail_job_logs` through the same Framer), retries,
backoff and timeouts (the supervisor's; Ray does not retry jobs), summary and exit codes. A stop
or timeout calls `stop_job`. The job's end is taken from its Ray status, never from the end of the
log stream (which can end early, e.g. on preemption); whatever the stream missed is fetched after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import time
from collections.abc import Mapping
from typing import Any

import anyio

from aimedres_async.engine.attempt import (
    AttemptContext,
    AttemptResult,
    JobOutput,
    deliver,
    deliver_end,
    emit_exited,
    job_env,
    spawn_failed,
)
from aimedres_async.plan.config import RayConfig
from aimedres_async.plan.jobs import JobSpec, Outcome
from aimedres_async.plan.sweeps import file_stem
from aimedres_async.records.framing import ATTEMPT_MARK, Framer

POLL = 0.5
_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class RayUnavailable(Exception):
    """Ray is not installed, or the cluster cannot be reached: a one-line reason."""


def client(cfg: RayConfig) -> Any:
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise RayUnavailable("executor = \"ray\" needs Ray: pip install 'aimedres-async[ray]'") from None
    logging.getLogger("ray").setLevel(logging.WARNING)  # its INFO lines would interleave with ours
    try:
        return JobSubmissionClient(cfg.address)
    except Exception as e:  # ConnectionError, RuntimeError, ...: Ray wraps several
        raise RayUnavailable(f"cannot reach the Ray cluster at {cfg.address}: {e}") from None


class RayExecutor:
    def __init__(self, cfg: RayConfig, base_dir: str) -> None:
        self.cfg = cfg
        self.base_dir = base_dir
        self.client = client(cfg)

    def runtime_env(self, env: Mapping[str, str]) -> dict[str, Any]:
        runtime: dict[str, Any] = dict(self.cfg.runtime_env)
        working_dir = self.cfg.working_dir
        if working_dir:
            runtime.setdefault(
                "working_dir",
                working_dir
                if working_dir.startswith(("/", "s3:", "gs:", "http"))
                else f"{self.base_dir}/{working_dir}",
            )
            runtime.setdefault("excludes", list(self.cfg.excludes))
        runtime["env_vars"] = {**runtime.get("env_vars", {}), **env}
        return runtime

    async def run_attempt(
        self,
        spec: JobSpec,
        attempt: int,
        ctx: AttemptContext,
        output: JobOutput,
        extra_env: Mapping[str, str] | None = None,
    ) -> AttemptResult:
        t0 = time.monotonic()
        output.tail.append((ATTEMPT_MARK, b"%d" % attempt))  # JUnit numbers the attempts' lines
        env = {k: v for k, v in job_env(spec, ctx, attempt).items() if k in spec.env or k.startswith("AIMEDRES_")}
        env.update(extra_env or {})
        argv = list(spec.argv)
        if spec.script is not None and spec.script.suffix == ".py" and self.cfg.python:
            argv[0] = self.cfg.python
        r = spec.resources
        submission_id = f"{ctx.run_id}-{_submission_name(spec.id)}-{attempt}".lower()
        entrypoint = shlex.join(argv)  # Ray takes a shell string; every argument is quoted
        try:
            await asyncio.to_thread(
                self.client.submit_job,
                entrypoint=entrypoint,
                submission_id=submission_id,
                runtime_env=self.runtime_env(env),
                entrypoint_num_cpus=r.cpus or None,
                entrypoint_num_gpus=r.gpus or None,
                entrypoint_memory=r.memory or None,
            )
        except Exception as e:
            return spawn_failed(spec, attempt, ctx, t0, f"Ray refused the job: {e}")
        ctx.emit(
            "job.started",
            job=spec.id,
            attempt=attempt,
            pid=None,
            argv=ctx.redact_argv(tuple(argv)),
            cwd=self.base_dir,
            gpus=env.get("CUDA_VISIBLE_DEVICES"),
            ray_submission_id=submission_id,
            ray_address=self.cfg.address,
            **({"params": spec.params} if spec.params is not None else {}),
        )
        framer = Framer(attempt, "stdout", ctx.max_line_bytes, output.tail, ctx.redact)
        marker = f"Running entrypoint for job {submission_id}: {entrypoint}\n".encode()
        stream = _Stream(framer, spec.id, ctx, marker)
        reason = await self._follow_and_wait(submission_id, spec, ctx, t0, stream)
        await self._read_rest(submission_id, stream)
        deliver_end(ctx, spec.id, framer, output)
        info = await asyncio.to_thread(self.client.get_job_info, submission_id)
        result = _result(info, reason, t0)
        emit_exited(spec, attempt, ctx, result)
        return result

    async def _follow_and_wait(
        self, sid: str, spec: JobSpec, ctx: AttemptContext, t0: float, stream: _Stream
    ) -> str | None:
        """`_wait`, with the job's log streamed beside it in one task group. On any failure or
        cancellation the job is stopped (stop_job) and the error raised as it is."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(stream.follow, self.client, sid)
                reason = await self._wait(sid, spec, ctx, t0)
                tg.cancel_scope.cancel()  # the stream; _read_rest() fetches what it missed
        except BaseException as e:
            with contextlib.suppress(Exception):
                self.client.stop_job(sid)  # synchronous: nothing can interrupt it
            if isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
                raise e.exceptions[0] from None  # one task's error, not wrapped in the group's
            raise
        return reason

    async def _read_rest(self, sid: str, stream: _Stream) -> None:
        """The log stream may have ended early or been cut off: fetch whatever it did not deliver."""
        with contextlib.suppress(Exception):
            logs = await asyncio.to_thread(self.client.get_job_logs, sid)
            stream.feed_rest(logs.encode())
        held = stream.head
        if held:  # the log ended before the preamble did: give back what was held
            stream.head = None
            stream._feed(held)

    async def _wait(self, sid: str, spec: JobSpec, ctx: AttemptContext, t0: float) -> str | None:
        """Until Ray says the job is over; stop it on timeout or a stop. None, "timeout" or "cancelled"."""
        deadline = t0 + spec.timeout if spec.timeout else None
        reason = None
        stop_sent = 0.0
        while True:
            status = str(await asyncio.to_thread(self.client.get_job_status, sid))
            status = status.rsplit(".", 1)[-1]
            if status in _TERMINAL:
                return reason
            if reason is None and (ctx.stop.requested.is_set() or (deadline and time.monotonic() >= deadline)):
                reason = "cancelled" if ctx.stop.requested.is_set() else "timeout"
                await asyncio.to_thread(self.client.stop_job, sid)
                stop_sent = time.monotonic()
            elif reason is not None and time.monotonic() - stop_sent > ctx.grace_period + 30:
                return reason  # Ray did not confirm the stop; it has been asked, we move on
            with anyio.move_on_after(POLL):
                await ctx.stop.requested.wait()


def _result(info: Any, reason: str | None, t0: float) -> AttemptResult:
    """The attempt's result from Ray's last word on the job and what we did to it (`reason`)."""
    status = str(getattr(info.status, "value", info.status))
    code = getattr(info, "driver_exit_code", None)
    if reason is None:
        outcome = Outcome.SUCCEEDED if status == "SUCCEEDED" else Outcome.FAILED
        failure = None if outcome is Outcome.SUCCEEDED else "exit_code"
    else:
        outcome = Outcome.TIMED_OUT if reason == "timeout" else Outcome.CANCELLED
        failure = "timeout" if reason == "timeout" else None
    result = AttemptResult(
        outcome=outcome,
        exit_code=code if isinstance(code, int) else None,
        failure=failure,
        duration_s=round(time.monotonic() - t0, 6),
        error=None if outcome in (Outcome.SUCCEEDED, Outcome.CANCELLED) else f"Ray job {status}: {info.message}",
    )
    return result


class _Stream:
    """Feeds Ray's log text into the Framer, minus the preamble Ray writes itself; counts bytes."""

    def __init__(self, framer: Framer, job: str, ctx: AttemptContext, preamble_end: bytes) -> None:
        self.framer = framer
        self.job = job
        self.ctx = ctx
        self.seen = 0
        # Ray starts a job's log with INFO lines and "Running entrypoint for job <id>: <entrypoint>";
        # the entrypoint may span lines, so its exact text is looked for, not a line pattern.
        self.preamble_end = preamble_end
        self.head: bytes | None = b""  # bytes held until the preamble has passed; None after

    async def follow(self, client: Any, sid: str) -> None:
        """Feed the log as Ray streams it. A stream that breaks off (the connection, preemption) is
        no error of the attempt: `feed_rest` gets what it missed once the job is over."""
        with contextlib.suppress(Exception):
            async for text in client.tail_job_logs(sid):
                data = text.encode()
                self.seen += len(data)
                self._feed(data)

    def feed_rest(self, full: bytes) -> None:
        if len(full) > self.seen:
            rest = full[self.seen :]
            self.seen = len(full)
            self._feed(rest)

    def _feed(self, data: bytes) -> None:
        if self.head is not None:
            self.head += data
            at = self.head.find(self.preamble_end)
            if at >= 0:
                data, self.head = self.head[at + len(self.preamble_end) :], None
            elif len(self.head) > len(self.preamble_end) + 65536:
                data, self.head = self.head, None  # not Ray's usual preamble: keep everything
            else:
                return
        deliver(self.ctx, self.job, self.framer, data)


def _submission_name(job: str) -> str:
    """A job's part of its Ray submission id, which is lowercased: the file-name form of a swept
    id, with a hash of the id where lowercasing would merge two (a value "A" and a value "a")."""
    stem = file_stem(job)
    if stem == stem.lower():
        return stem
    import hashlib

    return f"{stem}-{hashlib.sha256(job.encode()).hexdigest()[:8]}"
