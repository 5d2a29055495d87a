"""A ticket file on its own: its name, reading it as cron and OpenSSH read their files, the keys that
order the queue, and the [result] table appended when it is filed. The folders are spool.py's.

A ticket the daemon runs is read with O_NOFOLLOW and checked on the open descriptor (fstat): a
regular file with one link, owned by us (or root), not group/world-writable, not empty, at most 1 MiB.
"""

from __future__ import annotations

import datetime
import errno
import os
import re
import stat
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimedres_async.plan.config import DEFAULT_GROUP, Resources
from aimedres_async.plan.config_values import RESOURCE_CHECKS
from aimedres_async.plan.limits import PRIORITY_MAX, PRIORITY_MIN, load_toml
from aimedres_async.plan.units import MAX_INT
from aimedres_async.records.framing import timestamp_str

SUFFIX = ".toml"
MAX_TICKET_BYTES = 1 << 20
_RESULT_KEYS = ("status", "attempts", "exit_code", "signal", "failure", "error", "duration_s", "peak_rss_bytes", "log")


class TicketError(Exception):
    """This ticket is bad: the reason goes into rejected/<name>.error."""


def new_ticket_id(job: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{stamp}-{os.urandom(3).hex()}-{job}"[:64]


def safe_name(name: str) -> str:
    """A file name for something we reject whose own name is not a valid ticket id."""
    stem = re.sub(r"[^a-z0-9_.-]", "_", name.lower()).lstrip("._-")[:40] or "ticket"
    import hashlib  # only a submit names tickets: `status` and the others never load it

    return f"{stem}-{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


# ---------------------------------------------------------------- reading


def read_ticket(path: Path) -> str:
    """Read a ticket with the hygiene rules; raises TicketError with the reason."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise TicketError("is a symbolic link") from None
        raise TicketError(f"cannot open: {e.strerror}") from None
    try:
        return _read_checked(fd)
    finally:
        os.close(fd)


def _read_checked(fd: int) -> str:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise TicketError("is not a regular file")
    if st.st_nlink != 1:
        raise TicketError(f"has {st.st_nlink} hard links (a ticket must have exactly one)")
    if st.st_uid not in (os.geteuid(), 0):
        raise TicketError(f"is owned by uid {st.st_uid}, not by the daemon's user ({os.geteuid()}) or root")
    if st.st_mode & 0o022:
        raise TicketError(f"is group- or world-writable (mode {stat.filemode(st.st_mode)})")
    if st.st_size > MAX_TICKET_BYTES:
        raise TicketError(f"is {st.st_size} bytes, over the {MAX_TICKET_BYTES} byte limit")
    data = os.read(fd, MAX_TICKET_BYTES + 1)
    if len(data) > MAX_TICKET_BYTES:
        raise TicketError(f"is over the {MAX_TICKET_BYTES} byte limit")
    if not data.strip():
        raise TicketError("is empty")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TicketError(f"is not UTF-8 text (byte {e.start})") from None


def read_to_cancel(path: Path) -> str:
    """A waiting ticket's text to keep above its [result] when it is cancelled: no ownership rule
    (it will never run), a regular file not followed; raises OSError or TicketError."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TicketError("is not a regular file")
        return os.read(fd, MAX_TICKET_BYTES + 1).decode("utf-8", "replace")
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Order:
    """What the queue needs from a waiting ticket, read leniently (claim() judges the ticket)."""

    priority: int = 0
    after: tuple[str, ...] = ()
    number: int | None = None
    label: str | None = None
    group: str = DEFAULT_GROUP
    not_before: float | None = None  # epoch seconds (`submit --delay`)
    job: str | None = None  # the configured job it names
    resources: Resources | None = None  # its own `resources` table (one it gets wrong: declares nothing)


def read_order(path: Path) -> Order:
    """A waiting ticket's order keys, leniently: a ticket that cannot be read or parsed sorts as
    Order(), and claim() rejects it in its turn. FileNotFoundError: it is gone."""
    try:
        raw = load_toml(_peek(path))
    except FileNotFoundError:
        raise
    except (OSError, TicketError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError):
        raw = {}
    return order_of(raw)


def _peek(path: Path) -> str:
    """A waiting ticket's text for ordering only: a regular file, not followed, size-capped, but
    whoever owns it (`status` may run as root; claim() applies the ownership rules)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_TICKET_BYTES:
            raise TicketError("not a ticket")
        return os.read(fd, MAX_TICKET_BYTES).decode("utf-8")
    finally:
        os.close(fd)


def order_of(raw: dict[str, Any]) -> Order:
    """A ticket's order keys, leniently: a bad value is the ticket parser's to report."""
    prio = raw.get("priority", 0)
    after = raw.get("after", ())
    if isinstance(after, str):
        after = (after,)
    ok_after = isinstance(after, list | tuple) and all(isinstance(a, str) for a in after)
    number, label, group, moment = raw.get("number"), raw.get("label"), raw.get("group"), raw.get("not_before")
    ok_prio = isinstance(prio, int) and not isinstance(prio, bool) and PRIORITY_MIN <= prio <= PRIORITY_MAX
    ok_number = isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= MAX_INT
    return Order(
        priority=prio if ok_prio else 0,
        after=tuple(after) if ok_after else (),
        number=number if ok_number else None,
        label=label if isinstance(label, str) else raw.get("job") if isinstance(raw.get("job"), str) else None,
        group=group if isinstance(group, str) else DEFAULT_GROUP,
        not_before=moment.timestamp() if isinstance(moment, datetime.datetime) and moment.tzinfo else None,
        job=raw["job"] if isinstance(raw.get("job"), str) else None,
        resources=_resources(raw.get("resources")),
    )


def _resources(v: object) -> Resources | None:
    """A waiting ticket's own `resources` table, checked as the ticket parser checks it; one that
    is wrong declares nothing here (so the ticket is claimed, and rejected then, saying why)."""
    if v is None:
        return None
    try:
        if not isinstance(v, dict) or not set(v) <= RESOURCE_CHECKS.keys():
            raise ValueError("not a resources table")
        return Resources(**{k: RESOURCE_CHECKS[k](x) for k, x in v.items()})
    except (ValueError, TypeError):
        return Resources()


def filed_ticket(path: Path) -> dict[str, Any]:
    """A filed ticket's whole table, [result] included ({} when it cannot be read)."""
    try:
        raw = load_toml(_peek(path))
    except (OSError, TicketError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError):
        return {}
    return raw


def filed_result(path: Path) -> dict[str, Any]:
    """The [result] table of a ticket filed under done/ or failed/ ({} when it cannot be read)."""
    try:
        res = load_toml(_peek(path)).get("result", {})
    except (OSError, TicketError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError):
        res = {}
    return res if isinstance(res, dict) else {}


# ---------------------------------------------------------------- results


def with_result(text: str, result: dict[str, Any]) -> bytes:
    """A ticket's text with its [result] table appended: what is filed under done/ or failed/."""
    text = text if text.endswith("\n") else text + "\n"
    import tomli_w  # writing a ticket; `status` and the other readers do without it

    return (text + "\n" + tomli_w.dumps({"result": result})).encode()


def ticket_result(entry: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The [result] table of a finished ticket: its summary entry, less what the ticket already says.

    TOML has no null, so absent values are left out; metrics TOML cannot express stay in the log.
    """
    result = {k: entry[k] for k in _RESULT_KEYS if entry.get(k) is not None}
    result.update(run=run_id, finished_at=timestamp_str())
    metrics = entry.get("metrics")
    if metrics:
        import tomli_w

        try:
            tomli_w.dumps({"metrics": metrics})
            result["metrics"] = metrics
        except (TypeError, ValueError):
            pass  # not expressible in TOML (nulls, mixed arrays): it is in the job's log
    return result


def cancelled_result() -> dict[str, Any]:
    """The [result] of a ticket cancelled before it ran."""
    return {"status": "cancelled", "attempts": 0, "finished_at": timestamp_str()}


def dependency_result(why: str) -> dict[str, Any]:
    """The [result] of a ticket that never runs because a ticket it is `after` did not succeed."""
    return {"status": "failed", "failure": "dependency", "error": why, "attempts": 0, "finished_at": timestamp_str()}
