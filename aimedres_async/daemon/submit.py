"""`submit` below the command line: tickets built from options or read from files, each checked as
the daemon will check it, then enqueued atomically under the user the daemon reads tickets from.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w

from aimedres_async.daemon.control import ticket_owner, user_name
from aimedres_async.daemon.spool import Spool, SpoolError
from aimedres_async.daemon.tickets import MAX_TICKET_BYTES, TicketError, new_ticket_id
from aimedres_async.plan.config import Config, JobConfig
from aimedres_async.plan.config_errors import ConfigError
from aimedres_async.plan.config_load import parse_ticket
from aimedres_async.plan.jobs import TicketJobError, TicketMemo, known_jobs, ticket_combinations, ticket_spec
from aimedres_async.plan.limits import load_toml, read_regular_file

# (label for the ticket id, ticket text)
Draft = tuple[str, str]


class SubmitError(Exception):
    """One line: why nothing (or nothing more) was submitted (exit 2)."""


def ordering(priority: int | None, after: Sequence[str], **more: Any) -> dict[str, Any]:
    """`--priority`, `--after`, `--label`, `--group`, `--delay` as the ticket keys they stand for
    (`more`: label, group, not_before; None is left out)."""
    keys: dict[str, Any] = {}
    if priority is not None:
        keys["priority"] = priority
    if after:
        keys["after"] = list(after)
    keys |= {k: v for k, v in more.items() if v is not None}
    return keys


def not_before(delay: float | None) -> datetime.datetime | None:
    """`--delay D` as the moment the ticket may start (a TOML date-time, UTC, whole seconds up)."""
    if delay is None:
        return None
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=delay)
    return moment.replace(microsecond=0) + datetime.timedelta(seconds=1 if moment.microsecond else 0)


def from_command(argv: Sequence[str], cwd: str, values: Mapping[str, Any], keys: Mapping[str, Any]) -> Draft:
    """`submit -- CMD ARG...`: a ticket running argv as it is (never through a shell) in `cwd`.
    CMD without a slash is looked up in the submitter's PATH now, as their shell would."""
    if not argv:
        raise SubmitError("nothing after `--`: give the command to run, e.g. `submit -- python3 train.py`")
    program = argv[0]
    if "/" not in program:
        found = shutil.which(program)
        if found is None:
            raise SubmitError(f"{program}: command not found in PATH")
        program = os.path.abspath(found)
    elif not os.access(os.path.join(cwd, program), os.X_OK):
        raise SubmitError(f"{program}: not an executable file (in {cwd})")
    if not os.path.isdir(cwd):
        raise SubmitError(f"--cwd {cwd}: not a folder")
    table: dict[str, Any] = {"command": [program, *argv[1:]], "cwd": cwd}
    table |= {name: value for name, value in values.items() if value is not None}
    label = keys.get("label") or os.path.basename(argv[0])
    return label, tomli_w.dumps(dict(keys) | {"label": label} | table)


def from_options(job: str, values: Mapping[str, Any], args: Sequence[str], keys: Mapping[str, Any]) -> Draft:
    """A ticket naming a configured (or discovered) job; `values` left None are not written."""
    table: dict[str, Any] = {"job": job}
    table |= {name: value for name, value in values.items() if value is not None}
    if args:
        table["args"] = list(args)
    return keys.get("label") or job, tomli_w.dumps(table | dict(keys))


def from_job(
    cfg: Config, job: str, values: Mapping[str, Any], args: Sequence[str], keys: Mapping[str, Any]
) -> list[Draft]:
    """`submit --job ID`: one ticket, or, for a swept job named whole, one ticket per combination
    (`train[lr=0.1,seed=0]`, ...), as `run` would run them; up to [supervisor] max_jobs of them."""
    base = known_jobs(cfg).get(job) if "[" not in job else None
    names = ticket_combinations(cfg, base) if base is not None else None
    if names is None:
        return [from_options(job, values, args, keys)]
    limit = cfg.supervisor.max_jobs
    if len(names) > limit:
        raise SubmitError(
            f"{job} is a sweep of {len(names):,} combinations, more than [supervisor] max_jobs = {limit:,} "
            "tickets at once: raise max_jobs, or submit some of them by their ids"
        )
    label = keys.get("label")
    return [
        from_options(name, values, args, {**keys, "label": label + name[len(job) :]} if label else keys)
        for name in names
    ]


