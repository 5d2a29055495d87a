"""The leaderboard: job groups ranked by sort keys, as a terminal table, CSV, JSON and Markdown.

Groups and their statistics come from groups.py; this module orders and draws them.
"""

from __future__ import annotations

import csv
import io
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aimedres_async.report.groups import Group, LoadedRun, Stat, groups, metric_names, show_value

# the same names the HTML report draws as "lower is better"
LOWER_BETTER = re.compile(r"loss|err|rmse|mse|mae|mape|perplex|wer|cer|time|dur|latency", re.I)
DASH = "—"
JOB_MIN = 16  # a JOB cell is cut no shorter than this on a narrow terminal


@dataclass(frozen=True)
class SortKey:
    metric: str
    descending: bool

    def __str__(self) -> str:
        return f"{self.metric}:{'desc' if self.descending else 'asc'}"


def default_direction(metric: str) -> bool:
    """Descending, unless the name says lower is better (loss, error, rmse, …)."""
    return not LOWER_BETTER.search(metric)


def parse_sort(text: str | None, metrics: Sequence[str]) -> list[SortKey]:
    """`--sort accuracy:desc,loss:asc` against the metrics the groups have; ValueError, one line.
    Without --sort: the first metric (none without metrics)."""
    if text is None:
        return [SortKey(metrics[0], default_direction(metrics[0]))] if metrics else []
    keys = []
    for part in text.split(","):
        name, sep, direction = part.strip().rpartition(":")
        if not sep:
            name, direction = direction, ""
        name = name.strip()
        if not name:
            raise ValueError(f"--sort {text!r}: expected METRIC[:desc|asc], comma-separated")
        if direction.strip() not in ("", "desc", "asc"):
            raise ValueError(f"--sort {part.strip()!r}: the direction is desc or asc")
        if name not in metrics:
            raise ValueError(unknown_metric(name, metrics, "--sort"))
        d = direction.strip()
        keys.append(SortKey(name, d == "desc" if d else default_direction(name)))
    return keys


def unknown_metric(name: str, metrics: Sequence[str], what: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, metrics, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (metrics: {', '.join(metrics) or 'none'})"
    return f"{what}: no job has a final metric {name!r}{hint}"


@dataclass(frozen=True)
class Ranked:
    rank: int | None  # None: the group has no value of the first sort key (no success, or not printed)
    group: Group


def rank(gs: Iterable[Group], keys: Sequence[SortKey]) -> list[Ranked]:
    """The groups in order: by each key in turn (a group without a value of a key comes after
    those with one, whichever the direction), then by label. Groups equal on every key share a
    rank (1, 2, 2, 4); a group without the first key's value is unranked and listed last."""

    def order(g: Group) -> tuple[Any, ...]:
        parts: list[Any] = []
        for k in keys:
            s = g.metrics.get(k.metric)
            parts.append((0, -s.mean if k.descending else s.mean) if s else (1, 0.0))
        return (*parts, g.label)

    ordered = sorted(gs, key=order)
    out: list[Ranked] = []
    previous: tuple[Any, ...] | None = None
    for i, g in enumerate(ordered, 1):
        if not keys or k_value(g, keys[0]) is None:
            out.append(Ranked(None, g))
            continue
        values = order(g)[:-1]
        shared = out[-1].rank if out and values == previous else None
        out.append(Ranked(shared or i, g))
        previous = values
    return out


def k_value(g: Group, key: SortKey) -> float | None:
    s = g.metrics.get(key.metric)
    return s.mean if s else None


def leaderboard(runs: Iterable[LoadedRun], sort: str | None) -> tuple[list[Ranked], list[str], list[SortKey]]:
    """Groups of the runs, ranked by `--sort` (ValueError on a bad one), and every metric."""
    gs = groups(runs)
    metrics = metric_names(gs)
    keys = parse_sort(sort, metrics)
    return rank(gs, keys), metrics, keys


# ---------------------------------------------------------------- output


def fmt(v: float | None) -> str:
    if v is None:
        return DASH
    return str(int(v)) if v == int(v) and abs(v) < 1e15 else f"{v:.4g}"


def cell(s: Stat | None) -> str:
    if s is None:
        return DASH
    return f"{fmt(s.mean)} ± {fmt(s.std)}"


def stat_json(s: Stat) -> dict[str, Any]:
    return {"mean": s.mean, "std": s.std, "n": s.n}


def to_json(ranked: Iterable[Ranked]) -> list[dict[str, Any]]:
    """`leaderboard --json` (records/schema/leaderboard.json)."""
    return [
        {
            "rank": r.rank,
            "job": r.group.job,
            "params": r.group.params,
            "n": r.group.n,
            "jobs": len(r.group.entries),
            "failed": r.group.failed,
            "runs": r.group.runs,
            "metrics": {k: stat_json(s) for k, s in r.group.metrics.items()},
        }
        for r in ranked
    ]


def _rows(ranked: Sequence[Ranked], metrics: Sequence[str], show_runs: bool) -> list[list[str]]:
    head = ["RANK", "JOB", "N", *(["RUNS"] if show_runs else []), *metrics]
    rows = [head]
    for r in ranked:
        g = r.group
        n = str(g.n) if g.n == len(g.entries) else f"{g.n}/{len(g.entries)}"
        runs = [str(len(g.runs))] if show_runs else []
        rows.append(
            [DASH if r.rank is None else str(r.rank), g.label, n, *runs, *(cell(g.metrics.get(m)) for m in metrics)]
        )
    return rows


def table(ranked: Sequence[Ranked], metrics: Sequence[str], width: int | None = None, show_runs: bool = False) -> str:
    """The terminal table: every metric as `mean ± std`, N = the jobs that succeeded (of all in
    the group when some did not). With a terminal's `width`, a long JOB cell is cut with `…` and
    metric columns that do not fit are left out, named below the table; without one nothing is cut."""
    fixed = 4 if show_runs else 3
    rows = _rows(ranked, metrics, show_runs)
    hidden: list[str] = []
    if width is not None:
        rows, hidden = _fit(rows, fixed, width)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i < fixed else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]
    if hidden:
        note = (
            f"({len(hidden)} more metric(s) left out to fit the terminal: {', '.join(hidden)}; --csv or --json has all)"
        )
        lines += textwrap.wrap(note, width or len(note))
    return "\n".join(lines) + "\n"


