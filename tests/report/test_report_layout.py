"""The HTML report on a phone and with failures (SPEC §17, issue 30), in a real headless Chromium at
1280 and 390 px: no sideways scroll, every chart inside its card, colours by meaning, jobs grouped by
the metrics they report, failed jobs never ranked, zoomed bars for close scores, the step summary's
gantt to the millisecond, and `report --since` keeping separate runs apart.

One real run (a classifier pair, a regressor, a retried job and a failing one) is drawn once and
checked at both widths; one browser for the module.
"""

from __future__ import annotations

import colorsys
import json
import math
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import start_cli, write_config
from helpers_cli import cli
from test_report import ARTIFACTS, Browser, assert_clean, browser, check_gantt, gantt_blocks, page_data

__all__ = ["browser"]  # the module's browser fixture, shared with test_report.py's definition

TRAIN = r"""
import json, os, sys, time
name = sys.argv[1]
attempt = int(os.environ.get("AIMEDRES_ATTEMPT", "1"))
final = {
    "clf_a": {"accuracy": 0.979, "auc": 0.991, "f1": 0.97, "loss": 0.081},
    "clf_b": {"accuracy": 0.969, "auc": 0.985, "f1": 0.96, "loss": 0.095},
    "clf_c": {"accuracy": 0.955, "macro_f1": 0.95},  # a classifier too, that reports other metrics
    "flaky": {"accuracy": 0.951, "auc": 0.977, "f1": 0.94, "loss": 0.12},
    "reg": {"rmse": 54.2, "mae": 41.0, "r2": 0.81, "loss": 2937.6},
    "reg2": {"rmse": 61.3, "mae": 47.5, "r2": 0.76, "loss": 3757.7},
}.get(name)
regression = name.startswith("reg")
for epoch in range(1, 6):
    rec = {"epoch": epoch, "loss": (3000.0 if regression else 0.7) / epoch}
    rec["val_rmse" if regression else "val_acc"] = (60.0 - epoch) if regression else 0.9 + epoch / 100
    if name == "broken":
        rec["accuracy"] = 0.999  # a progress record: not a result, the job fails below
    print(json.dumps(rec), flush=True)
    time.sleep(0.05)
if name == "broken" or (name == "flaky" and attempt == 1):
    print("RuntimeError: CUDA error: an illegal memory access", file=sys.stderr)
    sys.exit(1)
print(json.dumps(final), flush=True)
"""

# Outcome colours of the page (report.js OC): a series must never look like one of these.
OUTCOMES = {
    "succeeded": "#2f9e62",
    "failed": "#d94848",
    "timed_out": "#e8912d",
    "stalled": "#c7a224",
    "oom": "#8b4fc7",
    "cancelled": "#9aa3ae",
    "spawn_failed": "#7d2a2a",
    "running": "#3d7fd9",
    "unknown": "#b8bec7",
}


