"""Signals for `run` and `serve`: captured from before the first side effect until after the last.

One helper serves both commands (uvicorn's `capture_signals` shape). While an event loop listens,
each signal is handed to it; before the loop starts or after it ends, a signal is recorded instead
of taking its default action, so a late SIGHUP cannot kill the supervisor during its final sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType
from typing import Any

from aimedres_async.system import startup_signals

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


class CapturedSignals:
    """A context manager: while inside, SIGINT, SIGTERM and SIGHUP never take their default action.

    `received` lists every signal in order of arrival. `dispatch_to(callback)` (inside a running
    loop) hands each signal to `callback` on the loop, starting with those that arrived before it.
    With `linger=True` the signals are ignored after the block instead of getting their old
    handlers back: for a process that is about to exit, a signal in its last milliseconds (the
    interpreter's finalization puts default actions back for Python handlers) is not fatal.
    """

    def __init__(self, handled: tuple[signal.Signals, ...] = HANDLED, linger: bool = False) -> None:
        self.handled = handled
        self.linger = linger
        self.received: list[signal.Signals] = []
        self.late: list[signal.Signals] = []  # arrived while no loop listened, after one had
        self._pending: list[signal.Signals] = []
        self._old: dict[signal.Signals, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._callback: Callable[[signal.Signals], None] | None = None
        self._dispatched = False

    def __enter__(self) -> CapturedSignals:
        for sig in self.handled:
            self._old[sig] = signal.signal(sig, self._handle)
        for sig in startup_signals.take():  # held by the entry point before this block
            self.received.append(sig)
            self._pending.append(sig)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, signal.SIG_IGN if self.linger else old)

    @property
    def first(self) -> signal.Signals | None:
        return self.received[0] if self.received else None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        self.received.append(sig)
        loop, callback = self._loop, self._callback
        if loop is None or callback is None:
            (self.late if self._dispatched else self._pending).append(sig)
            return
        try:
            loop.call_soon_threadsafe(callback, sig)
        except RuntimeError:  # the loop closed between the check and the call
            self.late.append(sig)

    @contextlib.contextmanager
    def dispatch_to(self, callback: Callable[[signal.Signals], None]) -> Iterator[None]:
        """Hand signals to `callback` on the running loop for the duration of the block."""
        loop = asyncio.get_running_loop()
        self._loop, self._callback = loop, callback
        self._dispatched = True
        pending, self._pending = self._pending, []
        for sig in pending:  # arrived before the loop listened: handled first, in order
            loop.call_soon(callback, sig)
        try:
            yield
        finally:
            self._loop = self._callback = None
