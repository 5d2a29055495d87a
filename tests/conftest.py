"""Shared helpers: write a config, start the real CLI as a subprocess (`start_cli`; a run to its end is
helpers_cli.cli), read its logs, find survivors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PY = sys.executable


def write_config(folder: Path, body: str) -> Path:
    path = folder / "aimedres.toml"
    path.write_text(body)
    return path


def start_cli(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "aimedres_async", *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


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


# ---------------------------------------------------------------- /proc readers (the only ones)


def proc_state(pid: int | str) -> str:
    """A process's state letter from /proc/<pid>/stat (R, S, Z, ...); "?" when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return "?"
    return raw[raw.rfind(b")") + 2 : raw.rfind(b")") + 3].decode()


def alive(pid: int) -> bool:
    """Running or sleeping: not gone and not a zombie waiting to be reaped."""
    return proc_state(pid) not in ("Z", "X", "?")


def processes_with_env(item: bytes) -> list[int]:
    """Live (non-zombie) processes, other than this one, whose environment holds `item` (b"K=V")."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if item in env.split(b"\0") and alive(int(pid)):
            found.append(int(pid))
    return found


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            found.append(int(entry))
    return found


def death_watch_of(pid: int) -> int:
    """The death watch process a supervisor started (its child running deathwatch.py)."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes()
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rfind(b")") + 2 :].split()[1]) == pid and b"deathwatch.py" in cmdline:
                return int(name)
    raise AssertionError(f"no death watch under pid {pid}")


def marked_processes(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries the marker: our jobs and their children."""
    return processes_with_env(f"TEST_MARKER={marker}".encode())


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


@pytest.fixture
def daemons(marker: str) -> Iterator[Any]:
    """Every daemon a test starts (helpers_daemon.Daemons) is stopped at its end; `marker` then
    checks that no job survived (depending on it makes this fixture's teardown run first)."""
    from helpers_daemon import Daemons  # it imports this module's helpers

    ds = Daemons()
    try:
        yield ds
    finally:
        ds.close()


RAY_PORT = 8265


def _ray_reachable(address: str) -> bool:
    from ray.job_submission import JobSubmissionClient

    try:
        JobSubmissionClient(address)
        return True
    except Exception:
        return False


def _ray_job_runs(address: str) -> bool:
    """A trivial job submitted and finished: the dashboard, the job agent and a worker all answer."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    try:
        client = JobSubmissionClient(address)
        sid = client.submit_job(entrypoint="true")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if client.get_job_status(sid) in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                return client.get_job_status(sid) == JobStatus.SUCCEEDED
            time.sleep(0.5)
    except Exception:
        return False
    return False


@pytest.fixture(scope="session")
def ray_head() -> Iterator[str]:
    """One local Ray head for the whole session (started here unless one is already up), stopped after."""
    try:
        import ray.job_submission
    except ImportError:
        print("\nSKIP Ray tests: Ray is not installed (pip install -e '.[ray]')", file=sys.stderr)
        pytest.skip("Ray is not installed (pip install -e '.[ray]')")
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    assert ray, "ray is importable but its `ray` command is not on PATH"
    address = f"http://127.0.0.1:{RAY_PORT}"
    started_here = False
    if not _ray_reachable(address):
        subprocess.run(
            [
                ray,
                "start",
                "--head",
                "--num-cpus",
                "2",
                "--include-dashboard",
                "true",
                "--dashboard-host",
                "127.0.0.1",
                "--dashboard-port",
                str(RAY_PORT),
                "--disable-usage-stats",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        started_here = True
        wait_for(lambda: _ray_reachable(address), timeout=60, what="the Ray dashboard")
    wait_for(lambda: _ray_job_runs(address), timeout=120, what="a trivial Ray job to succeed")
    yield address
    if started_here:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)


# ---------------------------------------------------------------- the local Slurm cluster (.ci/slurm-up)

SLURM_DIR = Path(os.environ.get("AIMEDRES_SLURM_DIR", Path(__file__).resolve().parents[1] / ".ci-slurm"))


def _slurm_skip(reason: str) -> None:
    print(f"\nSKIP Slurm tests: {reason}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_env() -> dict[str, str]:
    """The environment under which Slurm's commands reach the test cluster ({} = the site's own)."""
    if shutil.which("sbatch") is None:
        _slurm_skip("Slurm is not installed (Debian: apt-get install slurm-wlm munge; then .ci/slurm-up)")
    env: dict[str, str] = {}
    conf = SLURM_DIR / "etc" / "slurm.conf"
    if (SLURM_DIR / "env").exists() and conf.exists():
        env["SLURM_CONF"] = str(conf)
    elif (SLURM_DIR / "unavailable").exists():
        _slurm_skip(f"no local Slurm cluster: {(SLURM_DIR / 'unavailable').read_text().strip()}")
    elif not os.environ.get("SLURM_CONF"):
        _slurm_skip("no local Slurm cluster: run .ci/slurm-up first (.ci/run does)")
    r = subprocess.run(
        ["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=30, env={**os.environ, **env}
    )
    states = r.stdout.split()
    if r.returncode != 0 or not any(s.rstrip("*") in ("idle", "mixed", "allocated") for s in states):
        _slurm_skip(f"the Slurm cluster does not answer or has no usable node: {r.stderr.strip() or states}")
    return env
