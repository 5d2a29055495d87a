"""The retry policy: which attempts are retried (`should_retry`) and after how long
(`backoff_delay`). The supervisor only re-queues what this says.
"""

from __future__ import annotations

import math
import random

from aimedres_async.engine.attempt import AttemptResult
from aimedres_async.plan.config import Backoff
from aimedres_async.plan.jobs import JobSpec, Outcome


def should_retry(result: AttemptResult, spec: JobSpec, attempt: int) -> bool:
    """Failed and timed-out attempts are retried; cancelled and unspawnable ones never are, nor a
    cluster job someone else cancelled (`scancel` by its user or an admin), nor one whose output
    matched `fail_on` (what it said, such as a missing dataset, says the next attempt would too)."""
    if result.failure in ("cancelled_externally", "output_match"):
        return False
    return result.outcome in (Outcome.FAILED, Outcome.TIMED_OUT, Outcome.STALLED) and attempt <= spec.retries


def backoff_delay(b: Backoff, retry: int, rng: random.Random | None = None) -> float:
    """Delay before retry number `retry` (1-based): min(max, initial*factor**(n-1)) +/- jitter."""
    try:
        grown = b.initial * b.factor ** (retry - 1)
    except OverflowError:  # a late retry of many (the config allows retries up to 2**63 - 1)
        grown = math.inf
    base = min(b.max, grown)
    jitter = (rng or random).uniform(1 - b.jitter, 1 + b.jitter) if b.jitter else 1.0
    return max(0.0, base * jitter)
