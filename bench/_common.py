"""Shared helpers for the benchmarks in bench/ (standard library only; imports nothing from tests/).

Each benchmark times whole processes with `perf_counter()` from spawn to reaping (`timed_run`), takes the
median of N runs after a warm-up, and prints a table (and, with `--json`, one JSON object as the last
line of stdout, so that a driver such as `bench/all.py` can collect the results).
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000  # output sizes are reported in MB (10**6 bytes)


# --- running and timing -------------------------------------------------------------------------


@dataclass
class Timing:
    """One timed process: wall seconds, CPU seconds (user+sys of it and the children it reaped)."""

    wall_s: float
    cpu_s: float
    returncode: int | None  # None: killed after the timeout
    timed_out: bool = False


def timed_run(
    cmd: Sequence[str],
    *,
    stdout: int | IO[Any] | None = subprocess.DEVNULL,
    stderr: int | IO[Any] | None = subprocess.DEVNULL,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Timing:
    """Run cmd to completion; the wall time is `perf_counter()` from just before the spawn to the
    return of a blocking wait.

    Not `subprocess.run(timeout=...)`: with a timeout, Popen.wait polls in sleeps that double up
    to 50 ms, so a process was seen to end up to 50 ms late (a 64 ms `python -c "import asyncio"`
    was timed at 64 or 114 ms). The timeout here is a timer thread that kills the process.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    killed = threading.Event()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        env=dict(env) if env is not None else None,
    )

    def kill() -> None:
        killed.set()
        proc.kill()

    timer = threading.Timer(timeout, kill) if timeout is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        rc: int | None = proc.wait()
    finally:
        if timer is not None:
            timer.cancel()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if killed.is_set():
        rc = None
    return Timing(wall, cpu, rc, killed.is_set())


def settle() -> None:
    """Between timed runs: flush dirty pages so one run's writeback is not billed to the next."""
    if hasattr(os, "sync"):
        os.sync()


def remove(path: Path) -> None:
    """Delete a file, symlink or folder if it exists."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


# --- aimedres-async ---------------------------------------------------------------------------


def supervisor_cmd(config: Path, *args: str, python: str | None = None) -> list[str]:
    """`python -m aimedres_async --config CONFIG ARGS…` with `python` (default: the interpreter
    running the bench)."""
    return [python or sys.executable, "-m", "aimedres_async", "--config", str(config), *args]


def supervisor_env(tmpdir: Path | None = None) -> dict[str, str]:
    """The environment for the supervisor: this checkout first on PYTHONPATH, no stray config."""
    env = dict(os.environ)
    env.pop("AIMEDRES_CONFIG", None)
    env.pop("GITHUB_STEP_SUMMARY", None)
    # A user's interpreter caches bytecode in __pycache__; without the cache every start compiles
    # the package anew (~40 ms of `run --list`), which is not what users see.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    pp = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + pp if pp else "")
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return env


def check_supervisor_importable(env: Mapping[str, str], python: str | None = None) -> str | None:
    """The package version if `python -m aimedres_async` can run (default: the interpreter running
    the bench); None (after a message) if not."""
    python = python or sys.executable
    proc = subprocess.run(
        [python, "-c", "import aimedres_async, orjson; print(aimedres_async.__version__)"],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(
            f"error: {python} cannot import aimedres_async (and its dependencies):\n"
            f"{proc.stderr.strip()}\n"
            "Run the benchmark with the project's venv active (python bench/capture.py), and give\n"
            "--python an interpreter of a venv with the project installed (pip install -e .)",
            file=sys.stderr,
        )
        return None
    return proc.stdout.strip()


def interpreter_version(python: str) -> str | None:
    """`python`'s version ('3.12.1'), or None if it cannot run."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version.split()[0])"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
            stdin=subprocess.DEVNULL,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.strip() or None


def toml_str(s: str) -> str:
    """A TOML basic string (JSON string syntax is valid TOML for these)."""
    return json.dumps(s, ensure_ascii=False)


