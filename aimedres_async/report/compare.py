"""`compare BASE NEW`: per job group, each final metric's change of the mean with its spread across
seeds, groups added or removed, outcome changes; `--fail-if` gates and `--exact` differences.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from aimedres_async.report.groups import Group, LoadedRun, Stat, groups, label, metric_names
from aimedres_async.report.leaderboard import DASH, fmt, unknown_metric

OPS = {"<": float.__lt__, "<=": float.__le__, ">": float.__gt__, ">=": float.__ge__}
_GATE_RE = re.compile(r"\s*(?P<metric>[^<>=!]*?)\s*(?P<op><=|>=|<|>)\s*(?P<value>\S*)\s*")
_NUMBER_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass(frozen=True)
class Gate:
    """`--fail-if "accuracy < -0.01"`: fails when a group's change NEW - BASE satisfies it."""

    metric: str
    op: str
    value: float
    text: str

    def fails(self, change: float) -> bool:
        return bool(OPS[self.op](change, self.value))


def parse_gate(text: str) -> Gate:
    """ValueError (one line) unless TEXT is `METRIC OP NUMBER` with OP one of < <= > >=."""
    m = _GATE_RE.fullmatch(text)
    if not m or not m["metric"] or not _NUMBER_RE.fullmatch(m["value"]):
        raise ValueError(
            f'--fail-if {text!r}: expected METRIC OP NUMBER, e.g. "accuracy < -0.01" (OP is <, <=, > or >=; '
            "the change NEW - BASE is compared)"
        )
    return Gate(m["metric"], m["op"], float(m["value"]), " ".join(text.split()))


@dataclass(frozen=True)
class MetricChange:
    base: Stat | None
    new: Stat | None
    change: float | None  # NEW - BASE of the means; None unless both have the metric
    spread: float | None  # pooled standard deviation, with >= 2 values on both sides
    within_noise: bool | None


def pooled_std(a: Stat, b: Stat) -> float | None:
    """sqrt(((n1-1)s1^2 + (n2-1)s2^2) / (n1+n2-2)), when both sides have at least two values."""
    if a.std is None or b.std is None:
        return None
    return math.sqrt(((a.n - 1) * a.std**2 + (b.n - 1) * b.std**2) / (a.n + b.n - 2))


def metric_change(a: Stat | None, b: Stat | None) -> MetricChange:
    if a is None or b is None:
        return MetricChange(a, b, None, None, None)
    change = b.mean - a.mean
    spread = pooled_std(a, b)
    return MetricChange(a, b, change, spread, None if spread is None else abs(change) < spread)


@dataclass
class GroupDiff:
    job: str
    params: dict[str, Any]
    base: Group | None
    new: Group | None
    metrics: dict[str, MetricChange] = field(default_factory=dict)
    outcomes: list[tuple[str, str, str]] = field(default_factory=list)  # (job id, base status, new status)

    @property
    def label(self) -> str:
        return label(self.job, self.params)

    @property
    def kind(self) -> str:
        return "added" if self.base is None else "removed" if self.new is None else "both"


@dataclass
class Comparison:
    base: LoadedRun
    new: LoadedRun
    groups: list[GroupDiff]
    gates: list[tuple[Gate, list[tuple[str, float | None]]]]  # each gate and the groups failing it
    exact: list[tuple[str, str, Any, Any]] | None  # (job id, what, base, new) with --exact

    @property
    def failed(self) -> bool:
        return any(failures for _g, failures in self.gates) or bool(self.exact)


def compare(base: LoadedRun, new: LoadedRun, gate_texts: list[str], exact: bool = False) -> Comparison:
    """The comparison; ValueError (one line) for a malformed gate or a metric in neither run."""
    gates = [parse_gate(t) for t in gate_texts]
    base_groups, new_groups = groups([base]), groups([new])
    known = metric_names([*base_groups, *new_groups])
    for gate in gates:
        if gate.metric not in known:
            raise ValueError(unknown_metric(gate.metric, known, f"--fail-if {gate.text!r}"))
    diffs = _group_diffs(base_groups, new_groups)
    checked = [(gate, _gate_failures(gate, diffs)) for gate in gates]
    return Comparison(base, new, diffs, checked, exact_differences(base, new) if exact else None)


