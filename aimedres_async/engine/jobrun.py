"""One job inside a run: its spec, what its attempts left (result, output, peak memory) and the
resources it holds; where it is in the run is its `track` in the run state (engine.state)."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimedres_async.engine.attempt import AttemptResult, JobOutput, StopRequest
from aimedres_async.engine.scheduler import Grant, Need
from aimedres_async.engine.state import JobState, State
from aimedres_async.plan.jobs import JobSpec, Status
from aimedres_async.records.scan import OutputScan
from aimedres_async.report import diagnose


@dataclass(slots=True)
class JobRun:
    """One job's progress through the run; becomes its entry in summary.json."""

    spec: JobSpec
    track: JobState = field(init=False)  # its state, owned and moved by engine.state.RunState
    pid: int | None = None  # the running attempt's main process
    last: AttemptResult | None = None
    output: JobOutput = field(default_factory=JobOutput)
    duration_s: float = 0.0
    peak_rss_bytes: int = 0
    on_finished: Callable[[JobRun], None] | None = None
    queued_fields: Mapping[str, Any] = field(default_factory=dict)  # extra fields of its job.queued
    need: Need = field(default_factory=Need)
    bypassed: int = 0  # times a later job started first (see scheduler.pick_next)
    grant: Grant | None = None
    stop: StopRequest | None = None  # the running attempt's own stop (see Supervisor.cancel)

    def __post_init__(self) -> None:
        self.track = JobState(self.spec.id)
        self.need = Need.of(self.spec.resources)
        if self.spec.fail_on:
            self.output.scan = OutputScan(self.spec.fail_on)

    @property
    def state(self) -> State:
        return self.track.state

    @property
    def status(self) -> Status | None:
        return self.track.status

    @property
    def attempts(self) -> int:
        return self.track.attempts

    @property
    def failed(self) -> bool:
        return self.status is not None and not self.status.ok and self.status is not Status.CANCELLED

    def error(self) -> str | None:
        """Why it failed: the supervisor's reason (it could not start, ...) or its last stderr line."""
        if self.last is not None and self.last.error:
            return self.last.error
        return diagnose.error_line(self.output.tail) if self.failed else None

    def fixed_fields(self, log_path: Path, argv: list[str]) -> dict[str, Any]:
        """The parts of its summary entry that never change: command, log path, output folder."""
        return {
            "command": argv,
            "command_line": shlex.join(argv),
            "log": str(log_path),
            "output_dir": str(self.spec.output_dir) if self.spec.output_dir else None,
        }

    def summary(self, fixed: Mapping[str, Any]) -> dict[str, Any]:
        """The summary.json entry; `fixed` holds `fixed_fields` (or an earlier entry, which has them)."""
        last = self.last
        return {
            "id": self.spec.id,
            **({"params": self.spec.params} if self.spec.params is not None else {}),  # a sweep's combination
            "status": self.status.value if self.status else self.state.value,
            "optional": self.spec.optional,
            "attempts": self.attempts,
            "pid": self.pid,
            "exit_code": last.exit_code if last else None,
            "signal": last.signal if last else None,
            "failure": last.failure if last and self.status and not self.status.ok else None,
            "error": self.error(),
            "error_tail": diagnose.error_tail(self.output.tail) if self.failed else [],
            "duration_s": round(self.duration_s, 3),
            "peak_rss_bytes": self.peak_rss_bytes,
            "command": fixed["command"],
            "command_line": fixed["command_line"],
            "log": fixed["log"],
            "output_dir": fixed["output_dir"],
            "metrics": self.output.metrics,
            "warnings": self.output.scan.warnings,
            "first_warning": self.output.scan.first_warning,
        }
