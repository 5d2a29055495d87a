"""Reports of a run: summary.json, JUnit, the step summary and the final table, written from the
supervisor's state; and earlier summaries read back (--resume, --max-workers auto, dead runs).

A summary without `finished_at` whose supervisor process is gone belongs to a run that was killed
(`kill -9`, a crash, a power cut): the next `run` in the same logs folder says so in it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from aimedres_async.plan.limits import open_regular, read_regular_file
from aimedres_async.plan.units import format_duration, format_size
from aimedres_async.records import sinks
from aimedres_async.records.framing import timestamp_str
from aimedres_async.records.terminal import neutral
from aimedres_async.report import junit
from aimedres_async.system import atomic, procs

RUN_DIR_RE = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{4}")
UNFINISHED = ("queued", "running", "backoff")
LOOK_BACK = 5  # runs examined; an older dead run was marked by a run before


def supervisor_identity() -> dict[str, Any]:
    """What a summary records of the supervisor, so a later run can tell whether it still lives."""
    pid = os.getpid()
    return {"supervisor_pid": pid, "supervisor_start_time": procs.start_time(pid)}


PEEK = 16384
MAX_SUMMARY_BYTES = 1 << 30  # a million jobs' entries; anything larger is not a summary


def _alive(data: dict[str, Any]) -> bool:
    """Whether the supervisor of this summary may still be running (unknown counts as alive)."""
    pid, started = data.get("supervisor_pid"), data.get("supervisor_start_time")
    if not isinstance(pid, int) or data.get("host") != socket.gethostname():
        return True  # an older summary, or another machine's run: cannot tell
    if pid == os.getpid():
        return True
    now = procs.start_time(pid)
    return now is not None and (started is None or now == started)


def _plainly_ended(path: Path) -> bool:
    """Whether a summary says it is final (or already marked) in its first or last few KiB, so
    that the whole file (a megabyte for thousands of jobs) need not be parsed at every start. The
    run's fields come before "jobs", and `interrupted` is added after them."""
    try:
        with os.fdopen(open_regular(path), "rb") as f:  # a FIFO there must not hang every start
            head = f.read(PEEK)
            run_fields = head.split(b'\n  "jobs": [', 1)[0]  # a job's metrics may hold any key
            if b'\n  "finished_at":' in run_fields:
                return True
            if f.seek(0, os.SEEK_END) > PEEK:
                f.seek(-PEEK, os.SEEK_END)
                return b'"interrupted": true' in f.read()
    except (OSError, ValueError):
        return True  # nothing to mark
    return False


def mark_interrupted(logs_dir: Path, look_back: int = LOOK_BACK) -> list[str]:
    """Mark the unfinished summaries of dead supervisors `interrupted`; returns their run ids.

    Jobs still queued, running or waiting out a backoff become `interrupted`, and any process
    that still carries the dead run's id in its environment (a grandchild of one of its jobs)
    is killed.
    """
    try:
        names = sorted((d.name for d in logs_dir.iterdir() if RUN_DIR_RE.fullmatch(d.name)), reverse=True)
    except OSError:
        return []
    marked = []
    for name in names[:look_back]:
        path = logs_dir / name / "summary.json"
        if _plainly_ended(path):
            continue
        try:
            data = orjson.loads(read_regular_file(path, MAX_SUMMARY_BYTES))
        except (OSError, ValueError):  # orjson.JSONDecodeError is a ValueError
            continue
        if not isinstance(data, dict) or "finished_at" in data or data.get("interrupted") or _alive(data):
            continue
        counts: dict[str, int] = {}
        for job in data.get("jobs", []):
            if isinstance(job, dict):
                if job.get("status") in UNFINISHED:
                    job["status"] = "interrupted"
                key = str(job.get("status"))
                counts[key] = counts.get(key, 0) + 1
        data.update(interrupted=True, interrupted_found_at=timestamp_str(), counts=counts, stopped_by="supervisor died")
        procs.kill_run_leftovers(str(data.get("run", name)))
        try:
            sinks.atomic_write(path, orjson.dumps(data, option=orjson.OPT_INDENT_2))
        except OSError:
            continue
        marked.append(name)
    return marked


