"""plan.legacy, in-process: the old run_all_training.py YAML job list converted to TOML (PyYAML),
its `--config jobs.yaml` refused with the one command that converts it, and its old flags."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

import pytest

from aimedres_async.plan.config import JOB_ID_RE
from aimedres_async.plan.config_load import parse
from aimedres_async.plan.legacy import (
    LegacyError,
    add_discovery_flags,
    add_summary_flag,
    check_config_path,
    convert_yaml,
    write_training_summary,
)
from aimedres_async.report.legacy_summary import PIPELINE, training_summary

OLD_LIST = """\
jobs:
  - name: ALS (Kaggle)
    script: src/train_als.py
    output: als_results
    args:
      dataset-choice: kaggle
      epochs: 20
      batch_size: 64
      use_gpu: true
      verbose: false
      seed: null
  - name: Alzheimer's / MRI & PET
    script: train_alz.py
    optional: true
    supports_folds: false
    use_output_dir: false
    retries_old: 3
  - name: ALS (Kaggle)
    script: other/train_als.py
    args: ["--fast", 1]
"""


def convert(tmp_path: Path, text: str) -> tuple[str, dict[str, Any]]:
    path = tmp_path / "jobs.yaml"
    path.write_text(text)
    out = convert_yaml(path)
    return out, tomllib.loads(out)


def test_the_old_list_becomes_jobs_with_the_old_ids(tmp_path: Path) -> None:
    _, doc = convert(tmp_path, OLD_LIST)
    assert list(doc["jobs"]) == ["als_kaggle", "alzheimers___mri_and_pet", "als_kaggle-2"]
    assert all(JOB_ID_RE.fullmatch(j) for j in doc["jobs"])


def test_args_become_argv_and_known_counts_become_settings(tmp_path: Path) -> None:
    _, doc = convert(tmp_path, OLD_LIST)
    als = doc["jobs"]["als_kaggle"]
    assert als["script"] == "src/train_als.py" and als["output_dir"] == "als_results"
    assert als["args"] == ["--dataset-choice", "kaggle", "--use-gpu"]  # false flags and nulls left out
    assert (als["epochs"], als["batch"]) == (20, 64)  # injected where the script declares them
    assert doc["jobs"]["als_kaggle-2"]["args"] == ["--fast", "1"]


def test_the_converted_text_is_a_valid_config(tmp_path: Path) -> None:
    text, _ = convert(tmp_path, OLD_LIST)
    cfg = parse(text, None, tmp_path)
    assert [j.id for j in cfg.jobs] == ["als_kaggle", "alzheimers___mri_and_pet", "als_kaggle-2"]
    assert cfg.jobs[0].args == ("--dataset-choice", "kaggle", "--use-gpu")
    assert cfg.jobs[0].settings.epochs == 20 and cfg.jobs[1].settings.optional is True
    assert cfg.supervisor.parallel is False


def test_what_does_not_carry_over_is_said_in_a_comment(tmp_path: Path) -> None:
    text, doc = convert(tmp_path, OLD_LIST)
    assert doc["jobs"]["alzheimers___mri_and_pet"]["optional"] is True
    assert "# args: seed had no value and was left out" in text
    assert "# supports_folds: false: --folds is passed only to scripts that declare it with add_argument" in text
    assert "# use_output_dir: false: --output-dir is passed only to scripts that declare it with add_argument" in text
    assert "# retries_old: not used here" in text
    assert "# id 'als_kaggle' was used by an earlier job; renamed" in text
    assert "# ALS (Kaggle)" in text


def test_the_run_settings_are_the_old_tools(tmp_path: Path) -> None:
    text, doc = convert(tmp_path, "- script: train_x.py\n")  # a bare list is accepted too
    assert doc["supervisor"] == {
        "parallel": False,
        "output_dir": "results",
        "logs_dir": "logs",
        "summary_dir": "summaries",
    }
    assert doc["discovery"] == {"enabled": True, "roots": ["."], "include": ["train_*.py"], "exclude": []}
    assert list(doc["jobs"]) == ["x"]  # no name: the script's stem without train_
    assert text.startswith("# aimedres-async configuration, converted from jobs.yaml")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("jobs: {}\n", "expected `jobs:` holding a list of jobs"),
        ("jobs: []\n", "expected `jobs:` holding a list of jobs"),
        ("just text\n", "expected `jobs:` holding a list of jobs"),
        ("jobs:\n  - 3\n", "jobs[1]: expected a mapping with name, script, output"),
        ("jobs:\n  - name: a\n", "jobs[1]: needs `script: path/to/train_x.py`"),
        (
            "jobs:\n  - script: a.py\n    args: 7\n",
            "jobs[1]: args: expected a mapping like {dataset-choice: als} or a list",
        ),
    ],
)
def test_a_list_it_cannot_convert_is_one_line_saying_why(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(LegacyError) as e:
        convert(tmp_path, text)
    assert problem in str(e.value) and str(e.value).startswith(str(tmp_path / "jobs.yaml"))
    assert "\n" not in str(e.value)


def test_invalid_yaml_names_the_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(LegacyError, match=r"jobs\.yaml:2:1: not valid YAML: found character '\\t'"):
        convert(tmp_path, "jobs:\n\t- name: a\n")


def test_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(LegacyError, match="cannot read: No such file or directory"):
        convert_yaml(tmp_path / "nope.yaml")


def test_an_invalid_id_falls_back_to_the_script_name(tmp_path: Path) -> None:
    _, doc = convert(
        tmp_path, "jobs:\n  - name: '!!!'\n    script: train_digits.py\n  - name: '***'\n    script: '###.py'\n"
    )
    assert list(doc["jobs"]) == ["digits", "job2"]


@pytest.mark.parametrize("name", ["jobs.yaml", "JOBS.YML", "conf/training.yml"])
def test_an_old_yaml_config_is_refused_with_the_command_that_converts_it(name: str) -> None:
    with pytest.raises(LegacyError) as e:
        check_config_path(name)
    message = str(e.value)
    assert f"aimedres-async init --from-yaml {name}" in message and "\n" not in message


def test_a_toml_config_is_not_legacy() -> None:
    check_config_path("aimedres.toml")
    check_config_path("yaml.toml")


def old_parser() -> argparse.ArgumentParser:
    def positive(text: str) -> int:
        n = int(text)
        if n < 1:
            raise argparse.ArgumentTypeError("must be >= 1")
        return n

    p = argparse.ArgumentParser(prog="t", exit_on_error=False)
    add_discovery_flags(p.add_argument_group("discovery"), positive)
    add_summary_flag(p.add_argument_group("run"))
    return p


def test_the_old_discovery_flags_keep_their_meaning() -> None:
    a = old_parser().parse_args(
        [
            "--include-pattern",
            "*_train.py",
            "--include-pattern",
            "run_*.py",
            "--exclude-regex",
            "legacy/",
            "--discovery-limit",
            "5",
            "--allow-discovery-overrides",
            "--mark-discovered-optional",
            "--no-default-jobs",
            "--strict-discovery",
            "--summary-dir",
            "summaries",
        ]
    )
    assert a.include_pattern == ["*_train.py", "run_*.py"] and a.exclude_regex == "legacy/"
    assert a.discovery_limit == 5 and a.summary_dir == "summaries"
    assert a.allow_discovery_overrides and a.mark_discovered_optional and a.no_default_jobs and a.strict_discovery


def test_the_old_flags_default_to_off() -> None:
    a = old_parser().parse_args([])
    assert a.include_pattern == [] and a.exclude_regex is None and a.discovery_limit is None
    assert not (a.allow_discovery_overrides or a.mark_discovered_optional or a.strict_discovery)


def test_a_discovery_limit_below_one_is_refused() -> None:
    with pytest.raises(argparse.ArgumentError, match="must be >= 1"):
        old_parser().parse_args(["--discovery-limit", "0"])


def test_training_summary_writes_under_the_old_name_and_keeps_both_of_one_second(tmp_path: Path) -> None:
    first = write_training_summary(tmp_path / "summaries", b'{"pipeline": "P"}')
    second = write_training_summary(tmp_path / "summaries", b'{"pipeline": "P"}')
    assert first.name.startswith("training_summary_") and first.suffix == ".json"
    assert first != second and first.read_bytes() == second.read_bytes() == b'{"pipeline": "P"}'


def test_the_old_summary_format(tmp_path: Path) -> None:
    """Regression (issue #27, item 5): the old file name held this tool's summary.json, so a CI step
    filtering on `status == "FAILED"` found nothing."""
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"ts":"T1","event":"job.started","job":"a","attempt":1}\n'
        '{"ts":"T2","event":"job.exited","job":"a","attempt":1}\n'
        '{"ts":"T3","event":"job.started","job":"a","attempt":2}\n'
        '{"ts":"T4","event":"job.exited","job":"a","attempt":2}\n'
    )
    summary = {
        "run": "R",
        "started_at": "S",
        "finished_at": "E",
        "duration_s": 4.5,
        "git": {"commit": "abc", "dirty": False},
        "logs_dir": "logs/R",
        "jobs": [
            {
                "id": "a",
                "status": "failed",
                "attempts": 2,
                "duration_s": 1.5,
                "optional": False,
                "command": ["x"],
                "error": "NameError: nn",
                "metrics": None,
                "warnings": 3,
            },
            {
                "id": "b",
                "status": "succeeded",
                "attempts": 1,
                "duration_s": 2.0,
                "optional": True,
                "command": ["y"],
                "error": None,
                "metrics": {"acc": 0.9},
                "warnings": 0,
            },
            {
                "id": "c",
                "status": "cancelled",
                "attempts": 0,
                "duration_s": 0.0,
                "optional": False,
                "command": ["z"],
                "error": None,
                "metrics": None,
            },
        ],
    }
    old = training_summary(summary, events, {"a": {"output_dir", "epochs"}}, {"epochs": 3, "x": object()}, tmp_path)
    assert (old["pipeline"], old["start_time_utc"], old["end_time_utc"], old["duration_sec"]) == (
        PIPELINE,
        "S",
        "E",
        4.5,
    )
    assert old["git_commit"] == "abc" and old["arguments"] == {"epochs": 3}
    assert old["working_directory"] == str(tmp_path) and old["gpu_info"]["cuda_available"] is False
    assert [j["status"] for j in old["jobs"]] == ["FAILED", "SUCCESS", "INTERRUPTED"]
    a = old["jobs"][0]
    assert (a["start_time"], a["end_time"], a["attempts"], a["error"], a["duration_sec"]) == (
        "T3",
        "T4",
        2,
        "NameError: nn",
        1.5,
    )
    assert a["use_output_dir"] and a["supports_epochs"] and not a["supports_folds"]
    assert old["jobs"][2]["start_time"] is None and old["jobs"][1]["metrics"] == {"acc": 0.9}
