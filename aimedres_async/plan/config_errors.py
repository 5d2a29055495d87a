"""What is wrong with a config file, said once per problem: `ConfigError` and the collector that
turns a key path into one line naming the file, the line (found in the TOML text) and the key.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """A one-line problem with what the user gave on the command line (exit 2): a selection that
    matches no job, an old orchestrator's flag or job list."""


class ConfigError(Exception):
    """One or more problems in a config file; each is a complete one-line message."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Problems:
    """Collects problems, each naming file, key path and (when found) the line."""

    def __init__(self, path: Path | None, text: str) -> None:
        self.name = str(path) if path else "<built-in>"
        self.lines = text.splitlines()
        self.items: list[str] = []

    def add(self, keypath: tuple[str, ...], message: str) -> None:
        line = _locate(self.lines, keypath) if keypath else None
        where = f"{self.name}:{line}" if line else self.name
        # a quoted key may hold anything (a newline, a fake "error:" line): show it quoted
        path = ".".join(json.dumps(k) if re.search(r'[\x00-\x1f\x7f"\\]', k) else k for k in keypath)
        self.items.append(f"{where}: {path}: {message}" if keypath else f"{where}: {message}")


_KEY_PART = re.compile(r"""\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*(\.|$)""")


def _split_key(text: str) -> tuple[str, ...] | None:
    """A dotted TOML key into its parts; quoted parts may contain dots."""
    parts, pos = [], 0
    while pos < len(text):
        m = _KEY_PART.match(text, pos)
        if not m:
            return None
        parts.append(m.group(1).strip("\"'"))
        pos = m.end()
    return tuple(parts)


def _header_path(line: str) -> tuple[str, ...] | None:
    s = line.strip()
    if not s.startswith("[") or s.startswith("[["):
        return None
    m = re.match(r"""\[((?:"[^"]*"|'[^']*'|[^\]"'])*)\]""", s)
    return _split_key(m.group(1)) if m else None


def _locate(lines: list[str], keypath: tuple[str, ...]) -> int | None:
    """Best-effort line number of a key path in the TOML text (for error messages)."""
    table: tuple[str, ...] = ()
    best: int | None = None
    for i, line in enumerate(lines, 1):
        header = _header_path(line)
        if header is not None:
            table = header
            if header == keypath:
                return i
            continue
        head, eq, _rest = line.partition("=")  # (a key holding "=" is not located; messages say less)
        key = _split_key(head.strip()) if eq and len(head) <= 1024 and head.strip() else None
        if not key:
            continue
        full = table + key
        if full == keypath:
            return i
        if keypath[: len(full)] == full and best is None:
            best = i  # an inline table holding the key
    return best


def suggest(key: str, allowed: Mapping[str, Any]) -> str:
    """What an unknown key probably meant, or the keys allowed where it stands."""
    import difflib  # only when a key is wrong: every command loads this module

    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(sorted(allowed))})"


def syntax_error(e: tomllib.TOMLDecodeError, name: str, text: str) -> ConfigError:
    """A TOML syntax error as `file:line:column: TOML syntax error: ...`."""
    m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
    msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(e))
    if m:
        where = f"{name}:{m.group(1)}:{m.group(2)}"
    else:  # "(at end of document)": point at the end of the text
        lines = text.split("\n")
        where = f"{name}:{len(lines)}:{len(lines[-1]) + 1}"
        msg += " (at end of file)"
    return ConfigError([f"{where}: TOML syntax error: {msg}"])