def _fit(rows: list[list[str]], fixed: int, width: int) -> tuple[list[list[str]], list[str]]:
    """Metric columns are left out from the right (one always stays) while the table does not fit
    with the JOB cell at JOB_MIN characters; then JOB is cut to the room left (at least JOB_MIN)."""

    def need(rs: list[list[str]], job: int) -> int:
        cols = [
            min(job, max(len(r[1]) for r in rs)) if i == 1 else max(len(r[i]) for r in rs) for i in range(len(rs[0]))
        ]
        return sum(cols) + 2 * (len(cols) - 1)

    hidden: list[str] = []
    while need(rows, JOB_MIN) > width and len(rows[0]) > fixed + 1:
        hidden.insert(0, rows[0][-1])
        rows = [r[:-1] for r in rows]
    longest = max(len(r[1]) for r in rows)
    room = max(JOB_MIN, width - (need(rows, longest) - longest))
    return [[r[0], r[1] if len(r[1]) <= room else r[1][: room - 1] + "…", *r[2:]] for r in rows], hidden


def csv_text(ranked: Sequence[Ranked], metrics: Sequence[str]) -> str:
    """One row per group: rank, job, one `params.K` column per parameter, n, jobs, failed, runs
    (space-separated ids), then `M_mean`, `M_std`, `M_n` per metric (empty where there is none)."""
    keys: dict[str, None] = {}
    for r in ranked:
        for k in r.group.params:
            keys.setdefault(k)
    head = ["rank", "job", *(f"params.{k}" for k in keys), "n", "jobs", "failed", "runs"]
    head += [f"{m}_{part}" for m in metrics for part in ("mean", "std", "n")]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(head)
    for r in ranked:
        g = r.group
        row: list[Any] = ["" if r.rank is None else r.rank, g.job]
        row += ["" if k not in g.params else show_value(g.params[k]) for k in keys]
        row += [g.n, len(g.entries), g.failed, " ".join(g.runs)]
        for m in metrics:
            s = g.metrics.get(m)
            row += ["", "", 0] if s is None else [repr(s.mean), "" if s.std is None else repr(s.std), s.n]
        w.writerow(row)
    return out.getvalue()


def markdown(ranked: Sequence[Ranked], metrics: Sequence[str], keys: Sequence[SortKey], title: str) -> str:
    """The leaderboard as a Markdown table (the step summary), `mean ± std` per metric."""
    order = ", ".join(str(k) for k in keys) or "none"
    lines = [f"### {title}", "", f"Ranked by {order}; n = jobs that succeeded (seeds folded into mean ± std).", ""]
    lines.append("| rank | job | n | " + " | ".join(_md(m) for m in metrics) + " |")
    lines.append("|---|---|---|" + "---|" * len(metrics))
    for r in ranked:
        g = r.group
        n = str(g.n) if g.n == len(g.entries) else f"{g.n} of {len(g.entries)}"
        cells = [DASH if r.rank is None else str(r.rank), _md(g.label), n, *(cell(g.metrics.get(m)) for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n"


def _md(text: str) -> str:
    return "".join(" " if ch < " " else ch for ch in text).replace("|", "\\|")


def step_summary_wanted(gs: Sequence[Group]) -> bool:
    """A leaderboard adds to the jobs table when seeds or runs fold jobs together, or jobs have
    parameters."""
    return any(len(g.entries) > 1 or g.params for g in gs)
