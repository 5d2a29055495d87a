"""plan.orchestrator, in-process: the old train.py's built-in job list read with `ast` (never run),
the JSON files a script writes found in its source, and discovered copies of one script resolved."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from aimedres_async.plan.config import DiscoveryConfig
from aimedres_async.plan.orchestrator import (
    OrchestratorError,
    convert_orchestrator,
    duplicate_excludes,
    json_targets,
    read_default_jobs,
)

OLD = """\
import os
DATA = os.environ.get("DATA", "data")
raise SystemExit("never run: reading it must not execute it")

def default_jobs():
    jobs = [
        TrainingJob("ALS", "src/train_als.py", "als_comprehensive_results", id="als",
                    args={"dataset-choice": "als-progression", "epochs": 80}, supports_folds=False),
    ]
    jobs.append(models.TrainingJob(name="Brain MRI", script="src/train_mri.py", output="mri_results",
                                   args={"data-path": DATA}, optional=True, retries=3))
    return jobs

def other():
    return [TrainingJob(name="not built in", script="x.py", output="x")]
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_literal_calls_of_default_jobs_in_source_order(tmp_path: Path) -> None:
    jobs = read_default_jobs(write(tmp_path / "train.py", OLD))
    assert [j.values.get("name") for j in jobs] == ["ALS", "Brain MRI"]  # other() is not the list
    als, mri = jobs
    assert als.values == {
        "name": "ALS",
        "script": "src/train_als.py",
        "output": "als_comprehensive_results",
        "id": "als",
        "args": {"dataset-choice": "als-progression", "epochs": 80},
        "supports_folds": False,
    }
    assert mri.not_literal == ["args"] and mri.unknown == ["retries"] and mri.values["optional"] is True


def test_the_conversion_keeps_what_the_old_tool_passed(tmp_path: Path) -> None:
    write(tmp_path / "src/train_als.py", "import argparse\n")
    text = convert_orchestrator(write(tmp_path / "train.py", OLD), tmp_path)
    config = tomllib.loads(text)
    assert config["jobs"]["als"] == {
        "script": "src/train_als.py",
        "output_dir": "als_comprehensive_results",
        "args": ["--dataset-choice", "als-progression"],
        "epochs": 80,
        "pass_flags": ["output_dir", "epochs", "sample", "batch"],
    }
    assert config["jobs"]["brain_mri"] == {"script": "src/train_mri.py", "output_dir": "mri_results", "optional": True}
    assert "# args: not a literal; set it here by hand" in text and "# retries: not used here" in text
    assert "# src/train_mri.py does not exist here" in text
    assert config["supervisor"] == {
        "parallel": False,
        "output_dir": "results",
        "logs_dir": "logs",
        "summary_dir": "summaries",
        "stop": "drain",
    }
    assert config["defaults"] == {"retries": 0}


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("x = 1\n", "no default_jobs() function"),
        ("def default_jobs():\n    return [make()]\n", "holds no TrainingJob(...) call"),
        ("def default_jobs(:\n", "does not parse"),
    ],
)
def test_what_cannot_be_read_says_why(tmp_path: Path, source: str, problem: str) -> None:
    with pytest.raises(OrchestratorError) as info:
        read_default_jobs(write(tmp_path / "train.py", source))
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('with open(os.path.join(a.output_dir, "report.json"), "w") as f:\n    json.dump(r, f)\n', ["report.json"]),
        ('with open(out / "metrics" / "m.json", mode="w") as fh:\n    json.dump(r, fh)\n', ["metrics/m.json"]),
        ('with open(f"{a.output_dir}/res_{stamp}.json", "w") as f:\n    json.dump(r, f)\n', ["res_*.json"]),
        ('Path(a.output_dir, "als_metrics.json").write_text(json.dumps(r))\n', ["als_metrics.json"]),
        ('with open("params.json") as f:\n    json.dump(r, f)\n', []),  # opened to read
        ('with open(os.path.join(d, "model.pkl"), "wb") as f:\n    pickle.dump(m, f)\n', []),  # no JSON
        ('with open(path, "w") as f:\n    json.dump(r, f)\n', []),  # nothing literal
    ],
)
def test_json_targets(tmp_path: Path, body: str, expected: list[str]) -> None:
    assert json_targets(write(tmp_path / "train_x.py", "import json, os\n" + body)) == expected


def test_the_dump_uses_the_file_opened_last_before_it(tmp_path: Path) -> None:
    body = (
        'with open(os.path.join(out, "a.json"), "w") as f:\n    json.dump(1, f)\n'
        'with open(os.path.join(out, "b.json"), "w") as f:\n    json.dump(2, f)\n'
    )
    assert json_targets(write(tmp_path / "train_x.py", "import json, os\n" + body)) == ["a.json", "b.json"]


def test_copies_are_excluded_keeping_the_canonical_or_listed_one(tmp_path: Path) -> None:
    for rel in (
        "src/pkg/training/train_als.py",
        "files/training/train_als.py",
        "training/train_als.py",
        "src/pkg/training/train_mri.py",
        "legacy/train_mri.py",
        "train_solo.py",
        "old/train_brain.py",
    ):
        write(tmp_path / rel, "")
    discovery = DiscoveryConfig(roots=(".",), include=("train_*.py",))
    assert sorted(duplicate_excludes(tmp_path, discovery, {})) == [
        ("files/training/train_als.py", "a copy of job 'als'; src/pkg/training/train_als.py runs"),
        ("legacy/train_mri.py", "a copy of job 'mri'; src/pkg/training/train_mri.py runs"),
        ("training/train_als.py", "a copy of job 'als'; src/pkg/training/train_als.py runs"),
    ]
    listed = {"als": "training/train_als.py", "brain_mri": "old/train_brain.py"}
    assert sorted(duplicate_excludes(tmp_path, discovery, listed))[:3] == [
        ("files/training/train_als.py", "a copy of job 'als'; training/train_als.py runs"),
        ("legacy/train_mri.py", "a copy of job 'mri'; src/pkg/training/train_mri.py runs"),
        ("old/train_brain.py", "old/train_brain.py runs as job 'brain_mri'"),
    ]
