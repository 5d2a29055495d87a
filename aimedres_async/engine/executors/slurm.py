"""The Slurm executor: one attempt = one Slurm batch job, submitted with `sbatch --parsable`.

Same interface as the local executor (`run_attempt`), so everything above it is unchanged: the same
events, per-job JSONL (the job's stdout and stderr files are followed as they grow, through the
same Framer), retries, backoff and timeouts (the supervisor's; jobs go in with --no-requeue),
summary and exit codes. The end of an attempt comes from Slurm's job state (squeue, then
`scontrol show job`, then the jobcomp file), never from the output files. A stop or timeout is
`scancel --signal=<stop_signal>`, then `scancel` after the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from aimedres_async.engine.attempt import (
    READ_SIZE,
    AttemptContext,
    AttemptResult,
    AttemptStart,
    JobOutput,
    begin_attempt,
    deliver,
    deliver_end,
    emit_exited,
    emit_started,
    output_verdict,
    spawn_failed,
)
from aimedres_async.engine.executors import slurm_ledger
from aimedres_async.engine.executors.slurm_cluster import (
    SCANCEL_TIMEOUT,
    MiB,
    SlurmUnavailable,
    Squeue,
    arun_cmd,
    cancel_by_name,
    check,
    last_line,
    max_rss,
    oneliner_fields,
    run_cmd,
    sbatch_argv,
    submit,
    write_batch,
)
from aimedres_async.engine.failures import classify
from aimedres_async.plan.config import Config, SlurmConfig
from aimedres_async.plan.jobs import JobSpec, Outcome
from aimedres_async.plan.sweeps import file_stem
from aimedres_async.plan.units import format_duration
from aimedres_async.records.framing import Framer

KILL_CONFIRM = 120.0  # after the last scancel, how long Slurm may take to report the job ended
FOLLOW_INTERVAL = 0.5  # at most this long between two reads of the output files
RSS_INTERVAL = 5.0  # how often sstat is asked for a running job's peak RSS
QUEUED = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})
TERMINAL = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "TIMEOUT",
        "CANCELLED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "PREEMPTED",
        "SPECIAL_EXIT",
        "REVOKED",
    }
)
# slurmstepd's own words when it kills a step for its memory (sampling enforcement, or cgroups)
_MEMORY_KILL = re.compile(rb"slurmstepd[^:\n]*: error: (?:[^\n]*exceeded memory limit|Detected \d+ oom[-_ ]kill)", re.I)


# ---------------------------------------------------------------- the executor


@dataclass
class _End:
    """How the wait for a job ended: Slurm's last state and what we did to it."""

    state: str  # a TERMINAL state, or "UNKNOWN" when Slurm no longer knows the job
    reason: str | None  # ours: None, "timeout", "stalled", "cancelled", "max_pending"
    pending_reason: str = ""
    submitted: float = 0.0
    running_since: float | None = None
    ended: float = 0.0
    info: dict[str, str] = field(default_factory=dict)  # scontrol show job (or the jobcomp record)
    peak_rss: int = 0  # the largest MaxRSS sstat reported for the batch step


