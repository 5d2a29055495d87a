"""Final metrics from a report file a job writes (`metrics_file`), for scripts that print no JSON.

The file's JSON object is flattened (`{"a": {"b": 1}}` -> `a.b`), cut down to its metrics (numbers;
not strings, flags, timestamps, nor the `config`/`args`/`params` it ran with) unless `metrics_keys`
names a key, and merged under the last JSON line the job printed: a printed value wins. The keys
`metrics_keys` chooses come first. A missing or unreadable file is a warning, never a failure.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from aimedres_async.plan.limits import LimitError, check_structure, open_regular

MAX_BYTES = 16 << 20  # a report bigger than this is not a metrics file
MAX_KEYS = 1000
# subtrees that describe the run rather than measure it
SETTINGS_SUBTREES = frozenset({"config", "args", "params"})
# leaf names that are moments, not measurements (`timestamp`, `created_at`, `start_time`, ...)
_MOMENT = re.compile(
    r"(?:timestamp|ts|time|date|datetime|created|updated|modified|generated|started|finished|start_time|end_time)"
    r"|.*_(?:at|timestamp|date)"
)

# orjson reads an integer beyond 64 bits as a float: a line with a run of 20 digits is read again
LONG_NUMBER = re.compile(rb"\d{20}")
_INT_RANGE = (-(1 << 63), (1 << 64) - 1)  # what orjson reads and writes as an integer


def exact_ints(raw: bytes) -> tuple[dict[str, Any], bytes] | None:
    """A JSON object line holding integers beyond 64 bits, read with the standard library (exact
    integers): (the object with each such integer as its decimal text, for the metrics, whose
    files are written with orjson; the record's data, the integers as the digits printed). None:
    it holds none, or cannot be read so (orjson's reading is kept)."""
    import json

    try:
        obj = json.loads(raw)
        if not isinstance(obj, dict):
            return None
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except (ValueError, RecursionError, UnicodeEncodeError):
        return None
    found = False
    stack: list[Any] = [obj]
    while stack:  # without recursion: the line may nest as deep as orjson reads
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            if isinstance(value, int) and not isinstance(value, bool) and not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
                node[key], found = str(value), True
            elif isinstance(value, dict | list):
                stack.append(value)
    return (obj, data) if found else None


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


def is_metric(name: str, value: object) -> bool:
    """Whether a flattened leaf is a measurement: a number (not a flag), not a moment, not inside
    the settings the run was given."""
    if isinstance(value, str) and len(value) >= 20 and value.lstrip("-").isdigit():
        value = 0  # an integer beyond 64 bits, kept exact as its digits (exact_ints)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    parts = name.split(".")
    if any(p.lower() in SETTINGS_SUBTREES for p in parts[:-1]):
        return False
    return not _MOMENT.fullmatch(parts[-1].lower())


def chosen(name: str, keys: Sequence[str]) -> int | None:
    """The index of the first `metrics_keys` glob that matches `name`, or None."""
    return next((i for i, k in enumerate(keys) if fnmatch.fnmatchcase(name, k)), None)


def select(metrics: Mapping[str, Any], keys: Sequence[str] = (), only_metrics: bool = True) -> dict[str, Any]:
    """`metrics` with the keys `keys` chooses first (in the order of its globs, kept whatever their
    value), then the others (only measurements when `only_metrics`)."""
    first: list[tuple[int, int, str]] = []
    rest: list[str] = []
    for n, name in enumerate(metrics):
        i = chosen(name, keys) if keys else None
        if i is not None:
            first.append((i, n, name))
        elif not only_metrics or is_metric(name, metrics[name]):
            rest.append(name)
    return {name: metrics[name] for name in [f[2] for f in sorted(first)] + rest}


def find(workdir: Path, pattern: str | Iterable[str]) -> Path | None:
    """The file `pattern` names under `workdir`; of several a glob matches, the newest; of a list
    of patterns, the first that matches a file."""
    for one in [pattern] if isinstance(pattern, str) else pattern:
        matches = [Path(p) for p in glob.glob(glob.escape(str(workdir)) + "/" + one, recursive=True)]
        # a FIFO or socket found is named (read() refuses it), so the warning says what is there
        files = [p for p in matches if p.is_file()] or [p for p in matches if not p.is_dir()]
        if files:
            return max(files, key=lambda p: (p.stat().st_mtime_ns, str(p)))
    return None


def _shown(pattern: str | Sequence[str]) -> str:
    return repr(pattern) if isinstance(pattern, str) else "[" + ", ".join(repr(p) for p in pattern) + "]"


def read(workdir: Path, pattern: str | Sequence[str]) -> tuple[dict[str, Any] | None, str | None]:
    """(flattened object, None) or (None, why not) for the file `pattern` names under `workdir`."""
    try:
        path = find(workdir, pattern)
    except OSError as e:
        return None, f"metrics_file {_shown(pattern)} in {workdir}: {e.strerror or e}"
    if path is None:
        return None, f"metrics_file {_shown(pattern)}: no such file in {workdir}"
    try:  # a FIFO the job left there is refused, never waited on
        with os.fdopen(open_regular(path), "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        return None, f"metrics_file {path}: {e.strerror or e}"
    except ValueError as e:
        return None, f"metrics_file {path}: {e}; not read"
    if len(data) > MAX_BYTES:
        return None, f"metrics_file {path}: larger than {MAX_BYTES >> 20} MiB; not read"
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        return None, f"metrics_file {path}: not valid JSON ({e})"
    if not isinstance(obj, dict):
        return None, f"metrics_file {path}: expected a JSON object, found {type(obj).__name__}"
    exact = exact_ints(data) if LONG_NUMBER.search(data) else None
    if exact is not None:
        obj = exact[0]  # integers beyond 64 bits kept exact, as text
    try:  # flatten() recurses: orjson reads 1,024 levels, more than Python's stack allows
        check_structure(obj, max_nodes=MAX_BYTES)
    except LimitError as e:
        return None, f"metrics_file {path}: {e}; not read"
    return flatten(obj), None


def final_metrics(
    workdir: Path,
    pattern: str | Sequence[str] | None,
    printed: dict[str, Any] | None,
    warn: Callable[[str], None],
    keys: Sequence[str] = (),
) -> dict[str, Any] | None:
    """The job's final metrics: the file's measurements (if `pattern` is set and the file readable)
    under what it printed, the keys `keys` chooses first."""
    if not pattern:
        return select(printed, keys, only_metrics=False) if printed and keys else printed
    found, problem = read(workdir, pattern)
    if problem is not None:
        warn(problem + "; final metrics are what the job printed")
        return select(printed, keys, only_metrics=False) if printed and keys else printed
    from_file = select(found or {}, keys)
    merged = {**from_file, **(printed or {})}
    return select(merged, keys, only_metrics=False) if keys else merged