def _lab(hex_colour: str) -> tuple[float, float, float]:
    """CIELAB (D65) of an sRGB colour, to measure how alike two colours look."""
    rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92 for c in rgb]
    x = (0.4124 * lin[0] + 0.3576 * lin[1] + 0.1805 * lin[2]) / 0.95047
    y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    z = (0.0193 * lin[0] + 0.1192 * lin[1] + 0.9505 * lin[2]) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def looks_like_an_outcome(colour: str) -> str | None:
    """The outcome a series colour could be taken for: one of the same hue family (red, orange,
    yellow, green) or within a just-noticeable-at-a-glance distance (ΔE76 < 15) of any outcome."""
    c = colour.lower()
    for name, oc in OUTCOMES.items():
        if math.dist(_lab(c), _lab(oc)) < 15:
            return name
    rgb = [int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    hue, light, sat = colorsys.rgb_to_hls(*rgb)
    deg = hue * 360
    if sat > 0.25 and 0.15 < light < 0.9 and (deg < 65 or deg > 345 or 80 < deg < 165):
        return "red, orange, yellow or green"
    return None


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A real run: two classifiers with close scores, a regressor, a job retried once and a job that
    fails after printing progress records. Returns the folder, the report and the step summary."""
    folder = tmp_path_factory.mktemp("mixed")
    (folder / "train.py").write_text(TRAIN)

    def job(name: str, retries: int = 0) -> str:
        return f"[jobs.{name}]\ncommand = {json.dumps([sys.executable, 'train.py', name])}\nretries = {retries}\n"

    write_config(
        folder,
        "[supervisor]\nparallel = true\nmax_workers = 2\n[discovery]\nenabled = false\n"
        '[defaults]\nbackoff = { initial = "0.3s", factor = 1.0, jitter = 0.0 }\n'
        + "".join(job(n) for n in ("clf_a", "clf_b", "clf_c", "reg", "reg2"))
        + job("flaky", retries=1)
        + job("broken")
        + "optional = true\n",
    )
    step = folder / "step.md"
    html = folder / "report.html"
    r = cli(folder, "run", "--no-progress", "--report", str(html), env={"GITHUB_STEP_SUMMARY": str(step)}, timeout=120)
    assert r.returncode == 0, r.stderr  # the failing job is optional
    return folder, html, step.read_text()


def _open(browser: Browser, html: Path, width: int) -> Any:
    # opened at its width, never resized after: a resize redraws the timeline 150 ms later, and a
    # box measured while it is replaced reads as None
    return browser.open(html, width=width)


# every drawn thing of a section, and the box it must stay in (a card, else the section); things in
# a container that scrolls on its own (the tables) are checked against that container instead
_OUTSIDE = """
() => {
  const out = [];
  for (const el of document.querySelectorAll("section svg, section svg rect, section svg text, section svg path, section table")) {
    if (el.closest(".tablewrap") && el.tagName !== "table") continue;
    const box = el.closest(".tablewrap") ? el.closest(".tablewrap") : (el.closest(".card") || el.closest("section"));
    const a = el.getBoundingClientRect(), b = box.getBoundingClientRect();
    if (a.width === 0 && a.height === 0) continue;
    if (el.tagName === "table") continue;
    if (a.left < b.left - 1 || a.right > b.right + 1) {
      out.push(el.tagName + " " + (el.getAttribute("class") || "") + " '" + (el.textContent || "").slice(0, 30) + "' in " +
        (box.id || box.className) + ": " + Math.round(a.left) + ".." + Math.round(a.right) + " outside " + Math.round(b.left) + ".." + Math.round(b.right));
    }
  }
  return out;
}
"""


def _check_layout(page: Any, width: int) -> None:
    page.evaluate("window.aimedresDrawAllCurves()")
    # no sideways scroll of the page
    assert page.evaluate("document.scrollingElement.scrollWidth") <= page.evaluate("innerWidth"), width
    # every chart, bar and label inside its card or section (the x axis is not cut)
    assert page.evaluate(_OUTSIDE) == [], width
    # the metrics table scrolls in its own box if it must, never the page
    for wrap in page.locator("#results .tablewrap").all():
        box, sec = wrap.bounding_box(), page.locator("#results").bounding_box()
        assert box["x"] >= sec["x"] and box["x"] + box["width"] <= sec["x"] + sec["width"] + 0.5
    # the timeline shows the whole run: every attempt's bar inside the lanes, the last one near their end
    lanes = page.locator(".tl-scroll").bounding_box()
    bars = page.eval_on_selector_all("svg.timeline rect.att", "els => els.map(e => e.getBoundingClientRect().toJSON())")
    assert len(bars) == 8  # clf_a, clf_b, clf_c, reg, reg2, broken, and flaky's two attempts
    assert all(b["left"] >= lanes["x"] and b["right"] <= lanes["x"] + lanes["width"] + 0.5 for b in bars), bars
    assert max(b["right"] for b in bars) > lanes["x"] + lanes["width"] * 0.9
    # per-job charts use the card's full width
    card = page.locator("#job-clf_a")
    cbox = card.bounding_box()
    charts = page.eval_on_selector_all(
        "#job-clf_a svg.chart", "els => els.map(e => e.getBoundingClientRect().toJSON())"
    )
    row = [c for c in charts if abs(c["top"] - charts[0]["top"]) < 2]
    assert max(c["right"] for c in row) - cbox["x"] > 0.85 * cbox["width"], (row, cbox)
    assert cbox["width"] > 0.9 * page.locator("#curves").bounding_box()["width"]


def test_report_at_phone_and_desktop_width(mixed_run: tuple[Path, Path, str], browser: Browser) -> None:
    _folder, html, _step = mixed_run
    for width in (1280, 390):
        page = _open(browser, html, width)
        try:
            assert_clean(page, html)
            _check_layout(page, width)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"report-{width}.png"), full_page=True)
        finally:
            page.close()


def test_failed_jobs_apart_groups_by_metrics_zoomed_bars_and_colours(
    mixed_run: tuple[Path, Path, str], browser: Browser
) -> None:
    _folder, html, _step = mixed_run
    data = page_data(html)
    jobs = {j["id"]: j for j in data["jobs"]}
    # a failed job's last progress record is not its final metrics
    assert jobs["broken"]["status"] == "failed" and jobs["broken"]["final"] == {}
    assert jobs["broken"]["last"]["accuracy"] == 0.999
    assert jobs["clf_a"]["final"]["accuracy"] == 0.979
    page = _open(browser, html, 1280)
    try:
        # failed jobs are listed apart, never ranked: not in a ranked table, not in a bar chart
        ranked = page.eval_on_selector_all(
            "table.ftable:not(.unranked) tbody td:first-child a", "els => els.map(e => e.textContent)"
        )
        assert sorted(ranked) == ["clf_a", "clf_b", "clf_c", "flaky", "reg", "reg2"]
        assert page.locator("table.unranked tbody tr").count() == 1
        assert "accuracy=0.999" in page.inner_text("table.unranked") and "not a final result" in page.inner_text(
            "#results"
        )
        bar_labels = page.eval_on_selector_all("#results svg.bars text", "els => els.map(e => e.textContent)")
        assert "broken" not in bar_labels and "0.999" not in bar_labels
        best = page.eval_on_selector_all("#results td.best", "els => els.map(e => e.textContent)")
        assert "0.979" in best and "0.999" not in best
        # a classifier's and a regressor's metrics: separate tables, never one with both kinds
        heads = page.eval_on_selector_all(
            "table.ftable:not(.unranked)", "ts => ts.map(t => [...t.querySelectorAll('th')].map(th => th.dataset.sort))"
        )
        assert len(heads) == 2
        assert not any("accuracy" in h and "rmse" in h for h in heads), heads
        assert any("accuracy" in h for h in heads) and any("rmse" in h for h in heads)
        # a classifier that shares half its metrics with the others is in their table
        assert any("accuracy" in h and "macro_f1" in h for h in heads), heads
        # ... and their loss curves on separate charts, each with its own axis (no log scale needed)
        loss_charts = page.locator("#compare svg.chart", has=page.locator("text.title", has_text=re.compile("^loss$")))
        assert loss_charts.count() == 2
        assert all("log scale" not in (c.text_content() or "") for c in loss_charts.all())
        # scores near 1: 0.979 and 0.969 are bars of clearly different lengths on a zoomed axis, marked so
        acc = page.locator("#results svg.bars", has=page.locator("text.title", has_text=re.compile("^accuracy$")))
        assert "zoomed" in (acc.get_attribute("class") or "") and "not from 0" in (acc.text_content() or "")
        widths = acc.locator("rect").evaluate_all("rs => rs.map(r => r.getBBox().width)")
        # clf_a, clf_b, flaky, clf_c (best first); drawn from 0, the first two differ by 1 %
        assert len(widths) == 4 and widths[0] > 1.15 * widths[1], widths
        # colours by meaning: in a run with a failure, no series looks like an outcome
        outcome_used = set(
            page.eval_on_selector_all("svg.timeline rect.att", "els => els.map(e => e.getAttribute('fill'))")
        )
        assert OUTCOMES["failed"] in outcome_used and OUTCOMES["succeeded"] in outcome_used
        page.evaluate("window.aimedresDrawAllCurves()")
        series = page.evaluate(
            """() => [
              ...[...document.querySelectorAll('#compare path.series, #cards path.series, #memory path.series')].map(e => e.getAttribute('stroke')),
              ...[...document.querySelectorAll('#results svg.bars rect, #memory svg.bars rect')].map(e => e.getAttribute('fill')),
              ...[...document.querySelectorAll('#compare .legend .sw, #cards .legend .sw')].map(e => e.style.background),
            ]"""
        )
        hexes = {_hex(c) for c in series}
        assert len(hexes) >= 4
        assert {c: looks_like_an_outcome(c) for c in hexes if looks_like_an_outcome(c)} == {}
    finally:
        page.close()


def _hex(css: str) -> str:
    m = re.fullmatch(r"rgb\((\d+), (\d+), (\d+)\)", css)
    return "#" + "".join(f"{int(v):02x}" for v in m.groups()) if m else css.lower()


def test_gantt_keeps_milliseconds_and_its_labels_do_not_repeat(mixed_run: tuple[Path, Path, str]) -> None:
    _folder, _html, step = mixed_run
    lines = gantt_blocks(step)[0]
    sections = check_gantt(lines)
    assert sections["flaky"] == ["attempt 1 failed", "attempt 2 succeeded"]
    tasks = {}
    for line in lines:
        m = re.match(r"^ {4}attempt (\d) \w+ :\w+, (j\d+a\d), (\S+ \S+), (\S+ \S+)$", line)
        if m:
            tasks[m[2]] = (_ms(m[3]), _ms(m[4]))
    flaky = sorted(v for k, v in tasks.items() if k.startswith(f"j{list(sections).index('flaky')}a"))
    assert len(flaky) == 2
    # the retry starts after the backoff: the attempts do not overlap (whole seconds made them)
    assert flaky[1][0] - flaky[0][1] >= 0.25, flaky
    # the tick labels Mermaid draws (d3: a tick every tickInterval, formatted with axisFormat) differ
    interval = next(x.split()[1] for x in lines if x.strip().startswith("tickInterval "))
    axis = next(x.strip()[len("axisFormat ") :] for x in lines if x.strip().startswith("axisFormat "))
    step_s = _interval_s(interval)
    lo = min(s for s, _e in tasks.values())
    hi = max(e for _s, e in tasks.values())
    ticks = [k * step_s for k in range(math.ceil(lo / step_s), math.floor(hi / step_s) + 1)]
    assert 2 <= len(ticks) <= 12, (interval, hi - lo)
    labels = [_strftime(axis, t) for t in ticks]
    assert len(set(labels)) == len(labels), labels


def _ms(text: str) -> float:
    return time.mktime(time.strptime(text[:19], "%Y-%m-%d %H:%M:%S")) + int(text[20:]) / 1000


def _interval_s(interval: str) -> float:
    m = re.fullmatch(r"(\d+)(millisecond|second|minute|hour|day)", interval)
    assert m, interval
    unit = {"millisecond": 0.001, "second": 1, "minute": 60, "hour": 3600, "day": 86400}[m[2]]
    return int(m[1]) * unit


def _strftime(fmt: str, t: float) -> str:
    """d3's time format (what Mermaid's axisFormat is), with %L as milliseconds."""
    return time.strftime(fmt.replace("%L", f"{round(t * 1000) % 1000:03d}"), time.localtime(t))


def test_gantt_axis_for_short_and_long_runs() -> None:
    from aimedres_async.report.gantt import gantt_axis

    assert gantt_axis(1.5) == ("200millisecond", "%H:%M:%S.%L")
    assert gantt_axis(40) == ("5second", "%H:%M:%S")
    assert gantt_axis(3 * 3600) == ("30minute", "%H:%M")
    assert gantt_axis(3 * 86400) == ("12hour", "%m-%d %H:%M")
    assert gantt_axis(90 * 86400)[1] == "%Y-%m-%d"


# ---------------------------------------------------------------- several runs: report --since


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two one-shot runs of the same two jobs, one worker each, the second started while the first
    still runs (two supervisors at once)."""
    folder = tmp_path_factory.mktemp("since")
    # the first run's first job waits for the file "go", made once the second run is over
    code = (
        "import json, os, time\n"
        "first = not os.path.exists('started')\n"
        "open('started', 'a').close()\n"
        "while first and not os.path.exists('go'): time.sleep(0.05)\n"
        "print(json.dumps({'acc': 0.9}), flush=True)\n"
    )
    write_config(
        folder,
        "[supervisor]\nparallel = true\nmax_workers = 1\n[discovery]\nenabled = false\n"
        + "".join(f"[jobs.{n}]\ncommand = {json.dumps([sys.executable, '-c', code])}\n" for n in ("prep", "train")),
    )
    first = start_cli(folder, "run", "--no-progress")
    try:
        deadline = time.monotonic() + 30
        while not list((folder / "logs").glob("*/jobs/prep.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.05)
        r = cli(folder, "run", "--no-progress", timeout=60)
        assert r.returncode == 0, r.stderr
        (folder / "go").touch()
        _out, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    yield folder


def test_report_since_keeps_runs_apart(two_runs: Path, browser: Browser) -> None:
    r = cli(two_runs, "report", "--since", "1h", "-o", "since.html")
    assert r.returncode == 0, r.stderr
    html = two_runs / "since.html"
    data = page_data(html)
    assert len(data["runs"]) == 2 and data["tickets"] is False
    # a job of each run is a job of its own: four jobs of one attempt each, none "2 attempts"
    assert len(data["jobs"]) == 4
    assert all(len(j["att"]) == 1 for j in data["jobs"]), [(j["id"], len(j["att"])) for j in data["jobs"]]
    assert {j["id"].split("@")[0] for j in data["jobs"]} == {"prep", "train"}
    assert len({j["id"] for j in data["jobs"]}) == 4
    for j in data["jobs"]:
        # queued in the attempt's own run: no "waiting for a worker" from one run to the next
        assert j["q"] is not None and j["q"] <= j["att"][0]["s"]
        assert len(set(j["runs"])) == 1 and j["att"][0]["run"] == j["runs"][0]
    # never more attempts running than workers: the two supervisors' limits add up while both run
    changes = sorted(
        [(a["s"], 1) for j in data["jobs"] for a in j["att"]] + [(a["e"], -1) for j in data["jobs"] for a in j["att"]]
    )
    running, peak_over = 0, []
    for t, d in changes:
        running += d
        limit = next((n for s, n in reversed(data["workers"]) if s <= t + 1e-6), 0)
        if running > limit:
            peak_over.append((t, running, limit))
    assert peak_over == [], (peak_over, data["workers"])
    assert max(n for _t, n in data["workers"]) == 2  # both runs at once
    page = _open(browser, html, 1280)
    try:
        assert_clean(page, html)
        assert page.inner_text("h1").startswith("Runs since ")
        lanes = page.eval_on_selector_all("svg.timeline g.lane", "els => els.map(e => e.dataset.job)")
        assert len(lanes) == 4
        peak = int(page.inner_text("#peak"))
        assert peak <= 2
    finally:
        page.close()


# ---------------------------------------------------------------- the gantt drawn by the real Mermaid

REPO = Path(__file__).resolve().parents[2]


def _mermaid_js() -> Path:
    """mermaid.min.js from npm's `mermaid` package: $AIMEDRES_MERMAID_JS, or where .ci/run puts it."""
    import os

    given = os.environ.get("AIMEDRES_MERMAID_JS")
    path = Path(given) if given else REPO / ".ci-node" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
    if not path.is_file():
        why = f"no mermaid.min.js at {path} (npm install --prefix .ci-node mermaid@11, or set AIMEDRES_MERMAID_JS)"
        print(f"SKIP reason: {why}")
        pytest.skip(why)
    return path


def test_the_real_mermaid_draws_the_gantt_with_the_retry_apart_and_distinct_ticks(
    mixed_run: tuple[Path, Path, str], browser: Browser, tmp_path: Path
) -> None:
    _folder, _html, step = mixed_run
    lines = gantt_blocks(step)[0]
    js = _mermaid_js()
    sections = check_gantt(lines)
    page_file = tmp_path / "gantt.html"
    page_file.write_text(
        "<!doctype html><meta charset=utf-8><body>"
        f'<script src="{js.as_uri()}"></script>'
        '<pre class="mermaid" id="chart"></pre>'
        "<script>document.getElementById('chart').textContent = "
        + json.dumps("\n".join(lines))
        + ";mermaid.initialize({startOnLoad: false, gantt: {useWidth: 1200}});"
        "mermaid.run({querySelector: '#chart'}).then(() => document.body.dataset.ready = 1,"
        " e => { document.body.dataset.error = String(e); document.body.dataset.ready = 1; });</script>",
        encoding="utf-8",
    )
    page = browser.browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(page_file.as_uri())
        page.wait_for_selector("body[data-ready]", state="attached", timeout=30_000)
        assert page.evaluate("document.body.dataset.error || ''") == ""
        assert page.locator("#chart svg").count() == 1
        ticks = page.eval_on_selector_all("#chart svg g.tick text", "els => els.map(e => e.textContent)")
        bars = page.eval_on_selector_all(
            "#chart svg rect.task",
            "els => els.map(e => [e.id, +e.getAttribute('x'), +e.getAttribute('x') + +e.getAttribute('width')])",
        )
    finally:
        page.close()
    # the axis Mermaid drew: a few ticks, no two reading the same
    assert 2 <= len(ticks) <= 12, ticks
    assert len(set(ticks)) == len(ticks), ticks
    # one bar per attempt, and the retried job's two attempts drawn apart (the backoff between them)
    assert len(bars) == sum(len(v) for v in sections.values()), bars
    index = list(sections).index("flaky")
    flaky = sorted((x0, x1) for bar_id, x0, x1 in bars if re.search(rf"(^|-)j{index}a\d$", bar_id))
    assert len(flaky) == 2, bars
    assert flaky[0][1] < flaky[1][0], flaky