class SlurmExecutor:
    def __init__(self, cfg: SlurmConfig, base_dir: str, logs_dir: str) -> None:
        check(cfg)
        self.cfg = cfg
        self.base_dir = Path(base_dir)
        self.logs_dir = Path(logs_dir)
        self.queue = Squeue(cfg.poll_interval)
        self._jobcomp: Path | bool | None = False  # False: not looked up yet

    def reconfigure(self, cfg: Config) -> None:
        """A reload's [slurm] table (the daemon's SIGHUP, in a worker thread), checked as at start;
        SlurmUnavailable leaves the old one. Running attempts keep their jobs and files; the
        poll interval and max_pending apply to them from now on."""
        if cfg.supervisor.executor != "slurm":
            raise SlurmUnavailable(f'executor = "{cfg.supervisor.executor}" takes effect when the daemon restarts')
        if cfg.slurm == self.cfg:
            return
        check(cfg.slurm)
        self.cfg = cfg.slurm
        self.queue.interval = cfg.slurm.poll_interval

    def folder(self, run_id: str) -> Path:
        """Where an attempt's batch script and output files go (every node must reach it)."""
        if self.cfg.output_dir:
            return self.base_dir / self.cfg.output_dir / run_id
        return self.logs_dir / run_id / "slurm"

    async def run_attempt(
        self,
        spec: JobSpec,
        attempt: int,
        ctx: AttemptContext,
        output: JobOutput,
        extra_env: Mapping[str, str] | None = None,
    ) -> AttemptResult:
        # The environment of a local attempt, handed to sbatch, which exports it (--export=ALL);
        # CUDA_VISIBLE_DEVICES is Slurm's to set from the GPUs it allocates.
        start = begin_attempt(spec, attempt, ctx, output, extra_env)
        if isinstance(start, AttemptResult):
            return start
        t0 = start.t0
        start.env.pop("CUDA_VISIBLE_DEVICES", None)
        folder = self.folder(ctx.run_id)
        stem = f"{file_stem(spec.id)}.{attempt}"  # a swept id's brackets and values: its file-name form
        name = f"{file_stem(spec.id)}.{attempt}.{ctx.run_id}"
        try:
            await asyncio.to_thread(write_batch, folder / (stem + ".sh"), name, spec)
        except OSError as e:
            why = f"cannot write the batch script in {folder}: {e.strerror or e}"
            return spawn_failed(spec, attempt, ctx, t0, why)
        entry = None
        if ctx.ledger is not None:  # the daemon's: recorded before sbatch, so no kill -9 can lose it
            try:
                entry = await asyncio.to_thread(slurm_ledger.record, ctx.ledger, spec.id, attempt, ctx.run_id, name)
            except OSError as e:
                why = f"cannot record the Slurm job in {ctx.ledger}: {e.strerror or e}"
                return spawn_failed(spec, attempt, ctx, t0, why)
        try:
            return await self._submitted(spec, attempt, ctx, output, start, folder, entry)
        finally:
            if entry is not None:  # the job is over or was scancelled (synchronous: a cancelled task)
                slurm_ledger.forget(entry)

    async def _submitted(
        self,
        spec: JobSpec,
        attempt: int,
        ctx: AttemptContext,
        output: JobOutput,
        start: AttemptStart,
        folder: Path,
        entry: Path | None,
    ) -> AttemptResult:
        """sbatch, then follow the job until Slurm says it is over."""
        t0, env = start.t0, start.env
        stem = f"{spec.id}.{attempt}"
        name = f"{spec.id}.{attempt}.{ctx.run_id}"
        r = await submit(sbatch_argv(self.cfg, spec, name, folder, stem, ctx.grace_period), env)
        job_id = r.stdout.strip().split(";")[0]
        if r.returncode == 124:  # sbatch timed out: the controller may have taken the job all the same
            await cancel_by_name(name)
        if r.returncode != 0 or not job_id.isdigit():
            return spawn_failed(spec, attempt, ctx, t0, f"sbatch refused the job: {last_line(r.stderr)}")
        if entry is not None and ctx.ledger is not None:
            with contextlib.suppress(OSError):  # the record by name still finds the job
                await asyncio.to_thread(slurm_ledger.record, ctx.ledger, spec.id, attempt, ctx.run_id, name, job_id)
        submitted = time.monotonic()
        emit_started(
            spec,
            attempt,
            ctx,
            start,
            None,
            slurm_job_id=job_id,
            slurm_job_name=name,
            slurm_files=str(folder / (stem + ".{sh,out,err}")),
        )
        framers = {s: output.framer(attempt, s, ctx) for s in ("stdout", "stderr")}
        follower = _Follower(
            {"stdout": folder / (stem + ".out"), "stderr": folder / (stem + ".err")}, framers, ctx, spec.id
        )
        end = await self._follow_and_wait(job_id, spec, ctx, submitted, follower)
        await follower.read_rest()  # whatever the follower had not read yet
        for framer in framers.values():
            deliver_end(ctx, spec.id, framer, output)
        result, extra = self._result(spec, end, output)
        result = output_verdict(result, output)
        emit_exited(spec, attempt, ctx, result, slurm_job_id=job_id, **extra)
        return result

    async def _follow_and_wait(
        self, job_id: str, spec: JobSpec, ctx: AttemptContext, submitted: float, follower: _Follower
    ) -> _End:
        """`_wait`, with the follower reading the output files beside it in one task group. On any
        failure or cancellation the job is cancelled (scancel) and the error raised as it is."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(follower.run, min(FOLLOW_INTERVAL, self.cfg.poll_interval))
                end = await self._wait(job_id, spec, ctx, submitted, follower)
                tg.cancel_scope.cancel()  # the follower; read_rest() reads what it had not yet
        except BaseException as e:
            run_cmd(["scancel", job_id], timeout=SCANCEL_TIMEOUT)  # synchronous: nothing can interrupt it
            if isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
                raise e.exceptions[0] from None  # one task's error, not wrapped in the group's
            raise
        finally:
            self.queue.forget(job_id)
        return end

    async def _wait(
        self, job_id: str, spec: JobSpec, ctx: AttemptContext, submitted: float, follower: _Follower
    ) -> _End:
        """Until Slurm says the job is over; stop it on a stop, timeout, silence or a long queue."""
        end = _End(state="UNKNOWN", reason=None, submitted=submitted)
        stop_sent: float | None = None
        killed: float | None = None
        missing = 0
        next_rss = 0.0
        while True:
            row = await self.queue.state(job_id)
            now = time.monotonic()
            state = None
            if row is None:
                missing += 1  # twice, so that a job submitted just before the poll is not missed
                if missing >= 2:
                    break
            elif row is not Squeue.NO_ANSWER:
                missing = 0
                state, why = row
                if state in TERMINAL:
                    end.state = state
                    break
                if state in QUEUED:
                    end.pending_reason = why
                else:
                    if end.running_since is None:
                        end.running_since = now
                        follower.last_output = now  # the stall watchdog counts from the start of the run
                    if now >= next_rss:
                        next_rss = now + RSS_INTERVAL
                        end.peak_rss = max(end.peak_rss, await max_rss(job_id))
            if end.reason is None:
                end.reason = self._why_stop(spec, ctx, end, follower, now)
                if end.reason is not None:
                    if end.running_since is None or ctx.stop.forced.is_set() or ctx.stop_signal == signal.SIGKILL:
                        await self._scancel(job_id)  # a queued job has nothing to stop gracefully
                        killed = now
                    else:
                        await self._scancel(job_id, ctx.stop_signal)
                        stop_sent = now
            elif killed is None and (
                ctx.stop.forced.is_set() or (stop_sent is not None and now - stop_sent >= ctx.grace_period)
            ):
                await self._scancel(job_id)
                killed = now
            elif killed is not None and now - killed > KILL_CONFIRM:
                break  # Slurm did not confirm the end; it has been asked, we move on
            await self._pause(ctx, spec, end, stop_sent, now)
        end.ended = time.monotonic()
        end.info = await self._final_info(job_id)
        if end.info.get("JobState") in TERMINAL:
            end.state = end.info["JobState"]
        return end

    def _why_stop(self, spec: JobSpec, ctx: AttemptContext, end: _End, follower: _Follower, now: float) -> str | None:
        if ctx.stop.requested.is_set():
            return "cancelled"
        if end.running_since is None:
            if self.cfg.max_pending and now - end.submitted >= self.cfg.max_pending:
                return "max_pending"
            return None
        if spec.timeout and now - end.running_since >= spec.timeout:
            return "timeout"
        if spec.stall_timeout and now - follower.last_output >= spec.stall_timeout:
            return "stalled"
        return None

    async def _pause(self, ctx: AttemptContext, spec: JobSpec, end: _End, stop_sent: float | None, now: float) -> None:
        """Until the next poll, or sooner: a deadline, a stop, or a forced stop."""
        wake = now + self.cfg.poll_interval
        if end.reason is None and end.running_since is not None and spec.timeout:
            wake = min(wake, end.running_since + spec.timeout)
        if stop_sent is not None:
            wake = min(wake, stop_sent + ctx.grace_period)
        event = ctx.stop.forced if end.reason is not None else ctx.stop.requested
        if event.is_set():
            event = asyncio.Event()  # already acted on: sleep until the next poll
        with anyio.move_on_after(max(0.0, wake - now)):
            await event.wait()

    async def _scancel(self, job_id: str, signum: int | None = None) -> None:
        argv = ["scancel", job_id]
        if signum is not None:  # --full: the batch step too, which is the job's program (see write_batch)
            argv[1:1] = ["--full", f"--signal={signal.Signals(signum).name}"]
        await arun_cmd(argv, timeout=SCANCEL_TIMEOUT)

    async def _final_info(self, job_id: str) -> dict[str, str]:
        """scontrol's record of the job; the jobcomp file's once the controller has let it go."""
        r = await arun_cmd(["scontrol", "show", "job", "--oneliner", job_id])
        if r.returncode == 0 and "JobId=" in r.stdout:
            return oneliner_fields(r.stdout.splitlines()[0])
        return await asyncio.to_thread(self._jobcomp_record, job_id)

    def _jobcomp_record(self, job_id: str) -> dict[str, str]:
        if self._jobcomp is False:
            self._jobcomp = None
            r = run_cmd(["scontrol", "show", "config"])
            conf = dict(re.findall(r"^(\w+)\s*=\s*(.*?)\s*$", r.stdout, re.M))
            if conf.get("JobCompType", "").endswith("filetxt") and conf.get("JobCompLoc"):
                self._jobcomp = Path(conf["JobCompLoc"])
        if not isinstance(self._jobcomp, Path):
            return {}
        try:
            with open(self._jobcomp, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 4 * MiB))
                text = f.read().decode("utf-8", "backslashreplace")
        except OSError:
            return {}
        found = [line for line in text.splitlines() if line.startswith(f"JobId={job_id} ")]
        return oneliner_fields(found[-1]) if found else {}

    def _result(self, spec: JobSpec, end: _End, output: JobOutput) -> tuple[AttemptResult, dict[str, Any]]:
        info = end.info
        code, sig = _exit_code(info.get("ExitCode", ""))
        running = end.running_since
        queued = (running if running is not None else end.ended) - end.submitted
        duration = end.ended - running if running is not None else 0.0
        stamps = [_timestamp(info.get(k, "")) for k in ("SubmitTime", "StartTime", "EndTime")]
        if running is None and None not in stamps:  # over between two polls: Slurm's clock (whole seconds)
            submit, start, stop = stamps
            queued, duration = start - submit, stop - start  # type: ignore[operator]
        extra: dict[str, Any] = {"queued_s": round(max(0.0, queued), 3), "slurm_state": end.state}
        if info.get("NodeList") and info["NodeList"] != "(null)":
            extra["node"] = info["NodeList"]
        duration = round(max(0.0, duration), 6)
        outcome, failure, error = _classify(end, code, sig, spec, output, self.cfg)
        signame = signal.Signals(sig).name if sig in _SIGNUMS else None
        result = AttemptResult(
            outcome=outcome,
            exit_code=code if sig == 0 and code is not None else None,
            signal=signame,
            failure=failure,
            duration_s=duration,
            error=error,
            peak_rss_bytes=end.peak_rss,
        )
        return result, extra


_SIGNUMS = {s.value for s in signal.Signals}


def _timestamp(text: str) -> float | None:
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None  # "Unknown", "None", ""


def _exit_code(text: str) -> tuple[int | None, int]:
    """Slurm's ExitCode=<exit status>:<signal>."""
    m = re.fullmatch(r"(\d+):(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else (None, 0)


def _classify(
    end: _End, code: int | None, sig: int, spec: JobSpec, output: JobOutput, cfg: SlurmConfig
) -> tuple[Outcome, str | None, str | None]:
    """(outcome, failure, error) from what we did to the job and the state Slurm gives."""
    state = end.state
    if end.reason == "timeout":
        return Outcome.TIMED_OUT, "timeout", None
    if end.reason == "stalled":
        return Outcome.STALLED, "stalled", None
    if end.reason == "cancelled":
        return Outcome.CANCELLED, None, None
    if end.reason == "max_pending":
        limit = format_duration(cfg.max_pending)
        why = f"pending for longer than [slurm] max_pending ({limit}); Slurm's reason: {end.pending_reason or 'none'}"
        return Outcome.FAILED, "max_pending", why
    if state == "COMPLETED":
        return Outcome.SUCCEEDED, None, None
    if state in ("TIMEOUT", "DEADLINE"):
        return Outcome.TIMED_OUT, "timeout", f"Slurm ended the job at its time limit ({state})"
    if state == "OUT_OF_MEMORY":
        return Outcome.FAILED, "oom_killed", "Slurm: OUT_OF_MEMORY (the job went over its --mem)"
    if state == "CANCELLED":
        return Outcome.FAILED, "cancelled_externally", "the Slurm job was cancelled outside aimedres-async (scancel)"
    if state in ("NODE_FAIL", "BOOT_FAIL"):
        return Outcome.FAILED, "node_fail", f"Slurm: {state} on {end.info.get('NodeList', 'its node')}"
    if state == "PREEMPTED":
        return Outcome.FAILED, "preempted", "Slurm preempted the job"
    if state == "UNKNOWN":
        return Outcome.FAILED, "slurm_state", "Slurm no longer knows the job (gone from squeue, scontrol and jobcomp)"
    recent = b"".join(block for stream, block in list(output.tail)[-8:] if stream == "stderr")
    if sig == signal.SIGKILL and _MEMORY_KILL.search(recent):
        return Outcome.FAILED, "oom_killed", "Slurm killed the job for going over its --mem"
    local_code = -sig if sig else (code or 0)
    closer = classify(local_code, end.peak_rss, spec.resources.memory, None, None, output)
    failure = closer or ("signal" if sig else "exit_code")
    error = None if state == "FAILED" else f"Slurm: {state}"
    return Outcome.FAILED, failure, error


class _Follower:
    """Reads the job's output files as they grow and feeds them to the framers."""

    def __init__(self, paths: dict[str, Path], framers: dict[str, Framer], ctx: AttemptContext, job: str) -> None:
        self.paths = paths
        self.framers = framers
        self.ctx = ctx
        self.job = job
        self.offsets = dict.fromkeys(paths, 0)
        self.last_output = time.monotonic()

    async def run(self, interval: float) -> None:
        """Read the files every `interval` until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self._read_once()

    async def read_rest(self) -> None:
        while await self._read_once():
            pass

    async def _read_once(self) -> bool:
        chunks = await asyncio.to_thread(self._read_new)
        for stream, data in chunks:
            self.last_output = time.monotonic()
            deliver(self.ctx, self.job, self.framers[stream], data)
        return bool(chunks)

    def _read_new(self, limit: int = 16 * READ_SIZE) -> list[tuple[str, bytes]]:
        """New bytes of each file (at most `limit` per file per call: memory stays bounded)."""
        out = []
        for stream, path in self.paths.items():
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets[stream])
                    data = f.read(limit)
            except OSError:
                continue  # not created yet (the job is pending), or not visible on this node yet
            if data:
                self.offsets[stream] += len(data)
                out.append((stream, data))
        return out
