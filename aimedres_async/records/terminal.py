"""Text for a terminal: a job's control characters shown, never obeyed (console lines and the
live display both print job output)."""

from __future__ import annotations

# Control characters (C0 but tab, DEL, C1) shown as \xNN on a terminal: a job's escape sequences
# must not retitle, clear or rewrite the operator's screen. The JSON-lines logs keep the bytes.
_VISIBLE = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if c != 0x09}
# Unicode bidi controls (embeddings, overrides, isolates, marks) shown as \uNNNN wherever a name
# or a line is shown (console, status, report, JUnit, markdown): obeyed, they draw a name reversed.
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_NEUTRAL = {ord(c): f"\\u{ord(c):04x}" for c in BIDI}
_VISIBLE.update(_NEUTRAL)


def visible(text: str) -> str:
    """Text safe to print on a terminal: every control character but tab written as \\xNN, and
    every bidi control as \\uNNNN."""
    return text.translate(_VISIBLE)


def neutral(text: str) -> str:
    """Text with its bidi controls written as \\uNNNN (for a file: markdown, XML, a table)."""
    return text.translate(_NEUTRAL)
