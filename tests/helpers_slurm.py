"""Configs for executor = "slurm" and what Slurm says about a job, for the tests that use the local
cluster (`.ci/slurm-up`; the `slurm_env` fixture in conftest.py finds it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess

from conftest import PY


def _config(jobs: str, extra: str = "", slurm: str = "", workers: int = 2, marker: str = "") -> str:
    return f"""
[supervisor]
executor = "slurm"
parallel = true
max_workers = {workers}
grace_period = "2s"
{extra}
[discovery]
enabled = false
[defaults]
env = {{ PYTHONUNBUFFERED = "1", TEST_MARKER = "{marker}" }}
[slurm]
poll_interval = "300ms"
{slurm}
{jobs}
"""


def _job(name: str, code: str, extra: str = "") -> str:
    return f"[jobs.{name}]\ncommand = {json.dumps([PY, '-c', code])}\n{extra}"


def _squeue(env: dict[str, str], run_id: str) -> list[tuple[str, str]]:
    """(job name, state) of every job of this run that Slurm still has pending or running."""
    r = subprocess.run(
        ["squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING,CONFIGURING,SUSPENDED", "--format=%j|%T"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )
    assert r.returncode == 0, r.stderr
    rows = [tuple(line.split("|", 1)) for line in r.stdout.splitlines() if "|" in line]
    return [(name, state) for name, state in rows if name.endswith(run_id)]


def _job_state(env: dict[str, str], job_id: str) -> str:
    r = subprocess.run(
        ["scontrol", "show", "job", "--oneliner", job_id],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )
    m = re.search(r"JobState=(\S+)", r.stdout)
    return m.group(1) if m else f"? {r.stderr.strip()}"
