"""engine.state.RunState, in-process: the moves it allows, and (hypothesis) that whatever the order
of events no job is lost, finished twice, or counted wrong."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from aimedres_async.engine.state import Change, RunState, State, TransitionError
from aimedres_async.plan.jobs import Outcome, Status

OUTCOMES = list(Outcome)


def make(*ids: str) -> tuple[RunState, list[Change]]:
    seen: list[Change] = []
    state = RunState(seen.append)
    for job in ids:
        state.add(job)
    return state, seen


def test_a_job_runs_and_succeeds() -> None:
    state, seen = make("a")
    state.start("a")
    state.attempt_ended("a", Outcome.SUCCEEDED, now=5.0, retry_in=1.0)
    assert [(c.old, c.new, c.status) for c in seen] == [
        (None, State.QUEUED, None),
        (State.QUEUED, State.RUNNING, None),
        (State.RUNNING, State.FINISHED, Status.SUCCEEDED),
    ]
    assert state["a"].attempts == 1 and state.idle() and state.counts() == {"succeeded": 1}


def test_a_failure_backs_off_then_joins_the_back_of_the_queue() -> None:
    state, _ = make("a", "b")
    state.start("a")
    change = state.attempt_ended("a", Outcome.FAILED, now=10.0, retry_in=2.5)
    assert (change.new, change.delay) == (State.BACKOFF, 2.5)
    assert state.next_due() == 12.5 and list(state.queued()) == ["b"]
    assert state.wake(12.4) == []
    assert [c.job for c in state.wake(12.5)] == ["a"]
    assert list(state.queued()) == ["b", "a"] and state.next_due() is None


def test_no_retry_finishes_with_the_outcome_as_status() -> None:
    state, _ = make("a")
    state.start("a")
    assert state.attempt_ended("a", Outcome.TIMED_OUT, now=0.0, retry_in=None).status is Status.TIMED_OUT


def test_a_stopping_run_schedules_no_retry_and_cancels_what_waits() -> None:
    state, _ = make("a", "b", "c")
    state.start("a")
    state.start("b")
    state.attempt_ended("b", Outcome.FAILED, now=0.0, retry_in=1.0)
    changes = state.stop()
    assert {(c.job, c.status) for c in changes} == {("b", Status.CANCELLED), ("c", Status.CANCELLED)}
    assert state.attempt_ended("a", Outcome.FAILED, now=1.0, retry_in=1.0).status is Status.FAILED
    assert state.idle()


def test_a_draining_run_lets_running_attempts_finish_with_their_own_outcome() -> None:
    """stop = "drain": what waits ends cancelled, nothing more starts or is retried, and the
    attempts under way end as they end (a success is a success, not cancelled)."""
    state, _ = make("a", "b", "c", "d")
    state.start("a")
    state.start("b")
    state.start("c")
    state.attempt_ended("c", Outcome.FAILED, now=0.0, retry_in=1.0)  # backing off
    changes = state.drain()
    assert state.draining and state.stopping
    assert {(c.job, c.status) for c in changes} == {("c", Status.CANCELLED), ("d", Status.CANCELLED)}
    assert state.running_count() == 2 and not state.idle()
    assert state.attempt_ended("a", Outcome.SUCCEEDED, now=1.0, retry_in=None).status is Status.SUCCEEDED
    assert state.attempt_ended("b", Outcome.FAILED, now=1.0, retry_in=1.0).status is Status.FAILED  # not retried
    assert state.idle() and state.counts() == {"succeeded": 1, "failed": 1, "cancelled": 2}


def test_nothing_starts_while_draining_and_a_job_added_then_never_runs() -> None:
    state, _ = make("a")
    state.drain()
    change = state.add("late")
    assert (change.new, change.status) == (State.FINISHED, Status.CANCELLED) and state.idle()


def test_no_attempt_starts_once_the_run_stops() -> None:
    state, _ = make()
    state.stop()
    state.add("late")  # the daemon may still hand in a job: it waits, and never starts
    with pytest.raises(TransitionError, match="the run is stopping"):
        state.start("late")


def test_cancel_of_a_running_job_waits_for_its_attempt_and_is_not_retried() -> None:
    state, _ = make("a")
    state.start("a")
    assert state.cancel("a") is None and state["a"].state is State.RUNNING
    assert state.attempt_ended("a", Outcome.FAILED, now=0.0, retry_in=1.0).status is Status.CANCELLED
    assert state.cancel("a") is None  # finished: nothing to do


def test_cancel_of_a_queued_or_backing_off_job_finishes_it_at_once() -> None:
    state, _ = make("a", "b")
    state.start("b")
    state.attempt_ended("b", Outcome.FAILED, now=0.0, retry_in=9.0)
    assert state.cancel("a") == Change("a", State.QUEUED, State.FINISHED, 0, Status.CANCELLED)
    change = state.cancel("b")
    assert change is not None and change.old is State.BACKOFF and state.next_due() is None


@pytest.mark.parametrize(
    ("moves", "bad"),
    [
        ([], State.BACKOFF),  # queued -> backoff
        ([State.RUNNING], State.QUEUED),  # running -> queued
        ([State.RUNNING], State.RUNNING),
    ],
)
def test_moves_the_diagram_forbids_raise(moves: list[State], bad: State) -> None:
    state, _ = make("a")
    for new in moves:
        state.move("a", new)
    with pytest.raises(TransitionError):
        state.move("a", bad, delay=1.0 if bad is State.BACKOFF else None)


def test_a_job_cannot_finish_twice_or_be_added_twice() -> None:
    state, _ = make("a")
    state.finish("a", Status.CANCELLED)
    with pytest.raises(TransitionError):
        state.finish("a", Status.SUCCEEDED)
    with pytest.raises(TransitionError):
        state.add("a")


def test_status_and_delay_go_only_with_their_states() -> None:
    state, _ = make("a")
    with pytest.raises(TransitionError):
        state.move("a", State.FINISHED)
    with pytest.raises(TransitionError):
        state.move("a", State.RUNNING, status=Status.FAILED)
    state.move("a", State.RUNNING)
    with pytest.raises(TransitionError):
        state.move("a", State.BACKOFF)


def test_abandon_ends_running_jobs_cancelled() -> None:
    state, _ = make("a", "b")
    state.start("a")
    assert {c.job for c in state.abandon()} == {"a", "b"}
    assert state.idle() and state.counts() == {"cancelled": 2}


def test_a_job_added_finished_never_queues() -> None:
    state, seen = make()
    state.add("a", Status.SKIPPED)
    assert seen == [Change("a", None, State.FINISHED, 0, Status.SKIPPED)]
    assert state.idle() and list(state.queued()) == [] and state.counts() == {"skipped": 1}


def test_forget_only_takes_finished_jobs() -> None:
    state, _ = make("a")
    with pytest.raises(TransitionError):
        state.forget("a")
    state.finish("a", Status.SKIPPED)
    state.forget("a")
    assert "a" not in state and len(state) == 0 and state.counts() == {}


@given(st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=20))
def test_wake_releases_backoffs_in_due_order(delays: list[float]) -> None:
    ids = [f"j{i}" for i in range(len(delays))]
    state, _ = make(*ids)
    for job, delay in zip(ids, delays, strict=True):
        state.start(job)
        state.attempt_ended(job, Outcome.FAILED, now=0.0, retry_in=delay)
    woken = [c.job for c in state.wake(100.0)]
    assert sorted(woken) == sorted(ids)
    assert [delays[ids.index(j)] for j in woken] == sorted(delays)


class RunStateMachine(RuleBasedStateMachine):
    """Random orders of adds, starts, attempt ends, wakes, cancels, stops and forgets."""

    @initialize()
    def setup(self) -> None:
        self.changes: list[Change] = []
        self.state = RunState(self.changes.append)
        self.now = 0.0
        self.next_id = 0
        self.finished: set[str] = set()
        self.forgotten: set[str] = set()
        self.added: list[str] = []

    @rule(skipped=st.booleans())
    def add(self, skipped: bool) -> None:
        job = f"j{self.next_id}"
        self.next_id += 1
        self.state.add(job, Status.SKIPPED if skipped else None)
        self.added.append(job)

    @precondition(lambda self: self.state.queued_count() > 0 and not self.state.stopping)
    @rule(pick=st.integers(min_value=0))
    def start(self, pick: int) -> None:
        queued = list(self.state.queued())
        self.state.start(queued[pick % len(queued)])

    @precondition(lambda self: self.state.running_count() > 0)
    @rule(
        pick=st.integers(min_value=0),
        outcome=st.sampled_from(OUTCOMES),
        retry_in=st.none() | st.floats(min_value=0, max_value=30),
    )
    def end_attempt(self, pick: int, outcome: Outcome, retry_in: float | None) -> None:
        running = sorted(j for j in self.added if j in self.state and self.state[j].state is State.RUNNING)
        self.state.attempt_ended(running[pick % len(running)], outcome, self.now, retry_in)

    @rule(dt=st.floats(min_value=0, max_value=20))
    def tick(self, dt: float) -> None:
        self.now += dt
        for change in self.state.wake(self.now):
            assert change.old is State.BACKOFF and change.new is State.QUEUED

    @precondition(lambda self: bool(self.added))
    @rule(pick=st.integers(min_value=0))
    def cancel(self, pick: int) -> None:
        job = self.added[pick % len(self.added)]
        self.state.cancel(job)

    @precondition(lambda self: self.state.running_count() + self.state.backoff_count() > 0)
    @rule()
    def stop(self) -> None:
        for change in self.state.stop():
            assert change.status is Status.CANCELLED
        assert self.state.queued_count() == 0 and self.state.backoff_count() == 0

    @precondition(lambda self: not self.state.stopping)
    @rule()
    def drain(self) -> None:
        self.running_at_drain = {j for j in self.added if j in self.state and self.state[j].state is State.RUNNING}
        for change in self.state.drain():
            assert change.status is Status.CANCELLED
        assert self.state.queued_count() == 0 and self.state.backoff_count() == 0

    @invariant()
    def a_draining_run_only_finishes_what_ran(self) -> None:
        if not self.state.draining:
            return
        running = {j for j in self.added if j in self.state and self.state[j].state is State.RUNNING}
        assert running <= self.running_at_drain, "an attempt started while draining"
        assert self.state.queued_count() == 0 and self.state.backoff_count() == 0

    @precondition(lambda self: bool(self.finished - self.forgotten))
    @rule(pick=st.integers(min_value=0))
    def forget(self, pick: int) -> None:
        done = sorted(self.finished - self.forgotten)
        job = done[pick % len(done)]
        self.state.forget(job)
        self.forgotten.add(job)

    @invariant()
    def no_job_finishes_twice(self) -> None:
        finished = [c.job for c in self.changes if c.new is State.FINISHED]
        assert len(finished) == len(set(finished)), "a job finished twice"
        self.finished = set(finished)

    @invariant()
    def no_job_is_lost(self) -> None:
        # every job added is in exactly one place, or finished and forgotten
        kept = [j for j in self.added if j not in self.forgotten]
        assert len(self.state) == len(kept)
        places = {
            State.QUEUED: set(self.state.queued()),
            State.RUNNING: {j for j in kept if self.state[j].state is State.RUNNING},
            State.BACKOFF: {j for j in kept if self.state[j].due is not None},
        }
        for job in kept:
            js = self.state[job]
            inside = [s for s, members in places.items() if job in members]
            assert inside == ([] if js.state is State.FINISHED else [js.state]), (job, js, inside)
            assert (js.status is not None) == (js.state is State.FINISHED)
            last = [c for c in self.changes if c.job == job][-1]
            assert last.new is js.state

    @invariant()
    def counts_match_the_jobs(self) -> None:
        expect: dict[str, int] = {}
        for job in self.added:
            if job in self.forgotten:
                continue
            js = self.state[job]
            key = js.status.value if js.status else js.state.value
            expect[key] = expect.get(key, 0) + 1
        assert self.state.counts() == expect
        assert self.state.idle() == all(self.state[j].state is State.FINISHED for j in self.added if j in self.state)

    def teardown(self) -> None:
        """However the run got here, a stop and the end of the running attempts finish every job,
        each exactly once."""
        if not hasattr(self, "state"):
            return
        self.state.stop()
        running = [j for j in self.added if j in self.state and self.state[j].state is State.RUNNING]
        for job in running:
            self.state.attempt_ended(job, Outcome.FAILED, self.now, retry_in=1.0)
        assert self.state.idle()
        finished = [c.job for c in self.changes if c.new is State.FINISHED]
        assert sorted(finished) == sorted(self.added), "a job was lost or finished twice"


RunStateMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_run_state_machine = RunStateMachine.TestCase
