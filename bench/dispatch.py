"""Dispatch benchmark (SPEC §11): the marginal cost of a job of `/bin/true`, 8 workers, against the
asyncio floor, at 2,000 and 8,000 jobs.

What is measured — whole-process wall time, `perf_counter()` from spawn to reaping (`timed_run`), at
each job count of `--jobs` (default 2,000 and 8,000), of:

1. aimedres-async: `python -m aimedres_async --config CFG run --log-format json`, stdout and stderr to
   /dev/null, on a throw-away config (one per count, in a temp dir) with `[supervisor] parallel =
   true, max_workers = 8`, discovery off and N tables `[jobs.jI] command = ["/bin/true"]`. Each run
   writes a full run folder (events.jsonl, one jobs/<id>.jsonl per job, summary.json; SPEC §7). After
   each run the supervisor must have exited 0 and its `logs/latest/summary.json` must say
   `counts = {"succeeded": N}` for N listed jobs.
2. the asyncio floor, `python bench/_floor.py asyncio N 8`: `loop.subprocess_exec` + a protocol that
   reads the pipes + `Semaphore(8)`, writing nothing: what the design's spawn shape costs by itself.
3. `sh -c 'seq N | xargs -P 8 -I{} /bin/true'` (GNU xargs; exit 0 means every command succeeded).
4. `sh -c 'seq N | parallel -j 8 /bin/true'` (GNU parallel; at the smallest count only: it is slow).
   The `sh` and `seq` add about a millisecond to the peers.
5. with `--floor`, also `python bench/_floor.py popen N 8` (Popen + pidfd + epoll, no event loop;
   INFO).

Each tool runs once as a warm-up at the smallest count (with stderr kept, to show what went wrong if
anything did), then `--runs` rounds; a round runs every tool at every count in turn (aimedres,
floor, xargs, parallel at 2,000, then the same at 8,000), so that a change of the machine's load
falls on both counts and on every tool alike. Before every run `sync` flushes dirty pages, outside
the timing: the disk here has bursty writeback that otherwise bills one run's log files to the next.
Earlier runs' folders are kept, as a user's are (each run makes its own folder); deleting them right
before a run would make ext4 step over thousands of freshly freed inodes on every file it creates.

Printed: per count, the median, min and max wall time, ms per job and CPU time (user+sys of the
process and everything it reaped); then the SPEC §11 figures, from the medians:

- the marginal cost of a job, (T(8,000) - T(2,000)) / 6,000 (with other counts: the largest and
  the smallest), for aimedres-async and for the asyncio floor, and their ratio: target <= 1.3x;
- aimedres-async / `parallel -j 8` at the smallest count: target <= 0.35x;
- aimedres-async / `xargs -P 8` at each count and on the marginal cost: INFO.

Each target gets PASS or MISS (INVALID if a run failed verification, or if the floor's marginal
cost came out <= 0, which only noise can do). The exit status is 0 either way: this is a
measurement, not a test. Without `parallel` on PATH that ratio is skipped. On a shared or small
machine the figures are noisy (other work steals the cores); compare the ratios of one invocation,
not absolute times across invocations.

SPEC §11 asks for Python 3.11 and 3.12. `--python PATH` runs the supervisor and the floor with
another interpreter (the peers are the same programs either way); it needs a venv with the project
installed, made once from the repository root, e.g.

    python3.12 -m venv ~/venvs/aimedres-3.12      # pyenv: "$(pyenv prefix 3.12.1)/bin/python" -m venv …
    ~/venvs/aimedres-3.12/bin/pip install -e .
    python bench/dispatch.py --python ~/venvs/aimedres-3.12/bin/python

The supervisor then runs this checkout's code (the bench puts it first on PYTHONPATH) with that
venv's interpreter and dependencies.

Run from the repository root with the project's interpreter, e.g.

    python bench/dispatch.py                        # 2,000 and 8,000 jobs, 8 workers, 5 runs
    python bench/dispatch.py --jobs 200 1000 --runs 1
    python bench/dispatch.py --json                 # last stdout line: the results as JSON

`--keep` keeps the temp dir (configs and the runs' logs); `--tmpdir DIR` chooses where it is made.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Series,
    Timing,
    check_supervisor_importable,
    format_table,
    git_commit,
    interpreter_version,
    machine_info,
    settle,
    supervisor_cmd,
    supervisor_env,
    timed_run,
    tool_version,
)
from _helpers import Figure, check_counts, fmt_ratio, read_summary, verdict, write_jobs_config

TARGET_MARGINAL = 1.3  # SPEC §11: aimedres's marginal cost of a job <= 1.3x the asyncio floor's
TARGET_VS_PARALLEL = 0.35  # SPEC §11: aimedres wall at 2,000 jobs <= 0.35x parallel -j 8
AIM, FLOOR, XARGS, PARALLEL, POPEN = "aimedres-async", "asyncio floor", "xargs -P", "parallel -j", "Popen floor"
FLOOR_PY = Path(__file__).with_name("_floor.py")

Run = Callable[[int, bool], tuple[Timing, list[str]]]  # (jobs, warm-up) -> (timing, problems)


class Bench:
    def __init__(self, tmp: Path, counts: list[int], workers: int, timeout: float, python: str) -> None:
        self.tmp = tmp
        self.workers = workers
        self.timeout = timeout
        self.python = python
        self.env = supervisor_env(tmp)
        self.configs: dict[int, Path] = {}
        for n in counts:
            (tmp / f"n{n}").mkdir()
            self.configs[n] = write_jobs_config(tmp / f"n{n}" / "aimedres.toml", n, ["/bin/true"], workers)

    def _run(self, cmd: list[str], name: str, warmup: bool, cwd: Path) -> tuple[Timing, list[str]]:
        """Time cmd (stdout and stderr to /dev/null; the warm-up keeps stderr in <name>.err)."""
        err_path = self.tmp / f"{name}.err" if warmup else None
        settle()
        with open(err_path, "wb") if err_path else contextlib.nullcontext(subprocess.DEVNULL) as err:
            t = timed_run(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=cwd, env=self.env, timeout=self.timeout)
        problems = []
        if t.timed_out:
            problems.append(f"{name}: killed after the {self.timeout:g}s timeout")
        elif t.returncode != 0:
            tail = ""
            if err_path is not None and err_path.exists():
                tail = err_path.read_bytes()[-800:].decode("utf-8", "replace").strip()
            problems.append(f"{name}: exit status {t.returncode}" + (f"; stderr ends:\n{tail}" if tail else ""))
        return t, problems

    def run_aimedres(self, n: int, warmup: bool) -> tuple[Timing, list[str]]:
        # Earlier runs' folders stay, as a user's do: deleting thousands of files just before the
        # next run makes ext4 test every freshly freed inode (recently_deleted) on each create,
        # which perf showed as ~15% of the run.
        config = self.configs[n]
        cmd = supervisor_cmd(config, "run", "--log-format", "json", python=self.python)
        t, problems = self._run(cmd, f"aimedres-{n}", warmup, config.parent)
        if not t.timed_out:
            problems += check_counts(read_summary(config.parent / "logs"), {"succeeded": n})
        return t, problems

    def run_floor(self, n: int, warmup: bool) -> tuple[Timing, list[str]]:
        cmd = [self.python, str(FLOOR_PY), "asyncio", str(n), str(self.workers)]
        return self._run(cmd, f"floor-asyncio-{n}", warmup, self.tmp)

    def run_popen(self, n: int, warmup: bool) -> tuple[Timing, list[str]]:
        cmd = [self.python, str(FLOOR_PY), "popen", str(n), str(self.workers)]
        return self._run(cmd, f"floor-popen-{n}", warmup, self.tmp)

    def run_xargs(self, n: int, warmup: bool) -> tuple[Timing, list[str]]:
        cmd = ["sh", "-c", f"seq {n} | xargs -P {self.workers} -I{{}} /bin/true"]
        return self._run(cmd, f"xargs-{n}", warmup, self.tmp)

    def run_parallel(self, n: int, warmup: bool) -> tuple[Timing, list[str]]:
        cmd = ["sh", "-c", f"seq {n} | parallel -j {self.workers} /bin/true"]
        return self._run(cmd, f"parallel-{n}", warmup, self.tmp)


def measure(plan: list[tuple[str, int, Run]], runs: int, series: dict[tuple[str, int], Series], smallest: int) -> None:
    """One warm-up per tool at the smallest count (not counted), then `runs` rounds of the plan."""
    for tool, n, fn in plan:
        if n != smallest:
            continue
        print(f"  warm-up {tool} at {n:,} ...", end="", flush=True)
        t, problems = fn(n, True)
        print(f" {t.wall_s:.2f}s" + (" (PROBLEM)" if problems else ""), flush=True)
        series[tool, n].problems += [f"warm-up: {p}" for p in problems]
    for i in range(runs):
        for tool, n, fn in plan:
            t, problems = fn(n, False)
            series[tool, n].add(t)
            series[tool, n].problems += [f"run {i + 1}: {p}" for p in problems]
            mark = " (PROBLEM)" if problems else ""
            print(f"  run {i + 1}/{runs} {tool} at {n:,}: {t.wall_s:.2f}s{mark}", flush=True)


def marginal(series: dict[tuple[str, int], Series], tool: str, lo: int, hi: int) -> float | None:
    """(T(hi) - T(lo)) / (hi - lo) from the medians, in seconds per job; None if not measured."""
    if (tool, lo) not in series or (tool, hi) not in series:
        return None
    return (series[tool, hi].median - series[tool, lo].median) / (hi - lo)


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.3f} ms"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--jobs",
        type=int,
        nargs="+",
        default=[2000, 8000],
        metavar="N",
        help="job counts of /bin/true (default 2000 8000); the marginal cost uses the smallest and the largest",
    )
    ap.add_argument("--workers", type=int, default=8, metavar="N", help="max_workers / -P / -j (default 8)")
    ap.add_argument("--runs", type=int, default=5, metavar="N", help="timed rounds after a warm-up (default 5)")
    ap.add_argument(
        "--python",
        metavar="PATH",
        help="interpreter for the supervisor and the floor (a venv with the project installed; default: this one)",
    )
    ap.add_argument("--floor", action="store_true", help="also time the Popen + pidfd floor (bench/_floor.py; INFO)")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object (last line)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, the runs' logs)")
    ap.add_argument("--tmpdir", metavar="DIR", help="make the temp dir here (default: $TMPDIR or /tmp)")
    ap.add_argument("--timeout", type=float, default=600, metavar="S", help="per-run timeout in seconds (default 600)")
    a = ap.parse_args(argv)
    if min(a.jobs) < 1 or a.runs < 1 or a.workers < 1:
        ap.error("--jobs, --workers and --runs must be >= 1")
    a.jobs = sorted(set(a.jobs))
    return a


def main(argv: list[str] | None = None) -> int:
    """Check the tools, measure the plan, report. Over ~60 lines for the JSON result, spelled out
    key by key at its end."""
    a = parse_args(argv)
    python = a.python or sys.executable
    version = check_supervisor_importable(supervisor_env(), python)
    if version is None:
        return 2
    py_version = interpreter_version(python) or "?"
    missing = [tool for tool in ("seq", "xargs", "sh") if shutil.which(tool) is None]
    if missing:
        print(f"error: not on PATH: {', '.join(missing)}", file=sys.stderr)
        return 2
    parallel = shutil.which("parallel")
    if parallel is None:
        print("NOTE: GNU parallel is not on PATH (apt-get install parallel): the parallel ratio is skipped.")

    counts, lo = a.jobs, a.jobs[0]
    tmp = Path(tempfile.mkdtemp(prefix="aimedres-bench-dispatch-", dir=a.tmpdir))
    plan = make_plan(Bench(tmp, counts, a.workers, a.timeout, python), counts, parallel is not None, a.floor)
    series = {(tool, n): Series(f"{tool} @ {n}") for tool, n, _ in plan}

    print(
        f"dispatch: {', '.join(f'{n:,}' for n in counts)} x /bin/true, {a.workers} workers, {a.runs} rounds "
        f"+ 1 warm-up per tool; supervisor and floor on {python} (Python {py_version}); temp dir {tmp}",
        flush=True,
    )
    try:
        measure(plan, a.runs, series, lo)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print_table(series, plan, a.workers)
    figures, figures_json = spec_figures(series, counts, a.workers, py_version if a.python else None, a.floor)
    all_problems = [p for s in series.values() for p in s.problems]
    if all_problems:
        print("\nPROBLEMS:")
        for p in all_problems:
            print(f"  - {p}")
    if a.keep:
        print(f"\nkept {tmp}")

    if a.json:
        result: dict[str, Any] = {
            "bench": "dispatch",
            "jobs": counts,
            "workers": a.workers,
            "runs": a.runs,
            "target": {
                "marginal_ratio_max_vs_asyncio_floor": TARGET_MARGINAL,
                "ratio_max_vs_parallel": TARGET_VS_PARALLEL,
            },
            **figures_json,
            "figures": [f.as_dict() for f in figures],
            "results": {s.tool: s.summary() for s in series.values()},
            "problems": all_problems,
            "versions": {
                "aimedres_async": version,
                "git": git_commit(),
                "python": py_version,
                "python_executable": python,
                "parallel": tool_version(["parallel", "--version"]) if parallel else None,
                "xargs": tool_version(["xargs", "--version"]),
            },
            "machine": machine_info(),
        }
        print(json.dumps(result, default=str))
    return 0


def make_plan(bench: Bench, counts: list[int], parallel: bool, popen: bool) -> list[tuple[str, int, Run]]:
    """One round: every tool at the smallest count, then at the next (parallel at the smallest only)."""
    plan: list[tuple[str, int, Run]] = []
    for n in counts:
        plan += [(AIM, n, bench.run_aimedres), (FLOOR, n, bench.run_floor), (XARGS, n, bench.run_xargs)]
        if parallel and n == counts[0]:
            plan.append((PARALLEL, n, bench.run_parallel))
        if popen:
            plan.append((POPEN, n, bench.run_popen))
    return plan


def print_table(series: dict[tuple[str, int], Series], plan: list[tuple[str, int, Run]], workers: int) -> None:
    labels = {
        AIM: "aimedres-async run",
        FLOOR: "asyncio floor (subprocess_exec)",
        XARGS: f"seq | xargs -P {workers}",
        PARALLEL: f"seq | parallel -j {workers}",
        POPEN: "Popen + pidfd floor",
    }
    rows = []
    for tool, n, _ in plan:
        d = series[tool, n].summary()
        rows.append(
            [
                labels[tool],
                f"{n:,}",
                f"{d['median_s']:.3f}",
                f"{d['min_s']:.3f}",
                f"{d['max_s']:.3f}",
                f"{d['median_s'] / n * 1000:.3f}",
                f"{d['cpu_median_s']:.2f}",
            ]
        )
    print()
    print(
        format_table(
            ["tool", "jobs", "median s", "min s", "max s", "ms/job", "cpu s"],
            rows,
            [False, True, True, True, True, True, True],
        )
    )


def spec_figures(
    series: dict[tuple[str, int], Series], counts: list[int], workers: int, py_version: str | None, popen: bool
) -> tuple[list[Figure], dict[str, Any]]:
    """Print the SPEC §11 figures; return them as all.py's rows and as this script's JSON keys."""
    on = f" [Python {py_version}]" if py_version else ""
    out: dict[str, Any] = {}
    print()
    figures = marginal_figures(series, counts, workers, on, popen, out)
    figures += parallel_figure(series, counts[0], workers, on, out)
    figures += xargs_figures(series, counts, workers, out)
    return figures, out


def problems_of(series: dict[tuple[str, int], Series], tool: str) -> list[str]:
    return [p for (t, _), s in series.items() if t == tool for p in s.problems]


def marginal_figures(
    series: dict[tuple[str, int], Series], counts: list[int], workers: int, on: str, popen: bool, out: dict[str, Any]
) -> list[Figure]:
    """The marginal cost of a job of the supervisor, the floors and xargs, and the target ratio."""
    lo, hi = counts[0], counts[-1]
    if hi == lo:
        print(f"one job count ({lo:,}): no marginal cost (give --jobs two counts, e.g. 2000 8000)")
        return []
    m = {tool: marginal(series, tool, lo, hi) for tool in (AIM, FLOOR, XARGS, POPEN)}
    m_aim, m_floor, m_xargs = m[AIM], m[FLOOR], m[XARGS]
    floor_problems = problems_of(series, FLOOR)
    if m_floor is not None and m_floor <= 0:
        floor_problems.append(f"the asyncio floor's marginal cost is {m_floor * 1000:.3f} ms <= 0 (noise)")
    r = m_aim / m_floor if m_aim is not None and m_floor else None
    v = verdict(r, TARGET_MARGINAL, problems_of(series, AIM) + floor_problems)
    r_x = m_aim / m_xargs if m_aim is not None and m_xargs and m_xargs > 0 else None
    print(f"marginal cost of a job, (T({hi:,}) - T({lo:,})) / {hi - lo:,}, from the medians:")
    print(f"  aimedres-async: {ms(m_aim)}   asyncio floor: {ms(m_floor)}   xargs -P {workers}: {ms(m_xargs)}")
    if popen:
        print(f"  Popen + pidfd floor: {ms(m[POPEN])}  (INFO)")
    print(f"  aimedres-async / asyncio floor: {fmt_ratio(r)}  (SPEC §11 target <= {TARGET_MARGINAL}x): {v}")
    print(f"  aimedres-async / xargs -P {workers}:   {fmt_ratio(r_x)}  (INFO)")
    out["marginal_s"] = {t: v_ for t, v_ in m.items() if v_ is not None}
    out["marginal_ratio_vs_asyncio_floor"] = r
    out["marginal_ratio_vs_xargs"] = r_x
    in_ms = {t: None if v_ is None else v_ * 1000 for t, v_ in m.items()}
    return [
        Figure(
            f"dispatch: marginal cost of a job, {lo:,}->{hi:,} x true, {workers} workers{on}",
            ms(m_aim),
            f"asyncio floor: {ms(m_floor)}",
            r,
            f"<= {TARGET_MARGINAL}x the floor's",
            v,
            in_ms[AIM],
            in_ms[FLOOR],
            "ms",
        ),
        Figure(
            "  marginal cost vs xargs",
            ms(m_aim),
            f"xargs -P {workers}: {ms(m_xargs)}",
            r_x,
            "-",
            "INFO",
            in_ms[AIM],
            in_ms[XARGS],
            "ms",
        ),
    ]


def parallel_figure(
    series: dict[tuple[str, int], Series], lo: int, workers: int, on: str, out: dict[str, Any]
) -> list[Figure]:
    """The supervisor's whole-process wall against GNU parallel's at the smallest count."""
    out["ratio_vs_parallel"] = None
    if (PARALLEL, lo) not in series:
        print("aimedres-async / parallel: n/a — SKIPPED (GNU parallel not installed)")
        return []
    aim, par = series[AIM, lo], series[PARALLEL, lo]
    r = out["ratio_vs_parallel"] = aim.median / par.median
    v = verdict(r, TARGET_VS_PARALLEL, aim.problems + par.problems)
    print(
        f"at {lo:,} jobs: aimedres-async / parallel -j {workers}: {fmt_ratio(r)}  "
        f"(SPEC §11 target <= {TARGET_VS_PARALLEL}x): {v}"
    )
    return [
        Figure(
            f"dispatch {lo:,} x true, {workers} workers, vs parallel{on}",
            f"{aim.median:.2f} s",
            f"parallel -j {workers}: {par.median:.2f} s",
            r,
            f"<= {TARGET_VS_PARALLEL}x",
            v,
            aim.median,
            par.median,
            "s",
        )
    ]


def xargs_figures(
    series: dict[tuple[str, int], Series], counts: list[int], workers: int, out: dict[str, Any]
) -> list[Figure]:
    """The supervisor and the floors against xargs at each count (INFO)."""
    figures = []
    ratios: dict[str, float] = {}
    for n in counts:
        aim, xargs = series[AIM, n].median, series[XARGS, n].median
        r = ratios[str(n)] = aim / xargs
        line = f"at {n:,} jobs: aimedres-async / xargs -P {workers}: {fmt_ratio(r)} (INFO);"
        line += f" asyncio floor / xargs: {fmt_ratio(series[FLOOR, n].median / xargs)}"
        if (POPEN, n) in series:
            line += f"; Popen floor / xargs: {fmt_ratio(series[POPEN, n].median / xargs)}"
        print(line)
        figures.append(
            Figure(
                f"  {n:,} x true vs xargs",
                f"{aim:.2f} s",
                f"xargs -P {workers}: {xargs:.2f} s",
                r,
                "-",
                "INFO",
                aim,
                xargs,
                "s",
            )
        )
    out["ratio_vs_xargs"] = ratios
    return figures


if __name__ == "__main__":
    sys.exit(main())
