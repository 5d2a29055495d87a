"""Checks and preparations before jobs start: their interpreters exist, their output folders do."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from aimedres_async.plan.jobs import JobSpec


def interpreter_problems(specs: Iterable[JobSpec]) -> list[str]:
    """One line per interpreter that is missing or not executable, naming the jobs that need it."""
    users: dict[str, list[str]] = {}
    for spec in specs:
        if spec.python is not None:
            users.setdefault(spec.python, []).append(spec.id)
    problems = []
    for python, ids in users.items():
        path = Path(python)
        if not path.is_absolute():
            why = "is not found in PATH"
        elif not path.exists():
            why = "does not exist"
        elif path.is_dir() or not os.access(path, os.X_OK):
            why = "is not an executable file"
        else:
            continue
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        problems.append(
            f"interpreter {python} {why} (jobs: {shown}); choose one with --python PATH, "
            f"[supervisor] python or [jobs.<id>] python"
        )
    return problems


_bases_made: set[Path] = set()


def missing_output_dirs(spec: JobSpec) -> list[Path]:
    """The job's own output folder and its parents below the base that do not exist yet, deepest
    first: what `ensure_output_dirs` is about to make for it."""
    missing: list[Path] = []
    folder = spec.output_dir
    while folder is not None and folder != spec.output_base and folder.parent != folder and not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_if_empty(folders: list[Path]) -> None:
    """Folders made for an attempt that failed, deepest first, each while it is still empty: a job
    that failed before writing anything leaves no empty results/<id>/ behind."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (it wrote something, or another job's folder is inside), or gone
            return


def ensure_output_dirs(spec: JobSpec) -> str | None:
    """Make the base output folder and the job's own (parents included), as a script that calls
    `os.mkdir(output_dir)` or writes into it straight away expects; returns a problem or None.
    The base folder, shared by every job, is made once per process; a job's own folder (which
    makes its parents again) before each of its attempts."""
    for folder in (spec.output_base, spec.output_dir):
        if folder is None or (folder is spec.output_base and folder in _bases_made and spec.output_dir is None):
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return f"{spec.id}: cannot create output folder {folder}: {e.strerror or e}"
        if folder is spec.output_base:
            _bases_made.add(folder)
    return None
