"""Why a job failed, in words a person reads first: its last stderr line, its last output lines,
the interpreter when an import failed, and the `logs` command that shows the rest."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from aimedres_async.records.framing import ATTEMPT_MARK, LINE_BREAK

ERROR_TAIL_LINES = 20
_IMPORT_ERROR = re.compile(r"\b(ModuleNotFoundError|ImportError)\b")


def _last_attempt(tail: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The tail blocks of the latest attempt only (an earlier attempt's error is not this one's)."""
    blocks: list[tuple[str, bytes]] = []
    for stream, block in tail:
        if stream == ATTEMPT_MARK:
            blocks.clear()
        else:
            blocks.append((stream, block))
    return blocks


def _lines(block: bytes) -> list[str]:
    return [x.decode("utf-8", "backslashreplace") for x in LINE_BREAK.split(block)]


def error_line(tail: Iterable[tuple[str, bytes]]) -> str | None:
    """The last non-empty line the latest attempt wrote to stderr (a traceback's last line)."""
    for stream, block in reversed(_last_attempt(tail)):
        if stream != "stderr":
            continue
        for line in reversed(_lines(block)):
            if line.strip():
                return line.strip()[:1000]
    return None


def error_tail(tail: Iterable[tuple[str, bytes]], n: int = ERROR_TAIL_LINES) -> list[str]:
    """The last `n` output lines (both streams) of the latest attempt."""
    lines: list[str] = []
    for _stream, block in _last_attempt(tail):
        lines.extend(x for x in _lines(block) if x)
    return lines[-n:]


def is_import_error(line: str | None) -> bool:
    return bool(line and _IMPORT_ERROR.search(line))


def failure_fields(tail: Iterable[tuple[str, bytes]], python: str | None) -> dict[str, Any]:
    """Extra fields of a failed job's `job.finished` record: `error`, and `interpreter` when the
    failure was an import (the usual cause: the job ran with a Python that lacks the package)."""
    line = error_line(tail)
    if line is None:
        return {}
    fields: dict[str, Any] = {"error": line}
    if python and is_import_error(line):
        fields["interpreter"] = python
        fields["hint"] = (
            f"it ran with {python}; choose the Python that has the module with --python PATH, "
            "[supervisor] python or [jobs.<id>] python"
        )
    return fields


def logs_hint(jobs: Sequence[dict[str, Any]], run_id: str, config: str | None, prog: str = "aimedres-async") -> str:
    """A line naming the exact command that shows the first failed job's log, or "" if none failed."""
    failed = [j for j in jobs if j.get("status") not in ("succeeded", "skipped", "cancelled", "queued")]
    if not failed:
        return ""
    first = failed[0]
    argv = [prog, *(["--config", config] if config else []), "logs", first["id"], "--run", run_id]
    more = f" ({len(failed) - 1} more failed: {', '.join(j['id'] for j in failed[1:4])}" if len(failed) > 1 else ""
    if more:
        more += ", ..." if len(failed) > 4 else ""
        more += ")"
    return f"why {first['id']} failed: {shlex.join(argv)}{more}\n"