def entry_bytes(entry: dict[str, Any]) -> bytes:
    """One job's entry as it stands in summary.json's "jobs" list (indented as a whole
    `orjson.dumps(summary, option=OPT_INDENT_2)` would put it): serialized once per change."""
    return b"    " + orjson.dumps(entry, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n    ")


def summary_pieces(meta: dict[str, Any], entries: list[bytes]) -> list[bytes]:
    """summary.json from the run's metadata and its jobs' `entry_bytes`, as the pieces to write
    one after the other: the same bytes as `orjson.dumps({**meta, "jobs": [...]}, option=OPT_INDENT_2)`,
    without serializing the entries again (JSON strings hold no raw newline, so re-indenting them
    is safe) and without joining them: at 100,000 jobs the file is ~60 MB, and a joined copy would
    be held beside the entries while it is written."""
    head = orjson.dumps({**meta, "jobs": []}, option=orjson.OPT_INDENT_2)
    if not entries:
        return [head]
    pieces = [b",\n"] * (2 * len(entries) - 1)
    pieces[::2] = entries
    return [head[: -len(b"[]\n}")] + b"[\n", *pieces, b"\n  ]\n}"]


def write_summary(path: Path, data: bytes | Sequence[bytes], final: bool = False) -> str | None:
    """summary.json, whole (temp + rename), from its bytes or its pieces; a one-line problem, or None.

    Only the final one is fsynced: one written while the run goes on is replaced within seconds,
    and the rename alone keeps it whole for readers and across a crash of the supervisor. When
    the final one finds the disk full, the out-of-date one from earlier in the run is removed
    and the write tried once more: its space is usually enough, and else no summary is better
    than one that says "queued".
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write(path, data, durable=final)
        return None
    except OSError as e:
        error = e
    note = ""
    if final and error.errno in (errno.ENOSPC, errno.EDQUOT) and path.exists():
        with contextlib.suppress(OSError):
            path.unlink()
        try:
            atomic.write(path, data)
            return None
        except OSError as e:
            error = e
        note = " (the out-of-date one from earlier in the run was removed)"
    return f"could not write {path}: {error.strerror or error}{note}"


def write_reports(
    run_id: str,
    duration: float,
    jobs: list[dict[str, Any]],
    junit_xml: Path | None,
    step_summary: Path | None,
    started_at: str | None = None,
    step_extra: str = "",
) -> list[str]:
    """The JUnit file and the step summary (its table, then `step_extra`, e.g. a gantt block) of a
    finished run; one line per problem."""
    problems = []
    if junit_xml is not None:
        try:
            sinks.atomic_write(junit_xml, junit.junit_xml(run_id, duration, jobs, started_at=started_at))
        except OSError as e:
            problems.append(f"could not write {junit_xml}: {e.strerror or e}")
    if step_summary is not None:
        try:
            with open(step_summary, "a", encoding="utf-8") as f:
                f.write(markdown_table(run_id, jobs) + step_leaderboard(run_id, jobs) + step_extra)
        except OSError as e:
            problems.append(f"could not append to {step_summary}: {e.strerror or e}")
    return problems


def step_leaderboard(run_id: str, jobs: list[dict[str, Any]]) -> str:
    """The run's leaderboard in Markdown when seeds fold jobs together or jobs have parameters
    (else the jobs table says it all): ""."""
    from aimedres_async.report import leaderboard as lb
    from aimedres_async.report.groups import LoadedRun

    run = LoadedRun(run_id, "", [j for j in jobs if isinstance(j.get("id"), str)])
    ranked, metrics, keys = lb.leaderboard([run], None)
    if not lb.step_summary_wanted([r.group for r in ranked]):
        return ""
    return lb.markdown(ranked, metrics, keys, "Leaderboard")


def metrics_text(metrics: dict[str, Any] | None, limit: int | None = None) -> str:
    """`key=value ...` of the final metrics (not the model's name); cut to `limit` with `…` if given."""
    if not metrics:
        return ""
    text = " ".join(f"{k}={v}" for k, v in metrics.items() if isinstance(v, int | float | str) and k != "model")
    text = "".join(" " if ch < " " or ch == "\x7f" else ch for ch in text)  # one row, whatever it printed
    return text if limit is None or len(text) <= limit else text[: max(0, limit - 1)] + "…"


def results_table(jobs: list[dict[str, Any]], width: int | None = None) -> str:
    """The plain-text table printed at the end of a run. `width` is a terminal's: the metrics column
    is cut to fit it, with `…`; without one (a file, a pipe, CI) nothing is cut."""
    rows = [("JOB", "STATUS", "ATTEMPTS", "EXIT", "TIME", "PEAK RSS", "FINAL METRICS")]
    for j in jobs:
        status = j["status"] + (" (optional)" if j["optional"] and j["status"] != "succeeded" else "")
        if j.get("failure"):
            status += f" [{j['failure']}]"
        exit_ = j["signal"] or ("" if j["exit_code"] is None else str(j["exit_code"]))
        rows.append(
            (
                neutral(j["id"]),  # bidi controls shown, before the widths are measured
                status,
                str(j["attempts"]),
                exit_,
                format_duration(j["duration_s"]),
                format_size(j["peak_rss_bytes"]) if j["peak_rss_bytes"] else "",
                neutral(_joined(error_cell(j) or metrics_text(j["metrics"]), warnings_cell(j))),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    if width is not None and sum(widths) + 2 * len(widths) + MIN_METRICS > width:
        return _stacked(rows, widths, width)
    if width is not None:
        room = width - sum(widths) - 2 * len(widths)
        rows = [(*r[:-1], _cut(r[-1], room)) for r in rows]
    return (
        "\n".join(
            ("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]).rstrip() for r in rows
        )
        + "\n"
    )


MIN_METRICS = 24  # below this, a terminal's table puts each job's metrics on a line of their own
_NARROW_DROPS = (5, 2, 4)  # the columns a narrow terminal loses first: PEAK RSS, ATTEMPTS, TIME


def _cut(text: str, room: int) -> str:
    return text if len(text) <= room else text[: max(0, room - 1)] + "…"


def _stacked(rows: Sequence[tuple[str, ...]], widths: list[int], width: int) -> str:
    """A narrow terminal's table: the columns that fit (the job and its status always), each job's
    metrics or error on the next line, indented and cut to the width, so no line wraps."""
    shown = list(range(len(widths)))
    for column in _NARROW_DROPS:
        if sum(widths[i] + 2 for i in shown) - 2 <= width:
            break
        shown.remove(column)
    out = []
    for n, r in enumerate(rows):
        out.append(_cut("  ".join(r[i].ljust(widths[i]) for i in shown).rstrip(), width))
        if n and r[-1]:
            out.append("  " + _cut(r[-1], width - 2))
    return "\n".join(out) + "\n"


def error_cell(job: dict[str, Any]) -> str:
    """A failed job's last stderr line, for the tables' last column (it has no final metrics)."""
    error = job.get("error")
    if not error or job.get("status") in ("succeeded", "skipped", "queued", "running", "backoff"):
        return ""
    return "error: " + "".join(" " if ch < " " or ch == "\x7f" else ch for ch in str(error))


def warnings_cell(job: dict[str, Any], limit: int = 100) -> str:
    """`warnings: N (first: <line>)` for a job that printed warning-level lines, else ""."""
    count = job.get("warnings") or 0
    if not count:
        return ""
    first = "".join(" " if ch < " " or ch == "\x7f" else ch for ch in str(job.get("first_warning") or ""))
    if len(first) > limit:
        first = first[: limit - 1] + "…"
    return f"warnings: {count}" + (f" (first: {first})" if first else "")


def _joined(*cells: str) -> str:
    return "  ".join(c for c in cells if c)


def markdown_table(run_id: str, jobs: list[dict[str, Any]]) -> str:
    lines = [
        f"### aimedres-async run `{run_id}`",
        "",
        "| job | status | attempts | duration | final metrics |",
        "|---|---|---|---|---|",
    ]
    for j in jobs:
        status = j["status"] + (f" ({j['failure']})" if j.get("failure") else "")
        if j.get("optional"):
            status += " (optional)"
        metrics = _joined(error_cell(j) or metrics_text(j["metrics"]), warnings_cell(j)).replace("|", "\\|")
        job = j["id"].replace("|", "\\|")  # a swept job's string value may hold one
        cells = f"| {job} | {status} | {j['attempts']} | {format_duration(j['duration_s'])} | {metrics} |"
        lines.append(neutral(cells))
    return "\n".join(lines) + "\n\n"


def load_summary(logs_dir: Path, run_id: str | None) -> dict[str, Any]:
    """The summary.json of an earlier run (default: the latest); raises ValueError if unusable."""
    path = logs_dir / (run_id or "latest") / "summary.json"
    try:
        data = orjson.loads(read_regular_file(path, MAX_SUMMARY_BYTES))
    except FileNotFoundError:
        raise ValueError(f"no run to resume: {path} does not exist") from None
    except OSError as e:
        raise ValueError(f"cannot resume from {path}: {e.strerror or e}") from None
    except ValueError as e:  # not a regular file, too large, or not JSON
        raise ValueError(f"cannot resume from {path}: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"cannot resume from {path}: not a run summary")
    return data


def recorded_peaks(logs_dir: Path, job_ids: set[str], runs: int = 5) -> list[int]:
    """Peak RSS of these jobs in the last few runs' summaries (for --max-workers auto)."""
    try:
        names = sorted((d.name for d in logs_dir.iterdir() if d.is_dir() and not d.is_symlink()), reverse=True)
    except OSError:
        return []
    peaks = []
    for name in names[:runs]:
        try:
            data = orjson.loads(read_regular_file(logs_dir / name / "summary.json", MAX_SUMMARY_BYTES))
            peaks += [
                int(j["peak_rss_bytes"])
                for j in data.get("jobs", [])
                if j.get("id") in job_ids and j.get("peak_rss_bytes")
            ]
        except (OSError, orjson.JSONDecodeError, TypeError, ValueError, KeyError, AttributeError):
            continue
    return peaks
