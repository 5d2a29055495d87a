"""Ticket numbers: a small number per ticket, unique per spool and never reused, and what a user
types to name a ticket (its number, its id, or a unique prefix of the id) turned into its id.

    spool/numbers/.next   the next number to give, replaced whole under the flock of numbers/.lock
    spool/numbers/<n>     a symbolic link whose text is the id of ticket n (read, never followed)

A number is taken (its link created, then .next moved past it, both fsynced) before its ticket
is written: a submit killed in between leaves a number that names no ticket, never one used twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from aimedres_async.daemon.tickets import SUFFIX
from aimedres_async.plan.config import JOB_ID_RE
from aimedres_async.plan.limits import read_regular_file
from aimedres_async.system import atomic

FOLDER = "numbers"
TICKET_STATES = ("incoming", "active", "done", "failed", "rejected")
SHOWN_MATCHES = 10


class TicketNameError(ValueError):
    """What the user typed names no ticket, or more than one (exit 2)."""


def _owner_of(root: Path) -> tuple[int, int] | None:
    """root working in another user's spool hands what it creates to that user."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(OSError):
        st = os.stat(root)
        if st.st_uid != 0:
            return st.st_uid, st.st_gid
    return None


@contextlib.contextmanager
def _locked(folder: Path, owner: tuple[int, int] | None) -> Iterator[None]:
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def taken(folder: Path) -> list[int]:
    """The numbers that have a link in numbers/ (not every number ever given: `clean` removes some)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return [int(n) for n in names if n.isdigit()]


def next_number(recorded: int | None, links: Iterable[int]) -> int:
    """Where to start looking for a free number: the recorded next one, or past every link when
    the record is missing or unreadable (the links are then the best memory of what was given)."""
    if recorded is not None and recorded >= 1:
        return recorded
    return max(links, default=0) + 1


def _read_next(folder: Path) -> int | None:
    try:
        text = read_regular_file(folder / ".next", 4096).decode("ascii").strip()
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    return int(text) if text.isdigit() else None


def allocate(root: Path, ticket_id: str) -> int:
    """Give `ticket_id` the next number of the spool at `root`; safe against concurrent callers
    (the flock) and crashes (a lagging .next is passed over: its links exist)."""
    folder = root / FOLDER
    owner = _owner_of(root)
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o750)
        if owner is not None:
            os.chown(folder, *owner)
    with _locked(folder, owner):
        recorded = _read_next(folder)
        n = next_number(recorded, () if recorded is not None else taken(folder))
        while True:
            try:
                os.symlink(ticket_id, folder / str(n))
                break
            except FileExistsError:
                n += 1
        if owner is not None:
            os.lchown(folder / str(n), *owner)
        atomic.fsync_dir(folder)
        hook = (lambda fd: os.fchown(fd, *owner)) if owner is not None else None
        atomic.write(
            folder / ".next",
            f"{n + 1}\n".encode(),
            mode=0o640,
            tmp=atomic.temp_path(folder / ".next", root / "tmp"),
            fd_hook=hook,
        )
    return n


def ticket_of(root: Path, number: int) -> str | None:
    """The id numbered `number`, if its link is there and names a valid id."""
    try:
        target = os.readlink(root / FOLDER / str(number))
    except OSError:
        return None
    return target if JOB_ID_RE.fullmatch(target) else None


def forget(root: Path, number: int, ticket_id: str) -> None:
    """Remove number's link (`clean`), only if it still names this ticket."""
    if ticket_of(root, number) == ticket_id:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(root / FOLDER / str(number))


def all_ids(root: Path) -> list[str]:
    """Every ticket id in the spool, in any state."""
    ids: set[str] = set()
    for state in TICKET_STATES:
        with contextlib.suppress(FileNotFoundError):
            ids.update(n[: -len(SUFFIX)] for n in os.listdir(root / state) if n.endswith(SUFFIX) and n[0] != ".")
    return sorted(ids)


def choose(token: str, by_number: str | None, exact: bool, ids: Iterable[str]) -> str:
    """The ticket `token` names: the ticket numbered `token` (by_number, when it exists), else the
    id itself (exact), else the one id it is a prefix of; digits alone are only ever a number.
    TicketNameError: none, or several."""
    if by_number is not None:
        return by_number
    if token.isdigit():  # digits alone are a number (every id starts with digits: a prefix would match them all)
        raise TicketNameError(f"no such ticket: {token} (no ticket has that number)")
    if exact:
        return token
    matches = sorted(i for i in ids if i.startswith(token)) if token else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise TicketNameError(f"no such ticket: {token}")
    shown = ", ".join(matches[:SHOWN_MATCHES]) + (
        f" and {len(matches) - SHOWN_MATCHES} more" if len(matches) > SHOWN_MATCHES else ""
    )
    raise TicketNameError(f"ticket {token!r} is ambiguous: it starts {len(matches)} ticket ids: {shown}")


def exists(root: Path, ticket_id: str) -> bool:
    return any(os.path.lexists(root / s / f"{ticket_id}{SUFFIX}") for s in TICKET_STATES)


def resolve(root: Path, token: str) -> str:
    """What a user typed for a ticket (number, id, or unique id prefix) as its id."""
    by_number = None
    if token.isdigit() and len(token) < 19:  # 19 digits: past any number a spool gives
        found = ticket_of(root, int(token))
        by_number = found if found is not None and exists(root, found) else None
    exact = by_number is None and bool(JOB_ID_RE.fullmatch(token)) and exists(root, token)
    ids = all_ids(root) if by_number is None and not exact else ()
    return choose(token, by_number, exact, ids)


def resolve_all(root: Path, tokens: Iterable[str]) -> tuple[list[str], list[str]]:
    """(ids, problems): each token's id, and one message for each token that names none or several."""
    ids, problems = [], []
    for token in tokens:
        try:
            ids.append(resolve(root, token))
        except TicketNameError as e:
            problems.append(str(e))
    return ids, problems
