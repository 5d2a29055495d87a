"""The death watch (aimedres_async/system/deathwatch.py) on its own, with real processes: what it kills
when its supervisor's pipe closes, and what it leaves alone. `run` and `serve` with it are in
test_hostile.py (kill -9 of run) and test_daemon.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import alive, wait_for

import aimedres_async

WATCH = Path(aimedres_async.__file__).parent / "system" / "deathwatch.py"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the death watch reads /proc (Linux)")


def start_watch() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-I", "-S", str(WATCH)], stdin=subprocess.PIPE, start_new_session=True)


def tell(watch: subprocess.Popen[bytes], *lines: str) -> None:
    assert watch.stdin is not None
    watch.stdin.write("".join(f"{line}\n" for line in lines).encode())
    watch.stdin.flush()


def start_group(script: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A process group like a job's: a shell that starts the given processes and waits."""
    return subprocess.Popen(["sh", "-c", script], env=env, start_new_session=True)


def members(pgid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != b"Z":
                found.append(int(name))
    return found


def test_its_pipe_closing_kills_the_runs_processes_and_whole_listed_groups() -> None:
    run_id = f"test-{uuid.uuid4().hex}"
    env = {**os.environ, "AIMEDRES_RUN_ID": run_id}
    # one member has cleared its environment (env -i): only the group kill reaches it; a setsid'd
    # descendant has left the group: only its run id in the environment does
    job = start_group("env -i sleep 60 & setsid sleep 60 & sleep 60 & wait", env)
    escaped_env = f"AIMEDRES_RUN_ID={run_id}".encode()
    wait_for(lambda: len(members(job.pid)) >= 3, what="the job's processes")
    escaped = wait_for(lambda: _with_env(escaped_env, exclude=set(members(job.pid))), what="the setsid'd sleep")
    in_group = members(job.pid)
    watch = start_watch()
    try:
        tell(watch, f"r {run_id}", f"+ {job.pid}")
        assert watch.stdin is not None
        watch.stdin.close()  # as the kernel does when the supervisor dies
        assert watch.wait(timeout=10) == 0
        wait_for(lambda: not any(alive(p) for p in in_group + escaped), timeout=5, what="every process of the run")
    finally:
        job.kill()
        job.wait()


def test_a_listed_group_no_longer_ours_is_left_alone() -> None:
    """A group whose end was never told (a lost line) may have been reused: without a process
    carrying the run id in it, it is not killed."""
    other = start_group("sleep 60 & sleep 60 & wait", {k: v for k, v in os.environ.items() if k != "AIMEDRES_RUN_ID"})
    try:
        wait_for(lambda: len(members(other.pid)) >= 3, what="the other group's processes")
        watch = start_watch()
        tell(watch, f"r test-{uuid.uuid4().hex}", f"+ {other.pid}")
        assert watch.stdin is not None
        watch.stdin.close()
        assert watch.wait(timeout=10) == 0
        assert len(members(other.pid)) >= 3
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait()


def test_a_terminals_ctrl_c_and_hangup_do_not_stop_it() -> None:
    watch = start_watch()
    try:
        tell(watch, "r test-nothing")
        wait_for(lambda: _ignored(watch.pid) & 0b11 == 0b11, what="the watch to ignore SIGHUP and SIGINT")
        for sig in (signal.SIGINT, signal.SIGHUP):
            watch.send_signal(sig)
        with pytest.raises(subprocess.TimeoutExpired):
            watch.wait(timeout=0.5)
    finally:
        assert watch.stdin is not None
        watch.stdin.close()
    assert watch.wait(timeout=10) == 0


def _ignored(pid: int) -> int:
    """The process's ignored-signal mask (bit N-1 for signal N)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    return 0


def _with_env(item: bytes, exclude: set[int]) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in exclude and int(name) != os.getpid():
            try:
                env = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if item in env and alive(int(name)):
                found.append(int(name))
    return found
