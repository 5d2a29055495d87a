"""The run's state, sans-IO: where every job is, and the one function that moves it.

No awaits, no I/O, no clock reads (time is an argument). The dispatcher asks it what is runnable and
tells it what happened; every move is handed to one listener (the recorder) as a `Change`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from aimedres_async.plan.jobs import Outcome, Status


class State(enum.StrEnum):
    """Where a job is in a run. `RunState.move` allows only these moves:

    queued -> running (a slot and its resources were free) | finished (cancelled before it ran,
    or skipped by --resume); running -> backoff (failed, will be retried) | finished;
    backoff -> queued (its delay is over) | finished (the run stopped). finished is final.
    Once the run stops or drains, no job moves to running or backoff.
    """

    QUEUED = "queued"  # waiting for a slot and its resources
    RUNNING = "running"  # an attempt is under way
    BACKOFF = "backoff"  # a failed attempt will be retried after its delay; holds no slot
    FINISHED = "finished"  # final: its Status says how it ended


_MOVES: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.RUNNING, State.FINISHED}),
    State.RUNNING: frozenset({State.BACKOFF, State.FINISHED}),
    State.BACKOFF: frozenset({State.QUEUED, State.FINISHED}),
    State.FINISHED: frozenset(),
}


class TransitionError(RuntimeError):
    """A move the state diagram does not allow: a supervisor bug, never a user's mistake."""


@dataclass(slots=True)
class JobState:
    """One job's place in the run."""

    id: str
    state: State = State.QUEUED
    status: Status | None = None  # how it ended, once FINISHED
    attempts: int = 0  # attempts started
    cancelled: bool = False  # cancel asked while an attempt ran: it ends cancelled, not retried
    due: float | None = None  # in BACKOFF: when it may be queued again (the caller's clock)


@dataclass(frozen=True, slots=True)
class Change:
    """One move of one job, as the listener sees it (`old` is None when the job was added)."""

    job: str
    old: State | None
    new: State
    attempt: int
    status: Status | None = None
    delay: float | None = None  # RUNNING -> BACKOFF: the backoff before the next attempt


