"""The supervisor's own console: lifecycle events as human lines (rendered by structlog) or as JSON
(the log's own line, serialized once in records.sinks.RunLog).

Job output never goes through structlog (one call per line would dominate the hot path);
`--verbose` echoes it straight to stdout, prefixed with the job id.
"""

from __future__ import annotations

import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import orjson

from aimedres_async.records.terminal import visible


def _import_structlog() -> Any:
    """structlog without rich: structlog.dev imports rich (~40 ms, half of start-up) only to draw
    exceptions in its ConsoleRenderer, which this console does not use. A None entry in
    sys.modules makes that optional import fail as if rich were absent; the entry is removed
    again, so the live display still imports rich when a terminal needs it."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        import structlog

        return structlog
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog
    finally:
        del sys.modules["rich"]
    return structlog


# Fields too bulky for a human line; they are in the JSON-lines logs.
_LINES = re.compile(r"([^\r\n]*)(\r\n|\r|\n)")
_HIDDEN = {
    "ts",
    "t",
    "schema",
    "run",
    "event",
    "job",
    "attempt",
    "argv",
    "env_keys",
    "cwd",
    "job_ids",
    "script_sha256",
    "git",
    "config_sha256",
    "python",
    "host",
    "counts",
    "gpus",
    "started_at",
    "platform",
    "supervisor_pid",
    "supervisor_start_time",
    "interpreter",
}


def _human(_logger: Any, _name: str, ev: MutableMapping[str, Any]) -> str:
    ts = str(ev.get("ts", ""))[11:19]
    event = str(ev.get("event", ""))
    who = ""
    if "job" in ev:
        who = f" {ev['job']}" + (f"#{ev['attempt']}" if ev.get("attempt") is not None else "")
    extra = " ".join(f"{k}={_short(v)}" for k, v in ev.items() if k not in _HIDDEN and v is not None)
    if event == "run.finished" and "counts" in ev:
        extra = " ".join(f"{k}={v}" for k, v in ev["counts"].items()) + " " + extra
    return visible(f"{ts} {event:<13}{who}{' ' if extra else ''}{extra}".rstrip())


def _short(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if v < 1000 else f"{v:.0f}"
    text = v if isinstance(v, str) else orjson.dumps(v).decode()
    if " " in text:
        text = orjson.dumps(text).decode()
    return text if len(text) <= 120 else text[:117] + "..."


class _LineBuffer:
    """A structlog logger that writes once per event-loop iteration, not once per line.

    Thousands of short jobs make thousands of lifecycle lines; one write(2) each would cost more
    than the bookkeeping. Outside an event loop it writes at once.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lines: list[str] = []

    def msg(self, message: str) -> None:
        if not self.lines:
            # asyncio is not imported for `list` or `--dry-run`; where it is not, no loop can be running
            asyncio = sys.modules.get("asyncio")
            try:
                if asyncio is None:
                    raise RuntimeError("no event loop")
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self.stream.write(message + "\n")
                self.stream.flush()
                return
        self.lines.append(message)

    info = warning = error = debug = msg  # structlog calls the method named after the level

    def flush(self) -> None:
        if self.lines:
            text = "\n".join(self.lines) + "\n"
            self.lines.clear()
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed or broken console must not stop the jobs


class Console:
    """Lifecycle events for a person (one line each) or a machine (`--log-format json`)."""

    def __init__(
        self,
        fmt: str = "console",
        verbose: bool = False,
        err: TextIO | None = None,
        out: TextIO | None = None,
        quiet: bool = False,
    ) -> None:
        self.json = fmt == "json"
        self.verbose = verbose
        self.quiet = quiet and not self.json  # -q: people's lines only for what went wrong
        self.err = err or sys.stderr
        self.out = out or sys.stdout
        self.buffer = _LineBuffer(self.err)
        self._log: Any = None
        self.progress: Any = None  # a ProgressDisplay on a terminal, see use_progress()

    @property
    def log(self) -> Any:
        """The structlog logger, made at its first use: a command that only prints a warning or two
        (`list`, `--dry-run`) never imports structlog, nor the asyncio that structlog imports."""
        if self._log is None:
            structlog = _import_structlog()
            processors: list[Any] = [structlog.processors.JSONRenderer(serializer=_dumps)] if self.json else [_human]
            self._log = structlog.wrap_logger(self.buffer, processors=processors, cache_logger_on_first_use=True)
        return self._log

    def prepare(self) -> None:
        """Make the logger now (importing structlog, tens of milliseconds), before an event loop
        whose first callback would otherwise pay for it."""
        self.log  # noqa: B018 - the property builds it

    def use_progress(self, color: str = "auto") -> None:
        """Lifecycle events drive a live display instead of printing lines (terminals only);
        `color` is --color: auto (NO_COLOR is honoured), always or never."""
        from aimedres_async.records.progress import ProgressDisplay

        self.progress = ProgressDisplay(self.err, color=color)

    def close(self) -> None:
        """Leave the terminal clean: stop the live display, write what is buffered."""
        if self.progress is not None:
            self.progress.stop()
        self.buffer.flush()

    def event(self, record: dict[str, Any], line: bytes | None = None) -> None:
        """A lifecycle record; `line` is its JSON line as the logs have it, which the JSON console
        writes as it is (a record is serialized once, whatever reads it)."""
        if record.get("event") == "job.sample":  # a measurement, not a lifecycle step: logs only
            return
        if self.progress is not None:
            self.progress.event(record)
            return
        if self.json and line is not None:
            self.buffer.msg(line[:-1].decode("utf-8", "surrogateescape"))
            return
        if self.quiet and not _went_wrong(record):
            return
        fields = dict(record)
        name = fields.pop("event")
        self.log.msg(name, **fields)

    def warning(self, message: str) -> None:
        if self.progress is not None:
            self.progress.message(f"warning: {visible(message)}")
            return
        if self.json:
            self.log.msg("warning", message=message)
        else:
            self.buffer.msg(f"warning: {visible(message)}")
        self.buffer.flush()

    def info(self, message: str) -> None:
        """A one-off line for the user (what --max-workers auto chose, ...)."""
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.message(visible(message))
        elif self.json:
            self.log.msg("info", message=message)
        else:
            self.buffer.msg(visible(message))
        self.buffer.flush()

    def echo(self, job: str, stream: str, lines: bytes) -> None:
        """--verbose: the job's output lines on stdout, each prefixed with its job id."""
        prefix = f"[{job}] " if stream == "stdout" else f"[{job}:err] "
        text = lines.decode("utf-8", "backslashreplace")
        # the framer's rules: a bare \r (a progress bar's redraw) ends no line of its own
        body = "".join(prefix + visible(line) + "\n" for line, end in _LINES.findall(text) if line or end != "\r")
        self.out.write(body)
        self.out.flush()


def _went_wrong(record: dict[str, Any]) -> bool:
    """What -q still prints: a job that ended badly, or a run stopped by a signal."""
    event = record.get("event")
    if event == "job.finished":
        return record.get("status") not in ("succeeded", "skipped")
    return event == "run.finished" and bool(record.get("stopped_by"))


def _dumps(obj: Any, **_kw: Any) -> str:
    return orjson.dumps(obj).decode()
