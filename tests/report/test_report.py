"""The HTML report (`report`, `run --report`), `job.sample` events and the step summary's Mermaid gantt.

The report of real small runs is opened in a real headless Chromium (Debian's /usr/bin/chromium driven
by Playwright); those tests skip with a printed reason when either is missing.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import read_jsonl, run_dir, start_cli, wait_for, write_config
from helpers_cli import cli, usage_error
from helpers_daemon import Daemons, daemon_config, submit, wait_final
from report_project import make_project

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "ci-artifacts"


def _bench() -> Any:
    """bench/report.py (its synthetic-run generator), imported by path."""
    spec = importlib.util.spec_from_file_location("bench_report", REPO / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def page_data(html: Path) -> dict[str, Any]:
    """The JSON the page draws, read back out of the HTML file."""
    text = html.read_text()
    m = re.search(r'<script id="data" type="application/json">(.*?)</script>', text, re.S)
    assert m, "no data block in the report"
    data: dict[str, Any] = json.loads(m.group(1))
    return data


# ---------------------------------------------------------------- a real browser


class Browser:
    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

    def open(self, html: Path, width: int = 1400) -> Any:
        """A page with the report loaded and drawn; its console errors and requests are recorded."""
        page = self.browser.new_page(viewport={"width": width, "height": 1000})
        page.errors, page.requests, page.dialogs = [], [], []
        page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.on("request", lambda r: page.requests.append(r.url))
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
        page.goto(html.as_uri())
        page.wait_for_selector("body[data-ready]", state="attached", timeout=30_000)
        return page

    def close(self) -> None:
        self.browser.close()
        self._pw.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        print(f"SKIP reason: no Chromium at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        print("SKIP reason: Playwright for Python is not installed (pip install -e '.[test]')")
        pytest.skip("Playwright for Python is not installed (pip install -e '.[test]')")
    b = Browser()
    try:
        yield b
    finally:
        b.close()


def assert_clean(page: Any, html: Path) -> None:
    """No console error, no request but the file itself, no dialog (no injected script ran)."""
    assert page.errors == [], page.errors
    assert [r for r in page.requests if r != html.as_uri()] == [], page.requests
    assert page.dialogs == []


# ---------------------------------------------------------------- runs to draw


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One real run of the demo project (five jobs: retried, failed, memory-hungry) with --report."""
    folder = tmp_path_factory.mktemp("demo")
    make_project(folder, marker="report-demo")
    html = folder / "out" / "report.html"
    r = cli(folder, "run", "--no-progress", "--report", str(html), timeout=120)
    assert r.returncode == 0, r.stderr  # the failing job is optional
    assert f"report: {html}" in r.stderr
    return folder, html


