"""Checking a run's records and summary.json against the JSON Schema files shipped in the package
(tests/records/test_log_schema.py, and the executors' tests on their own runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import read_jsonl, run_dir

from aimedres_async.records.schema import RECORD_KINDS, SCHEMA_VERSION, load

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed (pip install -e '.[test]')")


def _validator(name: str) -> Any:
    schema = load(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


VALIDATORS = {name: _validator(name) for name in (*RECORD_KINDS, "summary")}


def check_record(rec: dict[str, Any], where: str) -> None:
    kind = rec.get("event")
    assert kind in VALIDATORS, f"{where}: a record kind without a schema: {kind!r}"
    errors = sorted(VALIDATORS[kind].iter_errors(rec), key=str)
    assert not errors, f"{where}: {kind}: {errors[0].message} in {rec}"
    undeclared = set(rec) - set(load(kind)["properties"])
    assert not undeclared, f"{where}: {kind} has fields its schema does not declare: {undeclared}"


def check_summary(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    errors = sorted(VALIDATORS["summary"].iter_errors(data), key=str)
    assert not errors, f"{path}: {errors[0].message}"
    schema = load("summary")
    assert not set(data) - set(schema["properties"]), set(data) - set(schema["properties"])
    job_fields = set(schema["properties"]["jobs"]["items"]["properties"])
    for job in data["jobs"]:
        assert not set(job) - job_fields, set(job) - job_fields
    assert data["schema"] == SCHEMA_VERSION
    return data


def check_run_folder(folder: Path, run: Path | None = None) -> list[dict[str, Any]]:
    """Every record of a run's files against its schema; returns the job logs' records."""
    run = run or run_dir(folder)
    files = [run / "events.jsonl", *sorted((run / "jobs").glob("*.jsonl"))]
    records = []
    for path in files:
        for n, rec in enumerate(read_jsonl(path), 1):
            check_record(rec, f"{path.name}:{n}")
            if path.parent.name == "jobs":
                records.append(rec)
    check_summary(run / "summary.json")
    return records
