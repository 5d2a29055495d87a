"""The Mermaid gantt block of a run's attempts, for `$GITHUB_STEP_SUMMARY` (GitHub draws it)."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

from aimedres_async.report.chart_data import page_data
from aimedres_async.report.run_model import load

GANTT_MAX_JOBS = 50


_GANTT_BAD = re.compile(r"[#:;\n\r,%]")

_GANTT_TAGS = {"succeeded": "done", "cancelled": "active", "running": "active"}


def _gantt_name(text: str) -> str:
    """A task or section name Mermaid's gantt lexer takes whole: no # : ; , % or line breaks."""
    return _GANTT_BAD.sub("_", text).strip() or "_"


def mermaid_gantt(run_dir: Path, limit: int = GANTT_MAX_JOBS) -> str:
    """A ```mermaid gantt block of the run's attempts (the `limit` longest jobs), for Markdown."""
    m = load([run_dir], logs=False)
    data = page_data(m, run_dir.name)
    t0 = data["t0"]
    jobs = [j for j in data["jobs"] if j["att"]]
    longest = sorted(jobs, key=lambda j: -sum(a["e"] - a["s"] for a in j["att"]))[:limit]
    keep = {j["id"] for j in longest}
    lines = [
        "```mermaid",
        "gantt",
        f"    title {_gantt_name('aimedres-async run ' + data['title'])}",
        "    dateFormat YYYY-MM-DD HH:mm:ss",
        "    axisFormat %H:%M:%S",
    ]
    for i, job in enumerate(j for j in jobs if j["id"] in keep):
        lines.append(f"    section {_gantt_name(job['id'])}")
        for a in job["att"]:
            start = math.floor(t0 + a["s"])
            end = max(start + 1, math.ceil(t0 + a["e"]))  # whole seconds; never zero-length
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
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