class RunState:
    """Every job of a run: queued in order (a retry joins the back), running, backing off or
    finished, with counts kept as jobs move (never recounted)."""

    def __init__(self, listener: Callable[[Change], None] | None = None) -> None:
        self.listener = listener
        self.stopping = False  # no attempt starts and no retry is scheduled once set
        self.draining = False  # stopping, and the running attempts are let finish (stop = "drain")
        self._jobs: dict[str, JobState] = {}
        self._queued: dict[str, None] = {}  # an ordered set: queue order, O(1) removal
        self._backoff: dict[str, float] = {}  # job -> due
        self._running: set[str] = set()
        self._counts: dict[str, int] = {}  # state or final status -> jobs

    # ------------------------------------------------------------ the one move

    def move(
        self, job_id: str, new: State, *, status: Status | None = None, now: float = 0.0, delay: float | None = None
    ) -> Change:
        """Move a job to `new`: the only place a job's state changes. Raises TransitionError for a
        move the diagram does not allow (finishing a job twice is one). A move to BACKOFF gives
        `delay`, due at `now + delay`; a move to FINISHED gives `status`."""
        job = self._jobs[job_id]
        old = job.state
        if new not in _MOVES[old]:
            raise TransitionError(f"job {job_id} cannot go from {old.value} to {new.value}")
        if (new is State.FINISHED) != (status is not None):
            raise TransitionError(f"job {job_id}: a status goes with finished, and only with it")
        if (new is State.BACKOFF) != (delay is not None):
            raise TransitionError(f"job {job_id}: a delay goes with backoff, and only with it")
        if self.stopping and new in (State.RUNNING, State.BACKOFF):
            why = "draining" if self.draining else "stopping"
            raise TransitionError(f"job {job_id} cannot go to {new.value}: the run is {why}")
        self._leave(job)
        job.state = new
        if new is State.RUNNING:
            job.attempts += 1
            self._running.add(job_id)
        elif new is State.QUEUED:
            self._queued[job_id] = None
        elif new is State.BACKOFF:
            job.due = self._backoff[job_id] = now + (delay or 0.0)
        else:
            job.status = status
        self._count(job, +1)
        change = Change(job_id, old, new, job.attempts, status, delay)
        if self.listener is not None:
            self.listener(change)
        return change

    def _leave(self, job: JobState) -> None:
        self._count(job, -1)
        if job.state is State.QUEUED:
            del self._queued[job.id]
        elif job.state is State.RUNNING:
            self._running.discard(job.id)
        elif job.state is State.BACKOFF:
            del self._backoff[job.id]
            job.due = None

    def _count(self, job: JobState, n: int) -> None:
        key = job.status.value if job.status is not None else job.state.value
        self._counts[key] = self._counts.get(key, 0) + n

    # ------------------------------------------------------------ what happened

    def add(self, job: JobState | str, finished: Status | None = None) -> Change:
        """A new job, queued at the back; or, with `finished`, one that ends without running
        (--resume: skipped). A job is given by id or as its JobState (which the run then moves)."""
        job = JobState(job) if isinstance(job, str) else job
        if job.id in self._jobs:
            raise TransitionError(f"job {job.id} is already in the run")
        if job.state is not State.QUEUED or job.attempts:
            raise TransitionError(f"job {job.id} is {job.state.value}: only a new job can be added")
        self._jobs[job.id] = job
        if finished is None and self.draining:
            finished = Status.CANCELLED  # a draining run starts nothing: a job added now never runs
        if finished is None:
            self._queued[job.id] = None
        else:
            job.state, job.status = State.FINISHED, finished
        self._count(job, +1)
        change = Change(job.id, None, job.state, 0, finished)
        if self.listener is not None:
            self.listener(change)
        return change

    def start(self, job_id: str) -> Change:
        return self.move(job_id, State.RUNNING)

    def attempt_ended(self, job_id: str, outcome: Outcome, now: float, retry_in: float | None) -> Change:
        """An attempt is over. `retry_in` is the backoff the retry policy chose (None: no retry);
        a success, a cancelled job or a stopping run finishes instead."""
        job = self._jobs[job_id]
        if outcome is Outcome.SUCCEEDED:
            return self.move(job_id, State.FINISHED, status=Status.SUCCEEDED)
        if job.cancelled:
            return self.move(job_id, State.FINISHED, status=Status.CANCELLED)
        if retry_in is not None and not self.stopping:
            return self.move(job_id, State.BACKOFF, now=now, delay=retry_in)
        return self.move(job_id, State.FINISHED, status=Status(outcome.value))

    def wake(self, now: float) -> list[Change]:
        """Jobs whose backoff is over go back to the queue (at its back), earliest first."""
        ready = sorted((due, job) for job, due in self._backoff.items() if due <= now)
        return [self.move(job, State.QUEUED) for _due, job in ready]

    def cancel(self, job_id: str) -> Change | None:
        """Cancel one job: a queued or backing-off one finishes cancelled at once (the change is
        returned); a running one is marked, and ends cancelled when its attempt ends (None)."""
        job = self._jobs.get(job_id)
        if job is None or job.state is State.FINISHED:
            return None
        job.cancelled = True
        if job.state is State.RUNNING:
            return None
        return self.move(job_id, State.FINISHED, status=Status.CANCELLED)

    def finish(self, job_id: str, status: Status) -> Change:
        return self.move(job_id, State.FINISHED, status=status)

    def stop(self) -> list[Change]:
        """The run stops: nothing more starts, and what never started (queued or backing off)
        finishes cancelled. Running attempts end through `attempt_ended`."""
        self.stopping = True
        waiting = [*self._queued, *self._backoff]
        return [self.move(job, State.FINISHED, status=Status.CANCELLED) for job in waiting]

    def drain(self) -> list[Change]:
        """The run drains (`stop = "drain"`, its first signal): as `stop`, nothing more starts, no
        retry is scheduled and what waits finishes cancelled; but the running attempts are not
        stopped: each goes on and finishes with its own outcome. A job added from now on finishes
        cancelled at once."""
        self.draining = True
        return self.stop()

    def abandon(self) -> list[Change]:
        """After a supervisor error: every unfinished job ends cancelled (their attempts were
        stopped and their process groups killed)."""
        changes = self.stop()
        changes += [self.move(job, State.FINISHED, status=Status.CANCELLED) for job in list(self._running)]
        return changes

    def forget(self, job_id: str) -> None:
        """A finished job leaves the run (the daemon keeps no history in memory)."""
        job = self._jobs[job_id]
        if job.state is not State.FINISHED:
            raise TransitionError(f"job {job_id} is {job.state.value}: only a finished job can be forgotten")
        self._count(job, -1)
        del self._jobs[job_id]

    # ------------------------------------------------------------ questions

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def __getitem__(self, job_id: str) -> JobState:
        return self._jobs[job_id]

    def queued(self) -> Iterator[str]:
        """The queued jobs in the order they may start."""
        return iter(self._queued)

    def queued_count(self) -> int:
        return len(self._queued)

    def running_count(self) -> int:
        return len(self._running)

    def backoff_count(self) -> int:
        return len(self._backoff)

    def next_due(self) -> float | None:
        """When the earliest backoff ends (None: no job is backing off)."""
        return min(self._backoff.values(), default=None)

    def idle(self) -> bool:
        """Nothing queued, running or backing off: every job is finished."""
        return not self._queued and not self._running and not self._backoff

    def counts(self) -> dict[str, int]:
        """Jobs per state, a finished job counted under its status (e.g. {"succeeded": 3, "running": 1})."""
        return {k: n for k, n in self._counts.items() if n}
