"""The project's own commands: `init` writes a config, `validate` checks one, `report` draws a run
that is over; none of them runs a job.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aimedres_async.cli.usage import UsageError, one_run
from aimedres_async.plan.config import Config
from aimedres_async.plan.config_errors import ConfigError
from aimedres_async.plan.invocation import check_interpreters, override

if TYPE_CHECKING:
    from aimedres_async.plan.jobs import JobSpec


def cmd_init(a: argparse.Namespace) -> int:
    from aimedres_async.plan.starter import init_text

    path = Path(a.path)
    text = init_text(path, a.from_yaml, a.from_orchestrator)
    if path.exists():
        raise UsageError(f"{path} already exists; not overwriting it")
    try:
        with open(path, "x", encoding="utf-8") as f:  # "x": refuse to overwrite
            f.write(text)
    except FileExistsError:
        raise UsageError(f"{path} already exists; not overwriting it") from None
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
    print(f"wrote {path}; check it with `aimedres-async --config {path} validate`")
    if not a.from_yaml and not a.from_orchestrator:
        from aimedres_async.plan.orchestrator import find_orchestrator

        old = find_orchestrator(path.absolute().parent)
        if old is not None:
            print(
                f"note: {old.name} holds the old orchestrator's built-in job list (default_jobs()), which this "
                f"config does not run; `aimedres-async init --from-orchestrator {old.name}` converts it with its "
                "arguments, output folders and the old defaults",
                file=sys.stderr,
            )
    return 0


def cmd_validate(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.engine.admission import Refused, job_problems
    from aimedres_async.plan.jobs import plan

    cfg = override(cfg, python=a.python)
    p = plan(cfg)
    check_interpreters(cfg, p)
    try:
        problems, _pools = job_problems(cfg, p.jobs)
    except Refused as e:
        raise UsageError(str(e)) from None
    if not problems:  # first, unless the answer is an error (then one line per problem)
        print(a.config_line, file=sys.stderr)
    for w in p.warnings:
        print(f"warning: {w}", file=sys.stderr)
    swept = any(s.params is not None for s in p.jobs)
    if swept and len(p.jobs) > cfg.supervisor.max_jobs:
        print(
            f"warning: the sweeps expand to {len(p.jobs):,} jobs, more than max_jobs = "
            f"{cfg.supervisor.max_jobs:,} ([supervisor]): `run` needs --yes",
            file=sys.stderr,
        )
    if problems:
        raise ConfigError([f"{cfg.path or 'built-in defaults'}: {problem}" for problem in problems])
    where = cfg.path or "built-in defaults"
    count = f"{len(p.jobs)} job" + ("" if len(p.jobs) == 1 else "s")
    print(f"{where}: ok ({count}: {', '.join(_names(p.jobs)) or 'none'})")
    return 0


def _names(jobs: Sequence[JobSpec]) -> list[str]:
    """Job ids, a sweep's combinations counted under their job (`mlp (12 combinations)`)."""
    counts: dict[str, int] = {}
    for spec in jobs:
        name = spec.id.partition("[")[0] if spec.params is not None else spec.id
        counts[name] = counts.get(name, 0) + (1 if spec.params is not None else 0)
    return [f"{name} ({n} combination{'s' if n > 1 else ''})" if n else name for name, n in counts.items()]


def cmd_report(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.report.html import write_report
    from aimedres_async.report.run_model import ReportError, find_run, parse_since, runs_since

    logs_dir = Path(a.logs_dir).resolve() if a.logs_dir else cfg.resolve(cfg.supervisor.logs_dir)
    try:
        if a.since is not None:
            if one_run(a) is not None:
                raise UsageError("give a RUN or --since, not both")
            since = parse_since(a.since)
            dirs = runs_since(logs_dir, since)
            out = Path(a.output) if a.output else Path("report.html")
        else:
            since = None
            dirs = [find_run(logs_dir, one_run(a))]
            out = Path(a.output) if a.output else dirs[0] / "report.html"
        write_report(dirs, out, since)
    except ReportError as e:
        raise UsageError(str(e)) from None
    print(f"wrote {out}")
    return 0
