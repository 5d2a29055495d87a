"""The versioned log schema (SPEC §7; docs/reference/log-records.md): every record of real runs and
every summary.json validates against the JSON Schema files shipped in the package, and uses no field
its schema does not declare. Runs: success with metrics, output lines of every kind, a retry, a
timeout, a spawn failure, an optional failure, Ctrl+C, --resume, the daemon's own records, and Ray
where it is installed.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from conftest import PY, read_jsonl, run_dir, start_cli, wait_for, write_config
from helpers_cli import cli
from helpers_daemon import Daemons, daemon_config, drop, wait_final
from helpers_schema import VALIDATORS, check_record, check_run_folder

from aimedres_async.records.schema import RECORD_KINDS, SCHEMA_VERSION


def test_the_schema_files_are_valid_and_cover_every_kind() -> None:
    for name, v in VALIDATORS.items():
        assert v.schema["$schema"].startswith("https://json-schema.org/draft/2020-12"), name
    assert set(RECORD_KINDS) >= {
        "run.started",
        "job.queued",
        "job.started",
        "job.output",
        "job.exited",
        "job.retrying",
        "job.finished",
        "run.finished",
    }


def test_the_schemas_reject_what_they_should() -> None:
    good = {
        "ts": "2026-11-23T11:44:32.018532Z",
        "t": 1795434272.018532,
        "event": "job.finished",
        "run": "r",
        "job": "a",
        "status": "failed",
        "attempts": 2,
        "optional": True,
        "metrics": None,
    }
    check_record(good, "good")
    for broken in (
        {k: v for k, v in good.items() if k != "optional"},
        {**good, "t": "1795434272"},
        {**good, "ts": "2026-11-23T11:44:32Z"},
        {**good, "status": "weird"},
    ):
        assert list(VALIDATORS["job.finished"].iter_errors(broken)), broken
    output = {**good, "event": "job.output", "attempt": 1, "stream": "stdout"}
    for k in ("status", "attempts", "optional", "metrics"):
        output.pop(k)
    assert list(VALIDATORS["job.output"].iter_errors(output))  # neither line nor data
    assert not list(VALIDATORS["job.output"].iter_errors({**output, "line": "x"}))


def test_the_output_schema_takes_a_job_files_records_of_either_schema_and_the_streams() -> None:
    """Schema 2: a job's file leaves run and job to its path; the --log-file stream and files
    written with schema 1 have them. All three validate, and none has an undeclared field."""
    lean = {"ts": "2026-11-23T11:44:32.018532Z", "t": 1795434272.018532, "event": "job.output"}
    lean |= {"attempt": 1, "stream": "stdout", "line": "epoch 1"}
    named = {**lean, "run": "20261123T114430Z-b31a", "job": "digits"}
    data = {k: v for k, v in named.items() if k != "line"} | {"data": {"acc": 1}}
    for rec in (lean, named, {**lean, "partial": True}, data):
        check_record(rec, "by hand")
    for k in ("attempt", "stream", "ts", "t"):
        assert list(VALIDATORS["job.output"].iter_errors({x: v for x, v in named.items() if x != k})), k
    with pytest.raises(AssertionError, match="does not declare"):
        check_record({**lean, "rank": 0}, "by hand")  # still strict about fields nobody declared


OK_CODE = (
    "import json, sys\n"
    "print('epoch 1 loss=0.5')\n"
    "print('x' * 3000)\n"  # longer than max_line_bytes: partial records
    "sys.stderr.write('warn\\r50%\\r100%\\n')\n"
    "print('caf\\u00e9 \"q\" \\x01')\n"  # the careful path: escapes, non-ASCII, a control character
    "print(json.dumps({'epoch': 1, 'loss': 0.5}))\n"
    "print(json.dumps({'acc': 0.9}))\n"
)
FLAKY_CODE = (
    "import os, sys\np = 'flaky-count'\nn = int(open(p).read()) if os.path.exists(p) else 0\n"
    "open(p, 'w').write(str(n + 1))\nsys.exit(0 if n else 3)\n"
)


def command(code: str) -> str:
    return json.dumps([PY, "-c", code])


JOBS = f"""
[supervisor]
parallel = true
max_workers = 4
max_line_bytes = "1KiB"
grace_period = "1s"
[discovery]
enabled = false
[defaults]
backoff = {{ initial = "50ms", jitter = 0.0 }}
[jobs.ok]
command = {command(OK_CODE)}
[jobs.flaky]
command = {command(FLAKY_CODE)}
retries = 1
[jobs.slow]
command = {command("import time; time.sleep(10)")}
timeout = "300ms"
[jobs.missing]
command = ["./no-such-program"]
optional = true
[jobs.bad]
command = {command("import sys; print('no'); sys.exit(4)")}
optional = true
"""


def test_records_of_a_run_with_every_outcome_validate(tmp_path: Path, marker: str) -> None:
    write_config(tmp_path, JOBS.replace("[defaults]", f'[defaults]\nenv = {{ TEST_MARKER = "{marker}" }}'))
    r = cli(tmp_path, "run", "--log-file", "stream.jsonl", timeout=90)
    assert r.returncode == 1, r.stderr  # slow timed out, and it is required
    stream = read_jsonl(tmp_path / "stream.jsonl")
    for n, rec in enumerate(stream, 1):
        check_record(rec, f"stream.jsonl:{n}")
    job_records = check_run_folder(tmp_path)
    kinds = {r["event"] for r in stream}
    assert {
        "run.started",
        "job.queued",
        "job.started",
        "job.output",
        "job.exited",
        "job.retrying",
        "job.finished",
        "run.finished",
    } <= kinds
    outputs = [r for r in job_records if r["event"] == "job.output"]
    assert any(r.get("partial") for r in outputs) and any("data" in r for r in outputs)
    # schema 2: the job's files leave run and job to their paths, the stream names them
    assert not any("run" in r or "job" in r for r in outputs)
    streamed = [r for r in stream if r["event"] == "job.output"]
    assert len(streamed) == len(outputs) and all(r["run"] and r["job"] for r in streamed)
    assert any(r["stream"] == "stderr" for r in outputs)
    finished = {r["job"]: r for r in stream if r["event"] == "job.finished"}
    assert finished["bad"]["optional"] is True and finished["ok"]["optional"] is False
    assert finished["ok"]["metrics"] == {"acc": 0.9}
    outcomes = {r["outcome"] for r in stream if r["event"] == "job.exited"}
    assert {"succeeded", "failed", "timed_out", "spawn_failed"} <= outcomes
    started = next(r for r in stream if r["event"] == "run.started")
    assert started["schema"] == SCHEMA_VERSION
    # t is the numeric twin of ts in every record, and time moves forward through a job's log
    for rec in stream:
        assert (
            abs(
                time.mktime(time.strptime(rec["ts"][:19], "%Y-%m-%dT%H:%M:%S"))
                - time.timezone
                + float("0." + rec["ts"][20:26])
                - rec["t"]
            )
            < 1e-3
        ), rec


def test_records_of_a_run_stopped_by_ctrl_c_and_of_its_resume_validate(tmp_path: Path, marker: str) -> None:
    write_config(
        tmp_path,
        f"""
