"""Start-up benchmark (SPEC §11): `run --list` on the bundled examples, `status` and `submit` within 100 ms wall.

What is measured — whole-process wall time, `perf_counter()` from spawn to reaping (`timed_run`), of:

1. `python -m aimedres_async --config aimedres.toml run --list`, with the repository's own
   `aimedres.toml` (discovery of the bundled examples, their flags read with `ast`, the resource
   check), run from the repository root; it must list the bundled examples;
2. `python -m aimedres_async --config CFG status` on a temp config whose spool folder is empty and
   served by no daemon: `status` says so and exits 3, which is what is expected here (another exit
   status is a problem);
3. `python -m aimedres_async --config CFG submit -- /bin/true`: an inline ticket written into a
   spool of its own (served by no daemon; it prints the ticket's number and id, exit 0): the
   client commands of SPEC §15 start within 100 ms too;
4. `python -m aimedres_async --help` (argument parsing only; issue #4's target, < 300 ms);
5. `python -c pass` (the bare interpreter) and `python -c "import asyncio"`, as references (INFO);
6. `run --list` as the first start after an install (INFO): no bytecode cache to read or write, so
   every module of the package is compiled from source.

Every other command reads the bytecode cache the warm-up wrote, as a user's interpreter does
(PYTHONDONTWRITEBYTECODE is dropped from the environment the bench passes on).

Each command runs once as a warm-up, then `--runs` times, interleaved. The table shows the median,
min and max. Targets: median <= 100 ms for `run --list`, `status` and `submit`, < 300 ms for `--help`
(PASS/MISS; INVALID if a run exited with another status or printed the wrong thing). The exit status
is 0 either way.

Then, once each, `python -X importtime -m aimedres_async …` for `run --list`, `status` and `submit`: the ten
imports with the largest cumulative time (µs, the import and everything it imported), with their own
time and their depth in the import tree, and the total of all imports. `-X importtime` slows the
imports a little; read it for where the time goes, not for the total.

    python bench/startup.py                # 20 runs each
    python bench/startup.py --runs 5 --json

`--keep` keeps the temp dir of the `status` config; `--tmpdir DIR` chooses where it is made.
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    REPO_ROOT,
    Series,
    Timing,
    check_supervisor_importable,
    format_table,
    git_commit,
    machine_info,
    run_interleaved,
    supervisor_env,
    timed_run,
    write_config,
)
from _helpers import Figure, verdict

LIST, STATUS, HELP = "run --list (bundled examples)", "status (no daemon, empty spool)", "--help"
SUBMIT = "submit -- /bin/true (no daemon)"
COLD = "run --list, no bytecode cache"
PASS_, ASYNCIO = "python -c pass", "python -c 'import asyncio'"
TARGETS_S = {LIST: 0.1, STATUS: 0.1, SUBMIT: 0.1, HELP: 0.3}  # SPEC §11, §15 (client commands); --help
EXAMPLES = ("breast_cancer", "diabetes", "digits")
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S.*)$")


class Bench:
    def __init__(self, tmp: Path, timeout: float) -> None:
        self.timeout = timeout
        self.env = supervisor_env()
        # COLD: the first start after an install, compiling every module (an empty pycache prefix
        # to look in, and nothing written to it).
        self.cold_env = {**self.env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(tmp / "no-pycache")}
        self.status_config = write_config(tmp / "aimedres.toml", {}, supervisor={"spool_dir": "spool"})
        (tmp / "spool").mkdir()
        # submit's tickets go to a spool of their own: the one `status` reads stays empty
        self.submit_config = write_config(tmp / "submit.toml", {}, supervisor={"spool_dir": "spool-submit"})

    def argv(self, name: str) -> list[str]:
        """The command line of name (aimedres_async's, or a reference's)."""
        py = [sys.executable, "-m", "aimedres_async"]
        return {
            LIST: [*py, "--config", "aimedres.toml", "run", "--list"],
            COLD: [*py, "--config", "aimedres.toml", "run", "--list"],
            STATUS: [*py, "--config", str(self.status_config), "status"],
            SUBMIT: [*py, "--config", str(self.submit_config), "submit", "--", "/bin/true"],
            HELP: [*py, "--help"],
            PASS_: [sys.executable, "-c", "pass"],
            ASYNCIO: [sys.executable, "-c", "import asyncio"],
        }[name]

    def cwd(self, name: str) -> Path:
        return self.status_config.parent if name in (STATUS, SUBMIT) else REPO_ROOT

    def run(self, name: str) -> tuple[Timing, list[str]]:
        with tempfile.TemporaryFile() as out:  # stdout kept for the check, read after the timing
            env = self.cold_env if name == COLD else self.env
            t = timed_run(self.argv(name), stdout=out, cwd=self.cwd(name), env=env, timeout=self.timeout)
            out.seek(0)
            text = out.read().decode("utf-8", "replace")
        expected = 3 if name == STATUS else 0
        if t.timed_out:
            return t, [f"{name}: killed after the {self.timeout:g}s timeout"]
        if t.returncode != expected:
            return t, [f"{name}: exit status {t.returncode}, expected {expected}"]
        why = check_output(name, text)
        return t, [f"{name}: {why}"] if why else []

    def tool(self, name: str) -> Callable[..., tuple[Timing, list[str]]]:
        return lambda warmup=False: self.run(name)

    def import_times(self, name: str) -> list[tuple[int, int, int, str]]:
        """One `python -X importtime` run of name: (self µs, cumulative µs, depth, module) per import."""
        argv = [self.argv(name)[0], "-X", "importtime", *self.argv(name)[1:]]
        proc = subprocess.run(
            argv, cwd=self.cwd(name), env=self.env, capture_output=True, text=True, timeout=self.timeout, check=False
        )
        rows = []
        for line in proc.stderr.splitlines():
            if m := IMPORT_LINE.match(line):
                rows.append((int(m[1]), int(m[2]), (len(m[3]) - 1) // 2, m[4].strip()))
        return rows


def check_output(name: str, text: str) -> str | None:
    """Why the output of name is not what it should be, or None."""
    if name in (LIST, COLD):
        missing = [e for e in EXAMPLES if e not in text]
        return f"the list lacks {', '.join(missing)}" if missing else None
    if name == STATUS and "none is serving" not in text:
        return f"status did not say that no daemon serves the spool: {text.strip()[:200]!r}"
    if name == SUBMIT and not re.fullmatch(r"\d+ \S+-true\n", text):
        return f"submit did not print the ticket's number and id: {text.strip()[:200]!r}"
    return None


def print_import_top(name: str, rows: list[tuple[int, int, int, str]], top: int = 10) -> dict[str, Any]:
    """Print the `top` imports by cumulative time; return them (and the total) for the JSON."""
    total = sum(r[0] for r in rows)
    best = sorted(rows, key=lambda r: r[1], reverse=True)[:top]
    print(f"\nimport time, `{name}`: {len(rows)} imports, {total / 1000:.1f} ms in all; top {top} by cumulative µs")
    print(
        format_table(
            ["cumulative µs", "self µs", "depth", "module"],
            [[f"{c:,}", f"{s:,}", str(d), m] for s, c, d, m in best],
            [True, True, True, False],
        )
    )
    return {
        "imports": len(rows),
        "total_us": total,
        "top": [{"module": m, "cumulative_us": c, "self_us": s, "depth": d} for s, c, d, m in best],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=20, metavar="N", help="timed runs per command (default 20)")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object (last line)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (the status config and its spool)")
    ap.add_argument("--tmpdir", metavar="DIR", help="make the temp dir here (default: $TMPDIR or /tmp)")
    ap.add_argument("--timeout", type=float, default=60, metavar="S", help="per-run timeout in seconds (default 60)")
    a = ap.parse_args(argv)
    if a.runs < 1:
        ap.error("--runs must be >= 1")
    version = check_supervisor_importable(supervisor_env())
    if version is None:
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="aimedres-bench-startup-", dir=a.tmpdir))
    try:
        bench = Bench(tmp, a.timeout)
        names = [LIST, STATUS, SUBMIT, HELP, COLD, PASS_, ASYNCIO]
        series = {name: Series(name) for name in names}
        print(f"startup: {a.runs} runs + 1 warm-up per command, from {REPO_ROOT}", flush=True)
        run_interleaved([(name, bench.tool(name)) for name in names], series, a.runs, show=False)
        imports = {name: bench.import_times(name) for name in (LIST, STATUS, SUBMIT)}
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    figures = report(series)
    imports_json = {name: print_import_top(name, rows) for name, rows in imports.items()}
    all_problems = [p for s in series.values() for p in s.problems]
    if all_problems:
        print("\nPROBLEMS:")
        for p in all_problems:
            print(f"  - {p}")
    if a.keep:
        print(f"\nkept {tmp}")
    if a.json:
        result = {
            "bench": "startup",
            "runs": a.runs,
            "target": {"median_s_max": TARGETS_S},
            "figures": [f.as_dict() for f in figures],
            "results": {name: s.summary() for name, s in series.items()},
            "import_time": imports_json,
            "problems": all_problems,
            "versions": {"aimedres_async": version, "git": git_commit()},
            "machine": machine_info(),
        }
        print(json.dumps(result, default=str))
    return 0


def report(series: dict[str, Series]) -> list[Figure]:
    """The table of medians, and a verdict per command with a target."""
    rows = []
    for name, s in series.items():
        d = s.summary()
        target = f"{TARGETS_S[name] * 1000:.0f}" if name in TARGETS_S else "-"
        rows.append(
            [name, f"{d['median_s'] * 1000:.1f}", f"{d['min_s'] * 1000:.1f}", f"{d['max_s'] * 1000:.1f}", target]
        )
    print()
    print(
        format_table(["command", "median ms", "min ms", "max ms", "target ms"], rows, [False, True, True, True, True])
    )
    print()
    bare = series[PASS_].median
    figures = []
    for name, limit in TARGETS_S.items():
        s = series[name]
        v = verdict(s.median, limit, s.problems)
        print(
            f"{name}: median {s.median * 1000:.0f} ms, {s.median / bare:.1f}x `python -c pass` "
            f"(target <= {limit * 1000:.0f} ms): {v}"
        )
        figures.append(
            Figure(
                f"start-up: {name}",
                f"{s.median * 1000:.0f} ms",
                f"python -c pass: {bare * 1000:.0f} ms",
                None,
                f"<= {limit * 1000:.0f} ms",
                v,
                s.median,
                bare,
                "s",
            )
        )
    return figures


if __name__ == "__main__":
    sys.exit(main())
