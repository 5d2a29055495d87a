"""Small readers of Linux /proc files, shared by modules that must not import asyncio for them."""

from __future__ import annotations


def proc_kib(path: str, key: bytes) -> int | None:
    """A `Key:  123 kB` figure of a /proc file (status, meminfo) in bytes; None where unreadable."""
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
