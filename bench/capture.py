"""Output-capture benchmark (SPEC §11): one job printing 5,000,000 lines.

What is measured — whole-process wall time, `perf_counter()` from spawn to reaping (`timed_run`), of:

1. aimedres-async: `python -m aimedres_async --config CFG run --no-progress` on a throw-away config
   (in a temp dir) whose only job is `[jobs.seq] command = ["seq", "5000000"]`, discovery off. Every
   output line becomes a `job.output` record in `logs/<run_id>/jobs/seq.jsonl` (SPEC §7). After each
   run the file `logs/latest/jobs/seq.jsonl` is checked: the supervisor exited 0 and the file holds
   exactly N records containing `"event":"job.output"` (counted in binary chunks, not parsed).
2. the peer, GNU parallel: `parallel --line-buffer --tag ::: "seq 5000000"` with stdout redirected to a
   file in the same temp dir (same disk; it writes plain text `seq 5000000<TAB>line`). Its line count
   is checked too.
3. the floor: `seq 5000000 > file` (a raw write of the same lines).
4. the same bytes, written plainly: `dd if=/dev/zero bs=1M` writing as many bytes as aimedres's
   last job log (~630 MB: every record carries ts, t, event, attempt and stream; log schema 2),
   leaving them all in the page cache. On this VM the kernel fills fresh cache pages several times
   slower than recycled ones, and how slow swings a lot between runs (the same 734 MB dd took
   0.26-2.2 s here within a minute). aimedres does not keep a big log in the cache: it starts
   write-back every 8 MiB and drops what has been written (`sinks.JsonlFile`), so it recycles the
   same pages and can take less time than this row. A reference, not a floor.

Each tool runs once as a warm-up, then `--runs` times, interleaved (aimedres, parallel, seq, aimedres,
…); outputs are deleted and dirty pages flushed (`sync`) between runs, outside the timing, so the disk
does not fill (the JSONL is ~600 MB). The table shows the median, min and max wall time, lines/s at the
median, output size (MB = 10**6 bytes) and CPU time (user+sys of the process and its children). The
target is aimedres/parallel <= 0.6x (median over median); PASS/MISS is printed, and the exit status is
0 either way: this is a measurement, not a test. A run whose output fails verification makes the
verdict INVALID. Without `parallel` on PATH only aimedres and raw seq are measured.

Run from the repository root with the project's interpreter, e.g.

    python bench/capture.py                 # 5 M lines, 5 runs
    python bench/capture.py --runs 3 --lines 1000000
    python bench/capture.py --validate      # also JSON-parse one run's whole log
    python bench/capture.py --json          # last stdout line: the results as JSON

`--keep` keeps the temp dir (with the last run's outputs); `--tmpdir DIR` chooses where it is made.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    MB,
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
    settle,
    supervisor_cmd,
    supervisor_env,
    timed_run,
    tool_version,
    write_config,
)

TARGET_RATIO = 0.6  # SPEC §11: aimedres wall <= 0.6x parallel --line-buffer --tag
JOB = "seq"
BYTES = "same bytes with dd (cache kept)"
OUTPUT_NEEDLE = b'"event":"job.output"'
_PER_ATTEMPT = {"job.started", "job.output", "job.exited", "job.retrying"}
_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|\+00:00)$")


@dataclass
class Outcome:
    timing: Timing
    size: int | None
    problems: list[str]


class Bench:
    def __init__(self, tmp: Path, lines: int, timeout: float, validate: bool) -> None:
        self.tmp = tmp
        self.lines = lines
        self.timeout = timeout
        self.validate = validate
        self.env = supervisor_env(tmp)
        self.config = write_config(tmp / "aimedres.toml", {JOB: ["seq", str(lines)]})
        self.logs = tmp / "logs"
        self.validated: dict[str, Any] | None = None
        self.jsonl_size: int | None = None  # bytes of the last job log, for the dd reference

    # -- aimedres-async --------------------------------------------------------------------------

    def clean_aimedres(self) -> None:
        for name in ("logs", "results", "supervisor.out"):
            remove(self.tmp / name)

    def run_aimedres(self, validate: bool = False) -> Outcome:
        self.clean_aimedres()
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
        problems = self._check_exit("aimedres", t, self.tmp / "supervisor.out")
        path = latest_job_log(self.logs, JOB)
        if path is None:
            problems.append(f"aimedres: no {self.logs}/latest/jobs/{JOB}.jsonl was written")
            return Outcome(t, None, problems)
        n = count_occurrences(path, OUTPUT_NEEDLE)
        if n != self.lines:
            problems.append(f"aimedres: {path.name} holds {n:,} job.output records, expected {self.lines:,}")
        if validate:
            self.validated = validate_run(path, self.lines)
            problems += [f"aimedres (--validate): {p}" for p in self.validated["problems"]]
        self.jsonl_size = path.stat().st_size
        return Outcome(t, self.jsonl_size, problems)

    # -- GNU parallel ----------------------------------------------------------------------------

    def run_parallel(self, validate: bool = False) -> Outcome:
        out_path, err_path = self.tmp / "parallel.out", self.tmp / "parallel.err"
        remove(out_path)
        settle()
        cmd = ["parallel", "--line-buffer", "--tag", ":::", f"seq {self.lines}"]
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            t = timed_run(cmd, stdout=out, stderr=err, cwd=self.tmp, env=self.env, timeout=self.timeout)
        problems = self._check_exit("parallel", t, err_path)
        n = count_lines(out_path)
        if n != self.lines:
            problems.append(f"parallel: wrote {n:,} lines, expected {self.lines:,}")
        with open(out_path, "rb") as f:
            first = f.readline()
        if self.lines and first != f"seq {self.lines}\t1\n".encode():
            problems.append(f"parallel: unexpected first line {first[:80]!r}")
        return Outcome(t, out_path.stat().st_size, problems)

    # -- raw seq ---------------------------------------------------------------------------------

    def run_raw(self, validate: bool = False) -> Outcome:
        out_path = self.tmp / "seq.out"
        remove(out_path)
        settle()
        with open(out_path, "wb") as out:
            t = timed_run(
                ["seq", str(self.lines)],
                stdout=out,
                stderr=subprocess.DEVNULL,
                cwd=self.tmp,
                env=self.env,
                timeout=self.timeout,
            )
        problems = self._check_exit("seq", t, None)
        n = count_lines(out_path)
        if n != self.lines:
            problems.append(f"seq: wrote {n:,} lines, expected {self.lines:,}")
        return Outcome(t, out_path.stat().st_size, problems)

    # -- writing the same bytes ------------------------------------------------------------------

    def run_bytes(self, validate: bool = False) -> Outcome:
        """As many zero bytes as aimedres's last job log, written with dd (left in the page cache)."""
        out_path = self.tmp / "bytes.out"
        remove(out_path)
        settle()
        size = self.jsonl_size or 0
        cmd = ["dd", "if=/dev/zero", f"of={out_path}", "bs=1M", f"count={size}", "iflag=count_bytes"]
        t = timed_run(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.tmp, env=self.env, timeout=self.timeout
        )
        problems = self._check_exit("dd", t, None)
        written = out_path.stat().st_size if out_path.exists() else 0
        if written != size or not size:
            problems.append(f"dd: wrote {written:,} bytes, expected {size:,}")
        return Outcome(t, written, problems)

    def clean_all(self) -> None:
        self.clean_aimedres()
        for name in ("parallel.out", "parallel.err", "seq.out", "bytes.out"):
            remove(self.tmp / name)

    def _check_exit(self, tool: str, t: Timing, log: Path | None) -> list[str]:
        if t.timed_out:
            return [f"{tool}: killed after the {self.timeout:g}s timeout"]
        if t.returncode != 0:
            tail = ""
            if log is not None and log.exists():
                tail = log.read_bytes()[-800:].decode("utf-8", "replace").strip()
            return [f"{tool}: exit status {t.returncode}" + (f"; output ends:\n{tail}" if tail else "")]
        return []


