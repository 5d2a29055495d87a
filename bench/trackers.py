"""Tracker export benchmark (issue #26): a synthetic run of 1,000 jobs x 50 epochs (bench/report.py's
generator: one JSON record per epoch with loss, val_loss and val_acc, final metrics, some jobs
retried or failed) exported with `export mlflow` into MLflow's local default store (SQLite) and
with `export tensorboard`; each timed as a whole process, then the MLflow export again (nothing new
to write: one search per run, no duplicate).

    python bench/trackers.py                 # 1,000 jobs x 50 epochs
    python bench/trackers.py --jobs 100 --epochs 20   # what bench/all.py runs
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "bench"))

from _helpers import Figure  # noqa: E402


def _make_run() -> Any:
    spec = importlib.util.spec_from_file_location("bench_report", REPO_ROOT / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_run


def _timed(cwd: Path, *args: str) -> tuple[float, str]:
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "aimedres_async", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    took = time.monotonic() - t0
    if done.returncode != 0:
        sys.exit(f"bench/trackers.py: {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return took, done.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--tmpdir", help="where to make the run folder (default: the system's temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the run folder, its mlruns/ and tb/")
    ap.add_argument("--json", action="store_true", help="also print one JSON object with the figures (last line)")
    a = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-trackers-", dir=a.tmpdir))
    try:
        _make_run()(folder, jobs=a.jobs, epochs=a.epochs)
        (folder / "aimedres.toml").write_text("[discovery]\nenabled = false\n")
        print(f"{a.jobs} jobs x {a.epochs} epochs (3 metrics per epoch), in {folder}")
        figures = []
        for label, args in (
            ("export mlflow (new)", ("export", "mlflow")),
            ("export mlflow (again)", ("export", "mlflow")),
            ("export tensorboard", ("export", "tensorboard", "--logdir", "tb")),
        ):
            took, out = _timed(folder, *args)
            print(f"{label:<24} {took:6.1f} s   {out}")
            figures.append(
                Figure(
                    f"trackers: {label}, {a.jobs:,} jobs x {a.epochs} epochs",
                    f"{took:.1f} s",
                    "-",
                    None,
                    "none",
                    "INFO",
                    took,
                    None,
                    "s",
                ).as_dict()
            )
        if a.json:  # one line for bench/all.py: its combined table's rows
            print(json.dumps({"bench": "trackers", "jobs": a.jobs, "epochs": a.epochs, "figures": figures}))
    finally:
        if not a.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
