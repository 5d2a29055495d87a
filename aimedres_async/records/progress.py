"""The live display on a terminal: an overall bar and one row per running job with its attempt,
elapsed time and last output line; a line per finished job scrolls above it.

Used only when stderr is a terminal (and not with --no-progress or --log-format json); rich is
imported here, lazily, so plain runs and `--help` do not pay for it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console as RichConsole
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from aimedres_async.plan.units import format_duration
from aimedres_async.records.framing import ATTEMPT_MARK
from aimedres_async.records.terminal import visible

_LAST_LINE = re.compile(rb"[^\r\n]+")
SHOWN_METRICS = 4  # per finished-job line
MIN_LAST = 20  # a running job's last output line keeps at least this many columns
GAP = 2  # between the columns of a job's row
MIN_BAR, MAX_BAR = 10, 30  # the overall bar's width, when the header has room for it
_STATUS_STYLE = {
    "succeeded": "green",
    "skipped": "green",
    "failed": "red",
    "timed_out": "red",
    "spawn_failed": "red",
    "cancelled": "yellow",
}


class ProgressDisplay:
    def __init__(self, stream: TextIO, total: int = 0, color: str = "auto") -> None:
        no_color = {"always": False, "never": True}.get(color)  # None: rich reads NO_COLOR
        self.console = RichConsole(file=stream, stderr=True, highlight=False, no_color=no_color)
        self.total = total
        self.started = time.monotonic()
        self.counts: dict[str, int] = {}
        self.running: dict[str, tuple[int, float]] = {}  # job -> (attempt, started)
        self.tail_of: Callable[[str], Any] | None = None  # job -> its tail deque
        self._lock = threading.Lock()  # the state below, between the loop and rich's refresh thread
        self.live = Live(
            console=self.console,
            get_renderable=self._render,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._open = False

    def start(self) -> None:
        if not self._open:
            self.live.start()
            self._open = True

    def stop(self) -> None:
        if self._open:
            self.live.stop()  # transient: the live area is erased, the cursor comes back
            self._open = False

    def event(self, rec: dict[str, Any]) -> None:
        ev = rec.get("event")
        if ev == "run.started":
            self.total = len(rec.get("job_ids", [])) or self.total
            self.start()
        with self._lock:  # a frame drawn meanwhile sees the state before or after, never between
            line = self._apply(ev, rec.get("job"), rec)
        if line is not None:  # printed above the display, which is drawn again from the new state
            self._print(line)
        if ev == "run.finished":
            self.stop()

    def _apply(self, ev: Any, job: Any, rec: dict[str, Any]) -> str | None:
        """The state change of one record; the line to print above the display, if any."""
        if ev == "job.queued" and self.total < 1:
            self.total += 1
        elif ev == "job.started" and job:
            self.running[job] = (int(rec.get("attempt", 1)), time.monotonic())
        elif ev == "job.exited" and job:
            self.running.pop(job, None)
        elif ev == "job.retrying" and job:
            return (
                f"[yellow]retry[/] {_name(job)} (attempt {rec.get('attempt')} {rec.get('failure') or 'failed'}), "
                f"next in {rec.get('delay_s', 0):.1f}s"
            )
        elif ev == "job.finished" and job:
            status = str(rec.get("status"))
            self.running.pop(job, None)
            self.counts[status] = self.counts.get(status, 0) + 1
            style = _STATUS_STYLE.get(status, "white")
            return f"[{style}]{status:<9}[/] {_name(job)} (attempts {rec.get('attempts')}) {_shown(rec)}"
        return None

    def message(self, text: str) -> None:
        self._print(escape(text))

    def _print(self, markup: str) -> None:
        # wrapped at spaces by rich (a terminal would cut words in two), a long word folded
        self.console.print(markup, highlight=False, overflow="fold")

    def _last_line(self, job: str) -> str:
        """The attempt's last stdout line (an epoch, a fold), else its last stderr line: a progress
        bar redrawn on stderr says less than the line the script printed last."""
        tail = self.tail_of(job) if self.tail_of else None
        if not tail:
            return ""
        found: bytes | None = None
        # a copy (one C call, so the loop thread cannot append during it): this runs in rich's thread
        for stream, block in reversed(list(tail)):
            if stream == ATTEMPT_MARK:  # the attempt's start: nothing earlier is this attempt's
                break
            lines = _LAST_LINE.findall(block[-2048:])
            if lines and stream == "stdout":
                found = lines[-1]
                break
            if lines and found is None:
                found = lines[-1]
        if found is None:
            return ""
        # tqdm and friends print escape sequences (cursor up, colours): show the text only
        plain = Text.from_ansi(found.decode("utf-8", "replace")).plain
        return "".join(ch for ch in plain if ch >= " " and ch != "\x7f")

    def _render(self) -> Group:
        with self._lock:
            return self._frame()

    def _frame(self) -> Group:
        width = max(20, self.console.width)
        lines = [self._header(width)]
        now = time.monotonic()
        running = list(self.running.items())[: max(1, self.console.height - 3)]
        rows = [
            (job, f"#{attempt}", format_duration(now - since), self._last_line(job))
            for job, (attempt, since) in running
        ]
        lines += self._rows(rows, width)
        return Group(*lines)

    def _header(self, width: int) -> Text:
        """One line at any width: the bar shrinks, then goes, before the counts would wrap."""
        done = sum(self.counts.values())
        failed = sum(n for s, n in self.counts.items() if s not in ("succeeded", "skipped"))
        counts = Text()
        counts.append(f"{done}/{self.total} done", style="green" if done else "")
        counts.append(f" · {len(self.running)} running", style="cyan" if self.running else "")
        counts.append(f" · {failed} failed", style="bold red" if failed else "")
        counts.append(f" · {format_duration(time.monotonic() - self.started)}")
        room = width - len(counts.plain) - 1
        line = Text(no_wrap=True, overflow="ellipsis")
        if room >= MIN_BAR:
            bar = min(MAX_BAR, room)
            filled = round(bar * done / max(self.total, 1))
            # coloured by meaning: finished jobs green, or red once any of them failed
            line.append("━" * filled, style="red" if failed else "green")
            line.append("━" * (bar - filled), style="grey23")
            line.append(" ")
        line.append_text(counts)
        line.truncate(width, overflow="ellipsis")
        return line

    def _rows(self, rows: list[tuple[str, str, str, str]], width: int) -> list[Text]:
        """A row per running job: name, attempt, elapsed, last line. The last line keeps at least
        MIN_LAST characters; at a narrow width the elapsed and attempt columns go first, then the
        name is cut (ending with …)."""
        if not rows:
            return []
        name_w = max(len(r[0]) for r in rows)
        att_w = max(len(r[1]) for r in rows)
        el_w = max(len(r[2]) for r in rows)
        show_el = show_att = True
        if name_w + att_w + el_w + 3 * GAP + MIN_LAST > width:
            show_el = False
        if name_w + att_w + 2 * GAP + MIN_LAST > width and not show_el:
            show_att = False
        fixed = name_w + (att_w + GAP if show_att else 0) + (el_w + GAP if show_el else 0) + GAP
        if width - fixed < MIN_LAST:
            name_w = max(4, width - MIN_LAST - GAP - (att_w + GAP if show_att else 0))
            fixed = name_w + (att_w + GAP if show_att else 0) + GAP
        last_w = max(1, width - fixed)
        out = []
        for name, att, elapsed, last in rows:
            row = Text(no_wrap=True, overflow="ellipsis")
            row.append(_fit(name, name_w).ljust(name_w), style="bold")
            if show_att:
                row.append(" " * GAP + att.ljust(att_w))
            if show_el:
                row.append(" " * GAP + elapsed.rjust(el_w))
            row.append(" " * GAP + _fit(last, last_w))
            out.append(row)
        return out


def _name(job: Any) -> str:
    """A job id as rich markup shows it: a swept id's brackets (`mlp[lr=0.1]`) are text, not a style."""
    return escape(visible(str(job)))


def _shown(rec: dict[str, Any]) -> str:
    """A finished job's line after its name: its first metrics, or why it failed; its warnings."""
    metrics = [(k, v) for k, v in (rec.get("metrics") or {}).items() if isinstance(v, int | float | str)]
    shown = escape(visible(" ".join(f"{k}={v}" for k, v in metrics[:SHOWN_METRICS])))
    if len(metrics) > SHOWN_METRICS:
        shown += f" +{len(metrics) - SHOWN_METRICS} more"  # all of them: summary.json, `logs`
    if rec.get("error"):  # why it failed, and for an import error which Python ran it
        shown = escape(visible(str(rec["error"]) + (f" ({rec['hint']})" if rec.get("hint") else "")))
    if rec.get("warnings"):  # a fallback ("creating a sample dataset") seen without opening a log
        first = escape(visible(str(rec.get("first_warning") or "")[:100]))
        shown += f"  [yellow]warnings: {rec['warnings']}[/] (first: {first})"
    return shown


def _fit(text: str, width: int) -> str:
    """text, cut to width with a closing … when it is longer."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"
