"""One check per kind of config value: each takes what TOML gave and returns the typed value, or
raises ValueError with the message the user sees after the key's path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aimedres_async.plan.accepts import accepts
from aimedres_async.plan.config import MAX_GPUS, MAX_WORKERS
from aimedres_async.plan.units import MAX_INT, format_size, parse_duration, parse_size


@accepts("true or false")
def want_bool(v: object) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


@accepts("a string")
def want_str(v: object) -> str:
    if not isinstance(v, str):
        raise ValueError("expected a string")
    if "\0" in v:  # no path, argument or variable can hold one
        raise ValueError("must not contain a NUL character")
    return v


def want_int(lo: int) -> Callable[[object], int]:
    def check(v: object) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError("expected an integer")
        if v < lo:
            raise ValueError(f"must be >= {lo}")
        if v > MAX_INT:  # every figure ends up in a JSON log, whose integers are 64-bit
            raise ValueError(f"must be <= {MAX_INT}")
        return v

    return accepts(f"an integer ≥ {lo}")(check)


def want_number(lo: float) -> Callable[[object], float]:
    def check(v: object) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError("expected a number")
        if not v >= lo or v == float("inf"):
            raise ValueError(f"must be a finite number >= {lo:g}")
        return float(v)

    return accepts(f"a number ≥ {lo:g}")(check)


@accepts("a list of strings")
def want_str_list(v: object) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError("expected a list of strings")
    return tuple(want_str(x) for x in v)


def want_choice(choices: tuple[str, ...]) -> Callable[[object], str]:
    def check(v: object) -> str:
        if v not in choices:
            raise ValueError(f"expected one of {', '.join(repr(c) for c in choices)}")
        return str(v)

    return accepts("one of " + ", ".join(f'"{c}"' for c in choices))(check)


@accepts("a non-empty string")
def want_nonempty(v: object) -> str:
    text = want_str(v)
    if not text.strip():
        raise ValueError("must not be empty")
    return text


@accepts("a non-empty string of at most 500 characters")
def want_experiment(v: object) -> str:
    """An MLflow experiment name: MLflow takes at most 500 characters."""
    text = want_nonempty(v)
    if len(text) > 500:
        raise ValueError("at most 500 characters (MLflow's limit for an experiment name)")
    return text


@accepts("a table")
def want_table(v: object) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError("expected a table")
    return v


@accepts(f'an integer from 1 to {MAX_WORKERS:,}, or "auto"')
def want_workers(v: object) -> int | None:
    if v == "auto":
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_WORKERS:
        raise ValueError(f'expected an integer from 1 to {MAX_WORKERS}, or "auto"')
    return v


@accepts('a table of NAME = "value"')
def want_env(v: object) -> dict[str, str]:
    if not isinstance(v, dict):
        raise ValueError('expected a table of NAME = "value"')
    out: dict[str, str] = {}
    for k, val in v.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise ValueError(f"{k!r} is not a valid environment variable name")
        if isinstance(val, bool) or not isinstance(val, str | int | float):
            raise ValueError(f"{k}: expected a string value")
        if "\0" in str(val):
            raise ValueError(f"{k}: must not contain a NUL character")
        out[k] = str(val)
    return out


@accepts('a duration: seconds, or "500ms", "10s", "5m", "2h", "1h30m"')
def want_duration(v: object) -> float:
    return parse_duration(v)


@accepts('a duration ("6h"); 0 = no limit')
def want_timeout(v: object) -> float:
    return parse_duration(v)  # 0 means "no time limit" (and, set on a job, beats a default)


@accepts('a duration of at least "100ms"')
def want_poll_interval(v: object) -> float:
    seconds = parse_duration(v)
    if seconds < 0.1:
        raise ValueError("must be at least 100ms")
    return seconds


def want_min_size(v: object, lo: int) -> int:
    n = parse_size(v)
    if n < lo:
        raise ValueError(f"must be at least {format_size(lo)}")
    return n


@accepts('a size of at least "1KiB" ("1MiB", or bytes)')
def want_line_size(v: object) -> int:
    return want_min_size(v, 1024)


@accepts('a size ("8GiB", "512MiB", or bytes)')
def want_size(v: object) -> int:
    return parse_size(v)


@accepts("a number from 0 to 1")
def want_fraction(v: object) -> float:
    x = want_number(0.0)(v)
    if x > 1:
        raise ValueError("must be between 0 and 1")
    return x


@accepts("a number of GPUs ≥ 0: below 1 a fraction (0.5), above 1 whole GPUs")
def want_gpus(v: object) -> float:
    n = want_number(0.0)(v)
    if n > 1 and n != int(n):
        raise ValueError("a fraction of a GPU must be below 1 (e.g. 0.5); above 1, whole GPUs only")
    return n


@accepts('"auto", a number of GPUs, or a list of device ids (0–1023, or "GPU-<uuid>")')
def want_gpu_capacity(v: object) -> tuple[str, ...] | None:
    """[supervisor] gpus: "auto" (None), a count, or a list of device ids."""
    if v == "auto":
        return None
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        if v > MAX_GPUS:
            raise ValueError(f"{v} GPUs? at most {MAX_GPUS} (did you mean a list of ids?)")
        return tuple(str(i) for i in range(v))
    if isinstance(v, list) and all(isinstance(x, int | str) and not isinstance(x, bool) for x in v):
        if len(v) > MAX_GPUS:
            raise ValueError(f"{len(v)} GPUs? at most {MAX_GPUS}")
        ids = tuple(want_gpu_id(x) for x in v)
        if len(set(ids)) != len(ids):
            raise ValueError("a GPU is listed twice")
        return ids
    raise ValueError('expected "auto", a number of GPUs, or a list of device ids like [0, 1]')


_GPU_UUID = re.compile(r"(GPU|MIG)-[A-Za-z0-9/-]{1,80}")


def want_gpu_id(v: int | str) -> str:
    """One device id as CUDA_VISIBLE_DEVICES takes it: an index from 0 to MAX_GPUS - 1, or a
    `GPU-…`/`MIG-…` UUID (nvidia-smi -L)."""
    text = str(v).strip() if isinstance(v, str) else str(v)
    if isinstance(v, int) or text.isdigit():
        if not text.isascii() or not text.isdigit() or len(text) > 4 or int(text) >= MAX_GPUS:
            raise ValueError(f"GPU id {text[:24]!r}: expected an index from 0 to {MAX_GPUS - 1} or a GPU-<uuid>")
        return str(int(text))
    if not _GPU_UUID.fullmatch(text):
        raise ValueError(f"GPU id {text[:24]!r}: expected an index from 0 to {MAX_GPUS - 1} or a GPU-<uuid>")
    return text


@accepts('a size ("8GiB", or bytes), or "auto"')
def want_capacity_size(v: object) -> int | None:
    return None if v == "auto" else want_min_size(v, 1)


@accepts('a number > 0, or "auto"')
def want_capacity_cpus(v: object) -> float | None:
    if v == "auto":
        return None
    n = want_number(0.0)(v)
    if n <= 0:
        raise ValueError('must be > 0, or "auto"')
    return n


@accepts("a number of GPUs: an integer ≥ 0")
def want_gpu_count(v: object) -> int:
    """[groups.<name>] gpus: how many GPUs (whole or in fractions) its running tickets may declare."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("expected a whole number of GPUs (an integer >= 0)")
    if not 0 <= v <= MAX_GPUS:
        raise ValueError(f"must be from 0 to {MAX_GPUS}")
    return v


