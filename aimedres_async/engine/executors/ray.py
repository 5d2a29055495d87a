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
import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio

from aimedres_async.engine.attempt import (
    AttemptContext,
    AttemptResult,
    JobOutput,
    deliver,
    deliver_end,
    emit_exited,
    job_env,
    output_verdict,
    spawn_failed,
)
from aimedres_async.plan.config import Config, RayConfig
from aimedres_async.plan.jobs import JobSpec, Outcome
from aimedres_async.plan.sweeps import file_stem
from aimedres_async.records.framing import Framer

T = TypeVar("T")
POLL = 0.5
_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
# A dropped connection to the head (a reset, a restarting dashboard, a proxy's 502) is retried
# after each of these pauses, then it fails the attempt: about 30 s of the cluster being away.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


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


# the classes (by name: the client's libraries are Ray's to import) of a connection that failed
_TRANSIENT = frozenset({"ConnectionError", "Timeout", "ChunkedEncodingError", "ProtocolError"})


def transient(e: BaseException) -> bool:
    """A failure of the connection to the head, not an answer: worth the same call again.

    A reset, refused or timed-out connection (requests' ConnectionError, Timeout and
    ChunkedEncodingError, urllib3's ProtocolError, or the builtin ones), or a 502/503/504: a proxy
    or a dashboard that is restarting. An answer (404, a bad request) is not retried."""
    if isinstance(e, ConnectionError | TimeoutError):
        return True
    if any(c.__name__ in _TRANSIENT for c in type(e).__mro__):
        return True
    return isinstance(e, RuntimeError) and re.search(r"status code 50[234]\b", str(e)) is not None


async def call(
    fn: Callable[..., T],
    *args: Any,
    what: str,
    warn: Callable[[str], None] | None,
    delays: Sequence[float] | None = None,
    **kwargs: Any,
) -> T:
    """One Jobs API call in a worker thread; a dropped connection is retried after each of
    `delays` (RETRY_DELAYS), each retry one warning line; the last failure is raised as it is."""
    delays = RETRY_DELAYS if delays is None else delays
    for tried, delay in enumerate((*delays, None), 1):
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except Exception as e:
            if delay is None or not transient(e):
                raise
            if warn is not None:
                why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
                retry = f"retry {tried}/{len(delays)} in {delay:g}s"
                warn(f"{what}: the connection to the Ray cluster failed ({why}); {retry}")
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # the last delay is None: it returns or raises


