"""The Mermaid gantt block of a run's attempts, for `$GITHUB_STEP_SUMMARY` (GitHub draws it)."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

from aimedres_async.records.terminal import neutral
from aimedres_async.report.chart_data import page_data
from aimedres_async.report.run_model import load

GANTT_MAX_JOBS = 50


_GANTT_BAD = re.compile(r"[#:;\n\r,%]")

_GANTT_TAGS = {"succeeded": "done", "cancelled": "active", "running": "active"}


def _gantt_name(text: str) -> str:
    """A task or section name Mermaid's gantt lexer takes whole: no # : ; , % or line breaks."""
    return neutral(_GANTT_BAD.sub("_", text)).strip() or "_"


def mermaid_gantt(run_dir: Path, limit: int = GANTT_MAX_JOBS) -> str:
    """A ```mermaid gantt block of the run's attempts (the `limit` longest jobs), for Markdown."""
    m = load([run_dir], logs=False)
    data = page_data(m, run_dir.name)
    t0 = data["t0"]
    jobs = [j for j in data["jobs"] if j["att"]]
    longest = sorted(jobs, key=lambda j: -sum(a["e"] - a["s"] for a in j["att"]))[:limit]
    keep = {j["id"] for j in longest}
    span = max([a["e"] for j in jobs for a in j["att"]], default=1.0) - min(
        [a["s"] for j in jobs for a in j["att"]], default=0.0
    )
    interval, axis = gantt_axis(span)
    lines = [
        "```mermaid",
        "gantt",
        f"    title {_gantt_name('aimedres-async run ' + data['title'] + ' (UTC)')}",
        # milliseconds: a retry's attempts, a backoff apart, must not round onto each other
        "    dateFormat YYYY-MM-DD HH:mm:ss.SSS",
        f"    axisFormat {axis}",
        f"    tickInterval {interval}",
    ]
    for i, job in enumerate(j for j in jobs if j["id"] in keep):
        lines.append(f"    section {_gantt_name(job['id'])}")
        for a in job["att"]:
            start = math.floor((t0 + a["s"]) * 1000) / 1000
            end = max(start + 0.001, math.ceil((t0 + a["e"]) * 1000) / 1000)  # never zero-length
            tag = _GANTT_TAGS.get(a["o"], "crit")
            # the section names the job: a task name never starts with a job id that Mermaid would
            # read as a keyword (a job called "title" or "section")
            name = _gantt_name(f"attempt {a['n']} {a['k']}")
            lines.append(f"    {name} :{tag}, j{i}a{a['n']}, {_gantt_time(start)}, {_gantt_time(end)}")
    lines.append("```")
    more = len(jobs) - len(longest)
    note = f"\n{more} more job(s) ran; the gantt shows the {len(longest)} longest. The HTML report has them all.\n"
    return "\n".join(lines) + "\n" + (note if more > 0 else "")


def _gantt_time(t: float) -> str:
    ms = round(t * 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}"


# (seconds, Mermaid's tickInterval): about 4 to 10 ticks whatever the run's length
_TICKS = [
    (0.1, "100millisecond"),
    (0.2, "200millisecond"),
    (0.5, "500millisecond"),
    *((s, f"{s}second") for s in (1, 2, 5, 10, 15, 30)),
    *((m * 60, f"{m}minute") for m in (1, 2, 5, 10, 15, 30)),
    *((h * 3600, f"{h}hour") for h in (1, 2, 3, 6, 12)),
    *((d * 86400, f"{d}day") for d in (1, 2, 7, 14)),
]


def gantt_axis(span: float) -> tuple[str, str]:
    """The tick interval and axis format for a chart `span` seconds wide: a tick every interval
    (so Mermaid does not pick sub-second ticks by itself), labelled finely enough that no two
    ticks read the same (milliseconds under a second, seconds under a minute, ...)."""
    step, interval = next(((s, i) for s, i in _TICKS if span / s <= 10), _TICKS[-1])
    if step < 1:
        fmt = "%H:%M:%S.%L"
    elif step < 60:
        fmt = "%H:%M:%S"
    elif step < 86400:
        fmt = "%H:%M" if span < 86400 else "%m-%d %H:%M"
    else:
        fmt = "%Y-%m-%d"
    return interval, fmt
