"""The log schema: its number and the JSON Schema files of every record kind and of summary.json.

`SCHEMA_VERSION` is in `run.started` and `summary.json`. Additive changes (a new field, a new record
kind, a new value of an open field) keep the number; renaming, removing or retyping a field raises
it (docs/reference/log-records.md).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

SCHEMA_VERSION = 2

RECORD_KINDS = (
    "run.started",
    "job.queued",
    "job.started",
    "job.output",
    "job.sample",
    "job.exited",
    "job.retrying",
    "job.finished",
    "run.finished",
    "daemon.reloaded",
    "ticket.rejected",
    "ticket.requeued",
    "daemon.paused",
    "daemon.resumed",
    "ticket.cancelling",
    "ticket.cancelled",
    "ticket.failed",
    "ticket.orphan_cancelled",
    "run.exported",
    "export.failed",
    "run.deathwatch_restarted",
)


# the JSON that commands print (`leaderboard --json`, `compare --json`)
OUTPUTS = ("leaderboard", "compare")


def load(name: str) -> dict[str, Any]:
    """The JSON Schema of a record kind (`"job.output"`), of `"summary"`, or of a command's JSON
    output (`"leaderboard"`, `"compare"`)."""
    if name not in RECORD_KINDS and name != "summary" and name not in OUTPUTS:
        raise KeyError(f"no schema named {name!r}")
    text = resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
