"""`compare` in process: changes of group means, the pooled spread and "within noise", added and
removed groups, outcome changes, --fail-if expressions and gates, and --exact."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest

from aimedres_async.report import compare as cmp
from aimedres_async.report.groups import Stat
from tests.unit.test_leaderboard import job, run


def seeds(values: list[float], metric: str = "acc", **params: Any) -> list[dict[str, Any]]:
    return [job("t", seed=s, metrics={metric: v}, **params) for s, v in enumerate(values)]


def test_change_is_new_minus_base_of_the_means() -> None:
    c = cmp.compare(run(job("a", metrics={"acc": 0.9})), run(job("a", metrics={"acc": 0.85})), [])
    (d,) = c.groups
    mc = d.metrics["acc"]
    assert d.kind == "both" and mc.change == pytest.approx(-0.05)
    assert mc.spread is None and mc.within_noise is None  # one value each side: no spread
    assert not c.failed


def test_spread_is_the_pooled_std_and_a_smaller_change_is_within_noise() -> None:
    base, new = [0.80, 0.82, 0.84], [0.81, 0.85]
    c = cmp.compare(run(*seeds(base, lr=1)), run(*seeds(new, lr=1)), [])
    mc = c.groups[0].metrics["acc"]
    s1, s2 = statistics.stdev(base), statistics.stdev(new)
    assert mc.spread == pytest.approx(math.sqrt((2 * s1**2 + 1 * s2**2) / 3))
    assert mc.change == pytest.approx(0.83 - 0.82) and mc.within_noise is True
    far = cmp.compare(run(*seeds(base, lr=1)), run(*seeds([0.90, 0.91], lr=1)), []).groups[0].metrics["acc"]
    assert far.within_noise is False


def test_pooled_std_needs_two_values_on_both_sides() -> None:
    assert cmp.pooled_std(Stat(1, 0.1, 2), Stat(1, None, 1)) is None
    assert cmp.pooled_std(Stat(1, 0.3, 2), Stat(1, 0.4, 2)) == pytest.approx(math.sqrt((0.09 + 0.16) / 2))


def test_groups_added_and_removed_and_outcome_changes() -> None:
    base = run(*seeds([0.8, 0.9], lr=1), job("gone", metrics={"acc": 1}))
    new_jobs = seeds([0.8, 0.9], lr=1)
    new_jobs[1] = job("t", "failed", seed=1, lr=1)
    new = run(*new_jobs, job("fresh", metrics={"acc": 1}))
    c = cmp.compare(base, new, [])
    kinds = {d.label: d.kind for d in c.groups}
    assert kinds == {"t[lr=1]": "both", "fresh": "added", "gone": "removed"}
    (t,) = [d for d in c.groups if d.kind == "both"]
    assert t.outcomes == [("t[lr=1,seed=1]", "succeeded", "failed")]
    assert t.metrics["acc"].new is not None and t.metrics["acc"].new.n == 1


@pytest.mark.parametrize(
    ("expr", "metric", "op", "value"),
    [
        ("accuracy < -0.01", "accuracy", "<", -0.01),
        ("rmse>0.5", "rmse", ">", 0.5),
        ("  val/acc <= -1e-3 ", "val/acc", "<=", -0.001),
        ("f1 >= +.5", "f1", ">=", 0.5),
    ],
)
def test_gate_expressions(expr: str, metric: str, op: str, value: float) -> None:
    g = cmp.parse_gate(expr)
    assert (g.metric, g.op, g.value) == (metric, op, value)


@pytest.mark.parametrize(
    "expr", ["accuracy", "accuracy < ", "< 0.1", "accuracy = 0.1", "accuracy < x", "acc < 1 2", "a == 1"]
)
def test_malformed_gates_are_one_line(expr: str) -> None:
    with pytest.raises(ValueError, match=r"^--fail-if .*: expected METRIC OP NUMBER"):
        cmp.parse_gate(expr)


def test_gates_fail_on_the_groups_whose_change_satisfies_them() -> None:
    base = run(job("a", metrics={"acc": 0.9, "rmse": 1.0}), job("b", metrics={"acc": 0.9, "rmse": 1.0}))
    new = run(job("a", metrics={"acc": 0.85, "rmse": 1.0}), job("b", metrics={"acc": 0.895, "rmse": 1.7}))
    c = cmp.compare(base, new, ["acc < -0.01", "rmse > 0.5", "acc > 0.5"])
    (_acc, failures_acc), (_rmse, failures_rmse), (_up, none) = c.gates
    assert [g for g, _v in failures_acc] == ["a"] and failures_acc[0][1] == pytest.approx(-0.05)
    assert [g for g, _v in failures_rmse] == ["b"] and none == []
    assert c.failed
    assert not cmp.compare(base, new, ["acc < -0.1"]).failed


def test_a_gate_fails_a_group_that_lost_the_metric_but_not_a_removed_group() -> None:
    base = run(job("a", metrics={"acc": 0.9}), job("gone", metrics={"acc": 0.9}))
    new = run(job("a", "failed"))
    ((_gate, failures),) = cmp.compare(base, new, ["acc < -0.01"]).gates
    assert failures == [("a", None)]


def test_a_gate_on_a_metric_in_neither_run_is_an_error_with_a_suggestion() -> None:
    r = run(job("a", metrics={"accuracy": 0.9}))
    with pytest.raises(ValueError, match=r"no job has a final metric 'acuracy'; did you mean 'accuracy'\?"):
        cmp.compare(r, r, ["acuracy < 0"])
    only_new = run(job("a", metrics={"accuracy": 0.9, "f1": 0.5}))
    assert not cmp.compare(r, only_new, ["f1 < 0"]).failed  # f1 exists in NEW: no error, nothing to gate


def test_exact_lists_every_difference() -> None:
    base = run(job("a", metrics={"acc": 0.9, "model": "x", "n": 1}), job("b", metrics={"acc": 0.5}), job("gone"))
    new = run(job("a", metrics={"acc": 0.9000000001, "model": "x", "n": 1.0}), job("b", "failed"), job("fresh"))
    diffs = cmp.exact_differences(base, new)
    assert ("a", "metric acc", 0.9, 0.9000000001) in diffs
    assert ("a", "metric n", 1, 1.0) in diffs  # 1 and 1.0 print differently
    assert ("b", "status", "succeeded", "failed") in diffs and ("b", "metric acc", 0.5, "(none)") in diffs
    assert ("fresh", "job", None, "added") in diffs and ("gone", "job", "removed", None) in diffs
    assert len(diffs) == 6
    same = cmp.compare(base, base, [], exact=True)
    assert same.exact == [] and not same.failed
    assert cmp.compare(base, new, [], exact=True).failed


def test_text_markdown_and_json_say_the_same() -> None:
    base = run(*seeds([0.80, 0.82, 0.84], lr=1), run_id="B")
    new = run(*seeds([0.70, 0.72, 0.74], lr=1), run_id="N")
    c = cmp.compare(base, new, ["acc < -0.05"])
    text = cmp.text(c)
    assert "t[lr=1]" in text and "-0.1" in text and "beyond noise (spread 0.02)" in text
    assert "acc < -0.05: FAILED for t[lr=1] (-0.1)" in text
    md = cmp.markdown(c)
    assert md.startswith("### Compare `B` → `N`") and "| t[lr=1] | acc |" in md
    data = cmp.to_json(c)
    assert data["failed"] is True and data["exact"] is None
    assert data["groups"][0]["metrics"]["acc"]["change"] == pytest.approx(-0.1)
    assert data["gates"] == [
        {"expr": "acc < -0.05", "failed": True, "groups": [{"job": "t[lr=1]", "change": pytest.approx(-0.1)}]}
    ]
