"""engine.retries, in-process: which attempts are retried, and the backoff before each retry
(min(max, initial * factor ** (n - 1)), spread by the jitter band)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aimedres_async.engine.attempt import AttemptResult
from aimedres_async.engine.retries import backoff_delay, should_retry
from aimedres_async.plan.config import Backoff, Resources
from aimedres_async.plan.jobs import JobSpec, Outcome

RETRIED = {Outcome.FAILED, Outcome.TIMED_OUT, Outcome.STALLED}


def spec(retries: int) -> JobSpec:
    return JobSpec(
        id="j",
        argv=("true",),
        cwd=Path("/"),
        env={},
        output_dir=None,
        script=None,
        accepts=frozenset(),
        retries=retries,
        backoff=Backoff(),
        timeout=None,
        optional=False,
        resources=Resources(),
        origin="config",
    )


# ---------------------------------------------------------------- should_retry


@pytest.mark.parametrize("outcome", list(Outcome))
def test_which_outcomes_are_retried(outcome: Outcome) -> None:
    assert should_retry(AttemptResult(outcome), spec(retries=5), attempt=1) is (outcome in RETRIED)


def test_spawn_failed_and_cancelled_are_never_retried_whatever_the_budget() -> None:
    for outcome in (Outcome.SPAWN_FAILED, Outcome.CANCELLED, Outcome.SUCCEEDED):
        for attempt in (1, 2, 50):
            assert not should_retry(AttemptResult(outcome, failure=outcome.value), spec(retries=100), attempt)


def test_a_cluster_job_cancelled_by_someone_else_is_not_retried() -> None:
    result = AttemptResult(Outcome.FAILED, signal="SIGTERM", failure="cancelled_externally")
    assert not should_retry(result, spec(retries=3), attempt=1)
    assert should_retry(AttemptResult(Outcome.FAILED, signal="SIGTERM", failure="signal"), spec(retries=3), attempt=1)


def test_no_retries_means_one_attempt() -> None:
    assert not should_retry(AttemptResult(Outcome.FAILED, exit_code=1, failure="exit_code"), spec(0), attempt=1)


@pytest.mark.parametrize("retries", [0, 1, 2, 7])
@pytest.mark.parametrize("outcome", sorted(RETRIED))
def test_a_job_that_keeps_failing_gets_retries_plus_one_attempts(retries: int, outcome: Outcome) -> None:
    attempts = 1
    while should_retry(AttemptResult(outcome), spec(retries), attempts):
        attempts += 1
        assert attempts < 100
    assert attempts == retries + 1


# ---------------------------------------------------------------- backoff_delay


def test_without_jitter_the_delay_doubles_up_to_the_max() -> None:
    b = Backoff(initial=1.0, factor=2.0, max=20.0, jitter=0.0)
    assert [backoff_delay(b, n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]


def test_a_factor_of_one_keeps_the_delay_constant() -> None:
    b = Backoff(initial=0.5, factor=1.0, max=300.0, jitter=0.0)
    assert {backoff_delay(b, n) for n in range(1, 50)} == {0.5}


def test_an_initial_delay_above_the_max_is_cut_to_the_max() -> None:
    assert backoff_delay(Backoff(initial=10.0, factor=3.0, max=2.0, jitter=0.0), 1) == 2.0


def test_a_zero_delay_stays_zero() -> None:
    assert backoff_delay(Backoff(initial=0.0, factor=2.0, max=300.0, jitter=0.5), 4, random.Random(1)) == 0.0


def test_jitter_spreads_the_delay_within_its_band() -> None:
    b = Backoff(initial=4.0, factor=2.0, max=300.0, jitter=0.25)
    rng = random.Random(20261123)
    delays = [backoff_delay(b, 2, rng) for _ in range(500)]
    assert all(6.0 <= d <= 10.0 for d in delays)  # 8 s +/- 25 %
    assert min(delays) < 6.5 and max(delays) > 9.5  # the band is used, not one point of it
    assert len(set(delays)) > 400


def test_the_same_seed_gives_the_same_delays() -> None:
    b = Backoff(initial=1.0, factor=3.0, max=100.0, jitter=0.5)
    first = [backoff_delay(b, n, random.Random(7)) for n in range(1, 10)]
    again = [backoff_delay(b, n, random.Random(7)) for n in range(1, 10)]
    assert first == again


def test_the_jitter_is_applied_after_the_cap() -> None:
    """At the cap the delay still spreads around the max, so many jobs failing together do not all
    come back at the same moment."""
    b = Backoff(initial=1.0, factor=2.0, max=10.0, jitter=0.1)
    rng = random.Random(3)
    delays = [backoff_delay(b, 30, rng) for _ in range(200)]
    assert all(9.0 <= d <= 11.0 for d in delays) and max(delays) > 10.0


@settings(max_examples=200, deadline=None)
@given(
    initial=st.floats(0.0, 3600.0),
    factor=st.floats(1.0, 10.0),
    cap=st.floats(0.0, 86400.0),
    jitter=st.floats(0.0, 1.0),
    retry=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_delay_is_always_within_the_jitter_band_of_the_capped_delay(
    initial: float, factor: float, cap: float, jitter: float, retry: int, seed: int
) -> None:
    b = Backoff(initial=initial, factor=factor, max=cap, jitter=jitter)
    base = min(cap, initial * factor ** (retry - 1))
    d = backoff_delay(b, retry, random.Random(seed))
    assert d >= 0.0
    assert base * (1 - jitter) - 1e-9 <= d <= base * (1 + jitter) + 1e-9
    assert d <= cap * (1 + jitter) + 1e-9  # however many retries


@settings(max_examples=100, deadline=None)
@given(initial=st.floats(0.001, 60.0), factor=st.floats(1.0, 10.0), retry=st.integers(1, 300))
def test_without_jitter_the_delay_never_shrinks_from_one_retry_to_the_next(
    initial: float, factor: float, retry: int
) -> None:
    b = Backoff(initial=initial, factor=factor, max=600.0, jitter=0.0)
    assert backoff_delay(b, retry) <= backoff_delay(b, retry + 1) <= 600.0


def test_a_very_late_retry_waits_the_max() -> None:
    assert backoff_delay(Backoff(initial=1.0, factor=2.0, max=300.0, jitter=0.0), 1025) == 300.0
