"""Tracker export benchmark (issue #26): a synthetic run of 1,000 jobs x 50 epochs (bench/report.py's
generator: one JSON record per epoch with loss, val_loss and val_acc, final metrics, some jobs
retried or failed) exported with `export mlflow` into MLflow's local default store (SQLite) and
with `export tensorboard`; each timed as a whole process, then the MLflow export again (nothing new
to write: one search per run, no duplicate).

    python bench/trackers.py                 # 1,000 jobs x 50 epochs
    python bench/trackers.py --jobs 100 --epochs 20
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-trackers-") as tmp:
        folder = Path(tmp)
        _make_run()(folder, jobs=a.jobs, epochs=a.epochs)
        (folder / "aimedres.toml").write_text("[discovery]\nenabled = false\n")
        print(f"{a.jobs} jobs x {a.epochs} epochs (3 metrics per epoch)")
        for label, args in (
            ("export mlflow (new)", ("export", "mlflow")),
            ("export mlflow (again)", ("export", "mlflow")),
            ("export tensorboard", ("export", "tensorboard", "--logdir", "tb")),
        ):
            took, out = _timed(folder, *args)
            print(f"{label:<24} {took:6.1f} s   {out}")


if __name__ == "__main__":
    main()
