"""Helpers for driving the real spool daemon (`serve`) as a subprocess (tests/daemon/test_daemon.py, test_spool.py).

The daemon's stdout/stderr go to files, not pipes: a busy daemon writes one line per lifecycle event
and would block on a full pipe nobody reads.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import IO, Any

from conftest import alive, group_members, proc_state, wait_for  # noqa: F401 - re-exported for tests

PY = sys.executable
FINAL = ("done", "failed", "rejected")


def daemon_config(marker: str, jobs: str, workers: int = 2, extra: str = "") -> str:
    """A config for `serve`: spool under the folder, no discovery, every job carries the marker."""
    return f"""
[supervisor]
spool_dir = "spool"
max_workers = {workers}
grace_period = "1s"
{extra}
[discovery]
enabled = false
[defaults]
env = {{ TEST_MARKER = "{marker}" }}
{jobs}
"""


class Daemon:
    """One `python -m aimedres_async serve` process; output captured in files under the folder."""

    def __init__(self, folder: Path, env: dict[str, str] | None = None, name: str = "daemon") -> None:
        self.folder = folder
        self.out_path = folder / f"{name}.stdout"
        self.err_path = folder / f"{name}.stderr"
        base = {
            k: v
            for k, v in os.environ.items()
            if k not in ("AIMEDRES_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
        }
        self._out: IO[bytes] = open(self.out_path, "wb")  # noqa: SIM115 - closed in wait()
        self._err: IO[bytes] = open(self.err_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PY, "-m", "aimedres_async", "serve"],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            env={**base, **(env or {})},
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.returncode is not None:
                self._out.close()
                self._err.close()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in time (and fail loudly then)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.wait(10)
                raise AssertionError(f"daemon {self.pid} did not stop within {timeout}s of SIGTERM") from None
        return self.wait(1)

    def kill9(self) -> None:
        self.proc.kill()
        self.wait(10)


class Daemons:
    """Starts daemons for a test and always stops every one of them at the end."""

    def __init__(self) -> None:
        self.started: list[Daemon] = []

    def start(self, folder: Path, env: dict[str, str] | None = None, name: str | None = None) -> Daemon:
        d = Daemon(folder, env, name or f"daemon{len(self.started)}")
        self.started.append(d)
        return d

    def close(self) -> None:
        problems = []
        for d in self.started:
            if d.alive():
                try:
                    d.stop()
                except AssertionError as e:
                    problems.append(str(e))
            else:
                d.wait(1)
        assert not problems, problems


# ---------------------------------------------------------------- the spool, from the outside


def drop(spool: Path, name: str, data: str | bytes, mode: int = 0o640) -> Path:
    """Write a ticket the way the protocol says: stage in tmp/, fsync, rename into incoming/."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = spool / "tmp" / f".drop-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, raw)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    dest = spool / "incoming" / name
    os.rename(tmp, dest)
    return dest


def names(spool: Path, state: str, suffix: str = ".toml") -> list[str]:
    """Ticket ids (file stems) in a state folder, hidden files and other suffixes left out."""
    try:
        entries = os.listdir(spool / state)
    except FileNotFoundError:
        return []
    return sorted(n[: -len(suffix)] for n in entries if n.endswith(suffix) and not n.startswith("."))


def where(spool: Path, ticket: str) -> list[str]:
    """Every state folder holding <ticket>.toml (a healthy spool has exactly one)."""
    return [s for s in ("incoming", "active", "done", "failed", "rejected") if (spool / s / f"{ticket}.toml").exists()]


def wait_final(spool: Path, tickets: list[str], timeout: float = 60) -> None:
    """Until each ticket is filed: in done/, failed/ or rejected/ and nowhere else (filing links the
    ticket into its final folder, then removes it from active/: in between it is in both)."""

    def filed(ticket: str) -> bool:
        folders = where(spool, ticket)
        return len(folders) == 1 and folders[0] in FINAL

    def all_final() -> bool:
        return all(filed(t) for t in tickets)

    wait_for(all_final, timeout, f"{len(tickets)} tickets to reach done/, failed/ or rejected/")


def result(spool: Path, state: str, ticket: str) -> dict[str, Any]:
    data = tomllib.loads((spool / state / f"{ticket}.toml").read_text())
    res: dict[str, Any] = data["result"]
    return res


def submit(folder: Path, *args: str) -> str:
    """`submit ARGS` as a subprocess; returns the ticket id it printed."""
    r = subprocess.run(
        [PY, "-m", "aimedres_async", "submit", *args], cwd=folder, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    fields = r.stdout.split()  # "<number> <ticket id>"
    assert len(fields) == 2 and fields[0].isdigit(), r.stdout
    return fields[1]


# ---------------------------------------------------------------- processes


# ---------------------------------------------------------------- sd_notify


class NotifyListener:
    """A bound AF_UNIX datagram socket standing in for systemd; collects every message it gets."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.messages: list[dict[str, str]] = []

    def _pump(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            self.messages.append(fields)

    def wait(self, key: str, value: str | None = None, after: int = -1, timeout: float = 30) -> int:
        """Index of the first message after index `after` that has `key` (with `value`, if given)."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(after + 1, len(self.messages)):
                if key in self.messages[i] and (value is None or self.messages[i][key] == value):
                    return i
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {key}={value} after message {after}; got {self.messages}"
                )
            self._pump()

    def close(self) -> None:
        self.sock.close()
