"""What one command line asks of the config: which config file is used (and the line that says so),
the values given on the command line that win over it, and the jobs it selects (SPEC §2).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aimedres_async.plan.config import Config, builtin
from aimedres_async.plan.config_errors import ConfigError
from aimedres_async.plan.config_load import find_config, load

if TYPE_CHECKING:  # imported where used: `status` and the spool's commands need no job planning
    from aimedres_async.plan.jobs import DiscoveryOverrides, Overrides, Plan
    from aimedres_async.plan.sweeps import SweepOverrides


class _Keep:
    """The value of an option that was not given (None is a value: `--max-workers auto`)."""


KEEP = _Keep()


def locate_config(arg: str | None) -> tuple[Config, str]:
    """The config and a line saying which one is used (or that none was found, and where we looked)."""
    explicit = arg or os.environ.get("AIMEDRES_CONFIG")
    if explicit:
        from aimedres_async.plan import legacy

        legacy.check_config_path(explicit)
        how = "--config" if arg else "$AIMEDRES_CONFIG"
        return load(Path(explicit)), f"config: {Path(explicit).absolute()} (from {how})"
    cwd = Path.cwd()
    found, top = find_config(cwd)
    if found is not None:
        if found.parent == cwd:  # named as the user would, in messages about it
            return load(Path(found.name)), f"config: {found}"
        return load(found), f"config: {found} (found in a parent folder)"
    upto = f"{cwd}" if top == cwd else f"{cwd} and its parents up to {top}"
    return builtin(cwd), f"config: no aimedres.toml in {upto}; using built-in defaults"


def override(
    cfg: Config,
    *,
    executor: str | None = None,
    python: str | None = None,
    parallel: bool | None = None,
    max_workers: int | _Keep | None = KEEP,
    epochs: int | None = None,
    folds: int | None = None,
    sample: int | None = None,
    batch: int | None = None,
) -> Config:
    """`cfg` with the command line's values; None (or KEEP) leaves the config's value."""
    sup = cfg.supervisor
    if executor:
        sup = dataclasses.replace(sup, executor=executor)
    if python:  # relative to where the command runs, as any path on a command line
        python = python if "/" not in python else os.path.abspath(os.path.expanduser(python))
        sup = dataclasses.replace(sup, python=python)
    if parallel:
        sup = dataclasses.replace(sup, parallel=True)
    if not isinstance(max_workers, _Keep):
        sup = dataclasses.replace(sup, max_workers=max_workers)
    defaults = cfg.defaults
    given: dict[str, Any] = {"epochs": epochs, "folds": folds, "sample": sample, "batch": batch}
    given = {name: value for name, value in given.items() if value is not None}
    if given:  # per-job values still win over these
        defaults = dataclasses.replace(defaults, **given)
    if sup is cfg.supervisor and defaults is cfg.defaults:
        return cfg
    return dataclasses.replace(cfg, supervisor=sup, defaults=defaults)


def select_jobs(
    cfg: Config,
    overrides: Overrides,
    discovery: DiscoveryOverrides,
    *,
    only: Sequence[str] = (),
    exclude: Sequence[str] = (),
    roots: Sequence[str] | None = None,
    auto_discover: bool = True,
    sweeps: SweepOverrides | None = None,
) -> Plan:
    """The jobs to run: `--discover-root` folders (relative to here) replace [discovery] roots and
    turn discovery on; `auto_discover=False` turns it off; `sweeps`: --matrix, --seeds, --yes.
    ConfigError when an interpreter is missing."""
    from aimedres_async.plan.jobs import plan
    from aimedres_async.plan.sweeps import NO_SWEEP_OVERRIDES

    resolved = [str(Path(r).resolve()) for r in roots] if roots else None
    p = plan(
        cfg,
        overrides,
        discover_enabled=False if not auto_discover else (True if resolved else None),
        roots=resolved,
        only=only,
        exclude=exclude,
        discovery=discovery,
        sweeps=sweeps or NO_SWEEP_OVERRIDES,
    )
    check_interpreters(cfg, p)
    return p


def check_interpreters(cfg: Config, p: Plan) -> None:
    """ConfigError naming every missing interpreter, except on Ray: there the scripts run on the
    cluster's machines, and their interpreter need not exist here."""
    from aimedres_async.plan.preflight import interpreter_problems

    problems = [] if cfg.supervisor.executor == "ray" else interpreter_problems(p.jobs)
    if problems:
        raise ConfigError(problems)
