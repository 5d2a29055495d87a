"""Makespan benchmark: 12 jobs of `sleep 1` with 4 workers, against the ideal 3 s.

SPEC §11 sets no figure for this; it checks SPEC §6 ("a slot never idles while a job that fits is
waiting") and shows what the supervisor adds to a short batch. What is measured:

1. aimedres-async: `python -m aimedres_async --config CFG run --log-format json` (stdout and stderr
   to /dev/null) on a throw-away config (temp dir) with `[supervisor] parallel = true,
   max_workers = 4`, discovery off, and 12 tables `[jobs.jN] command = ["sleep", "1"]`:
   - whole-process wall time (`perf_counter()` from spawn to reaping (`timed_run`)), start-up included;
   - in-log makespan: first `job.started` to last `job.exited` in logs/latest/events.jsonl (the `ts`
     fields, SPEC §7): the scheduling alone, without the interpreter's start-up and the finish;
   - slot idle gap: with 4 slots, the k-th job.started (k > 4) is matched with the (k-4)-th
     job.exited in time order (the exit that freed its slot); the table shows the largest and the
     median gap (how long a free slot waited while a job was queued).
   Verification: exit status 0 and summary.json counts {"succeeded": 12}.
2. reference: `sh -c 'seq 12 | xargs -P 4 -I{} sleep 1'` (exit status 0).
3. the ideal: ceil(12 / 4) x 1 s = 3 s.

One warm-up each, then `--runs` times, interleaved, `sync` before each run (outside the timing). The
table shows medians and ratios to the ideal and to xargs. There is no SPEC target, so the verdict is
INFO (INVALID if a run failed verification); the exit status is 0 either way. The figures are noisy on
a shared machine; `sleep 1` itself is exact, so the overheads are what varies.

Run from the repository root with the project's interpreter, e.g.

    python bench/makespan.py                    # 12 x sleep 1, 4 workers, 5 runs
    python bench/makespan.py --runs 3 --jobs 8 --workers 2
    python bench/makespan.py --json             # last stdout line: the results as JSON

`--keep` keeps the temp dir (config and the last run's logs); `--tmpdir DIR` chooses where it is made.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Series,
    check_supervisor_importable,
    format_table,
    git_commit,
    machine_info,
    remove,
    settle,
    supervisor_cmd,
    supervisor_env,
    timed_run,
    tool_version,
)
from _helpers import Figure, check_counts, fmt_ratio, read_events, read_summary, ts_seconds, write_jobs_config

AIM, XARGS = "aimedres-async run", "seq | xargs -P"


def log_figures(logs: Path, workers: int) -> dict[str, Any]:
    """In-log makespan and slot idle gaps of the newest run (seconds)."""
    starts, exits = [], []
    for rec in read_events(logs):
        if rec.get("event") == "job.started":
            starts.append(ts_seconds(rec["ts"]))
        elif rec.get("event") == "job.exited":
            exits.append(ts_seconds(rec["ts"]))
    starts.sort()
    exits.sort()
    gaps = [starts[k] - exits[k - workers] for k in range(workers, len(starts)) if k - workers < len(exits)]
    return {
        "makespan_s": (exits[-1] - starts[0]) if starts and exits else None,
        "max_gap_s": max(gaps) if gaps else None,
        "median_gap_s": statistics.median(gaps) if gaps else None,
        "gaps_s": [round(g, 6) for g in gaps],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=12, metavar="N", help="jobs of `sleep S` (default 12)")
    ap.add_argument("--workers", type=int, default=4, metavar="N", help="max_workers / -P (default 4)")
    ap.add_argument("--sleep", type=float, default=1, metavar="S", help="each job is `sleep S` (default 1)")
    ap.add_argument("--runs", type=int, default=5, metavar="N", help="timed runs per tool after a warm-up (default 5)")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object (last line)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (config, last run's logs)")
    ap.add_argument("--tmpdir", metavar="DIR", help="make the temp dir here (default: $TMPDIR or /tmp)")
    ap.add_argument("--timeout", type=float, default=120, metavar="S", help="per-run timeout in seconds (default 120)")
    a = ap.parse_args(argv)
    if a.jobs < 1 or a.runs < 1 or a.workers < 1 or a.sleep <= 0:
        ap.error("--jobs, --workers, --runs and --sleep must be positive")

    version = check_supervisor_importable(supervisor_env())
    if version is None:
        return 2
    ideal = math.ceil(a.jobs / a.workers) * a.sleep
    tmp = Path(tempfile.mkdtemp(prefix="aimedres-bench-makespan-", dir=a.tmpdir))
    env = supervisor_env(tmp)
    sleep_arg = f"{a.sleep:g}"
    config = write_jobs_config(tmp / "aimedres.toml", a.jobs, ["sleep", sleep_arg], a.workers)
    series = {AIM: Series(AIM), XARGS: Series(XARGS)}
    logged: list[dict[str, Any]] = []

    def run_aimedres() -> list[str]:
        for name in ("logs", "results"):
            remove(tmp / name)
        settle()
        t = timed_run(supervisor_cmd(config, "run", "--log-format", "json"), cwd=tmp, env=env, timeout=a.timeout)
        problems = []
        if t.timed_out:
            problems.append(f"aimedres: killed after the {a.timeout:g}s timeout")
        elif t.returncode != 0:
            problems.append(f"aimedres: exit status {t.returncode}")
        problems += check_counts(read_summary(tmp / "logs"), {"succeeded": a.jobs})
        series[AIM].add(t)
        logged.append(log_figures(tmp / "logs", a.workers))
        return problems

    def run_xargs() -> list[str]:
        settle()
        t = timed_run(
            ["sh", "-c", f"seq {a.jobs} | xargs -P {a.workers} -I{{}} sleep {sleep_arg}"],
            cwd=tmp,
            env=env,
            timeout=a.timeout,
        )
        series[XARGS].add(t)
        if t.timed_out:
            return [f"xargs: killed after the {a.timeout:g}s timeout"]
        return [f"xargs: exit status {t.returncode}"] if t.returncode != 0 else []

    print(
        f"makespan: {a.jobs} x sleep {sleep_arg}, {a.workers} workers (ideal {ideal:g} s), {a.runs} runs + 1 "
        f"warm-up per tool, temp dir {tmp}",
        flush=True,
    )
    problems: list[str] = []
    try:
        for name, fn in ((AIM, run_aimedres), (XARGS, run_xargs)):
            p = fn()
            problems += [f"warm-up: {x}" for x in p]
            print(f"  warm-up {name}: {series[name].walls[-1]:.2f}s" + (" (PROBLEM)" if p else ""), flush=True)
            series[name].walls.pop()
            series[name].cpus.pop()
        logged.clear()
        for i in range(a.runs):
            for name, fn in ((AIM, run_aimedres), (XARGS, run_xargs)):
                p = fn()
                problems += [f"run {i + 1}: {x}" for x in p]
                print(
                    f"  run {i + 1}/{a.runs} {name}: {series[name].walls[-1]:.2f}s" + (" (PROBLEM)" if p else ""),
                    flush=True,
                )
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- report ----------------------------------------------------------------------------------
    def med(key: str) -> float | None:
        vals = [d[key] for d in logged if d.get(key) is not None]
        return statistics.median(vals) if vals else None

    aim, xargs = series[AIM].median, series[XARGS].median
    log_span, max_gap, med_gap = med("makespan_s"), med("max_gap_s"), med("median_gap_s")
    rows = [
        [
            f"{AIM}, whole process",
            f"{aim:.3f}",
            f"{min(series[AIM].walls):.3f}",
            f"{max(series[AIM].walls):.3f}",
            fmt_ratio(aim / ideal),
        ],
        [
            "  first job.started -> last job.exited (in-log)",
            "-" if log_span is None else f"{log_span:.3f}",
            "-" if log_span is None else f"{min(d['makespan_s'] for d in logged if d['makespan_s'] is not None):.3f}",
            "-" if log_span is None else f"{max(d['makespan_s'] for d in logged if d['makespan_s'] is not None):.3f}",
            fmt_ratio(None if log_span is None else log_span / ideal),
        ],
        [
            f"seq | xargs -P {a.workers} -I{{}} sleep {sleep_arg}",
            f"{xargs:.3f}",
            f"{min(series[XARGS].walls):.3f}",
            f"{max(series[XARGS].walls):.3f}",
            fmt_ratio(xargs / ideal),
        ],
        ["ideal: ceil(jobs / workers) x sleep", f"{ideal:.3f}", "", "", "1.00x"],
    ]
    print()
    print(format_table(["", "median s", "min s", "max s", "/ ideal"], rows, [False, True, True, True, True]))
    print()
    if max_gap is not None and med_gap is not None:
        print(
            f"slot idle gap (job.exited -> next job.started), medians over runs: largest {max_gap * 1000:.1f} ms, "
            f"typical {med_gap * 1000:.1f} ms"
        )
    print(
        f"aimedres-async / ideal: {fmt_ratio(aim / ideal)} whole process, "
        f"{fmt_ratio(None if log_span is None else log_span / ideal)} in-log; aimedres-async / xargs: "
        f"{fmt_ratio(aim / xargs)}  (no SPEC §11 target: INFO)"
    )
    v = "INVALID" if problems else "INFO"
    if problems:
        print("\nPROBLEMS:")
        for x in problems:
            print(f"  - {x}")
    if a.keep:
        print(f"\nkept {tmp}")

    if a.json:
        figs = [
            Figure(
                f"makespan {a.jobs} x sleep {sleep_arg}, {a.workers} workers",
                f"{aim:.2f} s",
                f"ideal {ideal:g} s; xargs {xargs:.2f} s",
                aim / ideal,
                "none (ratio to ideal)",
                v,
                aim,
                ideal,
                "s",
            ),
            Figure(
                "  in-log (first start -> last exit)",
                "-" if log_span is None else f"{log_span:.2f} s",
                f"ideal {ideal:g} s",
                None if log_span is None else log_span / ideal,
                "none",
                v,
                log_span,
                ideal,
                "s",
            ),
        ]
        result = {
            "bench": "makespan",
            "jobs": a.jobs,
            "workers": a.workers,
            "sleep_s": a.sleep,
            "runs": a.runs,
            "ideal_s": ideal,
            "ratio_vs_ideal": aim / ideal,
            "ratio_in_log_vs_ideal": None if log_span is None else log_span / ideal,
            "ratio_vs_xargs": aim / xargs,
            "max_slot_gap_s": max_gap,
            "median_slot_gap_s": med_gap,
            "figures": [f.as_dict() for f in figs],
            "results": {name: s.summary() for name, s in series.items()},
            "in_log": logged,
            "problems": problems,
            "versions": {"aimedres_async": version, "git": git_commit(), "xargs": tool_version(["xargs", "--version"])},
            "machine": machine_info(),
        }
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
