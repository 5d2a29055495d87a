"""The daemon's queues (groups): how many tickets each may run (the config, or `parallel N` kept in
control/parallel.<group>), which are paused (control/paused.<group>), and which waiting tickets
may be claimed now.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimedres_async.daemon.spool import Queued, Spool
from aimedres_async.plan.config import DEFAULT_GROUP, Config
from aimedres_async.plan.limits import read_regular_file

PARALLEL = "parallel."
PAUSED = "paused."


def limits(cfg: Config, default_workers: int, overrides: Mapping[str, int]) -> dict[str, int]:
    """Workers per group: "default" has [supervisor] max_workers (or [groups.default]), each
    [groups.<name>] its max_workers; `parallel N` (overrides) wins over both."""
    out = {DEFAULT_GROUP: default_workers} | {name: g.max_workers for name, g in cfg.groups.items()}
    out |= {name: n for name, n in overrides.items() if name in out}
    return out


def free(limits: Mapping[str, int], busy: Mapping[str, int]) -> dict[str, int]:
    """Free workers per group; a group over its limit (lowered by `parallel`) has none, never less."""
    return {g: max(0, n - busy.get(g, 0)) for g, n in limits.items()}


def busy(groups: Iterable[str]) -> dict[str, int]:
    """Running tickets per group, from each claimed ticket's group."""
    out: dict[str, int] = {}
    for g in groups:
        out[g] = out.get(g, 0) + 1
    return out


def may_claim(q: Queued, free: Mapping[str, int], paused: set[str], now: float) -> bool:
    """Whether a waiting ticket may be claimed now: not before its `not_before`, its group not
    paused and with a free worker. A group the config lacks passes, so claim() rejects it."""
    if q.order.not_before is not None and q.order.not_before > now:
        return False
    group = q.order.group
    if group in paused:
        return False
    return group not in free or free[group] > 0


def next_due(queue: Iterable[Queued], now: float) -> float | None:
    """Seconds until the first delayed ticket becomes due, if any."""
    due = [q.order.not_before - now for q in queue if q.order.not_before is not None and q.order.not_before > now]
    return min(due, default=None)


@dataclass
class Queues:
    """What control/ says of the groups, as a daemon last read it: `parallel N` and paused groups."""

    parallel: dict[str, int] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)

    def refresh(self, spool: Spool) -> tuple[list[str], list[str], bool]:
        """Read control/ again: (groups paused since, groups resumed since, whether `parallel` changed)."""
        paused, parallel = paused_groups(spool), read_parallel(spool)
        news = sorted(paused - self.paused), sorted(self.paused - paused), parallel != self.parallel
        self.paused, self.parallel = paused, parallel
        return news

    def view(self, limits: Mapping[str, int], busy: Mapping[str, int]) -> dict[str, dict[str, Any]]:
        """Each group's workers, busy count, pause and whether `parallel` set it (for `status`)."""
        return {
            g: {"workers": n, "busy": busy.get(g, 0), "paused": g in self.paused, "parallel": g in self.parallel}
            for g, n in limits.items()
        }


# ---------------------------------------------------------------- control/: parallel, paused


def _names(control: Path, prefix: str) -> list[str]:
    try:
        return [n[len(prefix) :] for n in os.listdir(control) if n.startswith(prefix) and len(n) > len(prefix)]
    except FileNotFoundError:
        return []


def read_parallel(spool: Spool) -> dict[str, int]:
    """`parallel N [--group G]` as kept in the spool: group -> workers."""
    out = {}
    for group in _names(spool.dir("control"), PARALLEL):
        with contextlib.suppress(OSError, ValueError):
            n = int(read_regular_file(spool.dir("control") / f"{PARALLEL}{group}", 4096).split()[0])
            if n >= 1:
                out[group] = n
    return out


def set_parallel(spool: Spool, group: str, workers: int | None) -> None:
    """Keep `parallel N` for a group (None: back to the config's count)."""
    path = spool.dir("control") / f"{PARALLEL}{group}"
    if workers is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    spool.put_control(path.name, f"{workers}\n".encode(), replace=True)


def paused_groups(spool: Spool) -> set[str]:
    return set(_names(spool.dir("control"), PAUSED))


def set_group_paused(spool: Spool, group: str, paused: bool) -> None:
    path = spool.dir("control") / f"{PAUSED}{group}"
    if paused:
        spool.put_control(path.name, f"{os.getpid()}\n".encode(), replace=False)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
