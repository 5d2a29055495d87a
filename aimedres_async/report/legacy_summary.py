"""The old orchestrator's `training_summary_<time>.json` (`--summary-dir`), in its own format: the
compatibility format a CI step written for the old tool reads (`status == "FAILED"`, ...).

Built from this run's summary.json content and its events.jsonl (each job's last attempt's start
and end); this tool's own summary.json is not changed by it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

PIPELINE = "AiMedRes Medical AI Training"  # the old tool's value, which CI steps may filter on
# this tool's final status -> the old tool's word
OLD_STATUS = {
    "succeeded": "SUCCESS",
    "skipped": "SKIPPED",
    "failed": "FAILED",
    "timed_out": "FAILED",
    "stalled": "FAILED",
    "spawn_failed": "FAILED",
    "cancelled": "INTERRUPTED",
    "interrupted": "INTERRUPTED",
}
OLD_FLAGS = {
    "use_output_dir": "output_dir",
    "supports_epochs": "epochs",
    "supports_folds": "folds",
    "supports_sample": "sample",
    "supports_batch": "batch",
}


def attempt_times(events: Path) -> dict[str, tuple[str | None, str | None]]:
    """Each job's last attempt: (its job.started ts, its job.exited ts), from events.jsonl."""
    times: dict[str, tuple[str | None, str | None]] = {}
    try:
        lines = events.read_bytes().splitlines()
    except OSError:
        return times
    for line in lines:
        if b'"job.started"' not in line and b'"job.exited"' not in line:
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        job = rec.get("job")
        if not isinstance(job, str):
            continue
        if rec.get("event") == "job.started":
            times[job] = (rec.get("ts"), None)
        elif rec.get("event") == "job.exited":
            times[job] = (times.get(job, (None, None))[0], rec.get("ts"))
    return times


def training_summary(
    summary: Mapping[str, Any],
    events: Path,
    accepts: Mapping[str, Iterable[str]],
    arguments: Mapping[str, Any],
    working_directory: Path,
    gpus: Iterable[str] = (),
) -> dict[str, Any]:
    """The old format: `pipeline`, `start_time_utc`, `end_time_utc`, `duration_sec`, `git_commit`,
    `python`, `working_directory`, `gpu_info`, `arguments`, and per job `id`, `name`, `status`
    (SUCCESS, FAILED, SKIPPED or INTERRUPTED), `attempts`, `start_time`, `end_time`,
    `duration_sec`, `optional`, the `supports_*` flags, `command`, `error`; then this tool's
    `run`, `logs_dir`, and per job `metrics` and `warnings`. `accepts` is each job's injected flags,
    `gpus` the GPU ids the run handed out."""
    times = attempt_times(events)
    devices = list(gpus)
    git = summary.get("git")
    jobs = []
    for j in summary.get("jobs", []):
        start, end = times.get(j["id"], (None, None))
        flags = set(accepts.get(j["id"], ()))
        jobs.append(
            {
                "id": j["id"],
                "name": j["id"],
                "status": OLD_STATUS.get(str(j.get("status")), "INTERRUPTED"),
                "attempts": j.get("attempts", 0),
                "start_time": start,
                "end_time": end,
                "duration_sec": j.get("duration_s"),
                "optional": j.get("optional", False),
                **{old: flag in flags for old, flag in OLD_FLAGS.items()},
                "command": j.get("command", []),
                "error": j.get("error"),
                "metrics": j.get("metrics"),
                "warnings": j.get("warnings", 0),
            }
        )
    return {
        "pipeline": PIPELINE,
        "start_time_utc": summary.get("started_at"),
        "end_time_utc": summary.get("finished_at"),
        "duration_sec": summary.get("duration_s"),
        "git_commit": git.get("commit") if isinstance(git, dict) else None,
        "python": sys.version.replace("\n", " "),
        "working_directory": str(working_directory),
        "gpu_info": {
            "framework": None,
            "cuda_available": bool(devices),
            "device_count": len(devices),
            "devices": devices,
        },
        "arguments": {k: v for k, v in arguments.items() if isinstance(v, str | int | float | bool | list | None)},
        "jobs": jobs,
        "run": summary.get("run"),
        "logs_dir": summary.get("logs_dir"),
    }
