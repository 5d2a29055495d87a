"""Job groups and the leaderboard, in process: grouping by base id and parameters without the seed,
mean ± sample std with n = successes, --resume's skipped copies, sort keys, ties and missing
metrics, merging runs, the table fitted to a terminal, CSV and JSON."""

from __future__ import annotations

import csv
import io
import math
import statistics
from typing import Any

import pytest

from aimedres_async.report import leaderboard as lb
from aimedres_async.report.groups import LoadedRun, groups, label, metric_names, swept


def job(
    base: str, status: str = "succeeded", seed: int | None = None, metrics: Any = None, **params: Any
) -> dict[str, Any]:
    p = {**params, **({"seed": seed} if seed is not None else {})}
    ident = base + ("[" + ",".join(f"{k}={v}" for k, v in p.items()) + "]" if p else "")
    entry: dict[str, Any] = {"id": ident, "status": status, "metrics": metrics}
    if p:
        entry["params"] = p
    return entry


def run(*jobs: dict[str, Any], run_id: str = "r1") -> LoadedRun:
    return LoadedRun(run_id, f"{run_id}/summary.json", list(jobs))


def test_seeds_fold_into_one_group_with_mean_and_sample_std() -> None:
    accs = [0.80, 0.84, 0.83]
    r = run(*(job("train", seed=s, metrics={"acc": a, "model": "mlp"}, lr=0.1) for s, a in enumerate(accs)))
    (g,) = groups([r])
    assert (g.job, g.params, g.n, g.label) == ("train", {"lr": 0.1}, 3, "train[lr=0.1]")
    assert g.metrics["acc"].mean == pytest.approx(sum(accs) / 3)
    assert g.metrics["acc"].std == pytest.approx(statistics.stdev(accs))  # n - 1, not n
    assert g.metrics["acc"].std != pytest.approx(statistics.pstdev(accs))
    assert "model" not in g.metrics  # a string is no statistic


def test_one_success_has_no_std_and_failures_stay_out_of_the_statistics() -> None:
    r = run(
        job("t", seed=0, metrics={"acc": 0.9}, lr=1),
        job("t", "failed", seed=1, metrics={"acc": 0.1}, lr=1),  # a failed job's last object is not counted
        job("t", "timed_out", seed=2, lr=1),
        job("u", "failed", seed=0, lr=1),
    )
    t, u = groups([r])
    assert (t.n, len(t.entries), t.failed) == (1, 3, 2)
    assert t.metrics["acc"].mean == 0.9 and t.metrics["acc"].std is None and t.metrics["acc"].n == 1
    assert (u.n, u.metrics) == (0, {})


def test_groups_differ_by_parameters_but_not_by_seed_or_key_order() -> None:
    a = job("t", seed=0, metrics={"acc": 1}, lr=0.1, model="mlp")
    b = {**job("t", seed=1, metrics={"acc": 2}), "params": {"model": "mlp", "lr": 0.1, "seed": 1}}
    c = job("t", seed=0, metrics={"acc": 3}, lr=0.01, model="mlp")
    d = job("t", seed=0, metrics={"acc": 4}, lr=1, model="mlp")
    e = job("t", seed=1, metrics={"acc": 5}, lr=1.0, model="mlp")  # 1 and 1.0 are one value
    f = job("t", seed=0, metrics={"acc": 6}, lr=True, model="mlp")  # true is not 1
    gs = groups([run(a, b, c, d, e, f)])
    assert [(g.label, g.n) for g in gs] == [
        ("t[lr=0.1,model=mlp]", 2),
        ("t[lr=0.01,model=mlp]", 1),
        ("t[lr=1,model=mlp]", 2),
        ("t[lr=true,model=mlp]", 1),
    ]
    assert swept(gs) == {"lr": [0.1, 0.01, 1, True]}  # model takes one value: not swept


def test_a_plain_job_is_a_group_of_one_by_its_id() -> None:
    (g,) = groups([run(job("digits", metrics={"accuracy": 0.97}))])
    assert (g.job, g.params, g.label, g.n) == ("digits", {}, "digits", 1)


