"""HTML report benchmark (issue #17): a run of 1,000 jobs x 50 epochs must render in headless Chromium
in under 2 s, in a file under 5 MB; and the README screenshot of the bundled examples' report.

`scale` writes a synthetic run folder shaped like a real one (events.jsonl with every lifecycle event
and one `job.sample` per running job per second, jobs/<id>.jsonl with one JSON record per epoch,
summary.json): JOBS jobs on 8 workers, each 1-10 minutes long, some retried after a failure, a few
timed out or killed for memory. It then times `aimedres-async report` on it (whole process), and
opens the page in headless Chromium (Playwright driving Debian's /usr/bin/chromium) RUNS times:

- ready: from navigation start to the page's `data-ready` mark (everything above the fold and the
  timeline, table, bar charts, compared curves and memory charts drawn), read from the page's own
  `performance.now()`; the median of RUNS;
- all curves: the extra time to draw every job's per-job charts at once (they are drawn as they
  scroll into view; this forces all of them, with a layout);
- requests: every request the page made other than the file itself (must be 0).

With `--plotly` (needs `pip install plotly`), the same figures are drawn with Plotly's bundled
plotly.js for comparison: the timeline, concurrency, compared curves, the first 12 jobs' curves,
bar charts and memory charts (not all 3,000 per-job charts, which no page would draw at once).

    python bench/report.py scale                      # 1,000 jobs x 50 epochs, 3 runs (also: no subcommand)
    python bench/report.py scale --jobs 100 --plotly
    python bench/report.py screenshot                 # docs/img/report.png from the bundled examples

`screenshot` runs `python -m aimedres_async run --report` on the bundled examples (the repository's
aimedres.toml, in a temporary copy) and saves a 1280-px-wide screenshot of the report's top part.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _ts(t: float) -> str:
    sec = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{int((t - sec) * 1e6):06d}Z"


def make_run(
    folder: Path, jobs: int = 1000, epochs: int = 50, workers: int = 8, seed: int = 0, schema: int = 2
) -> Path:
    """A synthetic finished run folder under folder/logs/; returns its path. With schema=1 the
    jobs' `job.output` records name their run and job, as log schema 1 wrote them."""
    rnd = random.Random(seed)
    run = "20260101T000000Z-beef"
    d = folder / "logs" / run
    (d / "jobs").mkdir(parents=True, exist_ok=True)
    (folder / "logs" / "latest").unlink(missing_ok=True)
    (folder / "logs" / "latest").symlink_to(run)
    events: list[tuple[float, int, dict[str, Any]]] = []  # (t, seq, record)
    seq = 0

    def ev(t: float, event: str, **fields: Any) -> dict[str, Any]:
        nonlocal seq
        rec = {"ts": _ts(t), "event": event, "run": run, **fields}
        seq += 1
        events.append((t, seq, rec))
        return rec

    ids = [f"model-{i:04d}" for i in range(jobs)]
    ev(
        T0,
        "run.started",
        started_at=_ts(T0),
        config=str(folder / "aimedres.toml"),
        config_sha256="ab" * 32,
        git={"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": True, "diff_sha256": "cd" * 32},
        host="bench",
        python="3.11.7",
        platform="Linux",
        max_workers=workers,
        logs_dir=str(d),
        job_ids=ids,
    )
    free = [T0 + 0.05] * workers  # when each worker is free next
    queue: list[tuple[float, str, int]] = [(T0 + 0.01, j, 1) for j in ids]
    summary_jobs = []
    per_job: dict[str, list[dict[str, Any]]] = {j: [] for j in ids}
    counts: dict[str, int] = {}
    for j in ids:
        ev(T0 + 0.01, "job.queued", job=j)
        per_job[j].append(events[-1][2])
    last_end = T0
    qi = 0
    while qi < len(queue):
        ready, job, attempt = queue[qi]
        qi += 1
        w = min(range(workers), key=lambda i: free[i])
        start = max(free[w], ready)
        dur = rnd.uniform(60, 600)
        fate = rnd.random()
        outcome, failure, code = "succeeded", None, 0
        if attempt == 1 and fate < 0.06:
            outcome, failure, code, dur = "failed", "exit_code", 1, dur * rnd.uniform(0.05, 0.5)
        elif fate < 0.075:
            outcome, failure, code, dur = "failed", "oom_killed", None, dur * rnd.uniform(0.3, 0.9)
        elif fate < 0.085:
            outcome, failure, code = "timed_out", "timeout", None
        end = start + dur
        free[w] = end
        last_end = max(last_end, end)
        out = per_job[job]
        ids = {"run": run, "job": job} if schema == 1 else {}  # schema 2 leaves them to the path
        argv = ["python", "train.py", "--model", job, "--epochs", str(epochs)]
        started = ev(
            start,
            "job.started",
            job=job,
            attempt=attempt,
            pid=10000 + qi,
            cwd=str(folder),
            gpus=None,
            argv=argv,
            script_sha256="ef" * 32,
        )
        out.append(started)
        base = rnd.uniform(300, 3000) * 2**20
        s = start + 1.0
        while s < end:
            rss = int(base * min(1.0, 0.3 + (s - start) / 60))
            out.append(ev(s, "job.sample", job=job, attempt=attempt, rss_bytes=rss))
            s += 1.0
        done = epochs if outcome == "succeeded" else max(1, int(epochs * rnd.random()))
        skill, speed = rnd.uniform(0.7, 0.95), rnd.uniform(4, 15)
        for e in range(1, done + 1):
            te = start + dur * e / (epochs + 1)
            loss = 2.0 * math.exp(-e / speed) + rnd.uniform(0.0, 0.05)
            data = {
                "epoch": e,
                "loss": loss,
                "val_loss": loss * rnd.uniform(1.0, 1.2),
                "val_acc": skill - (skill - 0.1) * math.exp(-e / speed) + rnd.uniform(-0.01, 0.01),
            }
            out.append(
                {
                    "ts": _ts(te),
                    "event": "job.output",
                    **ids,
                    "attempt": attempt,
                    "stream": "stdout",
                    "data": data,
                }
            )
        if outcome != "succeeded":
            for line in ("Traceback (most recent call last):", "RuntimeError: synthetic failure"):
                out.append(
                    {
                        "ts": _ts(end),
                        "event": "job.output",
                        **ids,
                        "attempt": attempt,
                        "stream": "stderr",
                        "line": line,
                    }
                )
        final = {"model": job, "accuracy": round(skill, 4), "loss": round(loss, 4), "epochs": epochs}
        if outcome == "succeeded":
            out.append(
                {
                    "ts": _ts(end),
                    "event": "job.output",
                    **ids,
                    "attempt": attempt,
                    "stream": "stdout",
                    "data": final,
                }
            )
        exited: dict[str, Any] = {"outcome": outcome, "duration_s": round(dur, 3), "peak_rss_bytes": int(base)}
        if code is not None:
            exited["exit_code"] = code
        else:
            exited["signal"] = "SIGKILL"
        if failure:
            exited["failure"] = failure
        out.append(ev(end, "job.exited", job=job, attempt=attempt, **exited))
        if outcome != "succeeded" and attempt == 1:
            delay = rnd.uniform(2, 30)
            out.append(ev(end, "job.retrying", job=job, attempt=attempt, delay_s=round(delay, 3), next_attempt=2))
            queue.append((end + delay, job, 2))
            continue
        status = outcome
        counts[status] = counts.get(status, 0) + 1
        metrics = final if outcome == "succeeded" else None
        out.append(ev(end, "job.finished", job=job, status=status, attempts=attempt, metrics=metrics))
        summary_jobs.append(
            {
                "id": job,
                "status": status,
                "optional": False,
                "attempts": attempt,
                "exit_code": code,
                "duration_s": round(dur, 3),
                "peak_rss_bytes": int(base),
                "command": ["python", "train.py", "--model", job],
                "metrics": metrics,
            }
        )
    end_t = last_end + 0.01
    ev(end_t, "run.finished", counts=counts, duration_s=round(end_t - T0, 3), exit_code=1, stopped_by=None)
    events.sort(key=lambda e: (e[0], e[1]))
    with open(d / "events.jsonl", "w") as f:
        for _t, _s, rec in events:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
    for job, recs in per_job.items():
        recs.sort(key=lambda r: r["ts"])
        with open(d / "jobs" / f"{job}.jsonl", "w") as f:
            for rec in recs:
                f.write(json.dumps(rec, separators=(",", ":")) + "\n")
    summary = {
        "run": run,
        "started_at": _ts(T0),
        "finished_at": _ts(end_t),
        "duration_s": round(end_t - T0, 3),
        "exit_code": 1,
        "counts": counts,
        "max_workers": workers,
        "jobs": summary_jobs,
    }
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def launch() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("bench/report.py: needs Playwright for Python (pip install playwright)")
    if not os.path.exists(CHROMIUM):
        sys.exit(f"bench/report.py: needs Chromium at {CHROMIUM} (apt-get install chromium)")
    pw = sync_playwright().start()
    return pw, pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def measure_page(browser: Any, html: Path, ready: str = "body[data-ready]") -> dict[str, Any]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    t = time.perf_counter()
    page.goto(html.as_uri(), timeout=120_000)
    page.wait_for_selector(ready, state="attached", timeout=120_000)
    wall = time.perf_counter() - t
    ready_ms = page.evaluate("window.aimedresReadyMs || performance.now()")
    extra = page.evaluate(
        "() => { if (!window.aimedresDrawAllCurves) return null; const t = performance.now();"
        " window.aimedresDrawAllCurves(); document.body.offsetHeight; return performance.now() - t; }"
    )
    page.close()
    return {
        "ready_ms": ready_ms,
        "wall_s": wall,
        "all_curves_ms": extra,
        "errors": errors,
        "requests": [r for r in requests if r != html.as_uri()],
    }


