"""`--log-format json`: the console's lifecycle lines are the log's own bytes (each record is
serialized once, whatever reads it), so a machine reading stderr sees what events.jsonl holds."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import write_config
from helpers_cli import cli


def test_json_console_lines_are_the_event_logs_lines(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        """
[supervisor]
parallel = true
max_workers = 2
[discovery]
enabled = false
[defaults]
retries = 1
backoff = { initial = "10ms", jitter = 0.0 }
[jobs.ok]
command = ["sh", "-c", "echo hello"]
[jobs.flaky]
command = ["sh", "-c", "exit 3"]
""",
    )
    r = cli(tmp_path, "run", "--log-format", "json", "--no-progress")
    assert r.returncode == 1, r.stderr
    console = [line for line in r.stderr.splitlines() if line.startswith("{")]
    events = (tmp_path / "logs" / "latest" / "events.jsonl").read_text().splitlines()
    lifecycle = [line for line in events if json.loads(line)["event"] != "job.sample"]
    assert console == lifecycle
    kinds = [json.loads(line)["event"] for line in console]
    assert kinds[0] == "run.started" and kinds[-1] == "run.finished" and "job.retrying" in kinds