def test_job_sample_events_recorded_once_a_second_at_most(demo_run: tuple[Path, Path]) -> None:
    folder, _html = demo_run
    rd = run_dir(folder)
    events = read_jsonl(rd / "events.jsonl")
    samples = [e for e in events if e["event"] == "job.sample"]
    log = read_jsonl(rd / "jobs" / "hungry.jsonl")
    # its 48 MiB are touched before it prints "dataset ready": a sample in its first milliseconds
    # (the interpreter starting) is smaller
    ready = next(r["t"] for r in log if r["event"] == "job.output" and r.get("line", "").startswith("dataset ready"))
    every = [e for e in samples if e["job"] == "hungry"]
    hungry = [e for e in every if e["t"] > ready]
    assert len(hungry) >= 2, "the job holding memory for 2.5 s was sampled"
    import jsonschema

    from aimedres_async.records.schema import RECORD_KINDS, load

    assert "job.sample" in RECORD_KINDS
    schema = load("job.sample")
    # A sample's time is when it was recorded, after the /proc scan (a worker thread, slower under
    # load); the job frees its memory as it exits, after its last line. Between the two, a reading
    # is the 48 MiB it holds: a sample recorded well after "dataset ready" and before the last line.
    done = next(r["t"] for r in reversed(log) if r["event"] == "job.output")
    holding = [e for e in hungry if ready + 0.25 < e["t"] < done]
    assert holding, (ready, done, hungry)
    for s in holding:
        assert s["attempt"] == 1 and s["rss_bytes"] > 40 << 20  # it holds 48 MiB
    for s in hungry:
        assert s["attempt"] == 1 and s["rss_bytes"] > 0
        assert s["run"] == rd.name and s["ts"].endswith("Z")
        jsonschema.validate(s, schema)
        assert set(s) <= set(schema["properties"])
    # at most one per job per second
    by_job: dict[str, list[float]] = {}
    for s in samples:
        by_job.setdefault(s["job"], []).append(
            time.mktime(time.strptime(s["ts"][:19], "%Y-%m-%dT%H:%M:%S")) + float(s["ts"][19:-1])
        )
    for times in by_job.values():
        assert all(b - a >= 0.5 for a, b in itertools.pairwise(times)), times
    # between the attempt's start and exit, and in the job's own log too
    kinds = [r["event"] for r in log]
    assert kinds.count("job.sample") == len(every)
    first, last = kinds.index("job.sample"), len(kinds) - 1 - kinds[::-1].index("job.sample")
    assert kinds.index("job.started") < first and last < kinds.index("job.exited")
    # `logs` shows a job's log for reading: the samples are left out
    shown = cli(folder, "logs", "hungry")
    assert shown.returncode == 0 and "job.exited" in shown.stdout and "job.sample" not in shown.stdout
    # the summary's peak is at least the largest sample
    summary = json.loads((rd / "summary.json").read_text())
    peak = next(j["peak_rss_bytes"] for j in summary["jobs"] if j["id"] == "hungry")
    assert peak >= max(s["rss_bytes"] for s in hungry)


def test_samples_stay_off_the_console(tmp_path: Path, marker: str) -> None:
    code = "import time; x = bytearray(8 << 20); time.sleep(2.3)"
    write_config(
        tmp_path,
        f'[discovery]\nenabled = false\n[defaults]\nenv = {{ TEST_MARKER = "{marker}" }}\n'
        f'[jobs.sleepy]\ncommand = ["{sys.executable}", "-c", "{code}"]\n',
    )
    r = cli(tmp_path, "run", "--no-progress", "--log-file", "stream.jsonl")
    assert r.returncode == 0, r.stderr
    assert "job.sample" not in r.stderr and "job.sample" not in r.stdout
    stream = read_jsonl(tmp_path / "stream.jsonl")
    assert any(x["event"] == "job.sample" for x in stream), "the --log-file stream is complete"
    r = cli(tmp_path, "run", "--log-format", "json")
    assert r.returncode == 0 and "job.sample" not in r.stderr