def _group_diffs(base_groups: list[Group], new_groups: list[Group]) -> list[GroupDiff]:
    by_key = {g.key: g for g in base_groups}
    seen = set()
    diffs = []
    for g in new_groups:
        seen.add(g.key)
        diffs.append(_diff(by_key.get(g.key), g))
    diffs += [_diff(b, None) for b in base_groups if b.key not in seen]
    return diffs


def _diff(b: Group | None, n: Group | None) -> GroupDiff:
    some = n or b
    assert some is not None
    d = GroupDiff(some.job, some.params, b, n)
    if b is not None and n is not None:
        for m in metric_names([b, n]):
            d.metrics[m] = metric_change(b.metrics.get(m), n.metrics.get(m))
        before = {str(e["id"]): str(e.get("status")) for _r, e in b.entries}
        for _r, e in n.entries:
            was = before.get(str(e["id"]))
            if was is not None and was != str(e.get("status")):
                d.outcomes.append((str(e["id"]), was, str(e.get("status"))))
    return d


def _gate_failures(gate: Gate, diffs: list[GroupDiff]) -> list[tuple[str, float | None]]:
    """Groups in both runs whose change satisfies the gate, or that lost the metric (BASE has a
    mean, NEW none: its jobs failed or stopped printing it): a gate never passes a broken model."""
    failures: list[tuple[str, float | None]] = []
    for d in diffs:
        mc = d.metrics.get(gate.metric)
        if mc is None:
            continue
        if mc.change is not None and gate.fails(mc.change):
            failures.append((d.label, mc.change))
        elif mc.base is not None and mc.new is None:
            failures.append((d.label, None))
    return failures


def _metrics(entry: dict[str, Any]) -> dict[str, Any]:
    m = entry.get("metrics")
    return m if isinstance(m, dict) else {}


def exact_differences(base: LoadedRun, new: LoadedRun) -> list[tuple[str, str, Any, Any]]:
    """Every job added or removed, every status and every final metric that differs at all
    (values compared as their JSON text: 1 and 1.0 differ)."""
    before = {str(e["id"]): e for e in base.jobs}
    after = {str(e["id"]): e for e in new.jobs}
    out: list[tuple[str, str, Any, Any]] = []
    for job_id in after:
        if job_id not in before:
            out.append((job_id, "job", None, "added"))
    for job_id, b in before.items():
        n = after.get(job_id)
        if n is None:
            out.append((job_id, "job", "removed", None))
            continue
        if b.get("status") != n.get("status"):
            out.append((job_id, "status", b.get("status"), n.get("status")))
        bm, nm = _metrics(b), _metrics(n)
        for k in dict.fromkeys([*bm, *nm]):
            if k not in bm or k not in nm or orjson.dumps(bm[k]) != orjson.dumps(nm[k]):
                out.append((job_id, f"metric {k}", bm.get(k, "(none)"), nm.get(k, "(none)")))
    return out


# ---------------------------------------------------------------- output


def _side(s: Stat | None) -> str:
    if s is None:
        return DASH
    return fmt(s.mean) if s.std is None else f"{fmt(s.mean)} ± {fmt(s.std)} (n={s.n})"


def _change(mc: MetricChange) -> tuple[str, str]:
    if mc.change is None:
        return DASH, "only in BASE" if mc.new is None else "only in NEW"
    note = ""
    if mc.spread is not None:
        note = f"{'within' if mc.within_noise else 'beyond'} noise (spread {fmt(mc.spread)})"
    return ("0" if mc.change == 0 else f"{mc.change:+.4g}"), note