class RayExecutor:
    def __init__(self, cfg: RayConfig, base_dir: str) -> None:
        self.cfg = cfg
        self.base_dir = base_dir
        self.client = client(cfg)

    def reconfigure(self, cfg: Config) -> None:
        """A reload's [ray] table (the daemon's SIGHUP, in a worker thread): a new client for it;
        RayUnavailable leaves the old one. Running attempts keep the client they started with."""
        if cfg.supervisor.executor != "ray":
            raise RayUnavailable(f'executor = "{cfg.supervisor.executor}" takes effect when the daemon restarts')
        if cfg.ray == self.cfg:
            return
        self.client, self.cfg = client(cfg.ray), cfg.ray

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
        output.begin(attempt)  # a mark in the tail: JUnit numbers the attempts' lines
        env = {k: v for k, v in job_env(spec, ctx, attempt).items() if k in spec.env or k.startswith("AIMEDRES_")}
        env.update(extra_env or {})
        argv = list(spec.argv)
        if spec.script is not None and spec.script.suffix == ".py" and self.cfg.python:
            argv[0] = self.cfg.python
        r = spec.resources
        submission_id = f"{ctx.run_id}-{_submission_name(spec.id)}-{attempt}".lower()
        entrypoint = shlex.join(argv)  # Ray takes a shell string; every argument is quoted
        ray = _Attempt(self.client, submission_id, ctx.warn, spec.id)  # a reload's new client is for later attempts
        try:
            await ray.call(
                "submit_job",
                entrypoint=entrypoint,
                submission_id=submission_id,
                runtime_env=self.runtime_env(env),
                entrypoint_num_cpus=r.cpus or None,
                entrypoint_num_gpus=r.gpus or None,
                entrypoint_memory=r.memory or None,
            )
        except Exception as e:
            # the id is this attempt's alone: "already exists" is a retry whose first try got through
            if "already exists" not in str(e):
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
        framer = output.framer(attempt, "stdout", ctx)
        marker = f"Running entrypoint for job {submission_id}: {entrypoint}\n".encode()
        stream = _Stream(framer, spec.id, ctx, marker)
        try:
            reason = await self._follow_and_wait(ray, spec, ctx, t0, stream)
            await self._read_rest(ray, stream)
            deliver_end(ctx, spec.id, framer, output)
            info = await ray.call("get_job_info")
        except Exception as e:
            if not transient(e):
                raise
            deliver_end(ctx, spec.id, framer, output)
            result = _lost(e, t0)
        else:
            result = _result(info, reason, t0)
        result = output_verdict(result, output)
        emit_exited(spec, attempt, ctx, result)
        return result

    async def _follow_and_wait(
        self, ray: _Attempt, spec: JobSpec, ctx: AttemptContext, t0: float, stream: _Stream
    ) -> str | None:
        """`_wait`, with the job's log streamed beside it in one task group. On any failure or
        cancellation the job is stopped (stop_job) and the error raised as it is."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(stream.follow, ray.client, ray.sid)
                reason = await self._wait(ray, spec, ctx, t0)
                tg.cancel_scope.cancel()  # the stream; _read_rest() fetches what it missed
        except BaseException as e:
            with contextlib.suppress(Exception):
                ray.client.stop_job(ray.sid)  # synchronous: nothing can interrupt it
            if isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
                raise e.exceptions[0] from None  # one task's error, not wrapped in the group's
            raise
        return reason

    async def _read_rest(self, ray: _Attempt, stream: _Stream) -> None:
        """The log stream may have ended early or been cut off: fetch whatever it did not deliver."""
        with contextlib.suppress(Exception):
            logs = await ray.call("get_job_logs")
            stream.feed_rest(logs.encode())
        held = stream.head
        if held:  # the log ended before the preamble did: give back what was held
            stream.head = None
            stream._feed(held)

    async def _wait(self, ray: _Attempt, spec: JobSpec, ctx: AttemptContext, t0: float) -> str | None:
        """Until Ray says the job is over; stop it on timeout or a stop. None, "timeout" or "cancelled"."""
        deadline = t0 + spec.timeout if spec.timeout else None
        reason = None
        stop_sent = 0.0
        while True:
            status = str(await ray.call("get_job_status"))
            status = status.rsplit(".", 1)[-1]
            if status in _TERMINAL:
                return reason
            if reason is None and (ctx.stop.requested.is_set() or (deadline and time.monotonic() >= deadline)):
                reason = "cancelled" if ctx.stop.requested.is_set() else "timeout"
                await ray.call("stop_job")
                stop_sent = time.monotonic()
            elif reason is not None and time.monotonic() - stop_sent > ctx.grace_period + 30:
                return reason  # Ray did not confirm the stop; it has been asked, we move on
            with anyio.move_on_after(POLL):
                await ctx.stop.requested.wait()


class _Attempt:
    """One attempt's Ray job: the client it was submitted with, and its calls (`call`)."""

    def __init__(self, client: Any, sid: str, warn: Callable[[str], None] | None, job: str) -> None:
        self.client, self.sid, self.warn, self.job = client, sid, warn, job

    async def call(self, method: str, **kwargs: Any) -> Any:
        if method == "submit_job":
            return await call(self.client.submit_job, what=f"{self.job}: {method}", warn=self.warn, **kwargs)
        return await call(getattr(self.client, method), self.sid, what=f"{self.job}: {method}", warn=self.warn)


def _lost(e: Exception, t0: float) -> AttemptResult:
    """The head stayed out of reach through every retry: the attempt fails (and may be retried)."""
    return AttemptResult(
        outcome=Outcome.FAILED,
        failure="ray_unreachable",
        duration_s=round(time.monotonic() - t0, 6),
        error=f"lost the connection to the Ray cluster: {str(e).splitlines()[0][:300] if str(e) else type(e).__name__}",
    )


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