def test_report_of_a_real_run_in_chromium(demo_run: tuple[Path, Path], browser: Browser) -> None:
    _folder, html = demo_run
    size = html.stat().st_size
    assert 0 < size < 300_000
    data = page_data(html)
    assert {j["id"] for j in data["jobs"]} == {"cnn", "mlp", "flaky", "hungry", "broken"}
    page = browser.open(html)
    try:
        assert_clean(page, html)
        # one timeline lane per job, one bar per attempt (flaky and broken were retried once)
        lanes = page.eval_on_selector_all("svg.timeline g.lane", "els => els.map(e => e.dataset.job)")
        assert sorted(lanes) == ["broken", "cnn", "flaky", "hungry", "mlp"]
        bars = page.eval_on_selector_all("svg.timeline rect.att", "els => els.map(e => e.getAttribute('fill'))")
        assert len(bars) == 7
        assert bars.count("#2f9e62") == 4 and bars.count("#d94848") == 3  # flaky #1 and broken #1, #2 failed
        # the backoff before each retry is drawn
        assert page.locator("svg.timeline line.boff").count() == 2
        # metric charts: compared across jobs (loss, val_acc) and per job, one per metric
        assert page.locator("#compare svg.chart").count() == 2
        titles = page.eval_on_selector_all("#compare svg.chart text.title", "els => els.map(e => e.textContent)")
        assert titles == ["loss", "val_acc"]
        cards = page.locator("#cards .card")
        assert cards.count() == 4  # broken printed no metric records
        assert page.locator("#job-cnn svg.chart").count() == 2
        # folds as separate series: three lines in a per-job chart
        assert page.locator("#job-cnn svg.chart").first.locator("path.series").count() == 3
        # final metrics: a row per job that succeeded, a bar chart for the shared metrics, sortable;
        # the failed job apart, not ranked
        assert page.locator("#ftable-0 tbody tr").count() == 4
        assert page.locator("table.unranked tbody tr").count() == 1
        assert "broken" in page.inner_text("table.unranked")
        page.click("#ftable-0 th[data-sort='accuracy']")
        first = page.eval_on_selector("#ftable-0 tbody tr td a", "a => a.textContent")
        accs = {j["id"]: j["final"].get("accuracy") for j in data["jobs"]}
        assert first == max((k for k in accs if accs[k] is not None), key=lambda k: accs[k])
        assert page.locator("#results svg.bars").count() >= 2  # accuracy and loss
        # memory: the hungry job's peak is drawn, and the group's RSS over time from job.sample
        page.locator("#memory").scroll_into_view_if_needed()  # drawn off-screen parts are laid out when seen
        assert "hungry" in page.inner_text("#memory")
        assert page.locator("#memory svg.chart").count() == 1
        # provenance
        page.locator("#provenance").scroll_into_view_if_needed()
        prov = page.inner_text("#provenance")
        assert data["runs"][0]["run"] in prov and "config sha256" in prov and "python" in prov
        # hover over a failed attempt: its exit code and last lines; click: the detail panel
        failed = page.locator("svg.timeline g.lane[data-job='broken'] rect.att").first
        failed.hover()
        tip = page.inner_text("#tip")
        assert "exit 1" in tip and "the label column 'target' is missing" in tip and "train.py" in tip
        failed.click()
        detail = page.inner_text("#detail")
        assert "last output lines" in detail and "ValueError" in detail
        # drag across the lanes to zoom in on a stretch of time; "show all" zooms out
        lanes_box = page.locator(".tl-scroll")
        lanes_box.scroll_into_view_if_needed()
        box = lanes_box.bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.5, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=4)
        page.mouse.up()
        assert page.inner_text("#tl p.sub").startswith("Showing +")
        assert page.locator("svg.timeline g.lane").count() == 5
        assert page.locator("svg.timeline rect.att").count() < 7  # only what falls in the window
        page.click("#unzoom")
        assert page.locator("svg.timeline rect.att").count() == 7
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        assert page.errors == []
    finally:
        page.close()


def test_report_of_one_job(tmp_path: Path, marker: str, browser: Browser) -> None:
    make_project(tmp_path, marker)
    r = cli(tmp_path, "run", "--no-progress", "--only", "cnn")
    assert r.returncode == 0, r.stderr
    r = cli(tmp_path, "report")
    assert r.returncode == 0, r.stderr
    html = run_dir(tmp_path) / "report.html"  # the default: in the run folder
    assert r.stdout.strip() == f"wrote {html}"
    page = browser.open(html)
    try:
        assert_clean(page, html)
        assert page.locator("svg.timeline g.lane").count() == 1
        assert page.locator("#job-cnn svg.chart").count() == 2
        assert page.locator("#compare").count() == 0  # nothing to compare a single job with
        assert page.locator("#leaderboard").count() == 0  # no parameters, no seeds: no leaderboard
        assert "Curves compared" not in page.inner_text("nav")
        page.screenshot(path=str(tmp_path / "one.png"), full_page=True)
    finally:
        page.close()


def test_report_escapes_what_jobs_print(tmp_path: Path, marker: str, browser: Browser) -> None:
    """A job's output must not be able to close the data block and run a script in the page."""
    evil = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"
    code = f'import sys; print({evil!r}, file=sys.stderr); print(\'{{"epoch": 1, "loss": 1}}\'); sys.exit(2)'
    write_config(
        tmp_path,
        f'[discovery]\nenabled = false\n[defaults]\nretries = 0\nenv = {{ TEST_MARKER = "{marker}" }}\n'
        f"[jobs.evil]\ncommand = {json.dumps([sys.executable, '-c', code])}\n",
    )
    r = cli(tmp_path, "run", "--no-progress", "--report", "r.html")
    assert r.returncode == 1, r.stderr
    html = tmp_path / "r.html"
    assert "</script><script>alert" not in html.read_text()
    page = browser.open(html)
    try:
        page.locator("svg.timeline rect.att").first.click()
        assert evil in page.inner_text("#detail")  # shown as text
        assert_clean(page, html)
    finally:
        page.close()