def write_config(
    path: Path,
    jobs: Mapping[str, Sequence[str]],
    *,
    logs_dir: str = "logs",
    supervisor: Mapping[str, Any] | None = None,
) -> Path:
    """Write a minimal aimedres.toml: discovery off, one `[jobs.ID] command = [...]` per job."""
    lines = ["[supervisor]", f"logs_dir = {toml_str(logs_dir)}"]
    for k, v in (supervisor or {}).items():
        lines.append(f"{k} = {json.dumps(v)}")
    lines += ["", "[discovery]", "enabled = false", ""]
    for job_id, command in jobs.items():
        lines += [f"[jobs.{job_id}]", "command = [" + ", ".join(toml_str(c) for c in command) + "]", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def latest_job_log(logs_dir: Path, job_id: str) -> Path | None:
    """logs_dir/latest/jobs/<job>.jsonl, or the newest run's copy if `latest` is missing."""
    p = logs_dir / "latest" / "jobs" / f"{job_id}.jsonl"
    if p.exists():
        return p
    found = sorted(logs_dir.glob(f"*/jobs/{job_id}.jsonl"))
    return found[-1] if found else None


# --- reading outputs --------------------------------------------------------------------------


def count_occurrences(path: Path, needle: bytes, chunk: int = 16 << 20) -> int:
    """How many times needle occurs in the file, read in binary chunks (no parsing)."""
    n = 0
    keep = len(needle) - 1
    carry = b""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            buf = carry + block
            n += buf.count(needle)
            # the tail may start an occurrence that ends in the next block; it cannot hold a whole one
            carry = buf[-keep:] if keep else b""
    return n


def count_lines(path: Path, chunk: int = 16 << 20) -> int:
    """Number of b'\\n' in the file."""
    n = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            n += block.count(b"\n")
    return n


# --- statistics and reporting ---------------------------------------------------------------------


@dataclass
class Series:
    """The repeated measurements of one tool."""

    tool: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, t: Timing, size: int | None = None) -> None:
        self.walls.append(t.wall_s)
        self.cpus.append(t.cpu_s)
        if size is not None:
            self.sizes.append(size)

    @property
    def median(self) -> float:
        return statistics.median(self.walls) if self.walls else float("nan")

    def summary(self, lines: int | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "tool": self.tool,
            "runs": len(self.walls),
            "median_s": self.median,
            "min_s": min(self.walls) if self.walls else None,
            "max_s": max(self.walls) if self.walls else None,
            "cpu_median_s": statistics.median(self.cpus) if self.cpus else None,
            "walls_s": [round(w, 4) for w in self.walls],
        }
        if lines is not None and self.walls:
            d["lines_per_s"] = lines / self.median
        if self.sizes:
            d["output_bytes"] = statistics.median(self.sizes)
            d["output_mb"] = d["output_bytes"] / MB
        if self.problems:
            d["problems"] = list(self.problems)
        return d


def run_interleaved(
    tools: Sequence[tuple[str, Callable[..., tuple[Timing, list[str]]]]],
    series: Mapping[str, Series],
    runs: int,
    show: bool = True,
) -> None:
    """One warm-up per tool (not counted), then `runs` rounds of every tool in turn.

    Each tool is `fn(warmup=...) -> (Timing, problems)`; its timings and problems go into
    series[name]. With `show`, each run's wall time is printed as it ends.
    """
    for name, fn in tools:
        if show:
            print(f"  warm-up {name} ...", end="", flush=True)
        t, problems = fn(warmup=True)
        if show:
            print(f" {t.wall_s:.2f}s" + (" (PROBLEM)" if problems else ""), flush=True)
        series[name].problems += [f"warm-up: {p}" for p in problems]
    for i in range(runs):
        for name, fn in tools:
            t, problems = fn(warmup=False)
            series[name].add(t)
            series[name].problems += [f"run {i + 1}: {p}" for p in problems]
            if show:
                print(f"  run {i + 1}/{runs} {name}: {t.wall_s:.2f}s" + (" (PROBLEM)" if problems else ""), flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 < q <= 100) by the nearest-rank method; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> str:
    """A plain-text table; columns flagged in `right` are right-aligned."""
    right = right or [False] * len(headers)
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(
            (str(c).rjust(w) if r else str(c).ljust(w)) for c, w, r in zip(row, widths, right, strict=True)
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(headers), sep, *(fmt(r) for r in rows)])


def tool_version(cmd: Sequence[str]) -> str | None:
    """First line of `cmd` (e.g. ['parallel', '--version']), or None if it cannot run."""
    try:
        out = subprocess.run(
            list(cmd), capture_output=True, text=True, check=False, timeout=30, stdin=subprocess.DEVNULL
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[0].strip() if out.strip() else None


def machine_info() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def git_commit() -> str | None:
    """The checkout's commit (read-only `git rev-parse`), or None."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None
