"""A run's sweeps for the jobs a command line selects (SPEC §18): each job's combinations, the ones
--only/--exclude keep, and whether they fit `max_jobs`. jobs.py builds their commands."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aimedres_async.plan.config_errors import ConfigError, InputError
from aimedres_async.plan.sweeps import (
    HARD_LIMIT,
    Params,
    Sweep,
    SweepError,
    SweepOverrides,
    Value,
    base_of,
    check_unique,
    expand,
    split_ids,
    swept_id,
)

Named = list[tuple[str, Params]]  # a job's combinations: (full id, parameters)


class TooManyJobs(InputError):
    """The sweeps expand beyond [supervisor] max_jobs (and --yes was not given)."""


class NoSuchCombination(InputError):
    """--only/--exclude named a full id that is none of its job's combinations."""


@dataclass(frozen=True)
class Swept:
    """One combination of a job's sweep: its id, its parameters, and their options for its command."""

    id: str
    params: Mapping[str, Value]
    args: tuple[str, ...]


@dataclass(frozen=True)
class Picks:
    """--only/--exclude as they concern sweeps: jobs selected whole (plain ids), and full ids of
    one combination to keep or to leave out."""

    whole: frozenset[str]
    only: frozenset[str]
    exclude: frozenset[str]

    @staticmethod
    def of(whole: Sequence[str], only: Sequence[str], exclude: Sequence[str]) -> Picks:
        return Picks(frozenset(whole), frozenset(split_ids(only)[1]), frozenset(split_ids(exclude)[1]))


def expand_all(jobs: Sequence[tuple[str, Sweep | None]], picks: Picks, where: str) -> list[Named | None]:
    """Each job's combinations after --only/--exclude (None: the job is not swept). ConfigError for
    a sweep that cannot expand, NoSuchCombination for a full id none of them has."""
    expanded: list[Named | None] = []
    problems: list[str] = []
    produced: set[str] = set()
    for base, sweep in jobs:
        if sweep is None:
            expanded.append(None)
            continue
        try:
            combos = expand(sweep)
            check_unique(base, combos)
        except SweepError as e:
            problems.append(f"{where}: job {base}: {e}")
            continue
        named = [(swept_id(base, c), c) for c in combos]
        if not named:
            problems.append(f"{where}: job {base}: its sweep expands to no combination (all excluded)")
        produced.update(i for i, _c in named)
        mine = {i for i in picks.only if base_of(i) == base}
        if mine and base not in picks.whole:
            named = [(i, c) for i, c in named if i in mine]
        expanded.append([(i, c) for i, c in named if i not in picks.exclude])
    if problems:
        raise ConfigError(problems)
    missing = sorted((picks.only | picks.exclude) - produced)
    if missing:
        raise NoSuchCombination(
            f"no such combination: {', '.join(missing)} (`list --only {base_of(missing[0])}` shows the ids)"
        )
    return expanded


def check_size(expanded: Sequence[Named | None], max_jobs: int, over: SweepOverrides) -> None:
    """TooManyJobs when a run with sweeps has more jobs than `max_jobs` (--yes: than HARD_LIMIT)."""
    if not over.limit or all(named is None for named in expanded):
        return
    total = sum(len(named) if named is not None else 1 for named in expanded)
    if over.yes and total > HARD_LIMIT:
        raise TooManyJobs(f"the sweeps expand to {total:,} jobs; at most {HARD_LIMIT:,} can run")
    if not over.yes and total > max_jobs:
        raise TooManyJobs(
            f"the sweeps expand to {total:,} jobs, more than max_jobs = {max_jobs:,} ([supervisor]); "
            "run with --yes to run them all, or narrow them with --only, --matrix or --seeds"
        )
