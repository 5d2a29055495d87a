"""Python's cyclic collector during a long run: what lives as long as the run out of its sight.

A run keeps every job it has finished (its result and summary entry) to its end. The collector's
full passes look at every tracked object, so each takes longer as the run goes on, and one holds
the event loop for as long as it takes. In a 100,000-job run on the 2-core project VM, with only
the first step below, the collector's own full passes came twice, over ~100,000 objects each, and
took 89 and 95 ms; with both, the longest took 19 ms.

`SurvivorFreezer` does two things while a run's attempts go on:

- whatever survives a full pass is frozen (`gc.freeze`, the permanent generation) right when the
  pass ends. At that moment no generation holds garbage (the pass has just collected all of them),
  so nothing is frozen that was already garbage, and the next full pass looks only at what was
  made since. Objects frozen while alive are still freed by reference counting when they die; only
  a reference cycle among them is never collected: for a run, what the few attempts running at a
  pass leave behind;
- every `COLLECT_EVERY` finished jobs it makes a full pass itself, so that what they left (a few
  objects each) is looked at in small passes rather than in the collector's own, whose size is
  set by how much the run held at its last one.

A long-lived process (the daemon) lets go of its finished jobs, and does not use this.
"""

from __future__ import annotations

import gc
from types import TracebackType
from typing import Any

COLLECT_EVERY = 2000  # finished jobs between two full passes of our own (~8,000 objects, ~7 ms here)


def _freeze_after_full_pass(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


class SurvivorFreezer:
    """While entered: the survivors of every full pass are frozen as it ends, and a full pass is
    made every `every` finished jobs (`job_finished`), unless the collector is turned off."""

    def __init__(self, every: int | None = None) -> None:
        self.every = every or COLLECT_EVERY
        self._finished = 0

    def __enter__(self) -> SurvivorFreezer:
        gc.callbacks.append(_freeze_after_full_pass)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        gc.callbacks.remove(_freeze_after_full_pass)

    def job_finished(self) -> None:
        self._finished += 1
        if self._finished % self.every == 0 and gc.isenabled():
            gc.collect()
