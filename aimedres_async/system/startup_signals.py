"""Signals while the process starts: held from its first line until a command takes them over.

A Ctrl+C that raises KeyboardInterrupt inside an import can leave a C extension half-initialised
(the interpreter then crashes as it exits), or be swallowed by the import machinery (a run that
ignores its Ctrl+C), so SIGINT, SIGTERM and SIGHUP are held from the package's first line
(`aimedres_async/__init__.py`, run as the program) and then by the entry points: `run` and
`serve` hand what arrived to `system.signals.CapturedSignals`, every other command gets the
default behaviour back once it is parsed. No asyncio here.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
arrived: list[signal.Signals] = []
_holding = False


def _record(signum: int, _frame: FrameType | None) -> None:
    arrived.append(signal.Signals(signum))


def hold() -> None:
    """Record the three signals instead of acting on them (called first thing by the entry points);
    what the package's first lines recorded (`aimedres_async._held`) comes first."""
    global _holding
    for sig in HELD:
        signal.signal(sig, _record)
    _holding = True
    early = getattr(sys.modules.get("aimedres_async"), "_held", None)
    if early:
        arrived[:0] = [signal.Signals(n) for n in early]
        early.clear()


def take() -> list[signal.Signals]:
    """The signals that arrived while held, oldest first: the caller now owns the handlers too."""
    global _holding
    _holding = False
    taken = arrived[:]
    arrived.clear()
    return taken


def release() -> signal.Signals | None:
    """Default handling back (Ctrl+C raises KeyboardInterrupt); the first signal held and not taken."""
    global _holding
    if not _holding:
        return None
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    _holding = False
    first = arrived[0] if arrived else None
    arrived.clear()
    return first
