"""The Slurm jobs a daemon has submitted, one durable file each in its ledger folder, so that the
next daemon on the spool can `scancel` those a dead one (kill -9, a crash) left in Slurm's queue.

A record is written (fsynced) before `sbatch` with the job's unique name, rewritten with its job id
once sbatch answers, and removed once the job is over; a record without an id is found by name.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from aimedres_async.engine.executors.slurm_cluster import SCANCEL_TIMEOUT, last_line, run_cmd
from aimedres_async.system import atomic


@dataclass(frozen=True)
class Entry:
    """One Slurm job a daemon submitted for a ticket's attempt."""

    path: Path
    ticket: str
    attempt: int
    run: str
    name: str  # the job's unique name: <ticket>.<attempt>.<run id>
    job_id: str | None  # None: sbatch had not answered yet


def record(ledger: Path, ticket: str, attempt: int, run: str, name: str, job_id: str | None = None) -> Path:
    """Write (or rewrite) the record of one submission, durably: it must outlive a kill -9."""
    ledger.mkdir(mode=0o750, parents=True, exist_ok=True)
    path = ledger / f"{name}.json"
    info = {"ticket": ticket, "attempt": attempt, "run": run, "slurm_job_name": name, "slurm_job_id": job_id}
    atomic.write(path, orjson.dumps(info), mode=0o640)
    return path


def forget(path: Path) -> None:
    """The job is over (or was never submitted): nothing is left to cancel."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def entries(ledger: Path) -> list[Entry]:
    """Every record in a ledger folder; a torn or foreign file is skipped."""
    out: list[Entry] = []
    try:
        names = sorted(os.listdir(ledger))
    except (FileNotFoundError, NotADirectoryError):
        return out
    for name in names:
        if name.startswith(".") or not name.endswith(".json"):
            continue
        try:
            info: dict[str, Any] = orjson.loads((ledger / name).read_bytes())
            job_id = info.get("slurm_job_id")
            out.append(
                Entry(
                    ledger / name,
                    str(info["ticket"]),
                    int(info["attempt"]),
                    str(info["run"]),
                    str(info["slurm_job_name"]),
                    str(job_id) if job_id is not None else None,
                )
            )
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return out


def cancel(entry: Entry) -> tuple[list[str], str | None]:
    """scancel the job of one record: by its id, or by its unique name when sbatch gave none.
    (the ids cancelled, an error) — the error is None when Slurm took the request (or had no such
    job left: it ended on its own)."""
    ids = [entry.job_id] if entry.job_id else []
    if not ids:
        r = run_cmd(["squeue", "--noheader", f"--name={entry.name}", "--format=%i"])
        if r.returncode != 0:
            return [], f"squeue --name={entry.name}: {last_line(r.stderr)}"
        ids = [i for i in r.stdout.split() if i.isdigit()]
        if not ids:
            return [], None  # sbatch never took it, or it is over
    r = run_cmd(["scancel", *ids], timeout=SCANCEL_TIMEOUT)
    if r.returncode != 0 and "already completed" not in r.stderr and "Invalid job id" not in r.stderr:
        return ids, f"scancel {' '.join(ids)}: {last_line(r.stderr)}"
    return ids, None
