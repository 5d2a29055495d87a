"""Supervision-overhead benchmark (SPEC §11): a Python job printing 1,000,000 lines.

The job is `python -c "for i in range(1000000): print(i)"` (the interpreter running this bench).
What is measured — whole-process wall time, `perf_counter()` from spawn to reaping (`timed_run`), of:

1. supervised: `python -m aimedres_async --config CFG run --no-progress`, the whole supervisor
   process (its start-up, the job, and writing every line as a `job.output` record into
   `logs/<run>/jobs/py.jsonl`), on a throw-away config in a temp dir whose only job is
   `[jobs.py] command = [python, "-c", "for i in range(N): print(i)"]`, discovery off. After each run
   the supervisor must have exited 0 and the job log must hold exactly N `"event":"job.output"`
   records (counted in binary chunks, not parsed).
2. direct: the same command, `subprocess.run(cmd, stdout=f)` with f a file in the same temp dir (the
   job's "own time with output redirected to a file"). Its line count is checked too.
3. floor: `python -c "import asyncio"`, the interpreter's start plus the asyncio import, which any
   asyncio supervisor written in Python pays before it can spawn anything (INFO only).

Both get the same environment except that PYTHONUNBUFFERED is removed, so the job's stdout is
block-buffered in both cases (a pipe and a file are both not a terminal); `--unbuffered` sets
PYTHONUNBUFFERED=1 for both instead (one write per line, as training configs often ask for). The
table also shows the job's own duration as the supervisor measured it (`duration_s` in
summary.json, spawn to exit) — the supervised/direct gap splits into the supervisor's start-up and
finish (whole process minus job) and the job running slower under capture (job vs direct).

Two verdicts are printed against the 1.15x target: the job's own time under supervision (what SPEC
§11 words as "the job takes <= 1.15x its own time") and, stricter, the whole supervisor process.
The floor shows how much of the second is the interpreter itself.

Each tool runs once as a warm-up, then `--runs` times, interleaved; outputs are deleted and dirty
pages flushed (`sync`) between runs, outside the timing. The target is supervised/direct <= 1.15x
(median over median): PASS or MISS (INVALID if a run failed verification); the exit status is 0
either way. Figures are noisy on a shared or small machine; compare ratios within one invocation.

Run from the repository root with the project's interpreter, e.g.

    python bench/overhead.py                 # 1,000,000 lines, 5 runs
    python bench/overhead.py --runs 3 --lines 200000
    python bench/overhead.py --json          # last stdout line: the results as JSON

`--keep` keeps the temp dir (with the last run's outputs); `--tmpdir DIR` chooses where it is made.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Series,
    Timing,
    check_supervisor_importable,
    count_lines,
    count_occurrences,
    format_table,
    git_commit,
    latest_job_log,
    machine_info,
    remove,
    run_interleaved,
    settle,
    supervisor_cmd,
    supervisor_env,
    timed_run,
    write_config,
)
from _helpers import Figure, check_counts, fmt_ratio, read_summary, verdict

TARGET_RATIO = 1.15  # SPEC §11: supervised <= 1.15x the job with output redirected to a file
JOB = "py"
OUTPUT_NEEDLE = b'"event":"job.output"'
SUP, DIRECT = "supervised (aimedres-async run)", "direct (stdout > file)"
FLOOR = "floor: python -c 'import asyncio'"


class Bench:
    def __init__(self, tmp: Path, lines: int, timeout: float, unbuffered: bool) -> None:
        self.tmp = tmp
        self.lines = lines
        self.timeout = timeout
        self.env = supervisor_env(tmp)
        self.env.pop("PYTHONUNBUFFERED", None)
        if unbuffered:
            self.env["PYTHONUNBUFFERED"] = "1"
        self.job_cmd = [sys.executable, "-c", f"for i in range({lines}): print(i)"]
        self.config = write_config(tmp / "aimedres.toml", {JOB: self.job_cmd})
        self.logs = tmp / "logs"
        self.job_durations: list[float] = []

    def _check_exit(self, tool: str, t: Timing, log: Path | None) -> list[str]:
        if t.timed_out:
            return [f"{tool}: killed after the {self.timeout:g}s timeout"]
        if t.returncode != 0:
            tail = log.read_bytes()[-800:].decode("utf-8", "replace").strip() if log and log.exists() else ""
            return [f"{tool}: exit status {t.returncode}" + (f"; output ends:\n{tail}" if tail else "")]
        return []

    def run_supervised(self, warmup: bool = False) -> tuple[Timing, list[str]]:
        for name in ("logs", "results", "supervisor.out"):
            remove(self.tmp / name)
        settle()
        with open(self.tmp / "supervisor.out", "wb") as out:
            t = timed_run(
                supervisor_cmd(self.config, "run", "--no-progress"),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
                env=self.env,
                timeout=self.timeout,
            )
        problems = self._check_exit("supervised", t, self.tmp / "supervisor.out")
        path = latest_job_log(self.logs, JOB)
        if path is None:
            problems.append(f"supervised: no {self.logs}/latest/jobs/{JOB}.jsonl was written")
        else:
            n = count_occurrences(path, OUTPUT_NEEDLE)
            if n != self.lines:
                problems.append(f"supervised: {path.name} holds {n:,} job.output records, expected {self.lines:,}")
        summary = read_summary(self.logs)
        problems += check_counts(summary, {"succeeded": 1}, "supervised")
        if not warmup and summary and summary.get("jobs"):
            self.job_durations.append(float(summary["jobs"][0].get("duration_s") or 0.0))
        return t, problems

    def run_direct(self, warmup: bool = False) -> tuple[Timing, list[str]]:
        out_path = self.tmp / "direct.out"
        remove(out_path)
        settle()
        with open(out_path, "wb") as out:
            t = timed_run(
                self.job_cmd, stdout=out, stderr=subprocess.DEVNULL, cwd=self.tmp, env=self.env, timeout=self.timeout
            )
        problems = self._check_exit("direct", t, None)
        n = count_lines(out_path)
        if n != self.lines:
            problems.append(f"direct: wrote {n:,} lines, expected {self.lines:,}")
        return t, problems

    def run_floor(self, warmup: bool = False) -> tuple[Timing, list[str]]:
        """What any asyncio supervisor written in Python pays before it can spawn anything."""
        settle()
        t = timed_run(
            [sys.executable, "-c", "import asyncio"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.tmp,
            env=self.env,
            timeout=self.timeout,
        )
        return t, self._check_exit("floor", t, None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--lines", type=int, default=1_000_000, metavar="N", help="lines the job prints (default 1,000,000)"
    )
    ap.add_argument("--runs", type=int, default=5, metavar="N", help="timed runs per tool after a warm-up (default 5)")
    ap.add_argument("--unbuffered", action="store_true", help="run the job with PYTHONUNBUFFERED=1 (both ways)")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object (last line)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir and the last run's outputs")
    ap.add_argument("--tmpdir", metavar="DIR", help="make the temp dir here (default: $TMPDIR or /tmp)")
    ap.add_argument("--timeout", type=float, default=600, metavar="S", help="per-run timeout in seconds (default 600)")
    a = ap.parse_args(argv)
    if a.lines < 1 or a.runs < 1:
        ap.error("--lines and --runs must be >= 1")

    version = check_supervisor_importable(supervisor_env())
    if version is None:
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="aimedres-bench-overhead-", dir=a.tmpdir))
    bench = Bench(tmp, a.lines, a.timeout, a.unbuffered)
    tools: list[tuple[str, Callable[..., tuple[Timing, list[str]]]]] = [
        (SUP, bench.run_supervised),
        (DIRECT, bench.run_direct),
        (FLOOR, bench.run_floor),
    ]
    series = {name: Series(name) for name, _ in tools}
    mode = "PYTHONUNBUFFERED=1" if a.unbuffered else "block-buffered stdout"
    print(
        f"overhead: python printing {a.lines:,} lines ({mode}), {a.runs} runs + 1 warm-up per tool, temp dir {tmp}",
        flush=True,
    )
    try:
        run_interleaved(tools, series, a.runs)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- report ----------------------------------------------------------------------------------
    rows = []
    for name, _ in tools:
        d = series[name].summary(a.lines)
        rate = "-" if name == FLOOR else f"{d['lines_per_s'] / 1e6:.2f} M"  # the floor prints nothing
        rows.append(
            [name, f"{d['median_s']:.3f}", f"{d['min_s']:.3f}", f"{d['max_s']:.3f}", rate, f"{d['cpu_median_s']:.2f}"]
        )
    job_median = statistics.median(bench.job_durations) if bench.job_durations else None
    if job_median is not None:
        rows.append(
            [
                "  the job alone, under supervision",
                f"{job_median:.3f}",
                f"{min(bench.job_durations):.3f}",
                f"{max(bench.job_durations):.3f}",
                f"{a.lines / job_median / 1e6:.2f} M",
                "",
            ]
        )
    print()
    print(
        format_table(
            ["", "median s", "min s", "max s", "lines/s", "cpu s"], rows, [False, True, True, True, True, True]
        )
    )
    sup, direct, floor = series[SUP].median, series[DIRECT].median, series[FLOOR].median
    ratio = sup / direct
    all_problems = [p for s in series.values() for p in s.problems]
    v = verdict(ratio, TARGET_RATIO, all_problems)
    job_ratio = job_median / direct if job_median is not None else None
    job_v = verdict(job_ratio, TARGET_RATIO, all_problems)
    print()
    if job_median is not None:
        print(f"supervisor start-up + finish (whole process - job, medians): {sup - job_median:.3f} s")
    print(
        f"interpreter + asyncio import alone (the floor), / direct:    {fmt_ratio(floor / direct)} "
        f"(an asyncio supervisor that did nothing else would take {fmt_ratio((floor + direct) / direct)})"
    )
    print(
        f"the job under supervision / direct:                         {fmt_ratio(job_ratio)}  "
        f"(SPEC §11 target <= {TARGET_RATIO}x): {job_v}"
    )
    print(
        f"supervised / direct (whole process):                         {fmt_ratio(ratio)}  "
        f"(SPEC §11 target <= {TARGET_RATIO}x): {v}"
    )
    if all_problems:
        print("\nPROBLEMS:")
        for p in all_problems:
            print(f"  - {p}")
    if a.keep:
        print(f"\nkept {tmp}")

    if a.json:
        what = f"overhead: python printing {a.lines:,} lines" + (" (unbuffered)" if a.unbuffered else "")
        fig = Figure(
            f"{what}, whole process",
            f"{sup:.2f} s",
            f"stdout > file: {direct:.2f} s",
            ratio,
            f"<= {TARGET_RATIO}x",
            v,
            sup,
            direct,
            "s",
        )
        job_fig = Figure(
            f"{what}, the job alone",
            f"{job_median or 0:.2f} s",
            f"stdout > file: {direct:.2f} s",
            job_ratio,
            f"<= {TARGET_RATIO}x",
            job_v,
            job_median,
            direct,
            "s",
        )
        floor_fig = Figure(
            "  floor: python -c 'import asyncio'",
            f"{floor:.3f} s",
            f"stdout > file: {direct:.2f} s",
            floor / direct,
            "-",
            "INFO",
            floor,
            direct,
            "s",
        )
        result = {
            "bench": "overhead",
            "lines": a.lines,
            "runs": a.runs,
            "unbuffered": a.unbuffered,
            "target": {"ratio_max": TARGET_RATIO, "vs": "the job with stdout redirected to a file"},
            "ratio": ratio,
            "job_under_supervision_s": job_median,
            "job_durations_s": bench.job_durations,
            "figures": [job_fig.as_dict(), fig.as_dict(), floor_fig.as_dict()],
            "results": {name: series[name].summary(a.lines) for name, _ in tools},
            "problems": all_problems,
            "versions": {"aimedres_async": version, "git": git_commit()},
            "machine": machine_info(),
        }
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
