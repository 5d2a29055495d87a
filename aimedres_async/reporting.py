"""Run reports read back from disk: earlier summaries, and the marking of a run whose supervisor died.

A summary without `finished_at` whose supervisor process is gone belongs to a run that was killed
(`kill -9`, a crash, a power cut): the next `run` in the same logs folder says so in it.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

import orjson

from . import procs, sinks

RUN_DIR_RE = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{4}")
UNFINISHED = ("queued", "running", "backoff")
LOOK_BACK = 5  # runs examined; an older dead run was marked by a run before


def supervisor_identity() -> dict[str, Any]:
    """What a summary records of the supervisor, so a later run can tell whether it still lives."""
    pid = os.getpid()
    return {"supervisor_pid": pid, "supervisor_start_time": procs.start_time(pid)}


def _alive(data: dict[str, Any]) -> bool:
    """Whether the supervisor of this summary may still be running (unknown counts as alive)."""
    pid, started = data.get("supervisor_pid"), data.get("supervisor_start_time")
    if not isinstance(pid, int) or data.get("host") != socket.gethostname():
        return True  # an older summary, or another machine's run: cannot tell
    if pid == os.getpid():
        return True
    now = procs.start_time(pid)
    return now is not None and (started is None or now == started)


def mark_interrupted(logs_dir: Path, look_back: int = LOOK_BACK) -> list[str]:
    """Mark the unfinished summaries of dead supervisors `interrupted`; returns their run ids.

    Jobs still queued, running or waiting out a backoff become `interrupted`, and any process
    that still carries the dead run's id in its environment (a grandchild of one of its jobs)
    is killed.
    """
    try:
        names = sorted((d.name for d in logs_dir.iterdir() if RUN_DIR_RE.fullmatch(d.name)), reverse=True)
    except OSError:
        return []
    marked = []
    for name in names[:look_back]:
        path = logs_dir / name / "summary.json"
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if not isinstance(data, dict) or "finished_at" in data or data.get("interrupted") or _alive(data):
            continue
        counts: dict[str, int] = {}
        for job in data.get("jobs", []):
            if isinstance(job, dict):
                if job.get("status") in UNFINISHED:
                    job["status"] = "interrupted"
                key = str(job.get("status"))
                counts[key] = counts.get(key, 0) + 1
        data.update(interrupted=True, interrupted_found_at=sinks.timestamp_str(), counts=counts,
                    stopped_by="supervisor died")  # fmt: skip
        procs.kill_run_leftovers(str(data.get("run", name)))
        try:
            sinks.atomic_write(path, orjson.dumps(data, option=orjson.OPT_INDENT_2))
        except OSError:
            continue
        marked.append(name)
    return marked
