"""Scale benchmark (SPEC §11): 100,000 jobs of `/bin/true`, 8 workers, against the same at 8,000.

What runs, one after the other in one invocation, each `python -m aimedres_async --config CFG run
--log-format json` (stdout to /dev/null) on a throw-away config in a temp dir with `[supervisor]
parallel = true, max_workers = 8`, discovery off and N tables `[jobs.jI] command = ["/bin/true"]`:

1. a warm-up of 200 jobs (not counted);
2. 8,000 jobs (`--ref-jobs`; a quarter of `--jobs` below 16,000), then 100,000 (`--jobs`), then
   8,000 again: the per-job time at 8,000 is the mean of the runs before and after, so that a
   drift of the machine's load over the minutes of the big run falls on both sides;
3. 100,000 jobs (`--loop-jobs`; 0 skips it) under the event-loop timer, `bench/_slow_callbacks.py`:
   every loop step is timed as asyncio's debug mode does, less the time the thread waited for a CPU
   and the kernel's fork/exec (that file says why). Its limit is lowered to `--log-steps-over` (5 ms)
   so that the longest step shows even when none exceeds 20 ms. The timer reads /proc around every
   step, which slows the supervisor down (by about half in a try at 1,000 jobs), so this run is
   timed apart from the plain ones.

Each run is timed from spawn to reaping (wall and the CPU of the supervisor and what it reaped, from
`wait4`), and watched from a side thread of this process:

- memory: `wait4`'s `ru_maxrss` of the supervisor process, which on Linux is the larger of its own
  peak RSS and that of its largest reaped child (the jobs are `/bin/true`, about 1 MiB, so this is
  the supervisor's own); and VmHWM, its own peak, read from /proc every 50 ms (up to the last sample
  before it exits). The target applies to `ru_maxrss`: <= 150 MiB at 100,000 jobs;
- files replaced whole: every rename into the run's folder (and `logs/`), seen with inotify (ctypes;
  the time is when this process read the event). summary.json is written to a temp file and renamed,
  so each rename is one rewrite. Target: none more often than once a second, that is no interval
  under 1 s (less a 50 ms tolerance for reading the events late) between two renames of one file,
  except before its last one (the final summary at the end of the run follows the periodic writes at
  any distance);
- after each run, `logs/latest/summary.json` must list every job, `counts = {"succeeded": N}`, with
  the ids j0 … jN-1.

Targets (SPEC §11): per-job time at 100,000 <= 1.1x the per-job time at 8,000 (whole-process wall /
jobs); max RSS <= 150 MiB; no file rewritten more than once a second; no loop step over 20 ms. PASS,
MISS, or INVALID when a run failed a check. The exit status is 0 either way.

    python bench/scale.py                       # 100,000 and 8,000 jobs: ~10-15 minutes
    python bench/scale.py --jobs 3000           # a quick try: 750 jobs as the reference
    python bench/scale.py --python ~/venvs/aimedres-3.12/bin/python   # see bench/dispatch.py

The temp dir (configs and every run's logs) is deleted at the end unless `--keep`; `--tmpdir DIR`
chooses where it is made (100,000 jobs write ~100,000 files and a few hundred MB).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    check_supervisor_importable,
    format_table,
    git_commit,
    interpreter_version,
    machine_info,
    settle,
    supervisor_cmd,
    supervisor_env,
)
from _helpers import MIB, Figure, check_counts, fmt_ratio, read_summary, verdict, write_jobs_config
from _watch import RenameWatch, run_watched

TARGET_PER_JOB = 1.1  # SPEC §11: per-job time at 100,000 <= 1.1x the 8,000-job figure
TARGET_RSS = 150 * MIB  # SPEC §11: supervisor RSS <= 150 MiB
TARGET_STEP_S = 0.02  # SPEC §11: no event-loop callback longer than 20 ms
MIN_REWRITE_GAP_S = 1.0  # SPEC §11: no file rewritten in full more than once per second
GAP_TOLERANCE_S = 0.05  # the events are timed when this process reads them
WARMUP_JOBS = 200
REF_JOBS = 8000  # SPEC §11: the per-job time at 100,000 is compared with the 8,000-job figure
SLOW_CALLBACKS = Path(__file__).with_name("_slow_callbacks.py")
# Runs bench/_slow_callbacks.py with its limit lowered: argv = bench dir, limit (s), then its own.
TIMED = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); import _slow_callbacks as s; "
    "s.LIMIT = float(sys.argv.pop(1)); sys.exit(s.main())"
)
STEP_LINE = re.compile(r"Executing (.*) took (\d+\.\d+) seconds \(.*?\)(?:; now at +(.*))?$")


@dataclass
class Run:
    """One supervisor run and what was seen of it."""

    label: str
    jobs: int
    wall_s: float = float("nan")
    cpu_s: float = float("nan")
    maxrss: int | None = None  # wait4's ru_maxrss, bytes
    hwm: int | None = None  # VmHWM sampled from /proc, bytes
    renames: dict[str, list[float]] = field(default_factory=dict)  # file -> seconds after the spawn
    steps: list[tuple[float, str]] | None = None  # loop steps over the logging limit (s, what)
    problems: list[str] = field(default_factory=list)

    @property
    def per_job_ms(self) -> float:
        return self.wall_s / self.jobs * 1000


class Bench:
    def __init__(self, tmp: Path, workers: int, timeout: float, python: str, step_limit_s: float) -> None:
        self.tmp = tmp
        self.workers = workers
        self.timeout = timeout
        self.python = python
        self.step_limit_s = step_limit_s
        self.env = supervisor_env(tmp)

    def config(self, n: int) -> Path:
        """The config of n jobs, in a folder of its own (written once; later runs reuse it)."""
        path = self.tmp / f"n{n}" / "aimedres.toml"
        if not path.exists():
            path.parent.mkdir()
            write_jobs_config(path, n, ["/bin/true"], self.workers)
        return path

    def run(self, label: str, n: int, timed: bool = False) -> Run:
        config = self.config(n)
        logs = config.parent / "logs"
        logs.mkdir(exist_ok=True)
        args = ["--config", str(config), "run", "--log-format", "json"]
        step_log = config.parent / f"steps-{label.replace(' ', '-')}.log"
        if timed:
            cmd = [self.python, "-c", TIMED, str(SLOW_CALLBACKS.parent), str(self.step_limit_s), str(step_log)]
            cmd += ["plain", *args]
        else:
            cmd = supervisor_cmd(config, *args[2:], python=self.python)
        run = Run(label, n)
        err_path = config.parent / f"{label.replace(' ', '-')}.err"
        settle()
        with RenameWatch(logs) as watch, open(err_path, "wb") as err:
            reaped = run_watched(cmd, watch, stderr=err, cwd=config.parent, env=self.env, timeout=self.timeout)
        run.wall_s, run.cpu_s, run.maxrss, run.hwm = reaped.wall_s, reaped.cpu_s, reaped.maxrss, reaped.hwm
        run.renames = watch.renames
        run.problems += [f"{label}: {p}" for p in watch.problems]
        if reaped.timed_out:
            run.problems.append(f"{label}: killed after the {self.timeout:g}s timeout")
        elif reaped.returncode != 0:
            tail = err_path.read_bytes()[-800:].decode("utf-8", "replace")
            run.problems.append(f"{label}: exit status {reaped.returncode}; stderr ends:\n{tail.strip()}")
        run.problems += check_all_jobs(logs, n, label)
        if timed:
            run.steps = read_steps(step_log)
        return run


def check_all_jobs(logs: Path, n: int, label: str) -> list[str]:
    """Problems if the run's summary.json does not list exactly the jobs j0 … jN-1, all succeeded."""
    summary = read_summary(logs)
    problems = check_counts(summary, {"succeeded": n}, label)
    if summary is not None and not problems:
        ids = {e.get("id") for e in summary.get("jobs", []) if isinstance(e, dict)}
        if ids != {f"j{i}" for i in range(n)}:
            problems.append(f"{label}: summary.json's job ids are not j0 … j{n - 1}")
    return problems


