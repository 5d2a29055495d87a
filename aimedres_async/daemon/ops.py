"""`restart` and `clean` below the command line: a finished ticket made into a new one, and finished
tickets (with their job logs) removed from the spool, never a queued or running one.
"""

from __future__ import annotations

import contextlib
import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from aimedres_async.daemon import numbers
from aimedres_async.daemon.spool import Spool
from aimedres_async.daemon.tickets import MAX_TICKET_BYTES, SUFFIX, filed_ticket
from aimedres_async.plan.limits import read_regular_file

FINAL = ("done", "failed", "rejected")
# dropped from a ticket that is restarted: what the spool and the old run wrote into it
_NOT_CARRIED = ("result", "number", "not_before", "restarted_from")


class OpsError(ValueError):
    """One line: why a ticket cannot be restarted or cleaned (exit 2)."""


def restart_draft(text: str, old_id: str) -> tuple[str, str]:
    """(label, text) of a new ticket made from a filed one: its own keys as they were, without
    [result], its number and its delay, with `restarted_from` naming it."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise OpsError(f"ticket {old_id} is not valid TOML ({e}); `restart --edit {old_id}` to fix it") from None
    for key in _NOT_CARRIED:
        raw.pop(key, None)
    raw["restarted_from"] = old_id
    label = next(
        (str(raw[k]) for k in ("label", "job", "id") if isinstance(raw.get(k), str)), old_id.rsplit("-", 1)[-1]
    )
    return label, tomli_w.dumps(raw)


def finished_text(spool: Spool, ticket_id: str) -> str:
    """A filed ticket's text; OpsError for one still queued or running (or gone)."""
    found = spool.state_of(ticket_id)
    if found is None:
        raise OpsError(f"no such ticket: {ticket_id}")
    where = found[0]
    if where not in FINAL:
        state = "queued" if where == "incoming" else "running"
        raise OpsError(f"ticket {ticket_id} is {state}: only a finished ticket can be restarted")
    try:
        data = read_regular_file(spool.dir(where) / f"{ticket_id}{SUFFIX}", MAX_TICKET_BYTES + (1 << 16))
    except OSError as e:
        raise OpsError(f"cannot read ticket {ticket_id}: {e.strerror or e}") from None
    except ValueError as e:
        raise OpsError(f"cannot read ticket {ticket_id}: {e}") from None
    return data.decode("utf-8", "replace")


# ---------------------------------------------------------------- clean


@dataclass
class Cleaned:
    removed: dict[str, int] = field(default_factory=dict)  # folder -> tickets removed
    logs: int = 0
    kept: list[str] = field(default_factory=list)  # why a finished ticket stayed


def waited_for(spool: Spool) -> dict[str, str]:
    """Finished tickets a queued ticket is `after`: cleaning one would fail its dependent."""
    out: dict[str, str] = {}
    for q in spool.queue():
        for dep in q.after:
            out.setdefault(dep, q.ticket_id)
    return out


def clean(spool: Spool, logs_dir: Path, states: tuple[str, ...], older_than: float | None) -> Cleaned:
    """Remove the finished tickets of `states` filed more than `older_than` seconds ago (all when
    None), each with its number and its job log (a log under logs_dir only). A ticket still in
    active/ is being filed right now (its final copy is linked before active/ is unlinked) and
    is left for the next clean; so is one a queued ticket waits for."""
    done = Cleaned()
    now = time.time()
    keep = waited_for(spool)
    logs_root = logs_dir.resolve()
    for state in states:
        try:
            names = sorted(os.listdir(spool.dir(state)))
        except FileNotFoundError:
            continue
        for name in names:
            if not name.endswith(SUFFIX) or name.startswith("."):
                continue
            ticket_id = name[: -len(SUFFIX)]
            path = spool.dir(state) / name
            try:
                age = now - os.lstat(path).st_mtime
            except FileNotFoundError:
                continue
            if older_than is not None and age < older_than:
                continue
            if os.path.lexists(spool.dir("active") / name):
                continue
            if ticket_id in keep:
                done.kept.append(f"kept {ticket_id}: queued ticket {keep[ticket_id]} waits for it (after)")
                continue
            done.logs += _remove(spool, state, ticket_id, path, logs_root)
            done.removed[state] = done.removed.get(state, 0) + 1
    return done


def _remove(spool: Spool, state: str, ticket_id: str, path: Path, logs_root: Path) -> int:
    """Remove one filed ticket, its .error, its number and its log; 1 if a log was removed."""
    raw = filed_ticket(path)
    result = raw.get("result") if isinstance(raw.get("result"), dict) else {}
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    if state == "rejected":
        with contextlib.suppress(FileNotFoundError):
            (spool.dir(state) / f"{ticket_id}.error").unlink()
    number = raw.get("number")
    if isinstance(number, int) and not isinstance(number, bool):
        numbers.forget(spool.root, number, ticket_id)
    log = result.get("log") if isinstance(result, dict) else None
    if isinstance(log, str) and Path(log).name == f"{ticket_id}.jsonl":
        target = Path(log).resolve()
        if target.is_relative_to(logs_root):
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
                return 1
    return 0
