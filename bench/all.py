"""Run every benchmark in bench/ and print one combined table of the SPEC §11 figures.

Each script (startup, capture, dispatch, overhead, memory, idle, makespan, spool, and any other
`bench/*.py` not starting with `_`: chaos, packing) runs as a subprocess of this interpreter with
`--json`; its own output is shown as it goes, and its last stdout line (one JSON object) is
collected. The ratio figures keep each script's 5 runs after a warm-up; a few sizes are reduced so
that the whole set finishes in about 6-7 minutes on a 2-core machine:

    startup   --runs 10                       (run --list, status, submit, --help; default 20 runs)
    memory    --runs 1 --duration 10          (10,000 jobs, 64 workers: the SPEC size; a peak)
    packing   --runs 1                        (INFO: no SPEC target for its makespan)
    spool     --tickets 30 --drain 200        (defaults 100 and 1,000)
    trackers  --jobs 100 --epochs 20          (defaults 1,000 x 50; INFO: no SPEC target)

Capture (5,000,000 lines), dispatch (2,000 and 8,000 jobs beside the asyncio floor, 8 workers; its
Popen floor is left out), overhead (1,000,000 lines), idle, makespan and chaos run at their
defaults. `scale` (100,000 jobs, minutes) runs only with `--full` or when `--only` names it. Every
script's files go into one temp folder (under `--tmpdir`), deleted only at the end, so that no
script pays for the deletion of another's thousands of log files. `--full`
runs every script with its own defaults (the SPEC sizes and more runs: longer). The combined table
has one row per figure: what aimedres-async measured, the peer (or reference) in the same
invocation, the ratio, the SPEC §11 target and the verdict (PASS, MISS, INVALID when a run failed
verification, INFO when there is no target, ERROR when the script did not produce results). The
load average before and after is printed: on a shared machine the figures are noisy, and the
ratios within one script's run are what to compare. The exit status is 0 whatever the verdicts
(2 only for bad usage).

    python bench/all.py                     # reduced sizes, ~6-7 min
    python bench/all.py --only dispatch idle
    python bench/all.py --full --json       # last stdout line: everything as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import format_table, git_commit, machine_info
from _helpers import Figure, fmt_ratio

HERE = Path(__file__).resolve().parent
ORDER = ["startup", "capture", "dispatch", "scale", "overhead", "memory", "idle", "makespan", "spool"]
FULL_ONLY = {"scale"}  # minutes at its SPEC size: only with --full, or when --only names it
MIN_TIMEOUT_S = {"dispatch": 1800, "scale": 3600}  # whatever --timeout says (scale: ~10-15 min)
REDUCED: dict[str, list[str]] = {
    "startup": ["--runs", "10"],
    "dispatch": ["--timeout", "180"],
    "overhead": ["--timeout", "180"],
    "memory": ["--runs", "1", "--duration", "10"],
    "packing": ["--runs", "1"],
    "spool": ["--tickets", "30", "--drain", "200"],
    "trackers": ["--jobs", "100", "--epochs", "20"],
}


def scripts() -> list[str]:
    found = sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_") and p.stem != "all")
    return [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]


def run_script(name: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run bench/<name>.py --json ARGS, echo its output, return its JSON (or why there is none)."""
    cmd = [sys.executable, str(HERE / f"{name}.py"), *args, "--json"]
    print(f"\n=== {name}: {' '.join([Path(cmd[1]).name, *cmd[2:]])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    result: dict[str, Any] | None = None
    tail: list[str] = []

    def pump() -> None:
        nonlocal result
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                except ValueError:
                    obj = None
                if isinstance(obj, dict) and "bench" in obj:
                    result = obj
                    continue
            sys.stdout.write(line)
            sys.stdout.flush()
            tail.append(line)
            del tail[:-20]

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGTERM)  # the script's group (its supervisors included)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    elapsed = time.perf_counter() - t0
    print(f"=== {name}: {elapsed:.0f} s", flush=True)
    error = None
    if timed_out:
        error = f"killed after the {timeout:g}s timeout"
    elif result is None:
        error = f"exit status {proc.returncode}, no JSON result"
    return {"args": args, "elapsed_s": elapsed, "exit": proc.returncode, "error": error, "result": result}