def read_steps(log: Path) -> list[tuple[float, str]]:
    """The loop steps the timer logged: (seconds, what), longest first."""
    if not log.exists():
        return []
    steps = []
    for line in log.read_text(errors="replace").splitlines():
        if m := STEP_LINE.search(line):
            what = m[1] if len(m[1]) <= 100 else m[1][:97] + "..."
            steps.append((float(m[2]), what + (f"; at {m[3]}" if m[3] else "")))
    return sorted(steps, reverse=True)


def rewrite_gaps(times: list[float]) -> list[float]:
    """The intervals between consecutive rewrites of one file, the one before its last excepted."""
    return [b - a for a, b in itertools.pairwise(times[:-1])]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=100_000, metavar="N", help="the big run (default 100,000)")
    ap.add_argument(
        "--ref-jobs", type=int, metavar="N", help="the reference run (default 8,000; a quarter of --jobs below 16,000)"
    )
    ap.add_argument("--workers", type=int, default=8, metavar="N", help="max_workers (default 8)")
    ap.add_argument(
        "--loop-jobs", type=int, metavar="N", help="jobs of the run under the loop timer (default: --jobs; 0: none)"
    )
    ap.add_argument(
        "--log-steps-over", type=float, default=5, metavar="MS", help="the loop timer logs steps over this (default 5)"
    )
    ap.add_argument("--python", metavar="PATH", help="interpreter for the supervisor (default: this one)")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object (last line)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, every run's logs)")
    ap.add_argument("--tmpdir", metavar="DIR", help="make the temp dir here (default: $TMPDIR or /tmp)")
    ap.add_argument("--timeout", type=float, default=3600, metavar="S", help="per run, in seconds (default 3600)")
    a = ap.parse_args(argv)
    if a.loop_jobs is None:
        a.loop_jobs = a.jobs
    if a.ref_jobs is None:
        a.ref_jobs = REF_JOBS if a.jobs >= 2 * REF_JOBS else max(1, a.jobs // 4)
    if a.jobs < 1 or a.ref_jobs < 1 or a.workers < 1 or a.loop_jobs < 0:
        ap.error("--jobs, --ref-jobs and --workers must be >= 1, --loop-jobs >= 0")
    if a.ref_jobs >= a.jobs:
        ap.error("--ref-jobs must be smaller than --jobs")
    return a


def main(argv: list[str] | None = None) -> int:
    """Check, run the plan, report. Over ~60 lines for the JSON result, spelled out key by key at its end."""
    a = parse_args(argv)
    python = a.python or sys.executable
    version = check_supervisor_importable(supervisor_env(), python)
    if version is None:
        return 2
    py_version = interpreter_version(python) or "?"
    tmp = Path(tempfile.mkdtemp(prefix="aimedres-bench-scale-", dir=a.tmpdir))
    bench = Bench(tmp, a.workers, a.timeout, python, a.log_steps_over / 1000)
    print(
        f"scale: {a.jobs:,} x /bin/true, {a.workers} workers, beside {a.ref_jobs:,} before and after; "
        f"supervisor on {python} (Python {py_version}); temp dir {tmp}",
        flush=True,
    )
    plan = [
        ("warm-up", min(WARMUP_JOBS, a.ref_jobs), False),
        (f"{a.ref_jobs:,} before", a.ref_jobs, False),
        (f"{a.jobs:,}", a.jobs, False),
        (f"{a.ref_jobs:,} after", a.ref_jobs, False),
    ]
    if a.loop_jobs:
        plan.append((f"{a.loop_jobs:,} loop timer", a.loop_jobs, True))
    runs: list[Run] = []
    try:
        for label, n, timed in plan:
            print(f"  {label}: {n:,} jobs ...", end="", flush=True)
            runs.append(bench.run(label, n, timed))
            print(f" {runs[-1].wall_s:.1f}s" + (" (PROBLEM)" if runs[-1].problems else ""), flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    counted = runs[1:]
    print_table(counted)
    figures = report(counted, a.jobs, a.ref_jobs, a.log_steps_over)
    problems = [p for r in runs for p in r.problems]
    if problems:
        print("\nPROBLEMS:")
        for p in problems:
            print(f"  - {p}")
    if a.keep:
        print(f"\nkept {tmp}")
    if a.json:
        result = {
            "bench": "scale",
            "jobs": a.jobs,
            "ref_jobs": a.ref_jobs,
            "loop_jobs": a.loop_jobs,
            "workers": a.workers,
            "target": {
                "per_job_ratio_max": TARGET_PER_JOB,
                "maxrss_bytes_max": TARGET_RSS,
                "loop_step_s_max": TARGET_STEP_S,
                "rewrite_gap_s_min": MIN_REWRITE_GAP_S,
            },
            "figures": [f.as_dict() for f in figures],
            "runs": [r.__dict__ for r in runs],
            "problems": problems,
            "versions": {"aimedres_async": version, "git": git_commit(), "python": py_version},
            "machine": machine_info(),
        }
        print(json.dumps(result, default=str))
    return 0


def mib(b: int | None) -> str:
    return "-" if b is None else f"{b / MIB:.1f} MiB"


def print_table(runs: list[Run]) -> None:
    rows = []
    for r in runs:
        writes = r.renames.get("summary.json", [])
        gaps = rewrite_gaps(writes)
        rows.append(
            [
                r.label,
                f"{r.jobs:,}",
                f"{r.wall_s:.2f}",
                f"{r.per_job_ms:.3f}",
                f"{r.cpu_s:.1f}",
                mib(r.maxrss),
                mib(r.hwm),
                str(len(writes)),
                f"{min(gaps):.2f}" if gaps else "-",
            ]
        )
    print()
    print(
        format_table(
            ["run", "jobs", "wall s", "ms/job", "cpu s", "ru_maxrss", "VmHWM", "summary writes", "min gap s"],
            rows,
            [False, True, True, True, True, True, True, True, True],
        )
    )


def report(runs: list[Run], jobs: int, ref_jobs: int, step_ms: float) -> list[Figure]:
    """Print the SPEC §11 figures of the counted runs (before, big, after[, timed]); return them."""
    before, big, after = runs[0], runs[1], runs[2]
    print()
    ref_ms = (before.per_job_ms + after.per_job_ms) / 2
    r = big.per_job_ms / ref_ms
    v = verdict(r, TARGET_PER_JOB, before.problems + big.problems + after.problems)
    print(
        f"per job at {jobs:,}: {big.per_job_ms:.3f} ms; at {ref_jobs:,}: {ref_ms:.3f} ms (mean of "
        f"{before.per_job_ms:.3f} before and {after.per_job_ms:.3f} after): {fmt_ratio(r)} "
        f"(SPEC §11 target <= {TARGET_PER_JOB}x): {v}"
    )
    figures = [
        Figure(
            f"scale: per job at {jobs:,} x true vs {ref_jobs:,}",
            f"{big.per_job_ms:.3f} ms",
            f"{ref_jobs:,} jobs: {ref_ms:.3f} ms",
            r,
            f"<= {TARGET_PER_JOB}x",
            v,
            big.per_job_ms,
            ref_ms,
            "ms",
        )
    ]
    figures += memory_figure(big, jobs)
    figures += rewrite_figure(big, jobs)
    if len(runs) > 3:
        figures += loop_figure(runs[3], step_ms)
    return figures


def memory_figure(big: Run, jobs: int) -> list[Figure]:
    v = verdict(None if big.maxrss is None else big.maxrss / MIB, TARGET_RSS / MIB, big.problems)
    print(
        f"supervisor max RSS at {jobs:,}: {mib(big.maxrss)} (wait4's ru_maxrss of the supervisor process: the "
        f"larger of its own peak and its largest reaped child's, a /bin/true here) (SPEC §11 target <= "
        f"{mib(TARGET_RSS)}): {v}; its own VmHWM, read every 50 ms: {mib(big.hwm)}"
    )
    value = None if big.maxrss is None else big.maxrss / MIB
    return [
        Figure(
            f"scale: supervisor max RSS at {jobs:,} jobs",
            mib(big.maxrss),
            f"VmHWM sampled: {mib(big.hwm)}",
            None,
            f"<= {mib(TARGET_RSS)}",
            v,
            value,
            None if big.hwm is None else big.hwm / MIB,
            "MiB",
        )
    ]


def rewrite_figure(big: Run, jobs: int) -> list[Figure]:
    """Every file renamed into place during the big run, and the shortest interval per file."""
    print(
        f"files replaced whole during the {jobs:,}-job run (renames seen with inotify; the last one of each excepted):"
    )
    too_often = []
    for name, times in sorted(big.renames.items()):
        gaps = rewrite_gaps(times)
        short = [g for g in gaps if g < MIN_REWRITE_GAP_S - GAP_TOLERANCE_S]
        too_often += [name] * bool(short)
        shortest = f"{min(gaps):.2f} s" if gaps else "-"
        print(
            f"  {name}: renamed {len(times)}x in {big.wall_s:.0f} s; shortest interval {shortest}; "
            f"under 1 s: {len(short)}"
        )
    writes = big.renames.get("summary.json", [])
    problems = list(big.problems)
    if not writes:
        problems.append("no rename of summary.json was seen")
    v = verdict(len(too_often), 0, problems)
    print(
        f"  no file rewritten more than once a second (SPEC §11): {v}"
        + (f" ({', '.join(too_often)})" if too_often else "")
    )
    gaps = rewrite_gaps(writes)
    return [
        Figure(
            f"scale: summary.json rewrites at {jobs:,} jobs",
            f"{len(writes)} in {big.wall_s:.0f} s",
            f"shortest interval: {min(gaps):.2f} s" if gaps else "-",
            None,
            "<= 1 per second",
            v,
            len(writes),
            min(gaps) if gaps else None,
            "writes",
        )
    ]


def loop_figure(timed: Run, step_ms: float) -> list[Figure]:
    """The longest loop step of the timed run and how many exceeded 20 ms."""
    steps = timed.steps or []
    over = [s for s in steps if s[0] > TARGET_STEP_S]
    longest = f"{steps[0][0] * 1000:.1f} ms" if steps else f"< {step_ms:g} ms"
    v = verdict(len(over), 0, timed.problems)
    print(
        f"event loop, {timed.jobs:,} jobs under bench/_slow_callbacks.py ({timed.per_job_ms:.3f} ms per job with "
        f"the timer): longest step {longest}; steps over {step_ms:g} ms: {len(steps)}, over "
        f"{TARGET_STEP_S * 1000:.0f} ms: {len(over)} (SPEC §11 target: none): {v}"
    )
    for seconds, what in steps[:3]:
        print(f"  {seconds * 1000:.1f} ms: {what}")
    return [
        Figure(
            f"scale: loop steps over 20 ms, {timed.jobs:,} jobs",
            str(len(over)),
            f"longest step: {longest}",
            None,
            "none",
            v,
            len(over),
            steps[0][0] * 1000 if steps else None,
            "steps",
        )
    ]


if __name__ == "__main__":
    sys.exit(main())