def plotly_page(data: dict[str, Any], out: Path) -> None:
    """The report's main figures drawn with Plotly (for the comparison only)."""
    import plotly.offline

    js = plotly.offline.get_plotlyjs()
    payload = json.dumps(data).replace("<", "\\u003c")
    script = r"""
const D = JSON.parse(document.getElementById('data').textContent);
function div() { const d = document.createElement('div'); document.body.appendChild(d); return d; }
const J = D.jobs, xs = [], ys = [], base = [], col = [];
const C = {succeeded:'#2f9e62', failed:'#d94848', timed_out:'#e8912d', oom:'#8b4fc7', cancelled:'#9aa3ae'};
J.forEach(j => j.att.forEach(a => { ys.push(j.id); base.push(a.s); xs.push(a.e - a.s); col.push(C[a.k] || '#888'); }));
Plotly.newPlot(div(), [{type:'bar', orientation:'h', y:ys, x:xs, base:base, marker:{color:col}}],
  {height: Math.max(300, J.length * 6), yaxis:{autorange:'reversed'}, margin:{l:120}});
const ev = []; J.forEach(j => j.att.forEach(a => { ev.push([a.s, 1]); ev.push([a.e, -1]); }));
ev.sort((a, b) => a[0] - b[0]); let c = 0; const cx = [], cy = [];
ev.forEach(e => { c += e[1]; cx.push(e[0]); cy.push(c); });
Plotly.newPlot(div(), [{x:cx, y:cy, line:{shape:'hv'}, fill:'tozeroy'}], {height:160});
const withC = J.filter(j => j.curves);
(withC[0] ? withC[0].curves.keys : []).forEach((k, ki) => {
  Plotly.newPlot(div(), withC.map(j => ({x: j.curves.series[0].x, y: j.curves.series[0].y[ki], name: j.id,
    mode:'lines', line:{width:1}})), {height:260, showlegend:false, title:k});
});
withC.slice(0, 12).forEach(j => j.curves.keys.forEach((k, ki) => Plotly.newPlot(div(),
  j.curves.series.map(s => ({x:s.x, y:s.y[ki], name:s.n})), {height:180, width:320, title:j.id + ' ' + k})));
['accuracy', 'loss'].forEach(k => { const f = J.filter(j => typeof j.final[k] === 'number');
  Plotly.newPlot(div(), [{type:'bar', x:f.map(j => j.id), y:f.map(j => j.final[k])}], {height:220, title:k}); });
Plotly.newPlot(div(), [{type:'bar', x:J.map(j => j.id), y:J.map(j => j.peak)}], {height:220});
Plotly.newPlot(div(), [{x:D.rss.map(p => p[0]), y:D.rss.map(p => p[1]), line:{shape:'hv'}}], {height:220});
window.aimedresReadyMs = performance.now(); document.body.setAttribute('data-ready', '1');
"""
    out.write_text(
        '<!doctype html><html><head><meta charset="utf-8"></head><body>'
        f'<script id="data" type="application/json">{payload}</script><script>{js}</script><script>{script}</script>'
        "</body></html>"
    )