def test_report_of_a_run_in_progress(demo_run: tuple[Path, Path], tmp_path: Path, browser: Browser) -> None:
    """A run without run.finished (still running, or its supervisor killed) is drawn as far as it
    got, says so, and a last line still being written is left out."""
    folder, _html = demo_run
    rd = tmp_path / run_dir(folder).name
    shutil.copytree(run_dir(folder), rd)
    (rd / "summary.json").unlink()
    lines = (rd / "events.jsonl").read_bytes().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if b'"job.exited"' in line and b'"hungry"' in line)
    kept = [line for line in lines[:cut] if b'"run.finished"' not in line]
    (rd / "events.jsonl").write_bytes(b"".join(kept) + b'{"ts":"2026-11-27T17:46:17.1')  # cut short
    r = cli(tmp_path, "report", str(rd), "-o", "p.html")
    assert r.returncode == 0, r.stderr
    html = tmp_path / "p.html"
    data = page_data(html)
    assert data["in_progress"] is True
    hungry = next(j for j in data["jobs"] if j["id"] == "hungry")
    assert hungry["status"] == "running" and hungry["att"][0]["o"] == "running"
    assert any("still being written" in n for n in data["notes"])
    page = browser.open(html)
    try:
        assert_clean(page, html)
        assert "In progress." in page.inner_text("header")
        assert page.locator("svg.timeline g.lane").count() == len(data["jobs"])
    finally:
        page.close()