def rows(c: Comparison) -> list[list[str]]:
    """JOB, METRIC, BASE, NEW, CHANGE, NOTE: a row per metric of a group in both runs, one per
    group added or removed."""
    out = []
    for d in c.groups:
        if d.kind != "both":
            g = d.new or d.base
            assert g is not None
            out.append([d.label, "", "", "", "", f"{d.kind} ({g.n} of {len(g.entries)} succeeded)"])
            continue
        if not d.metrics:
            out.append([d.label, "", "", "", "", "no final metric in either run"])
        for m, mc in d.metrics.items():
            out.append([d.label, m, _side(mc.base), _side(mc.new), *_change(mc)])
    return out


def text(c: Comparison) -> str:
    """The comparison for people: a table, then outcome changes, gates and exact differences."""
    lines = [f"BASE {c.base.run}  ({c.base.source})", f"NEW  {c.new.run}  ({c.new.source})", ""]
    table = [["JOB", "METRIC", "BASE", "NEW", "CHANGE", "NOTE"], *rows(c)]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for r in table:
        lines.append(("  ".join(x.ljust(w) for x, w in zip(r[:5], widths, strict=True)) + "  " + r[5]).rstrip())
    lines += _tail(c, "  ")
    return "\n".join(lines) + "\n"


def _tail(c: Comparison, indent: str) -> list[str]:
    lines = []
    changed = [o for d in c.groups for o in d.outcomes]
    if changed:
        lines += ["", "outcome changes:"] + [f"{indent}{job}: {was} → {now}" for job, was, now in changed]
    if c.gates:
        lines += ["", "gates (change = NEW - BASE of the means):"]
        for gate, failures in c.gates:
            if not failures:
                lines.append(f"{indent}{gate.text}: passed")
                continue
            why = ", ".join(f"{g} ({'missing in NEW' if v is None else f'{v:+.4g}'})" for g, v in failures)
            lines.append(f"{indent}{gate.text}: FAILED for {why}")
    if c.exact is not None:
        if not c.exact:
            lines += ["", f"exact: no difference ({len(c.new.jobs)} jobs: every status and final metric identical)"]
        else:
            lines += ["", f"exact: {len(c.exact)} difference(s):"]
            lines += [f"{indent}{job}: {what} {_raw(b)} → {_raw(n)}" for job, what, b, n in c.exact]
    return lines


def _raw(v: Any) -> str:
    return "(none)" if v is None else v if isinstance(v, str) else orjson.dumps(v).decode()


def markdown(c: Comparison) -> str:
    """The comparison as Markdown (a pull request comment, the step summary)."""
    lines = [f"### Compare `{c.base.run}` → `{c.new.run}`", ""]
    lines += ["| job | metric | base | new | change | note |", "|---|---|---|---|---|---|"]
    for r in rows(c):
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in r) + " |")
    tail = _tail(c, "- ")
    return "\n".join(lines + tail) + "\n"


def _stat(s: Stat | None) -> dict[str, Any] | None:
    return None if s is None else {"mean": s.mean, "std": s.std, "n": s.n}


def _group(g: Group | None) -> dict[str, Any] | None:
    return None if g is None else {"n": g.n, "jobs": len(g.entries), "failed": g.failed}


def to_json(c: Comparison) -> dict[str, Any]:
    """`compare --json` (records/schema/compare.json)."""
    return {
        "base": {"run": c.base.run, "source": c.base.source},
        "new": {"run": c.new.run, "source": c.new.source},
        "groups": [
            {
                "job": d.job,
                "params": d.params,
                "kind": d.kind,
                "base": _group(d.base),
                "new": _group(d.new),
                "metrics": {
                    m: {
                        "base": _stat(mc.base),
                        "new": _stat(mc.new),
                        "change": mc.change,
                        "spread": mc.spread,
                        "within_noise": mc.within_noise,
                    }
                    for m, mc in d.metrics.items()
                },
                "outcomes": [{"id": j, "base": was, "new": now} for j, was, now in d.outcomes],
            }
            for d in c.groups
        ],
        "gates": [
            {"expr": g.text, "failed": bool(f), "groups": [{"job": j, "change": v} for j, v in f]} for g, f in c.gates
        ],
        "exact": None if c.exact is None else [{"id": j, "what": w, "base": b, "new": n} for j, w, b, n in c.exact],
        "failed": c.failed,
    }
