"""Text for a terminal: a job's control characters shown, never obeyed (console lines and the
live display both print job output)."""

from __future__ import annotations

# Control characters (C0 but tab, DEL, C1) shown as \xNN on a terminal: a job's escape sequences
# must not retitle, clear or rewrite the operator's screen. The JSON-lines logs keep the bytes.
_VISIBLE = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if c != 0x09}


def visible(text: str) -> str:
    """Text safe to print on a terminal: every control character but tab written as \\xNN."""
    return text.translate(_VISIBLE)
