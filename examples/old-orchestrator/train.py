"""The research repository's old orchestrator (the one run_all_training.py became), kept as it was:
a built-in job list it always runs (unless --no-default-jobs), plus the train_*.py scripts it finds.

aimedres-async never imports or runs this file: `aimedres-async init --from-orchestrator train.py`
reads default_jobs() with `ast` and writes the same jobs into aimedres.toml.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainingJob:
    name: str
    script: str
    output: str
    id: str = ""
    args: dict[str, object] = field(default_factory=dict)
    optional: bool = False
    supports_epochs: bool = True
    supports_folds: bool = True
    supports_sample: bool = True
    supports_batch: bool = True
    use_output_dir: bool = True


def default_jobs() -> list[TrainingJob]:
    return [
        TrainingJob(
            name="Parkinson's Disease",
            script="src/medres/training/train_parkinsons.py",
            output="parkinsons_comprehensive_results",
            id="parkinsons",
            args={"data-path": "ParkinsonDatasets"},
        ),
        TrainingJob(
            name="ALS (Amyotrophic Lateral Sclerosis)",
            script="src/medres/training/train_als.py",
            output="als_comprehensive_results",
            id="als",
            args={"dataset-choice": "als-progression"},
            supports_folds=False,
        ),
    ]


def command(job: TrainingJob, a: argparse.Namespace) -> list[str]:
    argv = [sys.executable, job.script, "--output-dir", str(Path(a.base_output_dir) / job.output)]
    if a.epochs and job.supports_epochs:
        argv += ["--epochs", str(a.epochs)]
    if a.folds and job.supports_folds:
        argv += ["--folds", str(a.folds)]
    for key, value in job.args.items():
        argv += [f"--{key}", str(value)]
    return argv


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--folds", type=int)
    ap.add_argument("--base-output-dir", default="results")
    ap.add_argument("--no-default-jobs", action="store_true")
    a = ap.parse_args()
    jobs = [] if a.no_default_jobs else default_jobs()
    failed = [job.id for job in jobs if subprocess.run(command(job, a)).returncode != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