def test_groups_merge_across_runs_and_list_their_runs() -> None:
    r1 = run(job("t", seed=0, metrics={"acc": 0.8}, lr=1), run_id="A")
    r2 = run(job("t", seed=1, metrics={"acc": 0.9}, lr=1), job("new", metrics={"acc": 0.5}), run_id="B")
    t, new = groups([r1, r2])
    assert (t.n, t.runs, new.runs) == (2, ["A", "B"], ["B"])
    assert t.metrics["acc"].mean == pytest.approx(0.85)


def test_a_resumed_runs_skipped_job_counts_once() -> None:
    first = run(job("t", seed=0, metrics={"acc": 0.8}, lr=1), job("t", "failed", seed=1, lr=1), run_id="A")
    resumed = run(
        job("t", "skipped", seed=0, metrics={"acc": 0.8}, lr=1),
        job("t", seed=1, metrics={"acc": 0.9}, lr=1),
        run_id="B",
    )
    (alone,) = groups([resumed])
    assert alone.n == 2  # the skipped job is the earlier success: in the statistics
    (both,) = groups([first, resumed])
    assert both.n == 2 and both.metrics["acc"].mean == pytest.approx(0.85)  # not 3: the copy is not counted again


def test_metric_names_keep_first_seen_order_and_ignore_non_numbers() -> None:
    r = run(
        job("a", metrics={"model": "x", "acc": 1, "ok": True, "nan": math.nan, "f1": 0.5}),
        job("b", metrics={"loss": 2}),
    )
    assert metric_names(groups([r])) == ["acc", "f1", "loss"]


def test_label_shows_strings_raw_and_other_values_as_json() -> None:
    assert (
        label("t", {"model": "mlp", "lr": 0.1, "layers": [64, 32], "flag": False})
        == "t[model=mlp,lr=0.1,layers=[64,32],flag=false]"
    )


# ---------------------------------------------------------------- sorting and ranking


def ranked(r: LoadedRun, sort: str | None = None) -> list[tuple[int | None, str]]:
    rows, _m, _k = lb.leaderboard([r], sort)
    return [(x.rank, x.group.label) for x in rows]


def test_default_sort_is_the_first_metric_descending() -> None:
    r = run(
        job("a", metrics={"acc": 0.5, "loss": 0.1}),
        job("b", metrics={"acc": 0.9, "loss": 0.9}),
        job("c", metrics={"acc": 0.7}),
    )
    assert ranked(r) == [(1, "b"), (2, "c"), (3, "a")]
    assert ranked(r, "loss") == [(1, "a"), (2, "b"), (None, "c")]  # loss: ascending by its name; c has none
    assert ranked(r, "loss:desc") == [(1, "b"), (2, "a"), (None, "c")]
    assert ranked(r, "acc:asc") == [(1, "a"), (2, "c"), (3, "b")]


def test_a_first_metric_named_like_a_loss_defaults_to_ascending() -> None:
    r = run(job("a", metrics={"val_rmse": 3.0}), job("b", metrics={"val_rmse": 1.0}))
    assert ranked(r) == [(1, "b"), (2, "a")]


def test_later_keys_break_ties_equal_groups_share_a_rank_and_the_label_orders_the_rest() -> None:
    r = run(
        job("d", metrics={"acc": 0.9, "f1": 0.1}),
        job("c", metrics={"acc": 0.9, "f1": 0.5}),
        job("b", metrics={"acc": 0.9, "f1": 0.5}),
        job("a", metrics={"acc": 0.2, "f1": 0.9}),
    )
    assert ranked(r, "acc,f1") == [(1, "b"), (1, "c"), (3, "d"), (4, "a")]
    assert ranked(r, "acc") == [(1, "b"), (1, "c"), (1, "d"), (4, "a")]