def figures_of(name: str, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The combined-table rows of one script's result."""
    r = run.get("result")
    if run.get("error") or not isinstance(r, dict):
        return [Figure(name, "-", "-", None, "-", f"ERROR ({run.get('error')})").as_dict()]
    figs = r.get("figures")
    if isinstance(figs, list):
        return [f for f in figs if isinstance(f, dict)]
    if name == "capture":
        res = r.get("results", {})
        aim = res.get("aimedres-async", {}).get("median_s")
        par = res.get("parallel --line-buffer --tag", {}).get("median_s")
        figs = [
            Figure(
                f"capture: seq {r.get('lines', 0):,} into the job log",
                "-" if aim is None else f"{aim:.2f} s",
                "-" if par is None else f"parallel --line-buffer --tag: {par:.2f} s",
                r.get("ratio_vs_parallel"),
                f"<= {r.get('target', {}).get('ratio_max', 1.0)}x",
                str(r.get("verdict", "?")),
                aim,
                par,
                "s",
            ).as_dict()
        ]
        cached = r.get("bytes_cached_s")
        if cached is not None:
            figs.append(
                Figure(
                    "  dd writing the same bytes, cache kept",
                    f"{cached:.2f} s",
                    "-" if par is None else f"parallel: {par:.2f} s",
                    cached / par if par else None,
                    "-",
                    "INFO",
                    cached,
                    par,
                    "s",
                ).as_dict()
            )
        return figs
    if name == "spool":
        out = []
        lat = r.get("latency", {})
        target = r.get("target", {}).get("median_ms_max", 50)
        paths = (
            ("in-process", "spool: submit -> job.started (in-process)", True),
            ("CLI", "  via the `submit` CLI (interpreter start-up included)", False),
        )
        for path, label, judged in paths:
            d = lat.get(path)
            if not isinstance(d, dict):
                continue
            med = (d.get("latency") or d).get("median_ms")
            out.append(
                Figure(
                    label,
                    "-" if med is None else f"{med:.1f} ms",
                    "-",
                    None,
                    f"median <= {target:g} ms" if judged else "none",
                    str(r.get("verdict", "?")) if judged else "INFO",
                    med,
                    None,
                    "ms",
                ).as_dict()
            )
        drain = r.get("drain")
        if isinstance(drain, dict) and drain.get("tickets_per_s") is not None:
            out.append(
                Figure(
                    f"  drain {drain.get('tickets', 0):,} tickets",
                    f"{drain['tickets_per_s']:.0f} tickets/s",
                    "-",
                    None,
                    "none",
                    "INFO" if drain.get("valid", True) else "INVALID",
                    drain["tickets_per_s"],
                    None,
                    "tickets/s",
                ).as_dict()
            )
        return out or [Figure("spool", "-", "-", None, "-", str(r.get("verdict", "?"))).as_dict()]
    return [Figure(name, "-", "-", None, "-", str(r.get("verdict", "?"))).as_dict()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--full", action="store_true", help="each script's own defaults (SPEC sizes; much longer), and scale"
    )
    ap.add_argument("--only", nargs="+", metavar="NAME", default=[], help="run only these scripts")
    ap.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="do not run these scripts")
    ap.add_argument("--tmpdir", metavar="DIR", help="where the scripts' files go (a folder deleted at the end)")
    ap.add_argument("--timeout", type=float, default=900, metavar="S", help="per script, in seconds (default 900)")
    ap.add_argument("--json", action="store_true", help="also print everything as one JSON object (last line)")
    a = ap.parse_args(argv)
    available = scripts()
    unknown = [n for n in a.only + a.skip if n not in available]
    if unknown:
        ap.error(f"no such benchmark: {', '.join(unknown)} (have: {', '.join(available)})")
    names = [n for n in available if (n in a.only if a.only else a.full or n not in FULL_ONLY) and n not in a.skip]

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    print(
        f"bench/all.py: {', '.join(names)} ({'full sizes' if a.full else 'reduced sizes'}); "
        f"{os.cpu_count()} CPUs, load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}",
        flush=True,
    )
    runs: dict[str, dict[str, Any]] = {}
    # Every script keeps its files in one folder that goes at the very end: on this machine's ext4,
    # creating files soon after thousands were deleted steps over each recently freed inode (perf:
    # ext4's recently_deleted was ~15% of a dispatch run that followed such a deletion).
    root = Path(tempfile.mkdtemp(prefix="aimedres-bench-all-", dir=a.tmpdir))
    try:
        for name in names:
            args = [] if a.full else list(REDUCED.get(name, []))
            timeout = max(a.timeout, MIN_TIMEOUT_S.get(name, 0))
            runs[name] = run_script(name, [*args, "--tmpdir", str(root), "--keep"], timeout)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = time.perf_counter() - t0
    load1 = os.getloadavg()

    rows, figures = [], []
    for name in names:
        for f in figures_of(name, runs[name]):
            figures.append({"bench": name, **f})
            rows.append(
                [
                    f.get("figure", name),
                    f.get("aimedres", "-"),
                    f.get("peer", "-"),
                    fmt_ratio(f.get("ratio")),
                    f.get("target", "-"),
                    f.get("verdict", "?"),
                ]
            )
    print()
    print(
        f"=== combined ({total / 60:.1f} min; load average {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} at the end; "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]})"
    )
    print(
        format_table(
            ["figure", "aimedres-async", "peer / reference", "ratio", "target (SPEC §11)", "verdict"],
            rows,
            [False, True, False, True, False, False],
        )
    )
    commits = {
        n: (r["result"].get("versions") or {}).get("git") for n, r in runs.items() if isinstance(r.get("result"), dict)
    }
    if len({c for c in commits.values() if c}) > 1:
        print(
            "\nNOTE: the checkout's commit changed during the run (figures are from different code): "
            + ", ".join(f"{n} {c}" for n, c in commits.items())
        )
    problems = {
        n: r["result"].get("problems") for n, r in runs.items() if r.get("result") and r["result"].get("problems")
    }
    if problems:
        print("\nscripts that reported problems (see their output above): " + ", ".join(problems))

    if a.json:
        print(
            json.dumps(
                {
                    "bench": "all",
                    "full": a.full,
                    "elapsed_s": total,
                    "loadavg_before": load0,
                    "loadavg_after": load1,
                    "figures": figures,
                    "scripts": runs,
                    "git": git_commit(),
                    "commits": commits,
                    "machine": machine_info(),
                },
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
