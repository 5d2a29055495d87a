"""Dispatch benchmark (SPEC §11): 2,000 jobs of `/bin/true` with 8 workers.

What is measured — whole-process wall time, `perf_counter()` from spawn to reaping (`timed_run`), of:

1. aimedres-async: `python -m aimedres_async --config CFG run --log-format json`, stdout and stderr to
   /dev/null, on a throw-away config (in a temp dir) with `[supervisor] parallel = true,
   max_workers = 8`, discovery off and 2,000 tables `[jobs.jN] command = ["/bin/true"]`. Each run
   writes a full run folder (events.jsonl, one jobs/<id>.jsonl per job, summary.json; SPEC §7). After
   each run the supervisor must have exited 0 and `logs/latest/summary.json` must say
   `counts = {"succeeded": 2000}` for 2,000 listed jobs.
2. `sh -c 'seq 2000 | xargs -P 8 -I{} /bin/true'` (GNU xargs; exit 0 means every command succeeded).
3. `sh -c 'seq 2000 | parallel -j 8 /bin/true'` (GNU parallel runs `/bin/true N`; exit 0 = all OK).
   The `sh` and `seq` add about a millisecond to the peers.

Each tool runs once as a warm-up (with stderr kept, to show what went wrong if anything did), then
`--runs` times, interleaved (aimedres, xargs, parallel, aimedres, …). Before every run `sync`
flushes dirty pages, outside the timing: the disk here has bursty writeback that otherwise
bills one run's 2,000 log files to the next. Earlier runs' folders are kept, as a user's are (each run
makes its own folder); deleting them right before a run would make ext4 step over thousands of freshly
freed inodes on every file it creates. The table shows the median, min
and max wall time, jobs/s and ms per job at the median, and CPU time (user+sys of the process and
everything it reaped). Targets: aimedres/xargs <= 1.5x and aimedres/parallel <= 0.35x (median over
median); each gets PASS or MISS (INVALID if a run failed verification). The exit status is 0 either
way: this is a measurement, not a test. Without `parallel` on PATH that ratio is skipped.

On a shared or small machine the figures are noisy (other work steals the cores); compare the ratios
of one invocation, not absolute times across invocations.

Run from the repository root with the project's interpreter, e.g.

    python bench/dispatch.py                    # 2,000 jobs, 8 workers, 5 runs
    python bench/dispatch.py --runs 3 --jobs 500
    python bench/dispatch.py --json             # last stdout line: the results as JSON

`--keep` keeps the temp dir (config and the last run's logs); `--tmpdir DIR` chooses where it is made.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
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
    format_table,
    git_commit,
    machine_info,
    run_interleaved,
    settle,
    supervisor_cmd,
    supervisor_env,
    timed_run,
    tool_version,
)
from _helpers import Figure, check_counts, fmt_ratio, read_summary, verdict, write_jobs_config

TARGET_VS_XARGS = 1.5  # SPEC §11: aimedres wall <= 1.5x xargs -P 8 (on Python 3.12)
TARGET_VS_PARALLEL = 0.35  # SPEC §11: aimedres wall <= 0.35x parallel -j 8
AIM, XARGS, PARALLEL = "aimedres-async", "xargs -P", "parallel -j"
FLOOR_ASYNCIO, FLOOR_POPEN = "asyncio floor", "Popen floor"


class Bench:
    def __init__(self, tmp: Path, jobs: int, workers: int, timeout: float) -> None:
        self.tmp = tmp
        self.jobs = jobs
        self.workers = workers
        self.timeout = timeout
        self.env = supervisor_env(tmp)
        self.config = write_jobs_config(tmp / "aimedres.toml", jobs, ["/bin/true"], workers)
        self.logs = tmp / "logs"

    def _run(self, cmd: list[str], name: str, warmup: bool) -> tuple[Timing, list[str]]:
        """Time cmd (stdout and stderr to /dev/null; the warm-up keeps stderr in <name>.err)."""
        err_path = self.tmp / f"{name}.err" if warmup else None
        with open(err_path, "wb") if err_path else contextlib.nullcontext(subprocess.DEVNULL) as err:
            t = timed_run(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=self.tmp, env=self.env, timeout=self.timeout)
        problems = []
        if t.timed_out:
            problems.append(f"{name}: killed after the {self.timeout:g}s timeout")
        elif t.returncode != 0:
            tail = ""
            if err_path is not None and err_path.exists():
                tail = err_path.read_bytes()[-800:].decode("utf-8", "replace").strip()
            problems.append(f"{name}: exit status {t.returncode}" + (f"; stderr ends:\n{tail}" if tail else ""))
        return t, problems

    def run_aimedres(self, warmup: bool = False) -> tuple[Timing, list[str]]:
        # Earlier runs' folders stay, as a user's do: deleting 2,000 files just before the next
        # run makes ext4 test every freshly freed inode (recently_deleted) on each create, which
        # perf showed as ~15% of the run.
        settle()
        t, problems = self._run(supervisor_cmd(self.config, "run", "--log-format", "json"), "aimedres", warmup)
        if not t.timed_out:
            problems += check_counts(read_summary(self.logs), {"succeeded": self.jobs})
        return t, problems

    def run_xargs(self, warmup: bool = False) -> tuple[Timing, list[str]]:
        settle()
        cmd = ["sh", "-c", f"seq {self.jobs} | xargs -P {self.workers} -I{{}} /bin/true"]
        return self._run(cmd, "xargs", warmup)

    def run_floor_asyncio(self, warmup: bool = False) -> tuple[Timing, list[str]]:
        settle()
        cmd = [sys.executable, str(Path(__file__).with_name("_floor.py")), "asyncio", str(self.jobs), str(self.workers)]
        return self._run(cmd, "floor-asyncio", warmup)

    def run_floor_popen(self, warmup: bool = False) -> tuple[Timing, list[str]]:
        settle()
        cmd = [sys.executable, str(Path(__file__).with_name("_floor.py")), "popen", str(self.jobs), str(self.workers)]
        return self._run(cmd, "floor-popen", warmup)

    def run_parallel(self, warmup: bool = False) -> tuple[Timing, list[str]]:
        settle()
        cmd = ["sh", "-c", f"seq {self.jobs} | parallel -j {self.workers} /bin/true"]
        return self._run(cmd, "parallel", warmup)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=2000, metavar="N", help="jobs of /bin/true (default 2,000)")
    ap.add_argument("--workers", type=int, default=8, metavar="N", help="max_workers / -P / -j (default 8)")
    ap.add_argument("--runs", type=int, default=5, metavar="N", help="timed runs per tool after a warm-up (default 5)")
    ap.add_argument(
        "--floor",
        action="store_true",
        help="also time the spawn shape alone (bench/_floor.py: asyncio subprocess_exec, and Popen + pidfd)",
    )
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object (last line)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (config, last run's logs)")
    ap.add_argument("--tmpdir", metavar="DIR", help="make the temp dir here (default: $TMPDIR or /tmp)")
    ap.add_argument("--timeout", type=float, default=600, metavar="S", help="per-run timeout in seconds (default 600)")
    a = ap.parse_args(argv)
    if a.jobs < 1 or a.runs < 1 or a.workers < 1:
        ap.error("--jobs, --workers and --runs must be >= 1")

    version = check_supervisor_importable(supervisor_env())
    if version is None:
        return 2
    for tool in ("seq", "xargs", "sh"):
        if shutil.which(tool) is None:
            print(f"error: `{tool}` is not on PATH", file=sys.stderr)
            return 2
    parallel = shutil.which("parallel")
    if parallel is None:
        print("NOTE: GNU parallel is not on PATH (apt-get install parallel): the parallel ratio is skipped.")

    tmp = Path(tempfile.mkdtemp(prefix="aimedres-bench-dispatch-", dir=a.tmpdir))
    bench = Bench(tmp, a.jobs, a.workers, a.timeout)
    tools: list[tuple[str, Callable[..., tuple[Timing, list[str]]]]] = [
        (AIM, bench.run_aimedres),
        (XARGS, bench.run_xargs),
    ]
    if parallel:
        tools.append((PARALLEL, bench.run_parallel))
    if a.floor:
        tools += [(FLOOR_ASYNCIO, bench.run_floor_asyncio), (FLOOR_POPEN, bench.run_floor_popen)]
    series = {name: Series(name) for name, _ in tools}

    print(
        f"dispatch: {a.jobs:,} x /bin/true, {a.workers} workers, {a.runs} runs + 1 warm-up per tool, temp dir {tmp}",
        flush=True,
    )
    try:
        run_interleaved(tools, series, a.runs)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- report ----------------------------------------------------------------------------------
    labels = {
        AIM: "aimedres-async run",
        XARGS: f"seq | xargs -P {a.workers}",
        PARALLEL: f"seq | parallel -j {a.workers}",
        FLOOR_ASYNCIO: "floor: subprocess_exec",
        FLOOR_POPEN: "floor: Popen + pidfd",
    }
    rows = []
    for name, _ in tools:
        d = series[name].summary()
        rows.append(
            [
                labels[name],
                f"{d['median_s']:.3f}",
                f"{d['min_s']:.3f}",
                f"{d['max_s']:.3f}",
                f"{a.jobs / d['median_s']:.0f}",
                f"{d['median_s'] / a.jobs * 1000:.2f}",
                f"{d['cpu_median_s']:.2f}",
            ]
        )
    print()
    print(
        format_table(
            ["tool", "median s", "min s", "max s", "jobs/s", "ms/job", "cpu s"],
            rows,
            [False, True, True, True, True, True, True],
        )
    )
    aim = series[AIM].median
    all_problems = [p for s in series.values() for p in s.problems]
    aim_problems = series[AIM].problems

    figures = []
    r_x = aim / series[XARGS].median
    v_x = verdict(r_x, TARGET_VS_XARGS, aim_problems + series[XARGS].problems)
    figures.append(
        Figure(
            f"dispatch {a.jobs:,} x true, {a.workers} workers, vs xargs",
            f"{aim:.2f} s",
            f"xargs -P {a.workers}: {series[XARGS].median:.2f} s",
            r_x,
            f"<= {TARGET_VS_XARGS}x",
            v_x,
            aim,
            series[XARGS].median,
            "s",
        )
    )
    r_p = None
    if parallel:
        r_p = aim / series[PARALLEL].median
        v_p = verdict(r_p, TARGET_VS_PARALLEL, aim_problems + series[PARALLEL].problems)
        figures.append(
            Figure(
                f"dispatch {a.jobs:,} x true, {a.workers} workers, vs parallel",
                f"{aim:.2f} s",
                f"parallel -j {a.workers}: {series[PARALLEL].median:.2f} s",
                r_p,
                f"<= {TARGET_VS_PARALLEL}x",
                v_p,
                aim,
                series[PARALLEL].median,
                "s",
            )
        )
    print()
    print(f"aimedres-async / xargs -P {a.workers}:    {fmt_ratio(r_x)}  (SPEC §11 target <= {TARGET_VS_XARGS}x): {v_x}")
    if parallel:
        print(
            f"aimedres-async / parallel -j {a.workers}: {fmt_ratio(r_p)}  "
            f"(SPEC §11 target <= {TARGET_VS_PARALLEL}x): {figures[-1].verdict}"
        )
    else:
        print("aimedres-async / parallel: n/a — SKIPPED (GNU parallel not installed)")
    floors: dict[str, float] = {}
    if a.floor:
        xargs = series[XARGS].median
        fa, fp = series[FLOOR_ASYNCIO].median, series[FLOOR_POPEN].median
        floors = {"asyncio_vs_xargs": fa / xargs, "popen_vs_xargs": fp / xargs, "aimedres_vs_asyncio_floor": aim / fa}
        print(f"floor: subprocess_exec / xargs -P {a.workers}: {fmt_ratio(fa / xargs)}  (the spawn shape alone)")
        print(f"floor: Popen + pidfd / xargs -P {a.workers}:   {fmt_ratio(fp / xargs)}")
        print(f"aimedres-async / subprocess_exec floor:      {fmt_ratio(aim / fa)}  (the supervisor's own work)")
    if all_problems:
        print("\nPROBLEMS:")
        for p in all_problems:
            print(f"  - {p}")
    if a.keep:
        print(f"\nkept {tmp}")

    if a.json:
        result = {
            "bench": "dispatch",
            "jobs": a.jobs,
            "workers": a.workers,
            "runs": a.runs,
            "target": {"ratio_max_vs_xargs": TARGET_VS_XARGS, "ratio_max_vs_parallel": TARGET_VS_PARALLEL},
            "ratio_vs_xargs": r_x,
            "ratio_vs_parallel": r_p,
            "floor": floors or None,
            "figures": [f.as_dict() for f in figures],
            "results": {name: series[name].summary() for name, _ in tools},
            "problems": all_problems,
            "versions": {
                "aimedres_async": version,
                "git": git_commit(),
                "parallel": tool_version(["parallel", "--version"]) if parallel else None,
                "xargs": tool_version(["xargs", "--version"]),
            },
            "machine": machine_info(),
        }
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
