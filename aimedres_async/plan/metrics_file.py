"""Final metrics from a report file a job writes (`metrics_file`), for scripts that print no JSON.

The file's JSON object is flattened (`{"a": {"b": 1}}` -> `a.b`) and merged under the last JSON
line the job printed: a printed value wins. A missing or unreadable file is a warning, never a failure.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

MAX_BYTES = 16 << 20  # a report bigger than this is not a metrics file
MAX_KEYS = 1000


def flatten(obj: Mapping[str, Any], prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Nested objects as dotted keys; lists and scalars are kept as they are."""
    out = {} if out is None else out
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flatten(value, name + ".", out)
        else:
            out[name] = value
        if len(out) >= MAX_KEYS:
            break
    return out


def find(workdir: Path, pattern: str) -> Path | None:
    """The file `pattern` names under `workdir`; of several a glob matches, the newest."""
    matches = [Path(p) for p in glob.glob(glob.escape(str(workdir)) + "/" + pattern, recursive=True)]
    files = [p for p in matches if p.is_file()]
    if not files:
        return None
    return max(files, key=lambda p: (p.stat().st_mtime_ns, str(p)))


def read(workdir: Path, pattern: str) -> tuple[dict[str, Any] | None, str | None]:
    """(flattened metrics, None) or (None, why not) for the file `pattern` names under `workdir`."""
    try:
        path = find(workdir, pattern)
    except OSError as e:
        return None, f"metrics_file {pattern!r} in {workdir}: {e.strerror or e}"
    if path is None:
        return None, f"metrics_file {pattern!r}: no such file in {workdir}"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        return None, f"metrics_file {path}: {e.strerror or e}"
    if len(data) > MAX_BYTES:
        return None, f"metrics_file {path}: larger than {MAX_BYTES >> 20} MiB; not read"
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        return None, f"metrics_file {path}: not valid JSON ({e})"
    if not isinstance(obj, dict):
        return None, f"metrics_file {path}: expected a JSON object, found {type(obj).__name__}"
    return flatten(obj), None


def final_metrics(
    workdir: Path, pattern: str | None, printed: dict[str, Any] | None, warn: Callable[[str], None]
) -> dict[str, Any] | None:
    """The job's final metrics: the file's (if `pattern` is set and readable) under what it printed."""
    if not pattern:
        return printed
    found, problem = read(workdir, pattern)
    if problem is not None:
        warn(problem + "; final metrics are what the job printed")
        return printed
    return {**(found or {}), **(printed or {})}
