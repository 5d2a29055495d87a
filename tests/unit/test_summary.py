"""report.summary's text helpers, in-process: final metrics as `key=value`, the end-of-run table
(its metrics column cut to a terminal's width, never cut without one) and the step-summary table."""

from __future__ import annotations

from typing import Any

from aimedres_async.report.summary import error_cell, markdown_table, metrics_text, results_table


def row(id: str = "a", **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": id,
        "status": "succeeded",
        "optional": False,
        "attempts": 1,
        "exit_code": 0,
        "signal": None,
        "duration_s": 12.5,
        "peak_rss_bytes": 0,
        "metrics": None,
    }
    return {**base, **over}


# ---------------------------------------------------------------- metrics_text


def test_metrics_text_is_key_value_without_the_model_name_or_non_scalars() -> None:
    metrics = {"model": "resnet", "acc": 0.9, "epochs": 3, "split": "val", "hist": [1, 2], "cfg": {"a": 1}}
    assert metrics_text(metrics) == "acc=0.9 epochs=3 split=val"
    assert metrics_text(None) == "" and metrics_text({}) == ""


def test_metrics_text_is_one_row_whatever_the_job_printed() -> None:
    assert metrics_text({"note": "a\nb\tc\x1b[2J\x7f"}) == "note=a b c [2J "


def test_metrics_text_is_cut_to_the_limit_with_an_ellipsis() -> None:
    metrics = {"accuracy": 0.987654, "loss": 0.0123}
    full = metrics_text(metrics)
    assert full == "accuracy=0.987654 loss=0.0123"
    assert metrics_text(metrics, limit=len(full)) == full  # exactly fits: not cut
    cut = metrics_text(metrics, limit=10)
    assert cut == "accuracy=…" and len(cut) == 10
    assert metrics_text(metrics, limit=0) == "…"


# ---------------------------------------------------------------- results_table


def test_results_table_has_a_header_and_aligned_columns() -> None:
    table = results_table([row("short", metrics={"acc": 1}), row("a-much-longer-id", status="failed", exit_code=3)])
    lines = table.splitlines()
    assert lines[0].split() == ["JOB", "STATUS", "ATTEMPTS", "EXIT", "TIME", "PEAK", "RSS", "FINAL", "METRICS"]
    assert table.endswith("\n") and len(lines) == 3
    status_col = lines[0].index("STATUS")
    assert lines[1].index("succeeded") == status_col and lines[2].index("failed") == status_col
    assert lines[1].endswith("acc=1")


def test_results_table_shows_optional_failure_kind_and_signal() -> None:
    jobs = [
        row("a", status="failed", optional=True, failure="oom_killed", exit_code=None, signal="SIGKILL"),
        row("b", optional=True),  # succeeded: optional says nothing
    ]
    a, b = results_table(jobs).splitlines()[1:]
    assert "failed (optional) [oom_killed]" in a and "SIGKILL" in a
    assert "(optional)" not in b


def test_results_table_shows_peak_memory_and_time() -> None:
    line = results_table([row(peak_rss_bytes=3 << 30, duration_s=125.0)]).splitlines()[1]
    assert "3.0GiB" in line and "2m05s" in line


def test_a_failed_job_without_metrics_shows_its_error() -> None:
    line = results_table([row(status="failed", exit_code=1, error="ValueError: x\ty")]).splitlines()[1]
    assert line.endswith("error: ValueError: x y")


def test_without_a_width_nothing_is_cut() -> None:
    long = {f"metric_{i}": i for i in range(40)}
    table = results_table([row(metrics=long)])
    assert metrics_text(long) in table and "…" not in table


def test_with_a_width_the_metrics_column_is_cut_to_fit() -> None:
    long = {f"metric_{i}": i for i in range(40)}
    lines = results_table([row(metrics=long)], width=100).splitlines()
    assert len(lines[1]) == 100 and lines[1].endswith("…")
    assert len(lines[0]) <= 100


def test_metrics_too_long_for_a_narrow_terminal_go_below_their_job_cut_to_its_width() -> None:
    long = {f"metric_{i}": i for i in range(40)}
    lines = results_table([row(metrics=long)], width=20).splitlines()
    assert lines[2].startswith("  metric_0=0") and lines[2].endswith("…") and len(lines[2]) == 20


def test_a_short_metrics_column_is_not_cut_on_a_wide_terminal() -> None:
    assert "…" not in results_table([row(metrics={"acc": 1})], width=200)


# ---------------------------------------------------------------- markdown_table, error_cell


def test_markdown_table_rows() -> None:
    jobs = [row("a", metrics={"acc": 0.5}), row("b", status="failed", failure="timeout", optional=True, attempts=3)]
    text = markdown_table("20261123T114430Z-b31a", jobs)
    lines = text.splitlines()
    assert lines[0] == "### aimedres-async run `20261123T114430Z-b31a`"
    assert lines[2] == "| job | status | attempts | duration | final metrics |"
    assert lines[4] == "| a | succeeded | 1 | 12.5s | acc=0.5 |"
    assert lines[5] == "| b | failed (timeout) (optional) | 3 | 12.5s |  |"
    assert text.endswith("\n\n")


def test_markdown_table_escapes_pipes_so_a_value_cannot_add_columns() -> None:
    text = markdown_table("R", [row(metrics={"split": "a|b"}), row("c", status="failed", error="x | y")])
    assert "split=a\\|b" in text and "error: x \\| y" in text
    for line in text.splitlines()[4:6]:
        assert line.replace("\\|", "").count("|") == 6


def test_error_cell_only_for_jobs_that_ended_badly() -> None:
    assert error_cell({"status": "failed", "error": "boom\nline"}) == "error: boom line"
    for status in ("succeeded", "skipped", "queued", "running", "backoff"):
        assert error_cell({"status": status, "error": "boom"}) == ""
    assert error_cell({"status": "failed"}) == ""


def test_results_table_at_60_columns_wraps_no_line() -> None:
    """A 60-column terminal: the metrics go on a line of their own under each job, nothing wraps."""
    jobs = [
        row("breast_cancer", metrics={"accuracy": 0.9789, "roc_auc": 0.9952, "f1": 0.9834, "epochs": 10}),
        row("diabetes", status="failed", exit_code=1, error="ValueError: bad input shape"),
    ]
    lines = results_table(jobs, width=60).splitlines()
    assert all(len(line) <= 60 for line in lines), lines
    assert lines[0].startswith("JOB") and "STATUS" in lines[0] and "FINAL METRICS" not in lines[0]
    assert lines[1].startswith("breast_cancer") and lines[2].startswith("  accuracy=0.9789 roc_auc=0.9952")
    assert lines[3].startswith("diabetes") and "failed" in lines[3]
    assert lines[4] == "  error: ValueError: bad input shape"
    wide = results_table(jobs, width=200).splitlines()
    assert len(wide) == 3 and wide[1].endswith("epochs=10")  # room enough: one row per job


def test_results_table_on_a_very_narrow_terminal_keeps_the_job_and_its_status() -> None:
    lines = results_table([row("a-rather-long-job-id", metrics={"accuracy": 0.97})], width=40).splitlines()
    assert all(len(line) <= 40 for line in lines), lines
    assert lines[1].startswith("a-rather-long-job-id  succeeded") and "PEAK RSS" not in lines[0]
