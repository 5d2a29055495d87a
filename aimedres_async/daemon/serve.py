"""`serve`: the spool daemon. Watch incoming/ and control/, claim as many tickets as there are free
slots (priority first, then arrival; a ticket waits for the tickets it is `after`, and for its
group's workers and budget: groups.py, budgets.py), run them through the same engine as `run`, and
file each ticket under done/ or failed/.

control/ carries the operators' requests: <ticket>.cancel, and `paused` (claim nothing new).
SIGTERM: stop claiming, stop the running jobs as `run` does, put their tickets back in incoming/,
exit 0; SIGINT the same, exit 130. SIGHUP: reload the config (worker count, defaults, jobs).

Intake, claiming, control requests, reload and shutdown act on one daemon state, so they stay in
one class, which makes this module longer than 500 lines; what does not need that state is in
modules of its own (groups, budgets, numbers, ops, spool).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from aimedres_async import __version__
from aimedres_async.daemon import budgets, groups
from aimedres_async.daemon.dependencies import blocked
from aimedres_async.daemon.exports import TicketExports
from aimedres_async.daemon.notify import Notifier
from aimedres_async.daemon.orphans import SPOOL_ENV, cancel_cluster_leftovers, ledger_of, process_identity
from aimedres_async.daemon.spool import Claimed, Queued, Spool, SpoolError
from aimedres_async.daemon.tickets import TicketError, cancelled_result, dependency_result, ticket_result
from aimedres_async.engine.dispatch import Executor
from aimedres_async.engine.jobrun import JobRun
from aimedres_async.engine.run import RunOptions, Supervisor, default_workers
from aimedres_async.engine.scheduler import NOTHING, Need
from aimedres_async.plan.config import Config, JobConfig, Ticket
from aimedres_async.plan.config_errors import ConfigError
from aimedres_async.plan.config_load import parse_ticket
from aimedres_async.plan.jobs import JobSpec, Status, TicketJobError, known_jobs, ticket_spec
from aimedres_async.records.console import Console
from aimedres_async.records.framing import timestamp_str
from aimedres_async.system import children, procs
from aimedres_async.system.signals import CapturedSignals

RESCAN_INTERVAL = 2.0  # a full look at incoming/ even without an inotify event
TMP_SWEEP_INTERVAL = 3600.0  # abandoned staging files in tmp/ are swept hourly (and at start)
FILE_WORK_TIMEOUT = 30.0  # a ticket whose files take longer to read is rejected


class Daemon:
    def __init__(
        self,
        cfg: Config,
        console: Console,
        reload: Callable[[], Config] | None = None,
        notifier: Notifier | None = None,
        executor: Executor | None = None,
        signals: CapturedSignals | None = None,
    ) -> None:
        self.executor = executor
        self.signals = signals
        self.cfg = cfg
        self.console = console
        self.reload_config = reload
        self.notifier = notifier or Notifier()
        self.spool = Spool(cfg.resolve(cfg.supervisor.spool_dir))
        self.claimed: dict[str, Claimed] = {}
        self.known: dict[str, JobConfig] = {}
        self.kick = asyncio.Event()
        self.unwatch = asyncio.Event()  # tells the inotify thread to return
        self.stopping = False
        self.failed = False  # an internal error stopped the daemon: exit non-zero so systemd restarts it
        self.waiting_count = 0
        self.finished = {"done": 0, "failed": 0, "rejected": 0}
        self.sup: Supervisor | None = None
        self.cancelling: set[str] = set()  # claimed tickets a `cancel` asked to stop
        self._filing: TaskGroup | None = None  # files finished tickets while serving
        self._filings = 0  # tickets being filed now
        self.leftovers: list[dict[str, Any]] = []  # Slurm jobs of a dead daemon, cancelled at start
        self._reconfiguring: asyncio.Future[None] | None = None  # a reload's cluster check
        self.meta: dict[str, dict[str, Any]] = {}  # claimed ticket -> job, label, number, group (`status`)
        self.needs: dict[str, tuple[str, Need]] = {}  # claimed ticket -> its group, what its job declares
        self.bypassed: dict[str, int] = {}  # waiting ticket -> times its group's budget passed it over
        self.queues = groups.Queues()  # `parallel N [--group G]`, `pause --group G`, from control/
        self.next_due: float | None = None  # seconds until a delayed ticket is due
        self.paused = False
        self.started = time.time()
        self._published = ""
        self.exports = TicketExports()  # [export]: each finished ticket's job to the trackers

    # ------------------------------------------------------------ lifecycle

    async def serve(self) -> int:
        self.spool.ensure()  # SpoolError: refuse to start (exit 2)
        for ticket in self.spool.recover():
            self.console.warning(f"ticket {ticket} was left in active/ by a dead daemon: back in incoming/")
        self.spool.sweep_daemons()
        self._cancel_leftovers()
        self.queues.refresh(self.spool)
        logs_dir = self.cfg.resolve(self.cfg.supervisor.logs_dir)
        # AIMEDRES_SPOOL with AIMEDRES_JOB_ID=<ticket> lets a restarted daemon find a local job that
        # no record names (killed between its spawn and the sidecar), and only this spool's. A
        # cluster's job is the cluster's to end (the ledger, scancel), even one on this host.
        opts = RunOptions(
            max_workers=self._total(self.cfg),
            logs_dir=logs_dir,
            serve=True,
            job_env={SPOOL_ENV: self.spool.identity} if self.executor is None else {},
            ledger=ledger_of(self.spool.root, os.getpid()),
        )
        try:
            logs_dir.mkdir(parents=True, exist_ok=True)
            self.sup = sup = Supervisor(self.cfg, (), opts, self.console, executor=self.executor)
        except OSError as e:
            raise SpoolError(f"cannot write logs under {logs_dir}: {e.strerror or e}") from None
        sup.on_started = self._on_started
        sup.before_finish = self.exports.drain
        sup.on_slot_free = self.kick.set
        self.known = known_jobs(self.cfg)

        signals = self.signals if self.signals is not None else CapturedSignals()
        with contextlib.ExitStack() as stack:
            if self.signals is None:
                stack.enter_context(signals)
            stack.enter_context(signals.dispatch_to(self._on_signal))
            return await self._serve(sup)

    def _cancel_leftovers(self) -> None:
        """scancel the Slurm jobs a dead daemon of this spool submitted (their tickets are back in
        incoming/ and run again here); each is logged once the run's log is open (`_intake`)."""
        self.leftovers = cancel_cluster_leftovers(self.spool.root)
        for c in self.leftovers:
            where = f"Slurm job {c['slurm_job_id'] or c['slurm_job_name']} of ticket {c['ticket']}"
            if c["error"] is None:
                self.console.warning(f"{where}, left by a dead daemon: scancelled")
            else:
                why = f"cannot cancel it ({c['error']}); kept for the next start"
                self.console.warning(f"{where}, left by a dead daemon: {why}")

    async def _serve(self, sup: Supervisor) -> int:
        """The supervisor's run and the daemon's helpers (watch, intake, watchdog) in one task
        group. A helper's error stops the daemon as a signal does (running tickets go back to
        incoming/) and fails it; an error of the run itself ends it at once (see Supervisor.run)."""
        self.paused = self.spool.paused()
        if self.paused:
            self.console.warning("the spool is paused: no ticket is claimed until `resume`")
            sup.log.emit("daemon.paused")
        code = 1
        try:
            async with anyio.create_task_group() as filing, anyio.create_task_group() as helpers:
                self._filing = filing  # outlives the helpers: every finished ticket is filed
                helpers.start_soon(self._helper, self._watch, name="watch")
                helpers.start_soon(self._helper, self._intake, name="intake")
                if self.notifier.watchdog_interval:
                    helpers.start_soon(self._helper, self._watchdog, self.notifier.watchdog_interval, name="watchdog")
                self._publish(force=True)
                self.notifier.ready(self._status_text())
                code = await sup.run()
                self.unwatch.set()
                helpers.cancel_scope.cancel()
        finally:
            self._filing = None
            with contextlib.suppress(OSError):
                self.spool.remove_daemon()
            with contextlib.suppress(OSError):  # empty once every Slurm job it submitted has ended
                ledger_of(self.spool.root, os.getpid()).rmdir()
            self.unwatch.set()
            for c in list(self.claimed.values()):  # should be none: every job finished
                self.spool.release(c, "incoming", None)
            self.notifier.close()
        if sup.error is not None:
            self.console.warning(f"internal error: {sup.error}; every running job was stopped")
        return 1 if self.failed else code

    async def _helper(self, work: Callable[..., Awaitable[None]], *args: Any) -> None:
        """A daemon that silently stopped claiming would be worse than one that exits: stop, fail."""
        try:
            await work(*args)
        except Exception as e:
            if self.sup is None:
                raise
            self.console.warning(f"internal error in {work.__qualname__}: {e!r}; stopping")
            self.failed = True
            self.stopping = True
            self.sup.stop.request("error")

    def _workers(self, cfg: Config) -> int:
        return default_workers(True, cfg.supervisor.max_workers)

    def _limits(self, cfg: Config) -> dict[str, int]:
        return groups.limits(cfg, self._workers(cfg), self.queues.parallel)

    def _total(self, cfg: Config) -> int:
        """The run's worker slots: every group's workers (each group is held to its own count when
        tickets are claimed)."""
        return sum(self._limits(cfg).values())

    def _on_signal(self, signum: signal.Signals) -> None:
        if signum == signal.SIGHUP:
            self._on_reload()
        else:
            self._on_stop(signum)

    def _on_stop(self, signum: signal.Signals) -> None:
        assert self.sup is not None
        if self.stopping:
            self.console.warning(f"{signum.name} again: killing every job now")
            self.sup.stop.force()
            return
        self.stopping = True
        self.notifier.stopping()
        self.console.warning(f"{signum.name}: stopping; running tickets go back to incoming/")
        self.sup.stop.request(signum.name)
        self.kick.set()

    def _on_reload(self) -> None:
        assert self.sup is not None
        self.notifier.reloading()
        if self.reload_config is not None:
            try:
                cfg = self.reload_config()
                known = known_jobs(cfg)
            except ConfigError as e:
                self.console.warning(f"reload failed, keeping the old config: {'; '.join(e.problems)}")
                self.notifier.ready(self._status_text())
                return
            except Exception as e:  # whatever the new config holds, the daemon goes on with the old one
                self.console.warning(f"reload failed, keeping the old config: {type(e).__name__}: {e}")
                self.notifier.ready(self._status_text())
                return
            self.cfg = self.sup.cfg = cfg
            self.known = known
            self.sup.set_max_workers(self._total(cfg))
            self.sup.ctx.grace_period = cfg.supervisor.grace_period
            self.sup.ctx.stop_signal = cfg.stop_signum
            if self._reconfigure_executor(cfg):
                return  # reloaded once the cluster has answered
        self._reloaded()

    def _reloaded(self) -> None:
        assert self.sup is not None
        self.sup.log.emit("daemon.reloaded", max_workers=self._total(self.cfg), jobs=sorted(self.known))
        self._publish(force=True)
        self.notifier.ready(self._status_text())
        self.kick.set()

    def _reconfigure_executor(self, cfg: Config) -> bool:
        """A reload's [slurm] or [ray] table for the executor, checked as at start (the cluster is
        asked: in a worker thread) and taken only if good. The intake claims nothing meanwhile, so
        the next ticket uses the new table. False: the executor reads no table (local processes)."""
        reconfigure = getattr(getattr(self.executor, "__self__", None), "reconfigure", None)
        if reconfigure is None:
            return False

        earlier = self._reconfiguring  # a SIGHUP before this one's check ended: that one first

        async def check() -> None:
            try:
                if earlier is not None:
                    await asyncio.shield(earlier)
                await anyio.to_thread.run_sync(reconfigure, cfg)
            except Exception as e:  # SlurmUnavailable, RayUnavailable: one line, the old table kept
                self.console.warning(f"reload: the executor keeps its old settings: {e}")
            finally:
                if self._reconfiguring is asyncio.current_task():
                    self._reconfiguring = None
                self._reloaded()

        self._reconfiguring = asyncio.ensure_future(check())
        return True

    # ------------------------------------------------------------ intake

    async def _watch(self) -> None:
        """Kick the intake on every change in incoming/ or control/ (inotify); poll if watchfiles is missing."""
        folders = [str(self.spool.dir("incoming")), str(self.spool.dir("control"))]
        try:
            from watchfiles import awatch
        except ImportError:
            while True:
                await asyncio.sleep(0.25)
                self.kick.set()
        # step: how often the watcher thread looks (and checks stop_event); 10 ms keeps the
        # submit -> start latency near 10 ms while the idle daemon stays well under 1% of a core.
        async for _changes in awatch(
            *folders,
            debounce=50,
            step=10,
            rust_timeout=500,
            yield_on_timeout=False,
            recursive=False,
            stop_event=self.unwatch,
        ):
            self.kick.set()

    async def _intake(self) -> None:
        next_sweep = time.monotonic() + TMP_SWEEP_INTERVAL  # the first sweep ran in recover()
        assert self.sup is not None
        await self.sup.started_event.wait()  # run.started comes before the first ticket's job.queued
        for c in self.leftovers:
            self.sup.log.emit("ticket.orphan_cancelled", **{k: v for k, v in c.items() if v is not None})
        while not self.stopping:
            await self._apply_requests()
            await self._claim_some()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + TMP_SWEEP_INTERVAL
                with contextlib.suppress(OSError):
                    await anyio.to_thread.run_sync(self.spool.sweep_tmp)
            wake = RESCAN_INTERVAL if self.next_due is None else min(RESCAN_INTERVAL, self.next_due + 0.01)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.kick.wait(), wake)
            self.kick.clear()

    async def _apply_requests(self) -> None:
        """`cancel`: stop a ticket this daemon runs; file a waiting one as cancelled. A request stays
        in control/ until its ticket is filed (a crash in between is not a lost cancel)."""
        assert self.sup is not None
        paused = self.spool.paused()
        if paused != self.paused:
            self.paused = paused
            self.sup.log.emit("daemon.paused" if paused else "daemon.resumed")
        self._apply_groups()
        for ticket in self.spool.cancel_requests():
            if ticket in self.claimed:
                if ticket not in self.cancelling:
                    self.cancelling.add(ticket)
                    self.sup.log.emit("ticket.cancelling", ticket=ticket)
                    self.sup.cancel(ticket)
                continue
            state = self.spool.state_of(ticket)
            if state is not None and state[0] == "incoming":
                try:
                    filed = await anyio.to_thread.run_sync(self.spool.cancel_waiting, ticket, cancelled_result())
                except OSError as e:
                    self.console.warning(f"cannot cancel {ticket}: {e}")
                    continue
                if filed is not None:
                    self.finished["failed"] += 1
                    self.sup.log.emit("ticket.cancelled", ticket=ticket, ran=False)
                    self.spool.drop_request(ticket)
            elif state is None or state[0] != "active":  # filed (or never was): nothing left to do
                self.spool.drop_request(ticket)
            # active/ but not ours: another daemon's (it applies the request), or a dead daemon's
            # (recovered into incoming/ at the next start, then cancelled before it is claimed)

    def _apply_groups(self) -> None:
        """`parallel N [--group G]` and `pause/resume --group G`, as control/ says now."""
        assert self.sup is not None
        paused, resumed, parallel = self.queues.refresh(self.spool)
        for event, names in (("daemon.paused", paused), ("daemon.resumed", resumed)):
            for g in names:
                self.sup.log.emit(event, group=g)
        if parallel:
            self.sup.set_max_workers(self._total(self.cfg))
            self.sup.log.emit("daemon.parallel", workers=self._limits(self.cfg))
        if paused or resumed or parallel:
            self._publish(force=True)

    async def _claim_some(self) -> None:
        """Claim what fits in the free slots, in queue order; the spool's file-system work (reads,
        flock, links, fsyncs) runs in worker threads."""
        assert self.sup is not None
        if self._reconfiguring is not None:
            await asyncio.shield(self._reconfiguring)  # the next ticket goes with the reloaded table
        free = self.sup.free_slots()
        if self._filings:
            # A ticket being filed still looks unfinished in the spool: the next claim waits for
            # it, so that a ticket `after` it sees it done (the filing kicks the intake).
            free = 0
        if free <= 0 or self.paused:
            if self.paused:
                self.waiting_count = len(self.spool.waiting())
            self._publish()
            return
        queue = await anyio.to_thread.run_sync(self.spool.queue)
        self.waiting_count = len(queue)
        now = time.time()
        self.next_due = groups.next_due(queue, now)
        waiting = {q.ticket_id: q.after for q in queue if q.after}
        free_in = groups.free(self._limits(self.cfg), groups.busy(m["group"] for m in self.meta.values()))
        gate = budgets.Gate(self.cfg.groups, self._in_use(), self.bypassed)
        for q in queue:
            if free <= 0 or self.stopping:
                break
            if not groups.may_claim(q, free_in, self.queues.paused, now):
                continue
            capped = q.order.group in gate.budgets
            need = budgets.declared(q.order, self.cfg, self.known) if capped else NOTHING
            if capped and not gate.may_claim(q.ticket_id, q.order.group, need):
                continue  # what is left of its group's budget is too little: it waits in incoming/
            if await self._claim_one(q, waiting):
                self.waiting_count -= 1
                free -= 1
                free_in[q.order.group] = free_in.get(q.order.group, 1) - 1
                gate.claimed(q.order.group, need)
        gate.forget(q.ticket_id for q in queue if q.ticket_id not in self.claimed)
        self._publish()

    def _in_use(self) -> dict[str, Need]:
        """What each group's claimed tickets declare together (their groups' budgets)."""
        return budgets.in_use(self.needs.values())

    async def _claim_one(self, q: Queued, waiting: dict[str, tuple[str, ...]]) -> bool:
        """Claim one waiting ticket and add its job to the run. False: it was not added (it waits
        for a ticket it is `after`, another daemon took it, or it was rejected or filed as failed)."""
        assert self.sup is not None
        why = blocked(self.spool, q, waiting) if q.after else None
        if why is not None and why[0] == "wait":
            return False
        name = f"{q.ticket_id}.toml"
        try:
            claimed = await anyio.to_thread.run_sync(self.spool.claim, name)
        except TicketError as e:
            await self._reject(self.spool.dir("incoming") / name, str(e))
            return False
        except OSError as e:
            self.console.warning(f"cannot claim {name}: {e}")
            return False
        if claimed is None:
            return False
        try:
            return await self._admit(claimed, name, why, waiting)
        except Exception as e:  # one ticket the daemon cannot take must never stop it
            self.claimed.pop(claimed.ticket_id, None)
            self.meta.pop(claimed.ticket_id, None)
            self.needs.pop(claimed.ticket_id, None)
            await self._reject(claimed, f"could not be admitted ({type(e).__name__}: {e})")
            return False

    async def _admit(
        self, claimed: Claimed, name: str, why: tuple[str, str] | None, waiting: dict[str, tuple[str, ...]]
    ) -> bool:
        """A claimed ticket parsed and added to the run, or filed (rejected, or failed on a dependency)."""
        assert self.sup is not None
        parsed = await self._parse(claimed, name)
        if parsed is None:
            return False
        ticket, spec = parsed
        if why is not None and why[0] == "reject":
            await self._reject(claimed, why[1])
            waiting.pop(claimed.ticket_id, None)
            return False
        if why is not None:  # a ticket it is `after` failed or was cancelled: it never runs
            await self._file(claimed, "failed", dependency_result(why[1]))
            self.sup.log.emit("ticket.failed", ticket=claimed.ticket_id, failure="dependency", error=why[1])
            return False
        need = Need.of(spec.resources)
        unfit = self.sup.local_resources and self.sup.pools.never_fits(need)
        if unfit:
            await self._reject(claimed, f"can never run here: it {unfit}")
            return False
        budget = self.cfg.groups.get(ticket.group)
        unfit = budget is not None and budgets.never_fits(ticket.group, budget, need)
        if unfit:
            await self._reject(claimed, f"can never run in group {ticket.group}: it {unfit}")
            return False
        self.claimed[claimed.ticket_id] = claimed
        self.needs[claimed.ticket_id] = (ticket.group, need)
        self.meta[claimed.ticket_id] = {
            "job": ticket.job or ticket.label,
            "label": ticket.label,
            "number": ticket.number,
            "group": ticket.group,
        }
        self.sup.add(spec, self._on_finished, ticket_job=ticket.label, priority=ticket.priority)
        return True

    async def _parse(self, claimed: Claimed, name: str) -> tuple[Ticket, JobSpec] | None:
        """A claimed ticket as a job, or None once it is rejected with the reason. The parse reads
        files (the job's script, discovery): in a worker thread, given up after FILE_WORK_TIMEOUT,
        so one path that hangs (a FIFO, a dead NFS mount) costs one ticket, never the daemon."""
        cfg, known = self.cfg, self.known

        def parse() -> tuple[Ticket, JobSpec]:
            ticket = parse_ticket(claimed.text, claimed.ticket_id, f"incoming/{name}")
            return ticket, ticket_spec(cfg, ticket, known)

        try:
            with anyio.fail_after(FILE_WORK_TIMEOUT):
                return await anyio.to_thread.run_sync(parse, abandon_on_cancel=True)
        except TimeoutError:
            reason = f"reading what it names took over {FILE_WORK_TIMEOUT:g}s (a FIFO or a hung file system?)"
        except ConfigError as e:
            reason = "; ".join(e.problems)
        except (TicketJobError, ValueError, OSError) as e:
            reason = str(e)
        except Exception as e:  # a parser bug must not stop the intake: this ticket alone fails
            reason = f"could not read the ticket ({type(e).__name__}: {e})"
        await self._reject(claimed, reason)
        return None

    async def _file(self, c: Claimed, state: str, res: dict[str, Any]) -> None:
        try:
            await anyio.to_thread.run_sync(self.spool.release, c, state, res)
        except OSError as e:
            self.console.warning(f"cannot file {c.ticket_id} under {state}/: {e}")
            return
        self.finished[state] += 1

    async def _reject(self, what: Path | Claimed, reason: str) -> None:
        assert self.sup is not None
        try:
            if isinstance(what, Claimed):
                dest = await anyio.to_thread.run_sync(self.spool.reject_claimed, what, reason)
            else:
                dest = await anyio.to_thread.run_sync(self.spool.reject, what, reason)
        except OSError as e:
            self.console.warning(f"cannot reject {what}: {e}")
            return
        self.finished["rejected"] += 1
        self.sup.log.emit("ticket.rejected", ticket=dest.stem, reason=reason)

    # ------------------------------------------------------------ job hooks

    def _on_started(self, job_id: str, pid: int, attempt: int, fields: dict[str, Any]) -> None:
        c = self.claimed.get(job_id)
        if c is not None:
            assert self.sup is not None
            info = process_identity(pid) | {
                "slurm_job_id": fields.get("slurm_job_id"),
                "ticket": job_id,
                **self.meta.get(job_id, {}),
                "attempt": attempt,
                "daemon_pid": os.getpid(),
                "started_at": timestamp_str(),
                "started": time.time(),
                "log": str(self.sup.log.job_path(job_id)),
            }
            with contextlib.suppress(OSError):
                self.spool.record_process(c, info)

    def _on_finished(self, job: JobRun) -> None:
        """A ticket's job ended: file the ticket under done/ or failed/ in a worker thread, under
        the daemon's filing task group (or back to incoming/ when the daemon stops)."""
        assert self.sup is not None
        c = self.claimed.pop(job.spec.id, None)
        self.meta.pop(job.spec.id, None)
        self.needs.pop(job.spec.id, None)
        if c is None:
            return
        cancelled = job.spec.id in self.cancelling
        self.cancelling.discard(job.spec.id)
        if job.status is Status.CANCELLED and self.stopping and not cancelled:
            # The daemon is stopping: back to incoming/ here and now, so that ticket.requeued is
            # logged before the supervisor's run.finished.
            self.spool.release(c, "incoming", None)
            self._filed(c, "incoming", False)
            return
        state = "done" if job.status is not None and job.status.ok else "failed"
        entry = job.summary(
            job.fixed_fields(self.sup.log.job_path(job.spec.id), self.sup.ctx.redact_argv(job.spec.argv))
        )
        result = ticket_result(entry, self.sup.run_id)
        if self._filing is None:  # not serving (a test driving the hooks): file here and now
            self.spool.release(c, state, result)
            self._filed(c, state, cancelled)
        else:
            self._filings += 1
            self._filing.start_soon(self._file_finished, c, state, result, cancelled)
            self.exports.start(self._filing, self.cfg, self.sup, job.spec.id, entry)

    async def _file_finished(self, c: Claimed, state: str, result: dict[str, Any], cancelled: bool) -> None:
        try:
            await anyio.to_thread.run_sync(self.spool.release, c, state, result)
            if cancelled:
                await anyio.to_thread.run_sync(self.spool.drop_request, c.ticket_id)
        except Exception as e:  # the daemon's bookkeeping must not kill the loop
            self.console.warning(f"{c.ticket_id}: finishing failed: {e!r}")
            return
        finally:
            self._filings -= 1
            self.kick.set()
        self._filed(c, state, False)

    def _filed(self, c: Claimed, state: str, cancelled: bool) -> None:
        assert self.sup is not None
        if state == "incoming":
            self.sup.log.emit("ticket.requeued", ticket=c.ticket_id)
            return
        self.finished[state] += 1
        if cancelled:
            self.spool.drop_request(c.ticket_id)
        self._publish()
        self.kick.set()

    def _status_text(self) -> str:
        running = len(self.claimed)
        waiting = self.waiting_count  # as of the last look at incoming/ (listing it per job is O(n))
        f = self.finished
        text = f"running {running}, waiting {waiting}, done {f['done']}, failed {f['failed']}, rejected {f['rejected']}"
        return ("paused; " + text) if self.paused else text

    def _publish(self, force: bool = False) -> None:
        """STATUS= for systemd and control/daemon.<pid>.json for `status`, when they changed."""
        text = self._status_text()
        if text == self._published and not force:
            return
        self._published = text
        if self.notifier.address:
            self.notifier.status(text)
        assert self.sup is not None
        info = process_identity(os.getpid()) | {
            "started": self.started,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "version": __version__,
            "config": str(self.cfg.path.resolve()) if self.cfg.path else None,
            "uid": os.geteuid(),
            "host": os.uname().nodename,
            "run": self.sup.run_id,
            "logs": str(self.sup.log.dir),
            "workers": self._total(self.cfg),
            "busy": len(self.claimed),
            "paused": self.paused,
            "groups": self._groups_view(),
            "status": text,
        }
        try:
            self.spool.write_daemon(info)
        except OSError as e:
            self.console.warning(f"cannot write the daemon's record for `status`: {e}")

    def _groups_view(self) -> dict[str, dict[str, Any]]:
        """Each group's workers, busy count, pause and `parallel`; a budgeted group's budget and use."""
        view = self.queues.view(self._limits(self.cfg), groups.busy(m["group"] for m in self.meta.values()))
        for g, extra in budgets.view(self.cfg.groups, self._in_use()).items():
            if g in view:
                view[g] |= extra
        return view

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)


def serve(cfg: Config, console: Console, reload: Callable[[], Config] | None, executor: Executor | None = None) -> int:
    # Captured before the daemon starts and kept past its final sweep: no signal takes its
    # default action in between (a SIGHUP there would kill it, leaving escaped processes).
    with CapturedSignals(linger=True) as signals:
        children.become_subreaper()
        console.prepare()
        code = asyncio.run(Daemon(cfg, console, reload, executor=executor, signals=signals).serve())
        console.buffer.flush()
        procs.sweep_adopted()
    return code
