"""Memory benchmark (SPEC §11): supervisor RSS with 10,000 jobs queued and 64 running.

What is measured — the resident set size of the supervisor process itself (not of its jobs):

1. loaded: `python -m aimedres_async --config CFG run --log-format json` on a throw-away config (in a
   temp dir) with `[supervisor] parallel = true, max_workers = 64`, discovery off, and 10,000 tables
   `[jobs.jN] command = ["sleep", "2"]`. It runs for `--duration` seconds (default 15) from its
   start — long enough to read the config, queue the 10,000 jobs and keep 64 running, finishing
   and starting jobs all the while — then gets SIGTERM (SPEC §6: it stops the 64 running jobs,
   marks the rest cancelled, writes the summary and exits 143, which is expected here).
2. baseline ("idle start"): the same command on a config with one job `sleep 2` and one worker,
   run to completion: the interpreter, the imports and an almost empty run.

The figure is the peak RSS over the supervisor's whole life: `os.wait4()`'s `ru_maxrss` when it is
reaped (the kernel's high-water mark; on Linux the max of the process's own peak and its largest
reaped child's, and a `sleep` is ~1 MiB), or the largest VmRSS/VmHWM sampled if that is higher
(they can differ by a few hundred KiB). While it runs, /proc/<pid>/status and
/proc/<pid>/task/*/children are read every 50 ms: the table shows the sampled max, the RSS when 64
jobs were first seen running and at the last sample before the SIGTERM (so growth while running and
the cost of the shutdown can be told apart), how long it took to reach 64 running, the most jobs
seen running at once, and how many jobs had started by the SIGTERM. Verification: exit status 143
(0 for the baseline), summary.json counts that add up to 10,000 with only succeeded and cancelled
jobs, 64 jobs seen running at once, and no `sleep` started by the run still alive after the
supervisor exited (SPEC §6); otherwise the verdict is INVALID.

The warm-up is one baseline run. Then `--runs` times: baseline, loaded. The target is the median
loaded peak <= 100 MiB (MiB = 2**20 bytes): PASS or MISS; the exit status is 0 either way.
64 `sleep` processes on a 2-core machine are fine: they sleep.

Run from the repository root with the project's interpreter, e.g.

    python bench/memory.py                         # 10,000 jobs, 64 workers, 5 runs of 15 s
    python bench/memory.py --runs 1 --duration 10
    python bench/memory.py --json                  # last stdout line: the results as JSON

`--keep` keeps the temp dir (config, logs, supervisor output); `--tmpdir DIR` chooses where it is made.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    check_supervisor_importable,
    format_table,
    git_commit,
    machine_info,
    remove,
    settle,
    supervisor_cmd,
    supervisor_env,
)
from _helpers import (
    MIB,
    Figure,
    proc_children,
    proc_cmdline,
    proc_mem,
    read_events,
    read_summary,
    stop_and_reap,
    try_reap,
    verdict,
    write_jobs_config,
)

TARGET_MIB = 100.0  # SPEC §11: supervisor RSS <= 100 MiB with 10,000 jobs queued and 64 running
POLL_S = 0.05


@dataclass
class Sampled:
    wall_s: float = 0.0
    returncode: int | None = None
    peak_bytes: int = 0  # ru_maxrss at reaping
    sampled_max_bytes: int = 0  # max VmRSS seen while polling
    at_full_bytes: int | None = None  # VmRSS when `workers` children were first seen
    full_after_s: float | None = None
    at_stop_bytes: int | None = None  # VmRSS at the last sample before SIGTERM
    max_children: int = 0
    started: int = 0
    counts: dict[str, int] | None = None
    problems: list[str] = field(default_factory=list)


def run_supervisor(
    tmp: Path, config: Path, env: dict[str, str], workers: int, duration: float | None, timeout: float, out_name: str
) -> Sampled:
    """Run the supervisor, poll its RSS and children; SIGTERM it after `duration` s (None: let it end)."""
    s = Sampled()
    for name in ("logs", "results"):
        remove(tmp / name)
    settle()
    with open(tmp / out_name, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            supervisor_cmd(config, "run", "--log-format", "json"),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp,
            env=env,
        )
        reaped = None
        terminated = False
        while reaped is None:
            now = time.perf_counter() - t0
            mem = proc_mem(proc.pid)
            if mem is not None:
                rss = mem.get("VmRSS", 0)
                s.sampled_max_bytes = max(s.sampled_max_bytes, rss, mem.get("VmHWM", 0))
                kids = len(proc_children(proc.pid))
                s.max_children = max(s.max_children, kids)
                if s.at_full_bytes is None and kids >= workers:
                    s.at_full_bytes, s.full_after_s = rss, now
            if duration is not None and not terminated and now >= duration:
                s.at_stop_bytes = rss if mem is not None else None
                reaped, killed = stop_and_reap(proc, signal.SIGTERM, timeout=60)
                terminated = True
                if killed:
                    s.problems.append("the supervisor did not exit within 60 s of SIGTERM and was SIGKILLed")
                break
            if now > timeout:
                reaped, _ = stop_and_reap(proc, signal.SIGKILL, timeout=10)
                s.problems.append(f"killed after the {timeout:g}s timeout")
                break
            time.sleep(POLL_S)
            reaped = try_reap(proc)
        s.wall_s = time.perf_counter() - t0
    s.returncode = reaped.returncode
    s.peak_bytes = max(reaped.maxrss_bytes, s.sampled_max_bytes)
    expected_rc = 143 if duration is not None else 0
    if s.returncode != expected_rc:
        tail = (tmp / out_name).read_bytes()[-800:].decode("utf-8", "replace").strip()
        s.problems.append(f"exit status {s.returncode}, expected {expected_rc}; output ends:\n{tail}")
    logs = tmp / "logs"
    summary = read_summary(logs)
    if summary is None:
        s.problems.append("no readable summary.json")
    else:
        s.counts = summary.get("counts")
    pids = []
    for rec in read_events(logs):
        if rec.get("event") == "job.started":
            s.started += 1
            if isinstance(rec.get("pid"), int):
                pids.append((rec["pid"], rec.get("argv")))
    # no job process may outlive the supervisor (pid reuse is ruled out by matching the command line)
    left = [pid for pid, argv in pids if argv and proc_cmdline(pid) == argv]
    if left:
        s.problems.append(f"{len(left)} job processes still alive after the supervisor exited: {left[:10]}")
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=10_000, metavar="N", help="jobs in the config (default 10,000)")
    ap.add_argument("--workers", type=int, default=64, metavar="N", help="max_workers (default 64)")
    ap.add_argument("--sleep", type=float, default=2, metavar="S", help="each job is `sleep S` (default 2)")
    ap.add_argument(
        "--duration",
        type=float,
        default=15,
        metavar="S",
        help="SIGTERM the loaded supervisor this long after its start (default 15)",
    )
    ap.add_argument("--runs", type=int, default=5, metavar="N", help="runs after a warm-up (default 5)")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object (last line)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (config, logs, supervisor output)")
    ap.add_argument("--tmpdir", metavar="DIR", help="make the temp dir here (default: $TMPDIR or /tmp)")
    ap.add_argument("--timeout", type=float, default=300, metavar="S", help="per-run timeout in seconds (default 300)")
    a = ap.parse_args(argv)
    if a.jobs < 1 or a.runs < 1 or a.workers < 1 or a.duration <= 0 or a.sleep <= 0:
        ap.error("--jobs, --workers, --runs, --duration and --sleep must be positive")
    if not Path("/proc/self/status").exists():
        print("error: this benchmark reads /proc (Linux only)", file=sys.stderr)
        return 2

    version = check_supervisor_importable(supervisor_env())
    if version is None:
        return 2
    sleep_arg = f"{a.sleep:g}"
    tmp = Path(tempfile.mkdtemp(prefix="aimedres-bench-memory-", dir=a.tmpdir))
    env = supervisor_env(tmp)
    loaded_cfg = write_jobs_config(tmp / "loaded.toml", a.jobs, ["sleep", sleep_arg], a.workers)
    base_cfg = write_jobs_config(tmp / "baseline.toml", 1, ["sleep", sleep_arg], 1)

    print(
        f"memory: {a.jobs:,} x sleep {sleep_arg}, {a.workers} workers, SIGTERM after {a.duration:g}s; "
        f"{a.runs} runs + 1 warm-up; temp dir {tmp}",
        flush=True,
    )
    base: list[Sampled] = []
    loaded: list[Sampled] = []
    try:
        print("  warm-up baseline (1 job) ...", end="", flush=True)
        w = run_supervisor(tmp, base_cfg, env, 1, None, a.timeout, "baseline.out")
        print(f" peak {w.peak_bytes / MIB:.1f} MiB" + (" (PROBLEM)" if w.problems else ""), flush=True)
        warm_problems = [f"warm-up: {p}" for p in w.problems]
        for i in range(a.runs):
            b = run_supervisor(tmp, base_cfg, env, 1, None, a.timeout, "baseline.out")
            if b.counts != {"succeeded": 1}:
                b.problems.append(f"baseline: summary.json counts {b.counts!r}, expected {{'succeeded': 1}}")
            base.append(b)
            print(
                f"  run {i + 1}/{a.runs} baseline: peak {b.peak_bytes / MIB:.1f} MiB"
                + (" (PROBLEM)" if b.problems else ""),
                flush=True,
            )
            s = run_supervisor(tmp, loaded_cfg, env, a.workers, a.duration, a.timeout, "loaded.out")
            counts = s.counts or {}
            if sum(counts.values()) != a.jobs or set(counts) - {"succeeded", "cancelled"}:
                s.problems.append(f"summary.json counts {counts!r}: expected succeeded + cancelled = {a.jobs:,}")
            if s.max_children < a.workers:
                s.problems.append(f"at most {s.max_children} jobs were seen running at once, expected {a.workers}")
            loaded.append(s)
            print(
                f"  run {i + 1}/{a.runs} loaded: peak {s.peak_bytes / MIB:.1f} MiB, {s.started:,} jobs started, "
                f"exit {s.returncode}" + (" (PROBLEM)" if s.problems else ""),
                flush=True,
            )
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- report ----------------------------------------------------------------------------------
    def mib(x: float | None) -> str:
        return "-" if x is None else f"{x / MIB:.1f}"

    rows = []
    for label, runs in (("baseline: 1 job, 1 worker", base), (f"loaded: {a.jobs:,} jobs, {a.workers} workers", loaded)):
        for i, s in enumerate(runs):
            rows.append(
                [
                    f"{label} (run {i + 1})",
                    mib(s.peak_bytes),
                    mib(s.sampled_max_bytes),
                    mib(s.at_full_bytes) if runs is loaded else "-",
                    mib(s.at_stop_bytes),
                    "-" if s.full_after_s is None or runs is base else f"{s.full_after_s:.2f}",
                    str(s.max_children),
                    f"{s.started:,}",
                    f"{s.wall_s:.1f}",
                    str(s.returncode),
                ]
            )
    print()
    print(
        format_table(
            [
                "supervisor",
                "peak MiB",
                "sampled max",
                f"at {a.workers} running",
                "at SIGTERM",
                "full after s",
                "max running",
                "started",
                "wall s",
                "exit",
            ],
            rows,
            [False, True, True, True, True, True, True, True, True, True],
        )
    )
    base_peak = statistics.median(s.peak_bytes for s in base)
    peak = statistics.median(s.peak_bytes for s in loaded)
    problems = warm_problems + [f"baseline run {i + 1}: {p}" for i, s in enumerate(base) for p in s.problems]
    problems += [f"loaded run {i + 1}: {p}" for i, s in enumerate(loaded) for p in s.problems]
    loaded_problems = [p for p in problems if p.startswith("loaded")]
    v = verdict(peak / MIB, TARGET_MIB, loaded_problems)
    print()
    print(f"baseline (idle start, 1 job) peak RSS, median: {base_peak / MIB:.1f} MiB")
    print(f"loaded - baseline, medians:                    {(peak - base_peak) / MIB:.1f} MiB")
    print(f"loaded peak RSS, median: {peak / MIB:.1f} MiB  (SPEC §11 target <= {TARGET_MIB:g} MiB): {v}")
    if problems:
        print("\nPROBLEMS:")
        for p in problems:
            print(f"  - {p}")
    if a.keep:
        print(f"\nkept {tmp}")

    if a.json:
        fig = Figure(
            f"memory: {a.jobs:,} queued, {a.workers} running",
            f"{peak / MIB:.1f} MiB",
            f"idle start (1 job): {base_peak / MIB:.1f} MiB",
            None,
            f"<= {TARGET_MIB:g} MiB",
            v,
            peak / MIB,
            base_peak / MIB,
            "MiB",
        )

        def d(s: Sampled) -> dict[str, Any]:
            return {k: v for k, v in s.__dict__.items()}

        result = {
            "bench": "memory",
            "jobs": a.jobs,
            "workers": a.workers,
            "sleep_s": a.sleep,
            "duration_s": a.duration,
            "runs": a.runs,
            "target": {"peak_mib_max": TARGET_MIB},
            "peak_mib": peak / MIB,
            "baseline_peak_mib": base_peak / MIB,
            "figures": [fig.as_dict()],
            "loaded": [d(s) for s in loaded],
            "baseline": [d(s) for s in base],
            "problems": problems,
            "versions": {"aimedres_async": version, "git": git_commit()},
            "machine": machine_info(),
            "unit": "MiB = 2**20 bytes",
        }
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
