"""A ticket's `after` list: whether it may start now, waits for a ticket still to finish, fails
because one did not succeed, or is rejected (no such ticket, or a cycle none of which could start).
"""

from __future__ import annotations

from aimedres_async.daemon.spool import Queued, Spool


def blocked(spool: Spool, q: Queued, waiting: dict[str, tuple[str, ...]]) -> tuple[str, str] | None:
    """Why a ticket may not start yet: ("wait", ...) while a ticket it is `after` is not final,
    ("failed", why) when one failed or was cancelled, ("reject", why) for no such ticket or
    a cycle of waiting tickets (none of which could ever start)."""
    cycle = _cycle(q.ticket_id, waiting)
    if cycle:
        return "reject", f"after: {' -> '.join(cycle)} is a cycle: none of them could ever start"
    for dep in q.after:
        if dep == q.ticket_id:
            return None  # the parser rejects it
        state = spool.state_of(dep)
        if state is None:
            return "reject", f"after: there is no ticket {dep} in this spool"
        where, res = state
        if where in ("incoming", "active"):
            return "wait", dep
        if where == "rejected":
            return "failed", f"ticket {dep} (after) was rejected"
        if where == "failed":
            status = res.get("status", "failed")
            how = "was cancelled" if status == "cancelled" else f"ended {status}"
            return "failed", f"ticket {dep} (after) {how}"
    return None


def _cycle(start: str, waiting: dict[str, tuple[str, ...]]) -> list[str] | None:
    """A chain of waiting tickets, each `after` the next, that leads back to `start`, else None."""
    path, seen = [start], {start}

    def walk(ticket: str) -> bool:
        for dep in waiting.get(ticket, ()):
            if dep == start:
                path.append(dep)
                return True
            if dep in seen:
                continue
            seen.add(dep)
            path.append(dep)
            if walk(dep):
                return True
            path.pop()
        return False

    return path if walk(start) else None
