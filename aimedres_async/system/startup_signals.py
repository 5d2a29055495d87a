"""Signals while the process starts: held from its first line until a command takes them over.

A Ctrl+C that raises KeyboardInterrupt inside an import can leave a C extension half-initialised
(the interpreter then crashes as it exits), so the entry points hold SIGINT, SIGTERM and SIGHUP
from before the first import: `run` and `serve` hand what arrived to `system.signals.CapturedSignals`,
every other command gets the default behaviour back once it is parsed. No asyncio here.
"""

from __future__ import annotations

import signal
from types import FrameType

HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
arrived: list[signal.Signals] = []
_holding = False


def _record(signum: int, _frame: FrameType | None) -> None:
    arrived.append(signal.Signals(signum))


def hold() -> None:
    """Record the three signals instead of acting on them (called first thing by the entry points)."""
    global _holding
    for sig in HELD:
        signal.signal(sig, _record)
    _holding = True


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