@accepts('a size ("16GiB", "512MiB", or bytes) > 0')
def want_budget_size(v: object) -> int:
    return want_min_size(v, 1)


@accepts("a number > 0")
def want_positive(v: object) -> float:
    n = want_number(0.0)(v)
    if n <= 0:
        raise ValueError("must be > 0")
    return n


# resources = { … } of a job, a [defaults] or a ticket (the daemon also reads a waiting ticket's
# table with them, leniently, to know what it declares before it claims it)
RESOURCE_CHECKS: dict[str, Callable[[object], Any]] = {
    "gpus": want_gpus,
    "cpus": want_number(0.0),
    "memory": want_size,
}


@accepts("a list of regular expressions")
def want_patterns(v: object) -> tuple[str, ...]:
    patterns = want_str_list(v)
    for p in patterns:
        try:
            compiled = re.compile(p.encode())  # redaction matches bytes: check it as bytes
        except (re.error, UnicodeEncodeError, OverflowError, RecursionError) as e:
            raise ValueError(f"{p!r} is not a valid regular expression: {e}") from None
        if compiled.fullmatch(b""):
            raise ValueError(f"{p!r} matches the empty string: it would redact between every character")
    return patterns


@accepts("a list of regular expressions (one matching an output line fails the attempt)")
def want_fail_on(v: object) -> tuple[str, ...]:
    """`fail_on`: regular expressions looked for in every output line (bytes, `^`/`$` at line ends)."""
    patterns = want_str_list(v)
    for p in patterns:
        try:
            compiled = re.compile(p.encode(), re.MULTILINE)
        except (re.error, UnicodeEncodeError, OverflowError, RecursionError) as e:
            raise ValueError(f"{p!r} is not a valid regular expression: {e}") from None
        if compiled.search(b"") is not None:
            raise ValueError(f"{p!r} matches an empty line: it would fail every job")
    return patterns


INJECTABLE = ("output_dir", "epochs", "folds", "sample", "batch")


@accepts("a list of: " + ", ".join(INJECTABLE))
def want_flag_names(v: object) -> tuple[str, ...]:
    """`pass_flags`: which of the injected flags a job may be given."""
    names = want_str_list(v)
    for name in names:
        if name not in INJECTABLE:
            raise ValueError(f"{name!r} is not one of {', '.join(INJECTABLE)}")
    return names


@accepts("a list of globs over metric names")
def want_metrics_keys(v: object) -> tuple[str, ...]:
    """`metrics_keys`: globs over the flattened metric names (`cv.*`, `accuracy`)."""
    keys = want_str_list(v)
    if any(not k.strip() for k in keys):
        raise ValueError("a key glob must not be empty")
    return keys


@accepts("a relative path or glob inside the job's output folder, or a list of them")
def want_metrics_files(v: object) -> str | tuple[str, ...]:
    """`metrics_file`: one path or glob, or a list of them (the first that matches a file wins)."""
    if isinstance(v, list):
        if not v:
            raise ValueError("must not be an empty list")
        return tuple(want_metrics_file(x) for x in v)
    return want_metrics_file(v)


def want_metrics_file(v: object) -> str:
    text = want_str(v)
    if not text.strip():
        raise ValueError("must not be empty")
    if text.startswith("/") or ".." in Path(text).parts:
        raise ValueError("must be a path or glob inside the job's output folder (relative, no '..')")
    return text