def from_files(names: Sequence[str], keys: Mapping[str, Any]) -> list[Draft]:
    """Ticket files as they are, with the ordering keys put in front; a key a file sets itself is
    not overridden but refused, so the option never silently loses."""
    drafts = []
    for name in names:
        try:  # a FIFO or a device is refused, never read (or waited on) without end
            text = read_regular_file(Path(name), MAX_TICKET_BYTES).decode("utf-8")
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise SubmitError(f"{name}: cannot read: {getattr(e, 'strerror', None) or e}") from None
        try:
            own = load_toml(text)
        except (tomllib.TOMLDecodeError, ValueError):
            own = {}  # prepare() says what is wrong
        if "number" in own:
            raise SubmitError(f"{name} sets number itself; `submit` gives each ticket its number")
        clash = sorted(k for k in keys if k in own)
        if clash:
            raise SubmitError(f"{name} sets {', '.join(clash)} itself; drop the option or edit the file")
        if keys:  # top-level keys go before the first table
            text = tomli_w.dumps(dict(keys)) + text
        drafts.append((Path(name).stem, text))
    return drafts


def prepare(cfg: Config, spool: Spool, drafts: Sequence[Draft]) -> list[tuple[str, str]]:
    """(ticket id, text) for each draft, once every one of them would be accepted by the daemon:
    valid, naming a job it knows, after tickets that exist (or come earlier in this batch)."""
    known: dict[str, JobConfig] | None = None  # discovery reads every script: only for a ticket naming a job
    memo = TicketMemo()  # a sweep's tickets share their job's combinations and script
    prepared: list[tuple[str, str]] = []
    for label, text in drafts:
        safe = "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "_.-" else "-" for ch in label.lower())[:40]
        safe = safe or "ticket"
        ticket_id = new_ticket_id(safe)
        try:
            ticket = parse_ticket(text, ticket_id, label)
            if known is None and ticket.job is not None:
                known = known_jobs(cfg)
            ticket_spec(cfg, ticket, known or {}, memo)
        except ConfigError as e:
            raise SubmitError("; ".join(e.problems)) from None
        except (TicketJobError, ValueError) as e:
            raise SubmitError(f"{label}: {e}") from None
        earlier = {t for t, _ in prepared}
        for dep in ticket.after:
            if dep not in earlier and spool.state_of(dep) is None:
                raise SubmitError(f"{label}: after: there is no ticket {dep} in spool {spool.root}")
        prepared.append((ticket_id, text))
    return prepared


def owner_for(spool: Spool) -> tuple[int, int] | None:
    """Whom the tickets must belong to: None for the submitting user. The daemon reads only tickets
    owned by its user (or root) and not writable by others: refuse now what it would reject later,
    or, as root, hand the ticket to its user."""
    owner = ticket_owner(spool)
    if owner is None or owner[0] in (0, os.geteuid()):
        return None
    if os.geteuid() != 0:
        raise SubmitError(
            f"the daemon's user {user_name(owner[0])} could not read a ticket of yours "
            f"({user_name(os.geteuid())}): submit as that user, e.g. "
            f"`runuser -u {user_name(owner[0]).split()[0]} -- python -m aimedres_async submit ...`"
        )
    return owner


def enqueue(
    spool: Spool,
    prepared: Sequence[tuple[str, str]],
    owner: tuple[int, int] | None,
    done: Callable[[int, str], None],
) -> None:
    """Give each ticket its number and drop it into incoming/ atomically, calling
    `done(number, ticket_id)` after each."""
    from aimedres_async.daemon.numbers import allocate

    try:
        spool.ensure(check_secure=False)
        for ticket_id, text in prepared:
            number = allocate(spool.root, ticket_id)
            spool.submit(tomli_w.dumps({"number": number}) + text, ticket_id, owner=owner)
            done(number, ticket_id)
    except (SpoolError, TicketError) as e:
        raise SubmitError(str(e)) from None
    except OSError as e:
        raise SubmitError(f"cannot write to spool {spool.root}: {e.strerror or e}") from None
