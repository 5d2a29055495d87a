"""Durations and sizes as people write them in a config ("10s", "1h30m", "8GiB") and as a report
shows them back; every figure stays within a 64-bit JSON integer.
"""

from __future__ import annotations

import re

MAX_INT = (1 << 63) - 1
MAX_DURATION_S = 10 * 365 * 86400.0  # ten years: beyond any job, within every timer's range

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)", re.I)


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgt]?i?b?)\s*$", re.I)


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like "500ms", "10s", "5m", "2h", "1h30m"."""
    if isinstance(value, bool):
        raise ValueError('expected a duration like 10, "10s", "5m", "2h"')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 64:  # also keeps the unit scan below linear on hostile input
            raise ValueError(f"{text[:64]!r}... is not a duration (too long)")
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for m in _DURATION_PART.finditer(text):
                if m.start() != pos and text[pos : m.start()].strip():
                    break
                seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
                pos = m.end()
            if pos == 0 or text[pos:].strip():
                raise ValueError(f'{value!r} is not a duration (use e.g. "500ms", "10s", "5m", "2h")') from None
    else:
        raise ValueError('expected a duration like 10, "10s", "5m", "2h"')
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError("a duration must be a finite number >= 0")
    if seconds > MAX_DURATION_S:
        raise ValueError("a duration must be at most 10 years (315360000 s)")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from an integer or a string like "512MiB", "8GiB", "1.5G"."""
    if isinstance(value, bool):
        raise ValueError('expected a size like 1048576 or "512MiB"')
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = _SIZE_RE.match(value) if len(value) <= 64 else None
        if not m or m.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f'{value[:64]!r} is not a size (use e.g. "512MiB", "8GiB")')
        try:
            n = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
        except OverflowError:  # float("9" * 400) is inf
            raise ValueError(f"{value[:64]!r} is too large") from None
    else:
        raise ValueError('expected a size like 1048576 or "512MiB"')
    if n < 0:
        raise ValueError("a size must be >= 0")
    if n > MAX_INT:
        raise ValueError(f"a size must be <= {MAX_INT} bytes")
    return n


def format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TiB"


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, s = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    h, minutes = divmod(minutes, 60)
    return f"{h}h{minutes:02d}m"