def test_report_bad_input_is_one_line_exit_2(demo_run: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _html = demo_run
    # no run at all
    (tmp_path / "empty").mkdir()
    line = usage_error(cli(tmp_path / "empty", "report"))
    assert "no run found" in line
    # a run id that is not there, a path that is not a run folder, a RUN that is neither
    assert "no run 20200101T000000Z-abcd" in usage_error(cli(folder, "report", "20200101T000000Z-abcd"))
    assert "not a run folder" in usage_error(cli(folder, "report", str(tmp_path / "empty")))
    assert "neither a run id" in usage_error(cli(folder, "report", "nope"))
    # a finished run whose events file was cut short, or damaged in the middle
    rd = tmp_path / "cut"
    shutil.copytree(run_dir(folder), rd)
    data = (rd / "events.jsonl").read_bytes()
    (rd / "events.jsonl").write_bytes(data + b'{"ts":"2026-11-27T17:46:17.1')
    assert "truncated" in usage_error(cli(folder, "report", str(rd)))
    lines = data.splitlines(keepends=True)
    lines[2] = lines[2][:20] + b"\n"
    (rd / "events.jsonl").write_bytes(b"".join(lines))
    assert "line 3 is not a whole JSON record" in usage_error(cli(folder, "report", str(rd)))
    (rd / "events.jsonl").write_bytes(b"")
    assert "holds no records" in usage_error(cli(folder, "report", str(rd)))
    # --since: a bad time, both RUN and --since, nothing in the window
    assert "--since" in usage_error(cli(folder, "report", "--since", "yesterday-ish"))
    assert "not both" in usage_error(cli(folder, "report", "latest", "--since", "1h"))
    assert "recorded anything since" in usage_error(cli(folder, "report", "--since", "2099-01-01"))
    # an output file that cannot be written
    (tmp_path / "afile").write_text("")
    assert "cannot write" in usage_error(cli(folder, "report", "-o", str(tmp_path / "afile" / "r.html")))


def test_run_report_after_ctrl_c(tmp_path: Path, marker: str) -> None:
    code = "import json, time; print(json.dumps({'epoch': 1, 'loss': 0.5}), flush=True); time.sleep(60)"
    write_config(
        tmp_path,
        f'[supervisor]\ngrace_period = "1s"\n[discovery]\nenabled = false\n'
        f'[defaults]\nenv = {{ TEST_MARKER = "{marker}" }}\n'
        f"[jobs.slow]\ncommand = {json.dumps([sys.executable, '-c', code])}\n"
        f"[jobs.later]\ncommand = {json.dumps([sys.executable, '-c', 'pass'])}\n",
    )
    p = start_cli(tmp_path, "run", "--no-progress", "--report", "stopped.html")
    try:
        wait_for(
            lambda: (
                (tmp_path / "logs" / "latest" / "jobs" / "slow.jsonl").exists()
                and b'"data"' in (tmp_path / "logs" / "latest" / "jobs" / "slow.jsonl").read_bytes()
            ),
            timeout=30,
            what="the slow job's first record",
        )
        p.send_signal(signal.SIGINT)
        _out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    html = tmp_path / "stopped.html"
    assert html.exists(), err
    data = page_data(html)
    assert data["in_progress"] is False and data["runs"][0]["stopped_by"] == "SIGINT"
    slow = next(j for j in data["jobs"] if j["id"] == "slow")
    assert slow["status"] == "cancelled" and slow["att"][0]["o"] == "cancelled"


def test_report_since_covers_a_daemons_tickets(tmp_path: Path, marker: str) -> None:
    """The daemon keeps one run folder for its whole life (no summary.json); `--since` draws its
    tickets, and those of any other run in the window."""
    code = "import json; [print(json.dumps({'epoch': e, 'acc': e / 10})) for e in range(1, 4)]"
    jobs = f"[jobs.train]\ncommand = {json.dumps([sys.executable, '-c', code])}\n"
    write_config(tmp_path, daemon_config(marker, jobs))
    r = cli(tmp_path, "run", "--no-progress")  # a one-shot run first
    assert r.returncode == 0, r.stderr
    one_shot = run_dir(tmp_path).name
    daemons = Daemons()
    try:
        daemons.start(tmp_path)
        tickets = [submit(tmp_path, "--job", "train") for _ in range(2)]
        wait_final(tmp_path / "spool", tickets)
    finally:
        daemons.close()
    r = cli(tmp_path, "report", "--since", "1h", "-o", "window.html")
    assert r.returncode == 0, r.stderr
    data = page_data(tmp_path / "window.html")
    ids = {j["id"] for j in data["jobs"]}
    assert set(tickets) <= ids and "train" in ids  # the tickets and the one-shot run's job
    assert one_shot in {r["run"] for r in data["runs"]} and len(data["runs"]) == 2
    for t in tickets:
        job = next(j for j in data["jobs"] if j["id"] == t)
        assert job["status"] == "succeeded" and job["curves"]["keys"] == ["acc"]
    assert data["since"] is not None


# ---------------------------------------------------------------- the step summary's gantt

_TASK = re.compile(
    r"^ {4}(?P<name>[^#:;\n]+?) :(?P<tags>(?:(?:done|active|crit|milestone), )*)(?P<id>[A-Za-z][\w-]*), "
    r"(?P<start>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}), (?P<end>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})$"
)


_KEYWORD = re.compile(
    r"(gantt|section|title|dateFormat|axisFormat|tickInterval|includes|excludes|todayMarker|click|accTitle|"
    r"accDescr|inclusiveEndDates|topAxis|weekday)\b",
    re.I,
)


def gantt_blocks(text: str) -> list[list[str]]:
    return [b.split("\n") for b in re.findall(r"```mermaid\n(.*?)\n```", text, re.S)]


def check_gantt(lines: list[str]) -> dict[str, list[str]]:
    """What Mermaid's gantt grammar needs: `gantt` first, a dateFormat the dates match, sections and
    task lines `name :tags, id, start, end` with no # : ; in names, unique ids, start <= end.
    Returns the tasks per section."""
    assert lines[0] == "gantt", lines[:2]
    header = [x.strip() for x in lines[1:5]]
    assert any(x.startswith("title ") and "#" not in x and ";" not in x for x in header), header
    assert "dateFormat YYYY-MM-DD HH:mm:ss.SSS" in header and any(x.startswith("axisFormat ") for x in header)
    assert any(x.startswith("tickInterval ") for x in header)
    sections: dict[str, list[str]] = {}
    current = None
    ids = set()
    for line in lines[5:]:
        if line.startswith("    section "):
            current = line[len("    section ") :]
            assert current and not re.search(r"[#:;]", current), line
            sections[current] = []
            continue
        m = _TASK.match(line)
        assert m, f"not a gantt task line: {line!r}"
        assert current is not None, "a task before any section"
        assert m["id"] not in ids
        ids.add(m["id"])
        assert m["start"] < m["end"], line
        assert not _KEYWORD.match(m["name"]), f"a task name Mermaid reads as a keyword: {line!r}"
        sections[current].append(m["name"])
    return sections


def test_step_summary_has_a_mermaid_gantt(demo_run: tuple[Path, Path], tmp_path: Path, marker: str) -> None:
    make_project(tmp_path, marker)
    summary = tmp_path / "step-summary.md"
    summary.write_text("# earlier step\n")
    r = cli(tmp_path, "run", "--no-progress", "--only", "cnn", "flaky", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.returncode == 0, r.stderr
    text = summary.read_text()
    assert text.startswith("# earlier step\n") and "| cnn |" in text
    blocks = gantt_blocks(text)
    assert len(blocks) == 1
    sections = check_gantt(blocks[0])
    assert sections == {
        "cnn": ["attempt 1 succeeded"],
        "flaky": ["attempt 1 failed", "attempt 2 succeeded"],
    }
    assert "more job(s) ran" not in text


def test_gantt_is_capped_to_the_50_longest_jobs(tmp_path: Path) -> None:
    from aimedres_async.report.gantt import mermaid_gantt

    run = _bench().make_run(tmp_path, jobs=60, epochs=3)
    block = mermaid_gantt(run)
    sections = check_gantt(gantt_blocks(block)[0])
    assert len(sections) == 50
    assert "10 more job(s) ran; the gantt shows the 50 longest" in block
    data = json.loads((run / "summary.json").read_text())
    dur = {j["id"]: 0.0 for j in data["jobs"]}
    for e in read_jsonl(run / "events.jsonl"):
        if e["event"] == "job.exited":
            dur[e["job"]] += e["duration_s"]
    longest = sorted(dur, key=lambda k: -dur[k])[:50]
    assert set(sections) == set(longest)


def test_gantt_names_are_made_safe() -> None:
    from aimedres_async.report.gantt import _gantt_name

    assert _gantt_name("a:b#c;d,e%f\ng") == "a_b_c_d_e_f_g"


# ---------------------------------------------------------------- scale (no timing asserted here: bench/report.py)


def test_synthetic_big_run_renders(tmp_path: Path, browser: Browser) -> None:
    run = _bench().make_run(tmp_path, jobs=60, epochs=50)
    r = cli(tmp_path, "report", str(run), "-o", "big.html")
    assert r.returncode == 0, r.stderr
    html = tmp_path / "big.html"
    data = page_data(html)
    assert len(data["jobs"]) == 60 and all(len(j["curves"]["series"][0]["x"]) >= 1 for j in data["jobs"] if j["curves"])
    assert len(data["rss"]) <= 1600
    page = browser.open(html)
    try:
        assert_clean(page, html)
        assert page.locator("svg.timeline g.lane").count() == 60
        # many jobs: the compared curves show the spread and the best few, not 60 lines
        assert page.locator("#compare svg.chart").first.locator("path.series").count() == 3 + 6
        assert page.evaluate("window.aimedresDrawAllCurves()") == 60
        assert page.locator("#cards svg.chart").count() == 60 * 3
        assert page.errors == []
    finally:
        page.close()


def test_report_files_ship_in_the_wheel(tmp_path: Path) -> None:
    """The page's script and style are package data: a wheel without them would write broken pages."""
    if importlib.util.find_spec("hatchling") is None:
        print("SKIP reason: hatchling (the build backend) is not installed")
        pytest.skip("hatchling is not installed")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    import zipfile

    wheel = next(tmp_path.glob("aimedres_async-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "aimedres_async/report/assets/report.js" in names and "aimedres_async/report/assets/report.css" in names


def test_gantt_jobs_named_like_mermaid_keywords(tmp_path: Path, marker: str) -> None:
    """Regression: task names began with the job id, and Mermaid reads `title …` or `section …` at the
    start of a task line as that statement, so jobs called `title` or `section` broke the chart."""
    jobs = "".join(f'[jobs.{name}]\ncommand = ["{sys.executable}", "-c", "pass"]\n' for name in ("title", "section"))
    write_config(tmp_path, f'[discovery]\nenabled = false\n[defaults]\nenv = {{ TEST_MARKER = "{marker}" }}\n{jobs}')
    step = tmp_path / "step.md"
    r = cli(tmp_path, "run", "--no-progress", env={"GITHUB_STEP_SUMMARY": str(step)})
    assert r.returncode == 0, r.stderr
    sections = check_gantt(gantt_blocks(step.read_text())[0])
    assert sections == {"title": ["attempt 1 succeeded"], "section": ["attempt 1 succeeded"]}


def test_curves_from_metric_records() -> None:
    from aimedres_async.report.chart_data import curves

    # epoch is the x; one line per fold; the final summary object (no epoch) is not a curve point
    recs = [(1, {"epoch": e, "fold": f, "loss": 1 / e, "val_acc": 0.5 + e / 10}) for f in (1, 2) for e in (1, 2, 3)]
    c = curves([*recs, (1, {"accuracy": 0.8, "epochs": 3})])
    assert c is not None and c["x"] == "epoch" and c["keys"] == ["loss", "val_acc"]
    assert [(s["n"], s["x"]) for s in c["series"]] == [("fold 1", [1, 2, 3]), ("fold 2", [1, 2, 3])]
    assert c["series"][0]["y"][0] == [1.0, 0.5, 0.33333]  # five significant digits
    # fold null: the final fit on all the data, a line of its own, left out of the mean over folds
    c = curves([*recs, (1, {"epoch": 1, "fold": None, "loss": 0.4}), (1, {"epoch": 2, "fold": None, "loss": 0.3})])
    assert c is not None and c["series"][-1]["n"] == "final fit" and c["series"][-1].get("aux") is True
    assert not any(s.get("aux") for s in c["series"][:-1])
    # step, else fold, else the records' order
    assert curves([(1, {"step": 10, "loss": 1}), (1, {"step": 20, "loss": 0.5})])["x"] == "step"  # type: ignore[index]
    assert curves([(1, {"fold": 1, "auc": 0.8}), (1, {"fold": 2, "auc": 0.9})])["x"] == "fold"  # type: ignore[index]
    c = curves([(1, {"loss": 0.9}), (1, {"loss": 0.5}), (2, {"loss": 0.4})])
    assert c is not None and c["x"] == "record"
    assert [(s["n"], s["x"]) for s in c["series"]] == [("attempt 1", [1, 2]), ("attempt 2", [3])]
    assert [s["a"] for s in c["series"]] == [1, 2]  # the compared curve is the last attempt's
    # epochs that start over without a fold key become separate lines, not a zig-zag
    c = curves([(1, {"epoch": e, "loss": 1 / e}) for _ in range(2) for e in (1, 2)])
    assert c is not None and [s["x"] for s in c["series"]] == [[1, 2], [1, 2]]
    # one record, or nothing numeric: no curves
    assert curves([(1, {"accuracy": 0.8})]) is None
    assert curves([(1, {"note": "a"}), (1, {"note": "b"})]) is None


def test_compared_curves_on_different_scales_get_a_log_axis(tmp_path: Path, marker: str, browser: Browser) -> None:
    """A regression's MSE (thousands) beside a classifier's log loss (tenths) share a `loss` chart:
    on a linear axis the small one would be a flat line at zero."""

    def job(name: str, scale: float) -> str:
        code = f"import json; [print(json.dumps({{'epoch': e, 'loss': {scale} / e}})) for e in range(1, 6)]"
        return f"[jobs.{name}]\ncommand = {json.dumps([sys.executable, '-c', code])}\n"

    write_config(
        tmp_path,
        f'[discovery]\nenabled = false\n[defaults]\nenv = {{ TEST_MARKER = "{marker}" }}\n'
        + job("regression", 3000)
        + job("classifier", 0.7),
    )
    r = cli(tmp_path, "run", "--no-progress", "--report", "r.html")
    assert r.returncode == 0, r.stderr
    page = browser.open(tmp_path / "r.html")
    try:
        assert_clean(page, tmp_path / "r.html")
        chart = page.locator("#compare svg.chart").first
        assert "log scale" in (chart.text_content() or "")
        assert chart.locator("path.series").count() == 2
    finally:
        page.close()


SWEEP_SCRIPT = """\
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float)
p.add_argument("--model")
p.add_argument("--seed", type=int)
a = p.parse_args()
acc = 0.9 - abs(a.lr - 0.1) + a.seed * 0.01 + (0.02 if a.model == "mlp" else 0)
print(json.dumps({"epoch": 1, "loss": 1 - acc}))
print(json.dumps({"accuracy": round(acc, 4), "loss": round(1 - acc, 4)}))
"""


def test_report_of_a_sweep_has_a_leaderboard_and_a_plot_per_swept_parameter(
    tmp_path: Path, marker: str, browser: Browser
) -> None:
    (tmp_path / "train.py").write_text(SWEEP_SCRIPT)
    write_config(
        tmp_path,
        f'[supervisor]\nmax_workers = 3\nparallel = true\n[discovery]\nenabled = false\n[defaults]\nenv = {{ TEST_MARKER = "{marker}" }}\n'
        '[jobs.t]\nscript = "train.py"\nmatrix = { lr = [0.1, 0.3, 0.5], model = ["mlp", "sgd"] }\nseeds = [0, 1]\n',
    )
    r = cli(tmp_path, "run", "--no-progress", "--report", "r.html", timeout=120)
    assert r.returncode == 0, r.stderr
    html = tmp_path / "r.html"
    board = page_data(html)["leaderboard"]
    assert board["sort"] == "accuracy:desc" and board["swept"] == {"lr": [0.1, 0.3, 0.5], "model": ["mlp", "sgd"]}
    assert [(row["rank"], row["label"], row["n"]) for row in board["rows"][:2]] == [
        (1, "t[lr=0.1,model=mlp]", 2),
        (2, "t[lr=0.1,model=sgd]", 2),
    ]
    page = browser.open(html)
    try:
        assert_clean(page, html)
        assert page.locator("nav a[href='#leaderboard']").count() == 1
        rows = page.eval_on_selector_all("#lbtable tbody tr", "trs => trs.map(tr => tr.innerText.split('\\t'))")
        assert len(rows) == 6
        assert rows[0][:4] == ["1", "t[lr=0.1,model=mlp]", "2", "0.925 ± 0.007071"]
        plots = page.eval_on_selector_all("#leaderboard .lbplot", "ds => ds.map(d => d.dataset.param)")
        assert plots == ["lr", "model"]
        lr = page.locator("#leaderboard .lbplot[data-param='lr']")
        assert lr.locator("text.title").text_content() == "accuracy by lr"
        assert lr.locator("circle").count() == 6  # 3 values of lr for each of 2 models, a line per model
        assert lr.locator("path.series").count() == 2
        assert "t lr=0.1" in page.locator("#leaderboard .lbplot[data-param='model'] .legend").inner_text()
        lr.locator("g.pt").first.hover()
        assert "accuracy: 0.925 ± 0.007071 (n=2)" in page.inner_text("#tip")
        assert page.errors == []
    finally:
        page.close()
    page = browser.open(html, width=390)  # on a phone: the plots fit, the page does not scroll sideways
    try:
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
        for plot in page.locator("#leaderboard svg.sweep").all():
            assert plot.bounding_box()["width"] <= page.locator("#leaderboard").bounding_box()["width"]
    finally:
        page.close()