[supervisor]
parallel = true
max_workers = 1
grace_period = "1s"
[discovery]
enabled = false
[defaults]
env = {{ TEST_MARKER = "{marker}" }}
[jobs.first]
command = {json.dumps([PY, "-c", "import json; print(json.dumps({'acc': 1.0}))"])}
[jobs.sleeper]
command = {json.dumps([PY, "-c", "import time; print('sleeping', flush=True); time.sleep(30)"])}
[jobs.never]
command = {json.dumps([PY, "-c", "pass"])}
""",
    )
    proc = start_cli(tmp_path, "run", "--no-progress")
    try:
        wait_for(
            lambda: (
                (tmp_path / "logs" / "latest" / "jobs" / "sleeper.jsonl").exists()
                and b"sleeping" in (tmp_path / "logs" / "latest" / "jobs" / "sleeper.jsonl").read_bytes()
            ),
            timeout=30,
            what="the sleeper to start",
        )
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    first_run = run_dir(tmp_path)
    check_run_folder(tmp_path, first_run)
    statuses = {j["id"]: j["status"] for j in json.loads((first_run / "summary.json").read_text())["jobs"]}
    assert statuses == {"first": "succeeded", "sleeper": "cancelled", "never": "cancelled"}

    # the resume skips `first`; make the sleeper quick so that it ends
    text = (tmp_path / "aimedres.toml").read_text().replace("time.sleep(30)", "time.sleep(0)")
    (tmp_path / "aimedres.toml").write_text(text)
    r = cli(tmp_path, "run", "--resume", "--no-progress", timeout=60)
    assert r.returncode == 0, r.stderr
    assert run_dir(tmp_path) != first_run
    check_run_folder(tmp_path)
    resumed = [
        rec
        for rec in read_jsonl(run_dir(tmp_path) / "events.jsonl")
        if rec["event"] == "job.finished" and rec["job"] == "first"
    ]
    assert resumed[0]["status"] == "skipped" and resumed[0]["metrics"] == {"acc": 1.0}


def test_records_of_the_daemon_validate(tmp_path: Path, marker: str) -> None:
    job = f"[jobs.ok]\ncommand = {json.dumps([PY, '-c', 'import time; time.sleep(0.2)'])}\n"
    write_config(tmp_path, daemon_config(marker, job))
    daemon_dir = tmp_path / "logs" / "latest-daemon"  # `serve` leaves logs/latest to `run`
    daemons = Daemons()
    try:
        d = daemons.start(tmp_path)
        spool = tmp_path / "spool"
        wait_for(lambda: (spool / "incoming").is_dir(), what="the spool")
        drop(spool, "good.toml", 'job = "ok"\n')
        drop(spool, "bad.toml", 'job = "nope"\n')
        wait_final(spool, ["good", "bad"])
        # the operators' commands: pause/resume, a dependency that fails, a running ticket cancelled
        assert cli(tmp_path, "pause").returncode == 0
        wait_for(
            lambda: json.loads(cli(tmp_path, "status", "--json").stdout)["daemon"]["paused"],
            what="the daemon paused",
        )
        drop(spool, "after-bad.toml", 'job = "ok"\nafter = "bad"\npriority = 2\n')
        drop(spool, "long.toml", f"command = {json.dumps([PY, '-c', 'import time; time.sleep(60)'])}\n")
        assert cli(tmp_path, "resume").returncode == 0
        wait_for(lambda: (spool / "active" / ".long.json").exists(), what="the long ticket running")
        assert cli(tmp_path, "cancel", "long").returncode == 0
        wait_final(spool, ["after-bad", "long"])
        d.signal(signal.SIGHUP)
        wait_for(lambda: "daemon.reloaded" in (daemon_dir / "events.jsonl").read_text(), what="the reload")
        assert d.stop() == 0
    finally:
        daemons.close()
    records = read_jsonl(daemon_dir / "events.jsonl")
    for n, rec in enumerate(records, 1):
        check_record(rec, f"events.jsonl:{n}")
    for path in sorted((daemon_dir / "jobs").glob("*.jsonl")):
        for n, rec in enumerate(read_jsonl(path), 1):
            check_record(rec, f"{path.name}:{n}")
    assert {
        "ticket.rejected",
        "daemon.reloaded",
        "job.finished",
        "daemon.paused",
        "daemon.resumed",
        "ticket.failed",
        "ticket.cancelling",
    } <= {r["event"] for r in records}


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_records_of_a_ray_run_validate(tmp_path: Path, ray_head: str) -> None:
    # No `marker` here: Ray gives a job's env to its own ray::JobSupervisor actor too, which Ray ends
    # on its own schedule after the job; tests/engine/test_ray.py checks that no Ray job is left running.
    address = ray_head
    write_config(
        tmp_path,
        f"""
