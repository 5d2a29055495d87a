"""Start-up benchmark (issue #4): `--help` and `run --list` must each take under 0.3 s.

What is measured — whole-process wall time, `perf_counter()` from spawn to reaping (`timed_run`), of:

1. `python -m aimedres_async --help` (argument parsing only: rich, watchfiles and ray must not be
   imported for it);
2. `python -m aimedres_async --config aimedres.toml run --list`, with the repository's own
   `aimedres.toml` (discovery of the bundled examples, their flags read with `ast`, the resource
   check), run from the repository root;
3. `python -c pass` and `python -c "import asyncio"`: the interpreter's own start and the asyncio
   import, as references (INFO only).

Each command runs once as a warm-up, then `--runs` times, interleaved. The table shows the median,
min and max. Targets: median < 0.3 s for `--help` and for `run --list` (PASS/MISS; INVALID if a run
exited non-zero or `--list` did not list the bundled examples). The exit status is 0 either way.

    python bench/startup.py                # 20 runs each
    python bench/startup.py --runs 5 --json

`--keep`, `--tmpdir` and `--timeout` are accepted like the other scripts' (this one makes no files).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

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
)
from _helpers import Figure, verdict

TARGET_S = 0.3
HELP, LIST = "--help", "run --list (bundled examples)"
PASS_, ASYNCIO = "python -c pass", "python -c 'import asyncio'"
EXAMPLES = ("breast_cancer", "diabetes", "digits")


class Bench:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.env = supervisor_env()
        self.env.pop("AIMEDRES_CONFIG", None)

    def _run(
        self, name: str, cmd: list[str], check: Callable[[str], str | None] | None = None
    ) -> tuple[Timing, list[str]]:
        with tempfile.TemporaryFile() as out:  # stdout kept for the check, read after the timing
            t = timed_run(cmd, stdout=out, cwd=REPO_ROOT, env=self.env, timeout=self.timeout)
            out.seek(0)
            text = out.read().decode("utf-8", "replace")
        problems = []
        if t.timed_out:
            problems.append(f"{name}: killed after the {self.timeout:g}s timeout")
        elif t.returncode != 0:
            problems.append(f"{name}: exit status {t.returncode}")
        elif check is not None and (why := check(text)):
            problems.append(f"{name}: {why}")
        return t, problems

    def run_help(self, warmup: bool = False) -> tuple[Timing, list[str]]:
        return self._run(HELP, [sys.executable, "-m", "aimedres_async", "--help"])

    def run_list(self, warmup: bool = False) -> tuple[Timing, list[str]]:
        def lists_examples(text: str) -> str | None:
            missing = [e for e in EXAMPLES if e not in text]
            return f"the list lacks {', '.join(missing)}" if missing else None

        cmd = [sys.executable, "-m", "aimedres_async", "--config", "aimedres.toml", "run", "--list"]
        return self._run(LIST, cmd, lists_examples)

    def run_pass(self, warmup: bool = False) -> tuple[Timing, list[str]]:
        return self._run(PASS_, [sys.executable, "-c", "pass"])

    def run_asyncio(self, warmup: bool = False) -> tuple[Timing, list[str]]:
        return self._run(ASYNCIO, [sys.executable, "-c", "import asyncio"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=20, metavar="N", help="timed runs per command (default 20)")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object (last line)")
    ap.add_argument("--keep", action="store_true", help="accepted for all.py; this script makes no files")
    ap.add_argument("--tmpdir", metavar="DIR", help="accepted for all.py; this script makes no files")
    ap.add_argument("--timeout", type=float, default=60, metavar="S", help="per-run timeout in seconds (default 60)")
    a = ap.parse_args(argv)
    if a.runs < 1:
        ap.error("--runs must be >= 1")
    version = check_supervisor_importable(supervisor_env())
    if version is None:
        return 2

    bench = Bench(a.timeout)
    tools: list[tuple[str, Callable[..., tuple[Timing, list[str]]]]] = [
        (HELP, bench.run_help),
        (LIST, bench.run_list),
        (PASS_, bench.run_pass),
        (ASYNCIO, bench.run_asyncio),
    ]
    series = {name: Series(name) for name, _ in tools}
    print(f"startup: {a.runs} runs + 1 warm-up per command, from {REPO_ROOT}", flush=True)
    run_interleaved(tools, series, a.runs, show=False)

    rows = []
    for name, _ in tools:
        d = series[name].summary()
        rows.append(
            [
                name,
                f"{d['median_s'] * 1000:.1f}",
                f"{d['min_s'] * 1000:.1f}",
                f"{d['max_s'] * 1000:.1f}",
                f"{TARGET_S * 1000:.0f}" if name in (HELP, LIST) else "-",
            ]
        )
    print()
    print(
        format_table(["command", "median ms", "min ms", "max ms", "target ms"], rows, [False, True, True, True, True])
    )
    print()
    figures = []
    for name in (HELP, LIST):
        s = series[name]
        v = verdict(s.median, TARGET_S, s.problems)
        print(f"{name}: median {s.median * 1000:.0f} ms (target < {TARGET_S * 1000:.0f} ms): {v}")
        figures.append(
            Figure(
                f"start-up: {name}",
                f"{s.median * 1000:.0f} ms",
                f"python -c 'import asyncio': {series[ASYNCIO].median * 1000:.0f} ms",
                None,
                f"< {TARGET_S * 1000:.0f} ms",
                v,
                s.median,
                series[ASYNCIO].median,
                "s",
            )
        )
    all_problems = [p for s in series.values() for p in s.problems]
    if all_problems:
        print("\nPROBLEMS:")
        for p in all_problems:
            print(f"  - {p}")
    if a.json:
        print(
            json.dumps(
                {
                    "bench": "startup",
                    "runs": a.runs,
                    "target": {"median_s_max": TARGET_S},
                    "figures": [f.as_dict() for f in figures],
                    "results": {name: series[name].summary() for name, _ in tools},
                    "problems": all_problems,
                    "versions": {"aimedres_async": version, "git": git_commit()},
                    "machine": machine_info(),
                },
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
