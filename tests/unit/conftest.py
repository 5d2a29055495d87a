"""The in-process tier's rule, enforced: a test here that starts a process fails loudly.

Every way Python starts a process (subprocess, os.fork/exec*/posix_spawn/system, asyncio's
subprocess helpers, multiprocessing's fork_exec) raises `ProcessStarted` for the test's duration,
and an attempt is also failed at teardown, so code that catches the error cannot hide it.
"""

from __future__ import annotations

import _posixsubprocess
import asyncio
import asyncio.base_events
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

# Everything in os that starts a process (the spawn*/exec*l* helpers call fork/execv* through the
# module's globals, which the patch replaces too).
_OS_NAMES = (
    "fork",
    "forkpty",
    "system",
    "popen",
    "posix_spawn",
    "posix_spawnp",
    "execv",
    "execve",
    "execl",
    "execle",
    "execlp",
    "execlpe",
    "execvp",
    "execvpe",
    "spawnv",
    "spawnve",
    "spawnvp",
    "spawnvpe",
    "spawnl",
    "spawnle",
    "spawnlp",
    "spawnlpe",
)


class ProcessStarted(RuntimeError):
    """A unit test (or the code it drives) tried to start a process."""


@pytest.fixture(autouse=True)
def no_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    attempts: list[str] = []

    def refuse(what: str) -> Any:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            shown = ", ".join([*(repr(a)[:200] for a in args), *(f"{k}=..." for k in kwargs)])
            attempts.append(f"{what}({shown})")
            raise ProcessStarted(f"tests/unit is in-process only: {what}({shown}) would start a process")

        return blocked

    popen = refuse("subprocess.Popen")

    def popen_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        self._child_created = False  # what Popen.__del__ reads first (the real __init__ sets it)
        popen(*args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", popen_init)
    monkeypatch.setattr(_posixsubprocess, "fork_exec", refuse("_posixsubprocess.fork_exec"))
    for name in _OS_NAMES:
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refuse(f"os.{name}"))
    for name in ("create_subprocess_exec", "create_subprocess_shell"):
        monkeypatch.setattr(asyncio, name, refuse(f"asyncio.{name}"))
        monkeypatch.setattr(asyncio.subprocess, name, refuse(f"asyncio.{name}"))
    for name in ("subprocess_exec", "subprocess_shell"):
        monkeypatch.setattr(asyncio.base_events.BaseEventLoop, name, refuse(f"loop.{name}"))
    yield
    if attempts:
        pytest.fail("a unit test started a process (even if the error was caught):\n  " + "\n  ".join(attempts))
