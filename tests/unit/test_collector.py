"""system.collector: during a run, the survivors of every full pass of the cyclic collector are
frozen out of its sight, and a small full pass is made every so many finished jobs."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from aimedres_async.system.collector import SurvivorFreezer


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def no_automatic_pass() -> Iterator[None]:
    """The collector on, but never starting a pass of its own during the test."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(1_000_000_000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def test_what_survives_a_full_pass_is_frozen_and_garbage_is_collected(no_automatic_pass: None) -> None:
    with SurvivorFreezer():
        kept = Node()
        dead = cycle()
        gc.collect()
        assert dead() is None, "a cycle that was garbage at the pass was frozen, not collected"
        assert not any(o is kept for o in gc.get_objects()), "a survivor is still looked at"
        later = Node()
        gc.collect(1)  # a younger pass freezes nothing
        assert any(o is later for o in gc.get_objects())
    gc.collect()  # once out, a full pass freezes nothing
    after = Node()
    gc.collect()
    assert any(o is after for o in gc.get_objects())


def test_a_full_pass_every_so_many_finished_jobs(no_automatic_pass: None) -> None:
    with SurvivorFreezer(every=3) as freezer:
        dead = cycle()
        freezer.job_finished()
        freezer.job_finished()
        assert dead() is not None  # not yet: nothing collects on its own in this test
        freezer.job_finished()
        assert dead() is None


def test_no_pass_of_its_own_while_the_collector_is_off(no_automatic_pass: None) -> None:
    gc.disable()
    try:
        with SurvivorFreezer(every=1) as freezer:
            dead = cycle()
            freezer.job_finished()
            assert dead() is not None
    finally:
        gc.enable()
    gc.collect()
    assert dead() is None
