"""`[export]` for the daemon: each finished ticket's job goes to MLflow and TensorBoard, one
export at a time in a worker thread of its own, and the daemon's run ends only after them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
from anyio.abc import TaskGroup

from aimedres_async.engine.run import Supervisor
from aimedres_async.plan.config import Config


class TicketExports:
    """Exports of finished tickets: started under the daemon's filing task group, awaited by
    `drain` before the run's last record (so that their records are in its event log)."""

    def __init__(self) -> None:
        self.pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._limiter: anyio.CapacityLimiter | None = None

    def start(self, group: TaskGroup, cfg: Config, sup: Supervisor, ticket: str, entry: dict[str, Any]) -> None:
        if not cfg.export.active:
            return
        self.pending += 1
        self._idle.clear()
        group.start_soon(self._export, cfg, sup, ticket, entry, name=f"export {ticket}")

    async def _export(self, cfg: Config, sup: Supervisor, ticket: str, entry: dict[str, Any]) -> None:
        from aimedres_async.report import auto_export

        if self._limiter is None:
            # one at a time, and not from the threads the spool's own file work takes
            self._limiter = anyio.CapacityLimiter(1)
        try:
            sup.log.flush_events()  # the job's last records, on disk before they are read back
            results = await anyio.to_thread.run_sync(
                auto_export.export_ticket,
                cfg.export,
                cfg.base_dir,
                dict(sup.recorder.meta),
                ticket,
                sup.log.job_path(ticket),
                entry,
                limiter=self._limiter,
            )
            auto_export.record(results, sup.log, sup.console, ticket=ticket)
        finally:
            self.pending -= 1
            if not self.pending:
                self._idle.set()

    async def drain(self) -> None:
        """Wait for the exports under way (the daemon is stopping)."""
        await self._idle.wait()
