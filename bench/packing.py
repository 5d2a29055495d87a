"""Packing benchmark (SPEC §9): memory-aware packing against a plain worker count.

SPEC §11 sets no figure for this; it shows what `resources = { memory = ... }` with a supervisor
memory budget buys: a shorter makespan than a worker count small enough to be safe, without the
memory overruns of a worker count large enough to be fast. The same 12 jobs run three ways, each a
whole `python -m aimedres_async --config CFG run --log-format json` (stdout and stderr to /dev/null)
on a throw-away config (temp dir, discovery off):

1. packing: `[supervisor] parallel = true, max_workers = 12, memory = "1GiB"`, and each job declares
   its memory: 4 x 600 MiB, 4 x 300 MiB, 4 x 100 MiB, in that interleaved order (600, 300, 100,
   600, ...). A job starts only when its declaration fits in what is left of the 1 GiB.
2. the safe baseline: the same jobs with no declarations, `memory = "auto"`, `max_workers = 2`
   (the two largest jobs, 2 x 600 MiB, would already pass 1 GiB, but this is what a user without
   resource declarations picks to stay near the budget).
3. the fast baseline: the same, `max_workers = 12`: everything at once (this row shows the overrun).

Each job is `python -c ... BYTES HOLD`: it allocates a bytearray of 90 % of its declaration, touches
every page, sleeps `--hold` seconds (default 1) and exits; its real RSS is that plus the interpreter
(~10 MiB), so a 100 MiB job really uses about 100 MiB.

What is measured, per run:
- makespan: whole-process wall time (`perf_counter()` from spawn to reaping (`timed_run`)), start-up
  included; and in-log: first `job.started` to last `job.exited` in logs/latest/events.jsonl;
- the jobs' memory: every 50 ms (`--interval`) a thread of this bench sums the resident set (VmRSS,
  from /proc/<pid>/statm) of every live process whose environment (/proc/<pid>/environ) holds a
  `PACKING_MARKER=<token>` unique to this invocation (set in `[defaults] env`, so jobs and anything
  they start carry it; the supervisor does not). The table shows the largest sum seen, its ratio to
  the 1 GiB budget, how many samples were over the budget and for how long (samples x interval);
- the most jobs running at once (from events.jsonl).
Verification: exit status 0 and summary.json counts {"succeeded": 12}; otherwise INVALID.

One warm-up (packing), then `--runs` times the three modes, interleaved, `sync` before each run
(outside the timing). The table shows medians of the makespans, the maximum of the memory maxima and
the total of the overrun samples. Verdicts: packing must never pass the budget (PASS if no sample of
any packing run was over it, else MISS); the makespan ratio packing / max_workers 2 is INFO. The exit
status is 0 either way. The fast baseline needs about 4 GiB: it is skipped, with a note, where
MemAvailable is below 1.5x that, or with `--skip-unbounded`.

Run from the repository root with the project's interpreter, e.g.

    python bench/packing.py                  # 12 jobs, 5 runs, ~2 min
    python bench/packing.py --runs 1 --hold 0.5
    python bench/packing.py --json           # last stdout line: the results as JSON

`--keep` keeps the temp dir (configs and the last run's logs); `--tmpdir DIR` chooses where it is made.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

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
    toml_str,
)
from _helpers import MIB, Figure, check_counts, fmt_ratio, read_events, read_summary, ts_seconds

PAGE = os.sysconf("SC_PAGE_SIZE")
FRACTION = 0.9  # each job really allocates this share of its declaration
JOB_CODE = """\
import sys, time
n, hold = int(sys.argv[1]), float(sys.argv[2])
block = bytearray(n)
for i in range(0, n, 4096):
    block[i] = 1