def validate_run(path: Path, lines: int) -> dict[str, Any]:
    """JSON-parse every record of one run's job log and check it against SPEC §7 (slow: once only).
    Log schema 2: `job.output` records leave run and job to the path (logs/<run>/jobs/<job>.jsonl)
    and must not carry them; lifecycle records name both."""
    try:
        import orjson

        loads: Callable[[bytes], Any] = orjson.loads
    except ImportError:
        loads = json.loads
    problems: list[str] = []
    events: dict[str, int] = {}
    run_ids: set[str] = set()
    expect = 1
    records = 0
    exited: dict[str, Any] | None = None
    finished: dict[str, Any] | None = None
    no_attempt: set[str] = set()

    def problem(msg: str) -> None:
        if len(problems) < 20:
            problems.append(msg)

    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            records += 1
            try:
                rec = loads(raw)
            except ValueError as e:
                problem(f"line {lineno}: not JSON ({e}): {raw[:120]!r}")
                continue
            if not isinstance(rec, dict):
                problem(f"line {lineno}: not a JSON object")
                continue
            ev = str(rec.get("event"))
            events[ev] = events.get(ev, 0) + 1
            named = ev != "job.output"
            for key in ("ts", "event", "run", "job") if named else ("ts", "event"):
                if key not in rec:
                    problem(f"line {lineno} ({ev}): no {key!r}")
            for key in () if named else ("run", "job"):
                if key in rec:
                    problem(f"line {lineno} ({ev}): {key!r} in the job's own file (schema 2 leaves it to the path)")
            if "attempt" not in rec:
                # per-attempt records must say which attempt; per-job ones (queued, finished) are noted
                if ev in _PER_ATTEMPT:
                    problem(f"line {lineno} ({ev}): no 'attempt'")
                else:
                    no_attempt.add(ev)
            if not _TS.match(str(rec.get("ts", ""))):
                problem(f"line {lineno}: ts {rec.get('ts')!r} is not RFC 3339 UTC with microseconds")
            if named:
                run_ids.add(str(rec.get("run")))
                if rec.get("job") != JOB:
                    problem(f"line {lineno}: job {rec.get('job')!r}")
            if ev == "job.output":
                if rec.get("stream") != "stdout":
                    problem(f"line {lineno}: stream {rec.get('stream')!r}")
                if rec.get("partial"):
                    problem(f"line {lineno}: partial record")
                if rec.get("line") != str(expect):
                    problem(f"line {lineno}: line {rec.get('line')!r}, expected {str(expect)!r}")
                    try:
                        expect = int(rec.get("line", expect))
                    except (TypeError, ValueError):
                        pass
                expect += 1
            elif ev == "job.exited":
                exited = rec
            elif ev == "job.finished":
                finished = rec
    if events.get("job.output", 0) != lines:
        problem(f"{events.get('job.output', 0):,} job.output records, expected {lines:,}")
    run_id = path.resolve().parent.parent.name
    if run_ids != {run_id}:
        problem(f"records name run ids {sorted(run_ids)[:5]}, not their folder's {run_id!r}")
    if exited is None:
        problem("no job.exited record")
    elif exited.get("outcome") != "succeeded" or exited.get("exit_code") != 0:
        problem(f"job.exited: outcome {exited.get('outcome')!r}, exit_code {exited.get('exit_code')!r}")
    if finished is None:
        problem("no job.finished record")
    for name in ("events.jsonl", "summary.json"):
        if not (path.parent.parent / name).exists():
            problem(f"no {name} next to jobs/")
    events_file = path.parent.parent / "events.jsonl"
    if events_file.exists() and count_occurrences(events_file, OUTPUT_NEEDLE):
        problem("events.jsonl holds job.output records (SPEC §7: lifecycle only)")
    notes = []
    if no_attempt:
        notes.append(
            f"{', '.join(sorted(no_attempt))} carry no 'attempt' (SPEC §7: job records add job "
            "and attempt; arguable for per-job events)"
        )
    return {"records": records, "events": events, "problems": problems, "notes": notes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lines", type=int, default=5_000_000, metavar="N", help="lines seq prints (default 5,000,000)")
    ap.add_argument("--runs", type=int, default=5, metavar="N", help="timed runs per tool after a warm-up (default 5)")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object (last line)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir and the last run's outputs")
    ap.add_argument("--validate", action="store_true", help="JSON-parse and check the whole log of the warm-up run")
    ap.add_argument("--tmpdir", metavar="DIR", help="make the temp dir here (default: $TMPDIR or /tmp)")
    ap.add_argument("--timeout", type=float, default=900, metavar="S", help="per-run timeout in seconds (default 900)")
    a = ap.parse_args(argv)
    if a.lines < 1 or a.runs < 1:
        ap.error("--lines and --runs must be >= 1")

    version = check_supervisor_importable(supervisor_env())
    if version is None:
        return 2
    parallel = shutil.which("parallel")
    if parallel is None:
        print(
            "NOTE: GNU parallel is not on PATH (apt-get install parallel): measuring only aimedres-async "
            "and raw seq; the §11 ratio cannot be computed."
        )
    if shutil.which("seq") is None:
        print("error: `seq` (coreutils) is not on PATH", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="aimedres-bench-capture-", dir=a.tmpdir))
    bench = Bench(tmp, a.lines, a.timeout, a.validate)
    tools: list[tuple[str, Callable[..., Outcome]]] = [("aimedres-async", bench.run_aimedres)]
    if parallel:
        tools.append(("parallel --line-buffer --tag", bench.run_parallel))
    tools.append(("seq > file (raw)", bench.run_raw))
    tools.append((BYTES, bench.run_bytes))
    series = {name: Series(name) for name, _ in tools}

    print(f"capture: {a.lines:,} lines, {a.runs} runs + 1 warm-up per tool, temp dir {tmp}", flush=True)
    try:
        for name, fn in tools:
            print(f"  warm-up {name} ...", end="", flush=True)
            o = fn(validate=a.validate)
            print(f" {o.timing.wall_s:.2f}s", flush=True)
            series[name].problems += [f"warm-up: {p}" for p in o.problems]
            bench.clean_all()
        for i in range(a.runs):
            last = i == a.runs - 1
            for name, fn in tools:
                o = fn()
                s = series[name]
                s.add(o.timing, o.size)
                s.problems += [f"run {i + 1}: {p}" for p in o.problems]
                print(
                    f"  run {i + 1}/{a.runs} {name}: {o.timing.wall_s:.2f}s" + (" (PROBLEM)" if o.problems else ""),
                    flush=True,
                )
                # delete the outputs right away (the disk must not fill), except the last round with --keep
                if not (last and a.keep):
                    if name == "aimedres-async":
                        bench.clean_aimedres()
                    elif name.startswith("parallel"):
                        remove(tmp / "parallel.out")
                    elif name == BYTES:
                        remove(tmp / "bytes.out")
                    else:
                        remove(tmp / "seq.out")
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- report ----------------------------------------------------------------------------------
    rows = []
    for name, _ in tools:
        d = series[name].summary(a.lines)
        rows.append(
            [
                name,
                f"{d['median_s']:.3f}",
                f"{d['min_s']:.3f}",
                f"{d['max_s']:.3f}",
                f"{d['lines_per_s'] / 1e6:.2f} M",
                f"{d.get('output_mb', float('nan')):.1f}",
                f"{d['cpu_median_s']:.2f}",
            ]
        )
    print()
    print(
        format_table(
            ["tool", "median s", "min s", "max s", "lines/s", "output MB", "cpu s"],
            rows,
            [False, True, True, True, True, True, True],
        )
    )
    aim = series["aimedres-async"]
    raw = series["seq > file (raw)"]
    ratio = aim.median / series["parallel --line-buffer --tag"].median if parallel else None
    all_problems = [p for s in series.values() for p in s.problems]
    print()
    print(f"aimedres-async / seq > file (raw):           {aim.median / raw.median:.2f}x")
    cached = series[BYTES].median
    print(
        f"writing its {aim.sizes[-1] / MB if aim.sizes else 0:.0f} MB with dd alone, / parallel:  "
        + (f"{cached / series['parallel --line-buffer --tag'].median:.2f}x" if parallel else "n/a")
        + f"  (a plain write of the bytes every record must carry, left in the page cache; {cached:.3f} s)"
    )
    if ratio is not None:
        verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
        if all_problems:
            verdict = "INVALID (output verification failed, see below)"
        print(
            f"aimedres-async / parallel --line-buffer --tag: {ratio:.2f}x  "
            f"(SPEC §11 target <= {TARGET_RATIO:.1f}x): {verdict}"
        )
    else:
        verdict = "SKIPPED (GNU parallel not installed)"
        print(f"aimedres-async / parallel: n/a — {verdict}")
    if bench.validated is not None:
        v = bench.validated
        print(
            f"--validate: {v['records']:,} records parsed, events {v['events']}: "
            + ("OK" if not v["problems"] else f"{len(v['problems'])} problem(s)")
        )
        for note in v["notes"]:
            print(f"  note: {note}")
    if all_problems:
        print("\nPROBLEMS:")
        for p in all_problems:
            print(f"  - {p}")
    if a.keep:
        print(f"\nkept {tmp}")

    if a.json:
        result = {
            "bench": "capture",
            "lines": a.lines,
            "runs": a.runs,
            "target": {"ratio_max": TARGET_RATIO, "vs": "parallel --line-buffer --tag"},
            "ratio_vs_parallel": ratio,
            "ratio_vs_raw": aim.median / raw.median,
            "bytes_cached_s": cached,
            "verdict": verdict.split()[0],
            "results": {name: series[name].summary(a.lines) for name, _ in tools},
            "validated": bench.validated,
            "problems": all_problems,
            "versions": {
                "aimedres_async": version,
                "git": git_commit(),
                "parallel": tool_version(["parallel", "--version"]) if parallel else None,
                "seq": tool_version(["seq", "--version"]),
            },
            "machine": machine_info(),
            "output_unit": f"MB = {MB} bytes",
        }
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