def cmd_scale(a: argparse.Namespace) -> int:
    sys.path.insert(0, str(REPO_ROOT))
    from aimedres_async.report.chart_data import page_data
    from aimedres_async.report.run_model import load

    tmp = Path(a.tmpdir or tempfile.mkdtemp(prefix="report-bench-"))
    try:
        t = time.perf_counter()
        run = make_run(tmp, a.jobs, a.epochs)
        gen = time.perf_counter() - t
        events_mb = (run / "events.jsonl").stat().st_size / 1e6
        html = tmp / "report.html"
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        cmd = [sys.executable, "-m", "aimedres_async", "report", str(run), "-o", str(html)]
        builds = []
        for _ in range(a.runs):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            builds.append(time.perf_counter() - t)
        size = html.stat().st_size
        pw, browser = launch()
        try:
            measure_page(browser, html)  # warm-up
            pages = [measure_page(browser, html) for _ in range(a.runs)]
            plotly = None
            if a.plotly:
                try:
                    import plotly as _plotly  # noqa: F401
                except ImportError:
                    print("--plotly: plotly is not installed (pip install plotly); skipped")
                else:
                    m = load([run])
                    ppath = tmp / "plotly.html"
                    plotly_page(page_data(m, run.name), ppath)
                    measure_page(browser, ppath)
                    pl = [measure_page(browser, ppath) for _ in range(a.runs)]
                    plotly = {
                        "size": ppath.stat().st_size,
                        "ready_ms": statistics.median(p["ready_ms"] for p in pl),
                        "errors": pl[0]["errors"],
                    }
        finally:
            browser.close()
            pw.stop()
        ready = statistics.median(p["ready_ms"] for p in pages)
        allc = statistics.median(p["all_curves_ms"] or 0 for p in pages)
        print(
            f"synthetic run: {a.jobs} jobs x {a.epochs} epochs, events.jsonl {events_mb:.1f} MB "
            f"(generated in {gen:.1f} s)"
        )
        print(f"aimedres-async report (whole process): median {statistics.median(builds):.2f} s of {a.runs}")
        verdict_size = "PASS" if size < 5e6 else "MISS"
        verdict_time = "PASS" if ready < 2000 else "MISS"
        print(f"file size: {size / 1e6:.2f} MB  (target < 5 MB: {verdict_size})")
        print(
            f"render in headless Chromium, navigation start to ready: median {ready:.0f} ms of {a.runs} "
            f"(target < 2000 ms: {verdict_time}); drawing every per-job chart as well: +{allc:.0f} ms"
        )
        print(f"console errors: {len(pages[0]['errors'])}, network requests: {len(pages[0]['requests'])}")
        if plotly:
            print(
                f"Plotly (plotly.js inline) for the same main figures: {plotly['size'] / 1e6:.2f} MB, "
                f"ready in {plotly['ready_ms']:.0f} ms (errors: {len(plotly['errors'])})"
            )
        if a.json:  # one line for bench/all.py: its combined table's rows
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from _helpers import Figure

            rows = [
                Figure(
                    f"report: {a.jobs:,} jobs x {a.epochs} epochs, file size",
                    f"{size / 1e6:.2f} MB",
                    "-",
                    None,
                    "< 5 MB",
                    verdict_size,
                    size / 1e6,
                    None,
                    "MB",
                ),
                Figure(
                    "  ready in headless Chromium (median)",
                    f"{ready:.0f} ms",
                    f"Plotly: {plotly['ready_ms']:.0f} ms" if plotly else "-",
                    ready / plotly["ready_ms"] if plotly else None,
                    "< 2000 ms",
                    verdict_time,
                    ready,
                    plotly["ready_ms"] if plotly else None,
                    "ms",
                ),
                Figure(
                    "  aimedres-async report (whole process)",
                    f"{statistics.median(builds):.2f} s",
                    "-",
                    None,
                    "none",
                    "INFO",
                    statistics.median(builds),
                    None,
                    "s",
                ),
            ]
            out = {
                "bench": "report",
                "jobs": a.jobs,
                "epochs": a.epochs,
                "size_bytes": size,
                "ready_ms": ready,
                "all_curves_ms": allc,
                "build_s": statistics.median(builds),
                "plotly": plotly,
                "figures": [f.as_dict() for f in rows],
            }
            print(json.dumps(out))
    finally:
        if a.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def cmd_screenshot(a: argparse.Namespace) -> int:
    out = Path(a.output).resolve()
    with tempfile.TemporaryDirectory(prefix="report-shot-") as tmp:
        work = Path(tmp)
        shutil.copytree(REPO_ROOT / "examples", work / "examples")
        shutil.copy(REPO_ROOT / "aimedres.toml", work / "aimedres.toml")
        html = work / "report.html"
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        env.pop("GITHUB_STEP_SUMMARY", None)
        r = subprocess.run(
            [sys.executable, "-m", "aimedres_async", "run", "--no-progress", "--report", str(html)],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if not html.exists():
            sys.exit(f"bench/report.py: the run wrote no report (exit {r.returncode}): {r.stderr.strip()[-500:]}")
        pw, browser = launch()
        try:
            page = browser.new_page(viewport={"width": 1280, "height": a.height}, device_scale_factor=1)
            page.goto(html.as_uri())
            page.wait_for_selector("body[data-ready]", state="attached")
            page.screenshot(path=str(out), full_page=False)
        finally:
            browser.close()
            pw.stop()
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("scale", help="time the report of a synthetic big run")
    s.add_argument("--jobs", type=int, default=1000)
    s.add_argument("--epochs", type=int, default=50)
    s.add_argument("--runs", type=int, default=3)
    s.add_argument("--plotly", action="store_true", help="also draw the main figures with Plotly, for comparison")
    s.add_argument("--tmpdir", help="where to make the run folder (default: a new temporary folder)")
    s.add_argument("--keep", action="store_true", help="keep the run folder and report")
    s.add_argument("--json", action="store_true", help="also print one JSON object with the figures")
    sh = sub.add_parser("screenshot", help="the bundled examples' report as a PNG")
    sh.add_argument("-o", "--output", default=str(REPO_ROOT / "docs" / "img" / "report.png"))
    sh.add_argument("--height", type=int, default=1200, help="how much of the page's top to show (px)")
    argv = sys.argv[1:]
    if not argv or argv[0] not in ("scale", "screenshot", "-h", "--help"):
        argv = ["scale", *argv]  # bench/all.py runs every script as `NAME.py --json`
    a = p.parse_args(argv)
    return cmd_scale(a) if a.cmd == "scale" else cmd_screenshot(a)


if __name__ == "__main__":
    sys.exit(main())