time.sleep(hold)
"""
PACK, SAFE, FAST = "packing: memory = 1GiB, max_workers = 12", "plain max_workers = 2", "plain max_workers = 12"


# --- the jobs' memory, sampled from /proc ------------------------------------------------------------


class RssSampler:
    """Sum of VmRSS of every live process carrying `needle` in its environment, every `interval` s."""

    def __init__(self, needle: bytes, interval: float, budget: int) -> None:
        self.needle = needle
        self.interval = interval
        self.budget = budget
        self.samples: list[int] = []
        self.max_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        marked: set[int] = set()  # a process never loses the marker, so these need no new check
        while not self._stop.is_set():
            t0 = time.monotonic()
            total, procs = 0, 0
            for name in os.listdir("/proc"):
                if not name.isdigit():
                    continue
                pid = int(name)
                # not cached when unmarked: a child between fork and exec still has the supervisor's env
                if pid not in marked and not self._is_marked(pid):
                    continue
                marked.add(pid)
                rss = self._rss(pid)
                if rss is None:
                    marked.discard(pid)
                    continue
                total += rss
                procs += rss > 0
            self.samples.append(total)
            self.max_procs = max(self.max_procs, procs)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def _is_marked(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                return self.needle in f.read().split(b"\0")
        except OSError:
            return False

    @staticmethod
    def _rss(pid: int) -> int | None:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * PAGE  # 0 for a zombie
        except (OSError, ValueError, IndexError):
            return None

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)

    @property
    def over(self) -> int:
        return sum(1 for s in self.samples if s > self.budget)


# --- configs -----------------------------------------------------------------------------------


def job_sizes(sizes_mib: list[int], per_size: int) -> dict[str, int]:
    """Job id -> declared MiB, interleaved: m600-0, m300-0, m100-0, m600-1, ..."""
    return {f"m{s}-{i}": s for i in range(per_size) for s in sizes_mib}


def write_packing_config(
    path: Path, jobs: dict[str, int], hold: float, marker: str, *, workers: int, budget_mib: int | None, declare: bool
) -> Path:
    lines = [
        "[supervisor]",
        "parallel = true",
        f"max_workers = {workers}",
        f"memory = {toml_str(f'{budget_mib}MiB') if budget_mib else toml_str('auto')}",
        'logs_dir = "logs"',
        "",
        "[discovery]",
        "enabled = false",
        "",
        "[defaults]",
        "retries = 0",
        f"env = {{ PACKING_MARKER = {toml_str(marker)} }}",
        "",
    ]
    for job_id, mib in jobs.items():
        command = [sys.executable, "-c", JOB_CODE, str(int(FRACTION * mib * MIB)), f"{hold:g}"]
        lines += [f"[jobs.{job_id}]", "command = [" + ", ".join(toml_str(c) for c in command) + "]"]
        if declare:
            lines.append(f'resources = {{ memory = "{mib}MiB" }}')
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# --- one mode ---------------------------------------------------------------------------------------


@dataclass
class Mode:
    name: str
    config: Path
    series: Series
    in_log: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)
    over: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)


def most_running(logs: Path) -> tuple[int, float | None]:
    """Most jobs running at once, and first job.started -> last job.exited (s), from events.jsonl."""
    now, most, starts, exits = 0, 0, [], []
    for rec in read_events(logs):
        if rec.get("event") == "job.started":
            now += 1
            most = max(most, now)
            starts.append(ts_seconds(rec["ts"]))
        elif rec.get("event") == "job.exited":
            now -= 1
            exits.append(ts_seconds(rec["ts"]))
    return most, (max(exits) - min(starts)) if starts and exits else None


def run_mode(
    mode: Mode, tmp: Path, env: dict[str, str], needle: bytes, a: argparse.Namespace, n_jobs: int, budget: int
) -> list[str]:
    for name in ("logs", "results"):
        remove(tmp / name)
    settle()
    with RssSampler(needle, a.interval, budget) as sampler:
        t = timed_run(supervisor_cmd(mode.config, "run", "--log-format", "json"), cwd=tmp, env=env, timeout=a.timeout)
    problems = []
    if t.timed_out:
        problems.append(f"{mode.name}: killed after the {a.timeout:g}s timeout")
    elif t.returncode != 0:
        problems.append(f"{mode.name}: exit status {t.returncode}")
    problems += check_counts(read_summary(tmp / "logs"), {"succeeded": n_jobs}, mode.name)
    most, span = most_running(tmp / "logs")
    mode.series.add(t)
    mode.peaks.append(sampler.peak)
    mode.over.append(sampler.over)
    mode.running.append(most)
    if span is not None:
        mode.in_log.append(span)
    if not sampler.samples or sampler.peak == 0:
        problems.append(f"{mode.name}: no job memory was sampled (is /proc readable?)")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=5, metavar="N", help="timed runs per mode after a warm-up (default 5)")
    ap.add_argument("--hold", type=float, default=1.0, metavar="S", help="seconds each job sleeps (default 1)")
    ap.add_argument("--sizes", default="600,300,100", metavar="MiB,...", help="declared sizes (default 600,300,100)")
    ap.add_argument("--per-size", type=int, default=4, metavar="N", help="jobs of each size (default 4)")
    ap.add_argument("--budget", type=int, default=1024, metavar="MiB", help="[supervisor] memory (default 1024)")
    ap.add_argument("--safe-workers", type=int, default=2, metavar="N", help="the safe baseline's max_workers (2)")
    ap.add_argument("--interval", type=float, default=0.05, metavar="S", help="RSS sampling interval (default 0.05)")
    ap.add_argument("--skip-unbounded", action="store_true", help="do not run the all-at-once baseline")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object (last line)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, last run's logs)")
    ap.add_argument("--tmpdir", metavar="DIR", help="make the temp dir here (default: $TMPDIR or /tmp)")
    ap.add_argument("--timeout", type=float, default=180, metavar="S", help="per-run timeout in seconds (default 180)")
    a = ap.parse_args(argv)
    try:
        sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
    except ValueError:
        ap.error("--sizes: a comma-separated list of MiB, e.g. 600,300,100")
    if a.runs < 1 or a.per_size < 1 or a.hold <= 0 or a.interval <= 0 or a.safe_workers < 1 or not sizes:
        ap.error("--runs, --per-size, --hold, --interval and --safe-workers must be positive")
    if max(sizes) > a.budget or min(sizes) < 1:
        ap.error(f"every size must be between 1 and the budget ({a.budget} MiB), or a job could never run")
    if not Path("/proc/self/environ").exists():
        print("error: this benchmark reads /proc (Linux)", file=sys.stderr)
        return 2

    version = check_supervisor_importable(supervisor_env())
    if version is None:
        return 2
    jobs = job_sizes(sizes, a.per_size)
    n_jobs = len(jobs)
    budget = a.budget * MIB
    need_all = sum(int(FRACTION * s * MIB) + 12 * MIB for s in jobs.values())
    available = mem_available()
    unbounded = not a.skip_unbounded
    note = None
    if unbounded and available is not None and available < 1.5 * need_all:
        unbounded = False
        note = (
            f"NOTE: skipping '{FAST}': it needs ~{need_all / MIB:.0f} MiB at once and only "
            f"{available / MIB:.0f} MiB is available"
        )
    elif a.skip_unbounded:
        note = f"NOTE: '{FAST}' skipped (--skip-unbounded)"

    marker = uuid.uuid4().hex
    needle = f"PACKING_MARKER={marker}".encode()
    tmp = Path(tempfile.mkdtemp(prefix="aimedres-bench-packing-", dir=a.tmpdir))
    env = supervisor_env(tmp)
    modes = [
        Mode(
            PACK,
            write_packing_config(
                tmp / "packing.toml", jobs, a.hold, marker, workers=n_jobs, budget_mib=a.budget, declare=True
            ),
            Series(PACK),
        ),
        Mode(
            SAFE,
            write_packing_config(
                tmp / "safe.toml", jobs, a.hold, marker, workers=a.safe_workers, budget_mib=None, declare=False
            ),
            Series(SAFE),
        ),
    ]
    if unbounded:
        modes.append(
            Mode(
                FAST,
                write_packing_config(
                    tmp / "fast.toml", jobs, a.hold, marker, workers=n_jobs, budget_mib=None, declare=False
                ),
                Series(FAST),
            )
        )
    if a.safe_workers != 2:
        modes[1].name = modes[1].series.tool = f"plain max_workers = {a.safe_workers}"

    declared = ", ".join(f"{sum(1 for s in jobs.values() if s == size)} x {size} MiB" for size in sizes)
    print(
        f"packing: {n_jobs} jobs ({declared}; each allocates {FRACTION:.0%} and sleeps {a.hold:g} s), budget "
        f"{a.budget} MiB, {a.runs} runs + 1 warm-up, RSS sampled every {a.interval * 1000:g} ms, temp dir {tmp}",
        flush=True,
    )
    if note:
        print(note, flush=True)
    problems: list[str] = []
    try:
        warm = Mode(PACK, modes[0].config, Series(PACK))
        p = run_mode(warm, tmp, env, needle, a, n_jobs, budget)
        problems += [f"warm-up: {x}" for x in p]
        print(f"  warm-up {PACK}: {warm.series.walls[-1]:.2f}s" + (" (PROBLEM)" if p else ""), flush=True)
        for i in range(a.runs):
            for mode in modes:
                p = run_mode(mode, tmp, env, needle, a, n_jobs, budget)
                problems += [f"run {i + 1}: {x}" for x in p]
                print(
                    f"  run {i + 1}/{a.runs} {mode.name}: {mode.series.walls[-1]:.2f}s, jobs' RSS max "
                    f"{mode.peaks[-1] / MIB:.0f} MiB, {mode.over[-1]} samples over budget"
                    + (" (PROBLEM)" if p else ""),
                    flush=True,
                )
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- report ----------------------------------------------------------------------------------
    def med(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    rows, results = [], {}
    for mode in modes:
        wall = mode.series.median
        span = med(mode.in_log)
        peak = max(mode.peaks, default=0)
        over = sum(mode.over)
        results[mode.name] = {
            **mode.series.summary(),
            "in_log_median_s": span,
            "in_log_s": [round(x, 4) for x in mode.in_log],
            "rss_max_bytes": peak,
            "rss_max_per_run_bytes": mode.peaks,
            "over_budget_samples": over,
            "over_budget_per_run": mode.over,
            "over_budget_s": over * a.interval,
            "most_running": max(mode.running, default=0),
        }
        rows.append(
            [
                mode.name,
                f"{wall:.2f}",
                "-" if span is None else f"{span:.2f}",
                str(max(mode.running, default=0)),
                f"{peak / MIB:.0f}",
                f"{peak / budget:.2f}x",
                str(over),
                f"{over * a.interval:.2f}",
            ]
        )
    print()
    print(
        format_table(
            [
                "mode",
                "makespan s",
                "in-log s",
                "most running",
                "jobs' RSS max MiB",
                "/ budget",
                "samples over",
                "s over",
            ],
            rows,
            [False, True, True, True, True, True, True, True],
        )
    )
    pack, safe = modes[0], modes[1]
    ratio = pack.series.median / safe.series.median
    in_log_ratio = (med(pack.in_log) or float("nan")) / (med(safe.in_log) or float("nan"))
    pack_over = sum(pack.over)
    mem_verdict = "INVALID" if problems else ("PASS" if pack_over == 0 else "MISS")
    print()
    print(f"makespan packing / {safe.name}: {fmt_ratio(ratio)} whole process, {fmt_ratio(in_log_ratio)} in-log (INFO)")
    print(
        f"packing, jobs' RSS over the {a.budget} MiB budget: {pack_over} samples "
        f"(max {max(pack.peaks, default=0) / MIB:.0f} MiB): {mem_verdict} (target: never)"
    )
    if unbounded:
        fast = modes[2]
        print(
            f"{fast.name}: {fmt_ratio(fast.series.median / safe.series.median)} of {safe.name}'s makespan, "
            f"but its jobs' RSS reached {max(fast.peaks, default=0) / MIB:.0f} MiB "
            f"({max(fast.peaks, default=0) / budget:.2f}x the budget), {sum(fast.over)} samples over"
        )
    if problems:
        print("\nPROBLEMS:")
        for x in problems:
            print(f"  - {x}")
    if a.keep:
        print(f"\nkept {tmp}")

    if a.json:
        info = "INVALID" if problems else "INFO"
        figs = [
            Figure(
                f"packing {n_jobs} jobs in {a.budget} MiB: makespan",
                f"{pack.series.median:.2f} s",
                f"{safe.name}: {safe.series.median:.2f} s",
                ratio,
                "none (ratio to the safe worker count)",
                info,
                pack.series.median,
                safe.series.median,
                "s",
            ),
            Figure(
                "  packing: jobs' RSS max vs budget",
                f"{max(pack.peaks, default=0) / MIB:.0f} MiB",
                (f"{FAST}: {max(modes[2].peaks, default=0) / MIB:.0f} MiB" if unbounded else "-"),
                max(pack.peaks, default=0) / budget,
                f"<= 1.0x the {a.budget} MiB budget",
                mem_verdict,
                max(pack.peaks, default=0) / MIB,
                (max(modes[2].peaks, default=0) / MIB) if unbounded else None,
                "MiB",
            ),
        ]
        result = {
            "bench": "packing",
            "jobs": jobs,
            "hold_s": a.hold,
            "fraction_allocated": FRACTION,
            "budget_bytes": budget,
            "runs": a.runs,
            "interval_s": a.interval,
            "ratio_vs_safe": ratio,
            "ratio_in_log_vs_safe": in_log_ratio,
            "verdict": mem_verdict,
            "figures": [f.as_dict() for f in figs],
            "results": results,
            "notes": [note] if note else [],
            "problems": problems,
            "versions": {"aimedres_async": version, "git": git_commit()},
            "machine": machine_info(),
        }
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
