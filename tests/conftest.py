"""Shared helpers: write a config, run the real CLI as a subprocess, read its logs, find survivors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PY = sys.executable


def write_config(folder: Path, body: str) -> Path:
    path = folder / "aimedres.toml"
    path.write_text(body)
    return path


def run_cli(folder: Path, *args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "aimedres_async", *args], cwd=folder, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip


def start_cli(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "aimedres_async", *args], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, **(env or {})},
    )  # fmt: skip


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def run_dir(folder: Path) -> Path:
    return (folder / "logs" / "latest").resolve()


def events(folder: Path, name: str | None = None) -> list[dict[str, Any]]:
    path = run_dir(folder) / "events.jsonl"
    if not path.exists():
        return []
    recs = read_jsonl(path)
    return [r for r in recs if name is None or r["event"] == name]


def summary(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir(folder) / "summary.json").read_text())
    return data


def job_summary(folder: Path, job: str) -> dict[str, Any]:
    return next(j for j in summary(folder)["jobs"] if j["id"] == job)


def wait_for(pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _state(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        return raw[raw.rfind(b")") + 2 : raw.rfind(b")") + 3].decode()
    except OSError:
        return "?"


def marked_processes(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries the marker: our jobs and their children."""
    needle = f"TEST_MARKER={marker}".encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0") and _state(pid) not in ("Z", "X", "?"):
            found.append(int(pid))
    return found


@pytest.fixture
def marker() -> Any:
    """A unique env value given to every job of a test; afterwards no process may still carry it."""
    value = uuid.uuid4().hex
    yield value
    leftovers = marked_processes(value)
    for pid in leftovers:  # don't let one failing test poison the machine
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not leftovers, f"job processes survived the test: {leftovers}"