def test_groups_missing_a_later_key_come_after_those_that_have_it_whatever_the_direction() -> None:
    r = run(job("a", metrics={"acc": 0.9}), job("b", metrics={"acc": 0.9, "f1": 0.1}))
    assert ranked(r, "acc,f1:asc") == [(1, "b"), (2, "a")]
    assert ranked(r, "acc,f1:desc") == [(1, "b"), (2, "a")]


def test_a_group_without_success_is_unranked_and_last() -> None:
    r = run(job("z", "failed"), job("a", metrics={"acc": 0.1}))
    assert ranked(r) == [(1, "a"), (None, "z")]
    assert ranked(run(job("x", "failed"))) == [(None, "x")]  # no metric at all: nothing ranks


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accurcy", "--sort: no job has a final metric 'accurcy'; did you mean 'accuracy'?"),
        ("zzz", "--sort: no job has a final metric 'zzz' (metrics: accuracy, loss)"),
        ("accuracy:up", "--sort 'accuracy:up': the direction is desc or asc"),
        ("accuracy,,loss", "--sort 'accuracy,,loss': expected METRIC[:desc|asc], comma-separated"),
    ],
)
def test_bad_sort_keys_are_one_line(text: str, expected: str) -> None:
    with pytest.raises(ValueError) as e:
        lb.parse_sort(text, ["accuracy", "loss"])
    assert str(e.value) == expected


# ---------------------------------------------------------------- output


def _board() -> tuple[list[lb.Ranked], list[str]]:
    r = run(
        *(
            job("train", seed=s, metrics={"accuracy": 0.8 + s / 100, "loss": 0.3}, lr=0.1, model="mlp")
            for s in range(3)
        ),
        job("train", "failed", seed=0, lr=0.01, model="mlp"),
        job("plain", metrics={"accuracy": 0.5, "f1": 0.25}),
    )
    rows, metrics, _k = lb.leaderboard([r], None)
    return rows, metrics


def test_the_table_shows_mean_std_n_and_a_dash_for_what_is_not_there() -> None:
    rows, metrics = _board()
    text = lb.table(rows, metrics)
    lines = text.splitlines()
    assert lines[0].split() == ["RANK", "JOB", "N", "accuracy", "loss", "f1"]
    assert lines[1].split() == ["1", "train[lr=0.1,model=mlp]", "3", "0.81", "±", "0.01", "0.3", "±", "0", "—"]
    assert lines[2].split() == ["2", "plain", "1", "0.5", "±", "—", "—", "0.25", "±", "—"]
    assert lines[3].split() == ["—", "train[lr=0.01,model=mlp]", "0/1", "—", "—", "—"]


def test_on_a_narrow_terminal_the_job_is_cut_and_metric_columns_left_out_by_name() -> None:
    rows, metrics = _board()
    full = lb.table(rows, metrics)
    assert max(len(line) for line in full.splitlines()) > 40
    narrow = lb.table(rows, metrics, width=40)
    lines = narrow.splitlines()
    assert all(len(line) <= 40 for line in lines), narrow
    assert "train[lr=0.01,m…" in narrow and lines[0].split() == ["RANK", "JOB", "N", "accuracy"]
    note = " ".join(lines[4:])
    assert note.startswith("(2 more metric(s)") and "loss, f1" in note and "--csv or --json" in note
    assert lb.table(rows, metrics, width=500) == full  # room enough: nothing cut


def test_csv_has_a_column_per_parameter_and_mean_std_n_per_metric() -> None:
    rows, metrics = _board()
    got = list(csv.DictReader(io.StringIO(lb.csv_text(rows, metrics))))
    assert list(got[0])[:9] == [
        "rank",
        "job",
        "params.lr",
        "params.model",
        "n",
        "jobs",
        "failed",
        "runs",
        "accuracy_mean",
    ]
    assert got[0]["params.lr"] == "0.1" and got[0]["params.model"] == "mlp" and got[0]["runs"] == "r1"
    assert float(got[0]["accuracy_mean"]) == pytest.approx(0.81) and float(got[0]["accuracy_std"]) == pytest.approx(
        0.01
    )
    assert got[1]["params.lr"] == "" and got[1]["accuracy_std"] == "" and got[1]["f1_n"] == "1"
    assert got[2]["rank"] == "" and got[2]["failed"] == "1" and got[2]["accuracy_mean"] == ""


