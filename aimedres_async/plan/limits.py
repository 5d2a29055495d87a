"""Bounds on what users hand us (configs, tickets, YAML job lists): nesting depth and node counts,
checked without recursion before any recursive parser or walker sees the text.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

from aimedres_async.plan.units import format_size

MAX_DEPTH = 32  # arrays and tables inside each other; a real config needs 4
MAX_NODES = 100_000  # values in one YAML document, every alias counted as a copy of its target
MAX_YAML_BYTES = 1 << 20
PRIORITY_MIN, PRIORITY_MAX = -(1 << 31), (1 << 31) - 1  # pueue's and sbatch's 32-bit range

# What can hide a bracket from the depth count: strings (multi-line first) and comments.
_TOML_TOKENS = re.compile(
    r'"""(?:[^\\]|\\.)*?"""'
    r"|'''.*?'''"
    r'|"(?:[^"\\\n]|\\.)*"'
    r"|'[^'\n]*'"
    r"|#[^\n]*"
    r"|([\[{])|([\]}])",
    re.DOTALL,
)


def open_regular(path: Path) -> int:
    """A descriptor of `path`, opened non-blocking (a FIFO cannot hang the open) and refused with
    ValueError unless it is a regular file (a FIFO, /dev/zero or a socket would be read without end)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError("not a regular file")
    return fd


def read_regular_file(path: Path, limit: int) -> bytes:
    """A regular file's bytes, at most `limit` of them; ValueError for anything else (`open_regular`)."""
    with os.fdopen(open_regular(path), "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {format_size(limit)}")
    return data


class LimitError(ValueError):
    """Input beyond a bound: one line saying which bound, and where."""


def check_toml_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """Refuse TOML text whose arrays and inline tables nest deeper than `limit` (tomllib parses
    them recursively, so a 1 KiB file could otherwise end in a RecursionError)."""
    depth = 0
    for m in _TOML_TOKENS.finditer(text):
        if m.group(1):
            depth += 1
            if depth > limit:
                line = text.count("\n", 0, m.start()) + 1
                raise LimitError(f"line {line}: nested more than {limit} deep (arrays or tables inside each other)")
        elif m.group(2):
            depth = max(depth - 1, 0)


def check_structure(obj: object, limit: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> None:
    """Refuse a parsed value nested deeper than `limit` or holding more than `max_nodes` values
    (a shared value counted at each place it appears); walked without recursion, and never past
    the bound, so a billion-laughs structure costs `max_nodes` steps."""
    stack: list[tuple[object, int]] = [(obj, 0)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > max_nodes:
            raise LimitError(f"more than {max_nodes} values (aliases count as copies)")
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list | tuple):
            children = value
        else:
            continue
        if depth >= limit and children:
            raise LimitError(f"nested more than {limit} deep (lists or tables inside each other)")
        stack.extend((child, depth + 1) for child in children)


def check_yaml_events(text: str, limit: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> None:
    """Refuse YAML nested deeper than `limit` or expanding to more than `max_nodes` values, from
    PyYAML's event stream (its parser keeps an explicit stack; its composer would recurse).
    Raises LimitError, or yaml.YAMLError for text that is not YAML."""
    import yaml

    sizes: dict[str, int] = {}  # anchor -> the number of values it stands for
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, values counted before it opened)
    total = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            total += sizes.get(event.anchor or "", 1)
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            total += 1
            open_nodes.append((event.anchor, total - 1))
            if len(open_nodes) > limit:
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise LimitError(f"line {line}: nested more than {limit} deep")
        elif isinstance(event, yaml.CollectionEndEvent) and open_nodes:
            anchor, before = open_nodes.pop()
            if anchor:
                sizes[anchor] = total - before
        if total > max_nodes:
            raise LimitError(f"more than {max_nodes} values once its aliases are expanded")


def load_toml(text: str) -> dict[str, Any]:
    """tomllib.loads within the bounds: LimitError, or tomllib.TOMLDecodeError for bad syntax."""
    import tomllib

    check_toml_depth(text)
    data = tomllib.loads(text)
    # TOML has no aliases: its values are bounded by its bytes (a config of 100,000 jobs holds
    # 300,000 of them); only the depth of dotted keys (`a.b.c = 1`, no bracket) is left to check
    check_structure(data, max_nodes=len(text) + 1)
    return data


def want_priority(v: object) -> int:
    """A ticket's `priority`: a whole number within 32 bits (higher runs first)."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise LimitError("expected a whole number (higher runs first)")
    if not PRIORITY_MIN <= v <= PRIORITY_MAX:
        raise LimitError(f"must be from {PRIORITY_MIN} to {PRIORITY_MAX}")
    return v
