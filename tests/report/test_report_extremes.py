"""The HTML report of jobs whose metrics are extreme (±1e308, subnormal 1e-320, integers beyond 64
bits), opened in a real headless Chromium: every chart drawn, no NaN in any SVG path, no console
error, and the clamped values named on the page (issue 28)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import write_config
from helpers_cli import cli

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("Playwright for Python is not installed (pip install -e '.[test]')")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
    try:
        yield browser
    finally:
        browser.close()
        pw.stop()


def _job(name: str, values: list[str]) -> str:
    """A job printing one JSON record per epoch, its `loss` and `score` taken verbatim from `values`."""
    lines = [f'{{"epoch": {e}, "loss": {v}, "score": {v}}}' for e, v in enumerate(values, 1)]
    code = "\n".join(f"print({line!r})" for line in lines)
    return f"[jobs.{name}]\ncommand = {json.dumps([sys.executable, '-c', code])}\n"


def test_extreme_metric_values_are_drawn_clamped_and_marked(tmp_path: Path, marker: str, chromium: Any) -> None:
    """Regression: a metric of ±1e308 (or 1e-320) left a chart empty with NaN in its SVG paths
    and 16 console errors."""
    write_config(
        tmp_path,
        f'[discovery]\nenabled = false\n[defaults]\nenv = {{ TEST_MARKER = "{marker}" }}\n'
        + _job("huge", ["1e308", "-1e308", "1.5", "1e308"])
        + _job("tiny", ["1e-320", "5e-324", "0.5", "1e-320"])
        + _job("plain", ["0.9", "0.7", "0.5", "0.4"])
        + _job("bigint", ["123456789012345678901234567890", "1", "2", "3"]),
    )
    r = cli(tmp_path, "run", "--no-progress", "--parallel", "--report", "r.html")
    assert r.returncode == 0, r.stderr
    html = tmp_path / "r.html"
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(html.as_uri())
        page.wait_for_selector("body[data-ready]", state="attached", timeout=30_000)
        assert errors == []
        paths = page.eval_on_selector_all("svg path", "ps => ps.map(p => p.getAttribute('d') || '')")
        assert paths and not [d for d in paths if re.search(r"NaN|Infinity", d)]
        for name in ("huge", "tiny", "plain", "bigint"):
            charts = page.locator(f"#job-{name} svg.chart")
            assert charts.count() == 2, name  # loss and score, both drawn
            assert charts.first.locator("path.series").count() >= 1, name
        text = page.inner_text("body")
        assert "huge: loss, score: values beyond ±1e+100 drawn at ±1e+100" in text
        assert "tiny: loss, score: values nearer 0 than 1e-300 drawn as 0" in text
    finally:
        page.close()


RLO = "\u202e"


def test_bidi_controls_in_names_are_shown_not_obeyed(tmp_path: Path, marker: str, chromium: Any) -> None:
    """Regression: a metric named with a right-to-left override was drawn reversed in the report;
    it is shown as \\u202e in the report, the results table, the markdown summary and JUnit."""
    key = f"acc{RLO}lav"
    code = f"import json; [print(json.dumps({{'epoch': e, {key!r}: e / 10}})) for e in (1, 2, 3)]"
    write_config(
        tmp_path,
        f'[discovery]\nenabled = false\n[defaults]\nenv = {{ TEST_MARKER = "{marker}" }}\n'
        f"[jobs.j]\ncommand = {json.dumps([sys.executable, '-c', code])}\n",
    )
    summary = tmp_path / "step.md"
    r = cli(
        tmp_path,
        "run",
        "--no-progress",
        "--report",
        "r.html",
        "--junit-xml",
        "junit.xml",
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert r.returncode == 0, r.stderr
    assert RLO not in r.stdout and "acc\\u202elav" in r.stdout  # the results table
    assert RLO not in summary.read_text() and "acc\\u202elav" in summary.read_text()
    assert RLO not in (tmp_path / "junit.xml").read_text()
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto((tmp_path / "r.html").as_uri())
        page.wait_for_selector("body[data-ready]", state="attached", timeout=30_000)
        text = page.inner_text("body")
        assert RLO not in text and "acc\\u202elav" in text
    finally:
        page.close()


def test_extreme_values_in_a_leaderboard_are_drawn_without_nan(tmp_path: Path, marker: str, chromium: Any) -> None:
    """Seeds of one job whose metric is ±1e308: the leaderboard's mean and spread overflow."""
    code = (
        "import json; print(json.dumps({'epoch': 1, 'loss': 1e308})); print(json.dumps({'epoch': 2, 'loss': -1e308}))"
    )
    write_config(
        tmp_path,
        f'[discovery]\nenabled = false\n[defaults]\nenv = {{ TEST_MARKER = "{marker}" }}\n'
        f"[jobs.j]\ncommand = {json.dumps([sys.executable, '-c', code])}\nrepeat = 3\n",
    )
    r = cli(tmp_path, "run", "--no-progress", "--parallel", "--yes", "--report", "r.html")
    assert r.returncode == 0, r.stderr
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto((tmp_path / "r.html").as_uri())
        page.wait_for_selector("body[data-ready]", state="attached", timeout=30_000)
        assert errors == []
        paths = page.eval_on_selector_all("svg path", "ps => ps.map(p => p.getAttribute('d') || '')")
        assert not [d for d in paths if re.search(r"NaN|Infinity", d)]
    finally:
        page.close()