[supervisor]
executor = "ray"
parallel = true
max_workers = 2
[ray]
address = "{address}"
working_dir = ""
[discovery]
enabled = false
[jobs.ok]
command = {json.dumps([PY, "-c", "import json; print('hi'); print(json.dumps({'acc': 0.5}))"])}
[jobs.bad]
command = {json.dumps([PY, "-c", "import sys; sys.exit(3)"])}
optional = true
""",
    )
    r = cli(tmp_path, "run", "--no-progress", timeout=240)
    assert r.returncode == 0, r.stderr
    check_run_folder(tmp_path)


def test_logs_prints_metrics_and_counts_as_json(tmp_path: Path, marker: str) -> None:
    """Regression: `logs` printed job.finished metrics as a Python dict ({'acc': 0.9})."""
    write_config(
        tmp_path,
        f"""
[discovery]
enabled = false
[defaults]
env = {{ TEST_MARKER = "{marker}" }}
[jobs.ok]
command = {command("import json; print(json.dumps({'acc': 0.9, 'tag': 'x'}))")}
""",
    )
    assert cli(tmp_path, "run", "--no-progress").returncode == 0
    r = cli(tmp_path, "logs", "ok")
    assert r.returncode == 0, r.stderr
    finished = next(line for line in r.stdout.splitlines() if "job.finished" in line)
    assert 'metrics={"acc":0.9,"tag":"x"}' in finished and "'acc'" not in r.stdout, finished
    assert "optional=false" in finished
