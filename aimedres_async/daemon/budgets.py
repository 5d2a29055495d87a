"""Each group's own budget of what its running tickets declare (`[groups.<name>] gpus, memory,
cpus`), as a Slurm QOS's GrpTRES caps what its jobs together may hold; pure accounting, no I/O.

A ticket counts toward its group from its claim until it is filed, with what its job declares
(`resources`); one that declares nothing counts zero (its group's `max_workers` alone limits it).
A waiting ticket of a budgeted group is claimed only when its need fits what the group has left;
the daemon's own budget ([supervisor] gpus/memory/cpus) still applies once it is claimed. A ticket
that could never fit its group's budget is claimed to be rejected, saying why. Within a group a
smaller ticket may be claimed ahead of one that does not fit yet, but only MAX_BYPASS times (the
scheduler's rule): after that nothing behind it in the group that takes from the budget is claimed
until it is (a ticket that declares none of what the group caps never waits for the budget).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aimedres_async.daemon.tickets import Order
from aimedres_async.engine.scheduler import MAX_BYPASS, NOTHING, Need
from aimedres_async.plan.config import Config, GroupConfig, JobConfig, Resources
from aimedres_async.plan.sweeps import base_of
from aimedres_async.plan.units import format_size

_EPS = 1e-9


def declared(order: Order, cfg: Config, known: Mapping[str, JobConfig]) -> Need:
    """What a waiting ticket's job declares, as the ticket's job will have it (plan.jobs.ticket_spec):
    its own `resources`, else the configured job's, else [defaults]'."""
    own: Resources | None = order.resources
    if own is None and order.job is not None:
        base = known.get(base_of(order.job))  # a sweep's combination: `train[lr=0.1]`
        own = base.settings.resources if base is not None else None
    return Need.of(own or cfg.defaults.resources or Resources())


def plus(a: Need, b: Need) -> Need:
    return Need(gpus=a.gpus + b.gpus, memory=a.memory + b.memory, cpus=a.cpus + b.cpus)


def in_use(claimed: Iterable[tuple[str, Need]]) -> dict[str, Need]:
    """What each group's claimed tickets declare together, from (group, need) pairs."""
    out: dict[str, Need] = {}
    for group, need in claimed:
        out[group] = plus(out.get(group, NOTHING), need)
    return out


def never_fits(group: str, budget: GroupConfig, need: Need) -> str | None:
    """Why this need can never fit the group's budget, one line naming the group and the
    resource; None if it can (or the group has no budget)."""
    where = f"[groups.{group}]"
    if budget.gpus is not None and need.gpus > budget.gpus + _EPS:
        return f"needs {need.gpus:g} GPU(s), group {group} may use {budget.gpus} ({where} gpus)"
    if budget.memory is not None and need.memory > budget.memory:
        have = format_size(budget.memory)
        return f"needs {format_size(need.memory)} of memory, group {group} may use {have} ({where} memory)"
    if budget.cpus is not None and need.cpus > budget.cpus + _EPS:
        return f"needs {need.cpus:g} CPUs, group {group} may use {budget.cpus:g} ({where} cpus)"
    return None


def charged(budget: GroupConfig, need: Need) -> bool:
    """Whether the need declares something the group's budget caps."""
    return bool(
        (need.gpus and budget.gpus is not None)
        or (need.memory and budget.memory is not None)
        or (need.cpus and budget.cpus is not None)
    )


def fits(budget: GroupConfig, used: Need, need: Need) -> bool:
    """Whether `need` fits what the group has left. A resource the need does not declare is not
    looked at: a group over its budget (lowered by a reload) still runs tickets that declare none."""
    if need.gpus and budget.gpus is not None and used.gpus + need.gpus > budget.gpus + _EPS:
        return False
    if need.memory and budget.memory is not None and used.memory + need.memory > budget.memory:
        return False
    return not (need.cpus and budget.cpus is not None and used.cpus + need.cpus > budget.cpus + _EPS)


class Gate:
    """One pass of the daemon over its queue: which waiting tickets the group budgets let it claim.

    `bypassed` (ticket -> times a later ticket of its group was claimed first) is the daemon's,
    kept across passes; `forget` drops the tickets no longer waiting."""

    def __init__(self, budgets: Mapping[str, GroupConfig], used: Mapping[str, Need], bypassed: dict[str, int]) -> None:
        self.budgets = {g: b for g, b in budgets.items() if b.budgeted}
        self.used = dict(used)
        self.bypassed = bypassed
        self._skipped: dict[str, list[str]] = {}  # group -> its tickets passed over in this pass

    def may_claim(self, ticket: str, group: str, need: Need) -> bool:
        """True: claim it (it fits the group's budget, the group has none, or it never can and
        is claimed to be rejected). False: it waits, and counts as passed over if a later ticket
        of its group is claimed."""
        budget = self.budgets.get(group)
        if budget is None or not charged(budget, need) or never_fits(group, budget, need):
            return True
        skipped = self._skipped.setdefault(group, [])
        if any(self.bypassed.get(t, 0) >= MAX_BYPASS for t in skipped):
            return False  # one has waited long enough: nothing behind it in its group goes first
        if fits(budget, self.used.get(group, NOTHING), need):
            return True
        skipped.append(ticket)
        return False

    def claimed(self, group: str, need: Need) -> None:
        """A ticket may_claim let through was claimed and runs: count it, and count the pass-over."""
        budget = self.budgets.get(group)
        if budget is None or not charged(budget, need):
            return  # takes nothing the group's budget caps: passes no one
        self.used[group] = plus(self.used.get(group, NOTHING), need)
        for t in self._skipped.get(group, ()):
            self.bypassed[t] = self.bypassed.get(t, 0) + 1

    def forget(self, waiting: Iterable[str]) -> None:
        """Keep the pass-over counts of the tickets still waiting only."""
        still = set(waiting)
        for t in [t for t in self.bypassed if t not in still]:
            del self.bypassed[t]


def view(budgets: Mapping[str, GroupConfig], used: Mapping[str, Need]) -> dict[str, dict[str, Any]]:
    """For `status`: each budgeted group's `budget` and what its claimed tickets declare (`in_use`),
    the keys it caps only (memory in bytes)."""
    out: dict[str, dict[str, Any]] = {}
    for g, b in budgets.items():
        if not b.budgeted:
            continue
        u = used.get(g, NOTHING)
        caps = {"gpus": (b.gpus, u.gpus), "memory": (b.memory, u.memory), "cpus": (b.cpus, u.cpus)}
        out[g] = {
            "budget": {k: cap for k, (cap, _) in caps.items() if cap is not None},
            "in_use": {k: _number(n) for k, (cap, n) in caps.items() if cap is not None},
        }
    return out


def _number(n: float) -> float | int:
    return int(n) if float(n).is_integer() else round(n, 6)
