"""The spool's housekeeping commands: `restart` (finished tickets queued again as new ones),
`clean` (finished tickets and their logs removed), `parallel` (workers per group, live).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from aimedres_async.cli.queue import check_group, resolve_tickets, spool_of
from aimedres_async.cli.usage import UsageError
from aimedres_async.daemon.spool import Spool
from aimedres_async.plan.config import DEFAULT_GROUP, Config


def cmd_restart(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.daemon import ops, submit

    spool = spool_of(cfg)
    tickets = resolve_tickets(spool, a.tickets)
    try:
        drafts = []
        for ticket in tickets:
            label, text = ops.restart_draft(ops.finished_text(spool, ticket), ticket)
            drafts.append((label, _edited(text, ticket) if a.edit else text))
        prepared = submit.prepare(cfg, spool, drafts)
        owner = submit.owner_for(spool)
        olds = iter(tickets)
        submit.enqueue(
            spool, prepared, owner, lambda n, new: print(f"{n} {new} (restarted from {next(olds)})", flush=True)
        )
    except (ops.OpsError, submit.SubmitError) as e:
        raise UsageError(str(e)) from None
    return 0


def _edited(text: str, ticket: str) -> str:
    """The ticket's text as the user left it in $VISUAL/$EDITOR (a copy in a temp file). An editor
    that fails, or an emptied file, restarts nothing (as `git commit` does with its message)."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    fd, name = tempfile.mkstemp(prefix=f"{ticket}.", suffix=".toml")
    path = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            code = subprocess.run([*shlex.split(editor), name], check=False).returncode
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot run the editor {editor!r}: {e}") from None
        if code != 0:
            raise UsageError(f"the editor {editor!r} exited {code}; nothing was restarted")
        edited = path.read_text(encoding="utf-8", errors="replace")
    finally:
        path.unlink(missing_ok=True)
    if not edited.strip():
        raise UsageError(f"the edited copy of {ticket} is empty; nothing was restarted")
    return edited


def cmd_clean(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.daemon.ops import clean

    spool = spool_of(cfg)
    states = ("done",) if a.succeeded else ("failed", "rejected") if a.failed else ("done", "failed", "rejected")
    try:
        done = clean(spool, cfg.resolve(cfg.supervisor.logs_dir), states, a.older_than)
    except OSError as e:
        raise UsageError(f"cannot clean spool {spool.root}: {e.strerror or e}") from None
    for line in done.kept:
        print(line)
    total = sum(done.removed.values())
    per = ", ".join(f"{n} {state}" for state, n in done.removed.items())
    per = f" ({per})" if per else ""
    print(f"removed {total} finished ticket{'s' * (total != 1)}{per} and {done.logs} logs from {spool.root}")
    return 0


def cmd_parallel(cfg: Config, a: argparse.Namespace) -> int:
    from aimedres_async.daemon import groups

    spool = spool_of(cfg)
    group = a.group or DEFAULT_GROUP
    check_group(cfg, group)
    if a.workers is not None and a.reset:
        raise UsageError("give N or --reset, not both")
    if a.workers is None and not a.reset:
        _show_parallel(cfg, spool)
        return 0
    try:
        spool.ensure(check_secure=False)
        groups.set_parallel(spool, group, a.workers)
    except OSError as e:
        raise UsageError(f"cannot write to spool {spool.root}: {e.strerror or e}") from None
    workers = groups.limits(cfg, _config_workers(cfg), groups.read_parallel(spool))[group]
    how = "set by `parallel`" if a.workers is not None else "the config's"
    served = "" if spool.daemons() else f" (applied when a daemon serves spool {spool.root})"
    print(f"group {group}: {workers} ticket{'s' * (workers != 1)} at once ({how}){served}")
    return 0


def _config_workers(cfg: Config) -> int:
    from aimedres_async.engine.run import default_workers

    return default_workers(True, cfg.supervisor.max_workers)


def _show_parallel(cfg: Config, spool: Spool) -> None:
    from aimedres_async.daemon import groups

    overrides = groups.read_parallel(spool)
    for group, n in groups.limits(cfg, _config_workers(cfg), overrides).items():
        how = "set by `parallel`" if group in overrides else "the config's"
        print(f"group {group}: {n} ticket{'s' * (n != 1)} at once ({how})")


def cmd_tickets(cfg: Config, a: argparse.Namespace) -> int:
    """The hidden helper of the completion scripts: the numbers of the spool's tickets, newest first."""
    from aimedres_async.daemon import numbers

    spool = spool_of(cfg)
    for n in sorted(numbers.taken(spool.root / numbers.FOLDER), reverse=True)[:500]:
        sys.stdout.write(f"{n}\n")
    return 0
