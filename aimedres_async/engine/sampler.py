"""Once a second, one /proc scan: each running job's memory (peak RSS and `job.sample` records)
and the processes jobs left behind outside their groups, killed once their attempt has ended."""

from __future__ import annotations

from collections.abc import Mapping

import anyio

from aimedres_async.engine.attempt import AttemptContext
from aimedres_async.engine.failures import cgroup_oom_kills
from aimedres_async.engine.jobrun import JobRun
from aimedres_async.records.console import Console
from aimedres_async.records.sinks import RunLog
from aimedres_async.system import deathwatch_link, procs

SAMPLE_INTERVAL = 1.0
ESCAPED_ROUNDS = 50  # kill-and-look-again rounds per tick for chains of escaped processes


def _scan() -> tuple[list[procs.ProcInfo], int | None]:
    return procs.processes(), cgroup_oom_kills()


class Sampler:
    """The run's sampling task (`run`); the /proc reads run in worker threads."""

    def __init__(
        self, ctx: AttemptContext, log: RunLog, console: Console, jobs: Mapping[str, JobRun], local_processes: bool
    ) -> None:
        self.ctx = ctx
        self.log = log
        self.console = console
        self.jobs = jobs
        self.local_processes = local_processes  # Ray/Slurm: our children are sbatch, squeue …
        self._told_gone = False

    async def run(self) -> None:
        """Each reading is also a `job.sample` record (at most one per job per second), which the
        HTML report draws as memory over time."""
        while True:
            await anyio.sleep(SAMPLE_INTERVAL)
            self._check_logs_folder()
            if self.local_processes:
                self._check_death_watch()
            if not self.ctx.live and not procs.has_children():
                continue
            snapshot, self.ctx.oom_kills = await anyio.to_thread.run_sync(_scan)
            for job_id, live in list(self.ctx.live.items()):
                if not live.pgid:  # being spawned: no group yet (pgid 0 is the kernel's threads)
                    continue
                rss = procs.group_rss(live.pgid, snapshot)
                live.peak_rss = max(live.peak_rss, procs.group_peak(live.pgid, snapshot) if rss else 0)
                job = self.jobs.get(job_id)
                if rss and job is not None and job.status is None:
                    self.log.emit("job.sample", job=job_id, attempt=job.attempts, rss_bytes=rss)
            if self.local_processes:
                await self._kill_escaped(snapshot)

    def _check_logs_folder(self) -> None:
        if self.log.check_present() and not self._told_gone:
            self._told_gone = True
            self.console.warning(
                f"the run's logs folder {self.log.dir} was removed while running: recreated "
                "it; what was written in between is lost"
            )

    def _check_death_watch(self) -> None:
        """Without its death watch a `kill -9` of the supervisor would leave every job running:
        a dead one is replaced at once, and the replacement recorded."""
        revived = deathwatch_link.revive()
        if revived is None:
            return
        old, new = revived
        self.log.emit("run.deathwatch_restarted", old_pid=old, pid=new)
        if new > 0:
            self.console.warning(f"the death watch (pid {old}) died: started another (pid {new})")
        else:
            self.console.warning(f"the death watch (pid {old}) died and no other could start")

    async def _kill_escaped(self, snapshot: list[procs.ProcInfo]) -> None:
        """A job's escaped descendants (setsid, double fork) die once their attempt has ended.

        They are re-parented to us (the subreaper) when their parents die; their environment says
        which attempt they belong to. Killing one re-parents its own children to us, so the scan
        repeats until a round kills nothing: chains die whole. A process whose environment names
        no attempt is killed once no attempt is running (it can belong to none then).
        """
        for _round in range(ESCAPED_ROUNDS):
            live, zombies = await anyio.to_thread.run_sync(procs.adopted, snapshot)
            procs.reap_zombies(zombies)
            running = {(self.ctx.run_id, job, str(lv.attempt)) for job, lv in self.ctx.live.items()}
            victims = [p for p in live if p.marks not in running and (p.marks is not None or not self.ctx.live)]
            if not [p for p in victims if procs.kill_adopted(p)]:
                return
            await anyio.sleep(0.02)
            snapshot = await anyio.to_thread.run_sync(procs.processes)