def test_json_rows_follow_the_contract() -> None:
    rows, _m = _board()
    first, second, last = lb.to_json(rows)
    assert first == {
        "rank": 1,
        "job": "train",
        "params": {"lr": 0.1, "model": "mlp"},
        "n": 3,
        "jobs": 3,
        "failed": 0,
        "runs": ["r1"],
        "metrics": {
            "accuracy": {"mean": pytest.approx(0.81), "std": pytest.approx(0.01), "n": 3},
            "loss": {"mean": pytest.approx(0.3), "std": 0.0, "n": 3},
        },
    }
    assert second["metrics"]["f1"] == {"mean": 0.25, "std": None, "n": 1}
    assert last["rank"] is None and last["metrics"] == {} and last["n"] == 0


def test_markdown_and_when_the_step_summary_wants_it() -> None:
    rows, metrics = _board()
    md = lb.markdown(rows, metrics, [lb.SortKey("accuracy", True)], "Leaderboard")
    assert "| rank | job | n | accuracy | loss | f1 |" in md
    assert "| 1 | train[lr=0.1,model=mlp] | 3 | 0.81 ± 0.01 | 0.3 ± 0 | — |" in md
    assert "| — | train[lr=0.01,model=mlp] | 0 of 1 | — | — | — |" in md
    assert lb.step_summary_wanted([r.group for r in rows])
    plain = groups([run(job("a", metrics={"x": 1}), job("b", metrics={"x": 2}))])
    assert not lb.step_summary_wanted(plain)  # plain jobs, one each: the jobs table says it all


def test_the_step_summary_gets_a_leaderboard_only_for_sweeps_and_seeds() -> None:
    from aimedres_async.report.summary import step_leaderboard

    assert step_leaderboard("R", [job("a", metrics={"x": 1}), job("b", metrics={"x": 2})]) == ""
    swept_jobs = [job("t", seed=s, metrics={"x": s}, lr=0.1) for s in range(2)]
    assert "| 1 | t[lr=0.1] | 2 | 0.5 ± 0.7071 |" in step_leaderboard("R", swept_jobs)
    repeated = [job("t", seed=s, metrics={"x": s}) for s in range(2)]  # repeat = 2: seeds alone
    assert "| 1 | t | 2 | 0.5 ± 0.7071 |" in step_leaderboard("R", repeated)


def test_the_reports_leaderboard_data() -> None:
    from aimedres_async.report.chart_data import leaderboard_data
    from aimedres_async.report.run_model import Job, RunModel

    def model(entries: list[dict[str, Any]]) -> RunModel:
        m = RunModel()
        for e in entries:
            m.jobs[e["id"]] = Job(e["id"], status=e["status"], metrics=e["metrics"], params=e.get("params"))
        return m

    assert leaderboard_data(model([job("a", metrics={"x": 1}), job("b", metrics={"x": 2})])) is None
    entries = [job("t", seed=s, metrics={"acc": 0.5 + s / 10 + lr}, lr=lr) for lr in (0.01, 0.1) for s in range(2)]
    data = leaderboard_data(model([*entries, job("t", "failed", seed=2, lr=0.01)]))
    assert data is not None
    assert data["sort"] == "acc:desc" and data["metrics"] == ["acc"]
    assert data["swept"] == {"lr": [0.01, 0.1]}  # in the run's order, not the ranking's
    first, second = data["rows"]
    assert (first["rank"], first["label"], first["n"], first["failed"]) == (1, "t[lr=0.1]", 2, 0)
    assert (second["rank"], second["label"], second["n"], second["failed"]) == (2, "t[lr=0.01]", 2, 1)
    assert first["metrics"]["acc"]["mean"] == pytest.approx(0.65) and "runs" not in first
