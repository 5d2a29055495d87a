"""`run` end to end with real child processes: outcomes, retries, artifacts, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from conftest import PY, events, job_summary, read_jsonl, run_dir, start_cli, summary, wait_for, write_config
from helpers_cli import cli

REPO = Path(__file__).resolve().parents[2]


def cfg(marker: str, jobs: str, supervisor: str = "", defaults: str = "") -> str:
    return f"""
[supervisor]
parallel = true
max_workers = 4
grace_period = "1s"
{supervisor}
[discovery]
enabled = false
[defaults]
retries = 0
env = {{ TEST_MARKER = "{marker}" }}
{defaults}
{jobs}
"""


def py(code: str) -> str:
    """A TOML array running `code` with this interpreter."""
    return json.dumps([PY, "-c", code])


def output_records(folder: Path, job: str) -> list[dict]:
    return [r for r in read_jsonl(run_dir(folder) / "jobs" / f"{job}.jsonl") if r["event"] == "job.output"]


def test_success_artifacts_and_metrics(tmp_path: Path, marker: str) -> None:
    code = "import json,sys,time; print('epoch 1 loss=0.9'); print(json.dumps({'acc': 0.5})); print(json.dumps({'acc': 0.9})); print('bye', file=sys.stderr); sys.stdout.flush(); time.sleep(1.5)"
    write_config(tmp_path, cfg(marker, f"[jobs.train]\ncommand = {py(code)}\n"))
    proc = cli(tmp_path, "run", "--log-file", "stream.jsonl", "--junit-xml", "junit.xml")
    assert proc.returncode == 0, proc.stderr
    rd = run_dir(tmp_path)
    assert (tmp_path / "logs" / "latest").is_symlink()
    # events.jsonl: lifecycle only, in order
    names = [e["event"] for e in read_jsonl(rd / "events.jsonl")]
    samples = [i for i, name in enumerate(names) if name == "job.sample"]  # its RSS, once a second while it ran
    assert samples and names.index("job.started") < min(samples) and max(samples) < names.index("job.exited")
    names = [name for name in names if name != "job.sample"]
    assert names == ["run.started", "job.queued", "job.started", "job.exited", "job.finished", "run.finished"]
    # the job's own file: lifecycle and output, output lines in order, the JSON lines kept as data
    recs = read_jsonl(rd / "jobs" / "train.jsonl")
    out = [r for r in recs if r["event"] == "job.output"]
    assert [r.get("line", r.get("data")) for r in out if r["stream"] == "stdout"] == [
        "epoch 1 loss=0.9",
        {"acc": 0.5},
        {"acc": 0.9},
    ]
    assert [r["line"] for r in out if r["stream"] == "stderr"] == ["bye"]
    for r in recs:  # output records leave run and job to the file's path (log schema 2)
        ids = (r.get("run"), r.get("job"))
        assert ids == ((None, None) if r["event"] == "job.output" else (rd.name, "train")) and r["ts"].endswith("Z")
    # summary: the final metrics are the last data object
    s = job_summary(tmp_path, "train")
    assert s["status"] == "succeeded" and s["attempts"] == 1 and s["exit_code"] == 0
    assert s["metrics"] == {"acc": 0.9}
    assert s["peak_rss_bytes"] > 1_000_000  # sampled once a second while it ran
    assert summary(tmp_path)["exit_code"] == 0
    # --log-file: the complete stream (lifecycle and output)
    stream = read_jsonl(tmp_path / "stream.jsonl")
    assert [{**r, "run": rd.name, "job": "train"} for r in out] == [r for r in stream if r["event"] == "job.output"]
    assert {"run.started", "run.finished"} <= {r["event"] for r in stream}
    # junit
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "1" and suite.get("failures") == "0"
    # the human summary table
    assert "train" in proc.stdout and "acc=0.9" in proc.stdout


def test_run_id_format_and_provenance(tmp_path: Path, marker: str) -> None:
    write_config(tmp_path, cfg(marker, '[jobs.a]\ncommand = ["true"]\n'))
    assert cli(tmp_path, "run").returncode == 0
    started = events(tmp_path, "run.started")[0]
    import re

    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{4}", started["run"])
    assert started["config_sha256"] and started["max_workers"] == 4 and started["job_ids"] == ["a"]
    assert "python" in started and "host" in started
    import platform

    assert started["platform"] == platform.platform(terse=True)  # without its `uname -p` child


def test_exit_codes_required_optional_partial(tmp_path: Path, marker: str) -> None:
    jobs = '[jobs.good]\ncommand = ["true"]\n[jobs.bad]\ncommand = ["false"]\n'
    write_config(tmp_path, cfg(marker, jobs))
    r = cli(tmp_path, "run")
    assert r.returncode == 1
    assert job_summary(tmp_path, "bad")["failure"] == "exit_code"
    assert cli(tmp_path, "run", "--allow-partial-success").returncode == 0
    write_config(tmp_path, cfg(marker, jobs + "optional = true\n"))
    assert cli(tmp_path, "run").returncode == 0


def test_flaky_job_succeeds_on_third_attempt_with_growing_delays(tmp_path: Path, marker: str) -> None:
    script = tmp_path / "flaky.sh"
    script.write_text(
        "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count\n"
        'echo "attempt $n of $AIMEDRES_ATTEMPT"; [ "$n" -ge 3 ]\n'
    )
    jobs = (
        '[jobs.flaky]\ncommand = ["sh", "flaky.sh"]\nretries = 4\n'
        'backoff = { initial = "100ms", factor = 3.0, max = "10s", jitter = 0.0 }\n'
    )
    write_config(tmp_path, cfg(marker, jobs))
    assert cli(tmp_path, "run").returncode == 0
    retrying = events(tmp_path, "job.retrying")
    assert [e["delay_s"] for e in retrying] == [0.1, 0.3]
    assert [e["next_attempt"] for e in retrying] == [2, 3]
    exited = events(tmp_path, "job.exited")
    assert [e["outcome"] for e in exited] == ["failed", "failed", "succeeded"]
    # each attempt's output is tagged with its attempt number
    assert [(r["attempt"], r["line"]) for r in output_records(tmp_path, "flaky")] == [
        (1, "attempt 1 of 1"),
        (2, "attempt 2 of 2"),
        (3, "attempt 3 of 3"),
    ]
    s = job_summary(tmp_path, "flaky")
    assert s["status"] == "succeeded" and s["attempts"] == 3


def test_jitter_keeps_delay_within_bounds(tmp_path: Path, marker: str) -> None:
    jobs = (
        '[jobs.bad]\ncommand = ["false"]\nretries = 3\n'
        'backoff = { initial = "100ms", factor = 2.0, max = "150ms", jitter = 0.5 }\n'
    )
    write_config(tmp_path, cfg(marker, jobs))
    assert cli(tmp_path, "run").returncode == 1
    delays = [e["delay_s"] for e in events(tmp_path, "job.retrying")]
    assert len(delays) == 3
    for base, d in zip([0.1, 0.15, 0.15], delays, strict=True):  # capped at max
        assert base * 0.5 <= d <= base * 1.5
    # jitter is applied: three delays all within a millisecond of their base would mean it is off
    # (with jitter = 0.5, about one chance in a million)
    assert any(abs(d - base) > 0.001 for base, d in zip([0.1, 0.15, 0.15], delays, strict=True)), delays
    assert job_summary(tmp_path, "bad")["attempts"] == 4


def test_backoff_delay_spreads_over_the_jitter_range() -> None:
    import random

    from aimedres_async.engine.retries import backoff_delay
    from aimedres_async.plan.config import Backoff

    b = Backoff(initial=1.0, factor=2.0, max=4.0, jitter=0.25)
    rng = random.Random(7)
    delays = [backoff_delay(b, 3, rng) for _ in range(2000)]  # base min(4, 1 * 2**2) = 4
    assert all(3.0 <= d <= 5.0 for d in delays)
    assert min(delays) < 3.1 and max(delays) > 4.9  # the whole range is used, not one point
    assert backoff_delay(Backoff(initial=1.0, factor=2.0, max=4.0, jitter=0.0), 3, rng) == 4.0


def test_spawn_failure_is_not_retried(tmp_path: Path, marker: str) -> None:
    jobs = (
        '[jobs.nosuch]\ncommand = ["/nonexistent/trainer"]\nretries = 3\n'
        '[jobs.missing]\nscript = "train_missing.py"\nretries = 3\n'
    )
    write_config(tmp_path, cfg(marker, jobs))
    r = cli(tmp_path, "run")
    assert r.returncode == 1
    for job in ("nosuch", "missing"):
        s = job_summary(tmp_path, job)
        assert s["status"] == "spawn_failed" and s["attempts"] == 1 and s["failure"] == "spawn_failed"
    errors = {e["job"]: e["error"] for e in events(tmp_path, "job.exited")}
    assert "No such file" in errors["nosuch"]
    assert "script not found" in errors["missing"]
    assert "Traceback" not in r.stderr


def test_timeout_then_retry(tmp_path: Path, marker: str) -> None:
    jobs = (
        '[jobs.slow]\ncommand = ["sleep", "30"]\ntimeout = "300ms"\nretries = 1\n'
        'backoff = { initial = "10ms", jitter = 0.0 }\n'
    )
    write_config(tmp_path, cfg(marker, jobs))
    assert cli(tmp_path, "run").returncode == 1
    exited = events(tmp_path, "job.exited")
    assert [e["outcome"] for e in exited] == ["timed_out", "timed_out"]
    assert all(e["failure"] == "timeout" and e["signal"] == "SIGINT" for e in exited)
    assert job_summary(tmp_path, "slow")["status"] == "timed_out"


def test_job_ignoring_stop_signal_is_killed_after_grace(tmp_path: Path, marker: str) -> None:
    code = (
        "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    jobs = f'[jobs.stubborn]\ncommand = {py(code)}\ntimeout = "500ms"\n'
    write_config(tmp_path, cfg(marker, jobs, supervisor='stop_signal = "SIGTERM"'))
    assert cli(tmp_path, "run").returncode == 1
    (exited,) = events(tmp_path, "job.exited")
    assert exited["outcome"] == "timed_out" and exited["signal"] == "SIGKILL"
    assert exited["duration_s"] >= 1.4  # timeout + the whole grace period before SIGKILL


def test_grandchild_holding_stdout_does_not_hang(tmp_path: Path, marker: str) -> None:
    # The background subshell ignores SIGINT (as sh makes background jobs do) and keeps the pipe.
    jobs = (
        '[jobs.leaky]\ncommand = ["sh", "-c", "(sleep 60; echo never) & echo main-done"]\n'
        '[jobs.escaped]\ncommand = ["sh", "-c", "setsid sleep 60 & echo escaped-main-done"]\n'
    )
    write_config(tmp_path, cfg(marker, jobs))
    r = cli(tmp_path, "run", timeout=30)
    assert r.returncode == 0, r.stderr
    assert [x["line"] for x in output_records(tmp_path, "leaky")] == ["main-done"]
    assert [x["line"] for x in output_records(tmp_path, "escaped")] == ["escaped-main-done"]
    # the marker fixture proves neither sleep survived


def test_hostile_output(tmp_path: Path, marker: str) -> None:
    big = "import sys; sys.stdout.write('x' * 5_000_000); sys.stdout.flush()"
    bad = "import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe bad\\n')"
    flood = "import sys\nfor i in range(100000): sys.stderr.write(f'\\r{i}')\nsys.stderr.write('\\n')"
    closer = "import os,time; print('bye', flush=True); os.close(1); time.sleep(0.3); print('still here', file=__import__('sys').stderr)"
    jobs = (
        f"[jobs.big]\ncommand = {py(big)}\n[jobs.bad]\ncommand = {py(bad)}\n"
        f"[jobs.flood]\ncommand = {py(flood)}\n[jobs.closer]\ncommand = {py(closer)}\n"
    )
    write_config(tmp_path, cfg(marker, jobs))
    assert cli(tmp_path, "run", timeout=60).returncode == 0
    parts = output_records(tmp_path, "big")
    assert all(p["partial"] for p in parts) and len(parts) == 5
    assert "".join(p["line"] for p in parts) == "x" * 5_000_000
    assert [x["line"] for x in output_records(tmp_path, "bad")] == ["ok \\xff\\xfe bad"]
    flood_lines = [x["line"] for x in output_records(tmp_path, "flood")]
    assert flood_lines == [str(i) for i in range(100000)]
    closer_out = [(x["stream"], x["line"]) for x in output_records(tmp_path, "closer")]
    assert closer_out == [("stdout", "bye"), ("stderr", "still here")]


def test_max_line_bytes_is_configurable(tmp_path: Path, marker: str) -> None:
    code = "print('a' * 3000)"
    write_config(tmp_path, cfg(marker, f"[jobs.j]\ncommand = {py(code)}\n", supervisor='max_line_bytes = "1KiB"'))
    assert cli(tmp_path, "run").returncode == 0
    parts = output_records(tmp_path, "j")
    assert [len(p["line"]) for p in parts] == [1024, 1024, 952] and all(p["partial"] for p in parts)


def test_environment_and_cwd(tmp_path: Path, marker: str) -> None:
    code = "import os,json; print(json.dumps({k: os.environ.get(k) for k in ['AIMEDRES_JOB_ID','AIMEDRES_ATTEMPT','AIMEDRES_RUN_ID','A','B','NOTIFY_SOCKET']} | {'cwd': os.getcwd()}))"
    jobs = f'[jobs.envy]\ncommand = {py(code)}\nenv = {{ B = "job" }}\n'
    write_config(tmp_path, cfg(marker, jobs).replace("env = {", 'env = { A = "default", B = "default",', 1))
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    r = cli(sub, "--config", str(tmp_path / "aimedres.toml"), "run", env={"NOTIFY_SOCKET": "/tmp/x"})
    assert r.returncode == 0, r.stderr
    m = job_summary(tmp_path, "envy")["metrics"]
    assert m["AIMEDRES_JOB_ID"] == "envy" and m["AIMEDRES_ATTEMPT"] == "1"
    assert m["AIMEDRES_RUN_ID"] == summary(tmp_path)["run"]
    assert (m["A"], m["B"]) == ("default", "job")
    assert m["NOTIFY_SOCKET"] is None
    assert m["cwd"] == str(tmp_path)  # the config file's folder, not the caller's


def _intervals(path: Path) -> list[tuple[float, float]]:
    rows = [line.split() for line in path.read_text().splitlines()]
    starts = {r[1]: float(r[2]) for r in rows if r[0] == "start"}
    ends = {r[1]: float(r[2]) for r in rows if r[0] == "end"}
    return [(starts[k], ends[k]) for k in starts]


def _max_overlap(iv: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in iv] + [(e, -1) for _, e in iv])
    best = cur = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


# Each job appends its start, then waits (up to 10 s) until its whole batch of `expected` jobs has
# started, so jobs that may overlap do overlap however slow the machine is; the worker limit
# alone keeps the next batch out. No sleeps, no timing assumptions.
BATCH = """
import os, sys, time
job, batch = os.environ['AIMEDRES_JOB_ID'], int(sys.argv[1])
with open('times.log', 'a') as f:
    f.write(f'start {job} {time.time()}\\n')
def starts():
    return sum(line.startswith('start') for line in open('times.log'))
mine = starts()  # my line is in; jobs of my batch started before or with me
target = min(6, -(-mine // batch) * batch)
deadline = time.time() + 10
while starts() < target and time.time() < deadline:
    time.sleep(0.01)
with open('times.log', 'a') as f:
    f.write(f'end {job} {time.time()}\\n')
"""


@pytest.mark.parametrize(("parallel", "workers", "expected"), [("false", 4, 1), ("true", 2, 2), ("true", 3, 3)])
def test_worker_limit(tmp_path: Path, marker: str, parallel: str, workers: int, expected: int) -> None:
    cmd = json.dumps([PY, "-c", BATCH, str(expected)])
    jobs = "".join(f"[jobs.j{i}]\ncommand = {cmd}\n" for i in range(6))
    body = (
        cfg(marker, jobs)
        .replace("parallel = true", f"parallel = {parallel}")
        .replace("max_workers = 4", f"max_workers = {workers}")
    )
    write_config(tmp_path, body)
    assert cli(tmp_path, "run").returncode == 0
    iv = _intervals(tmp_path / "times.log")
    assert len(iv) == 6
    assert _max_overlap(iv) == expected  # never more than the limit; its batch always overlaps
    # jobs start in config order
    started = [e["job"] for e in events(tmp_path, "job.started")]
    assert started == [f"j{i}" for i in range(6)]


def test_cli_max_workers_overrides_config(tmp_path: Path, marker: str) -> None:
    write_config(tmp_path, cfg(marker, '[jobs.a]\ncommand = ["true"]\n'))
    assert cli(tmp_path, "run", "--max-workers", "7").returncode == 0
    assert events(tmp_path, "run.started")[0]["max_workers"] == 7


def test_fail_fast_stops_the_others(tmp_path: Path, marker: str) -> None:
    jobs = (
        '[jobs.boom]\ncommand = ["false"]\n[jobs.long]\ncommand = ["sleep", "30"]\n[jobs.later]\ncommand = ["true"]\n'
    )
    write_config(tmp_path, cfg(marker, jobs).replace("max_workers = 4", "max_workers = 2"))
    r = cli(tmp_path, "run", "--fail-fast", timeout=20)
    assert r.returncode == 1
    st = {j["id"]: j["status"] for j in summary(tmp_path)["jobs"]}
    assert st == {"boom": "failed", "long": "cancelled", "later": "cancelled"}
    assert summary(tmp_path)["stopped_by"] == "fail-fast"


def test_verbose_prefixes_output(tmp_path: Path, marker: str) -> None:
    jobs = f"[jobs.talk]\ncommand = {py('import sys; print(1); print(2); print(3, file=sys.stderr)')}\n"
    write_config(tmp_path, cfg(marker, jobs))
    r = cli(tmp_path, "run", "--verbose")
    assert r.returncode == 0
    assert "[talk] 1\n[talk] 2\n" in r.stdout and "[talk:err] 3\n" in r.stdout


def test_json_console(tmp_path: Path, marker: str) -> None:
    write_config(tmp_path, cfg(marker, '[jobs.a]\ncommand = ["true"]\n'))
    r = cli(tmp_path, "run", "--log-format", "json")
    assert r.returncode == 0
    lines = [json.loads(x) for x in r.stderr.splitlines()]
    assert next(x["event"] for x in lines) == "run.started" and lines[-1]["event"] == "run.finished"
    assert r.stdout == ""  # no human table in JSON mode


def test_resume_skips_succeeded_and_reruns_changed(tmp_path: Path, marker: str) -> None:
    jobs = (
        '[jobs.ok]\ncommand = ["sh", "-c", "echo run >> ok.count"]\n'
        '[jobs.flop]\ncommand = ["sh", "-c", "echo run >> flop.count; test -e fixed"]\n'
    )
    write_config(tmp_path, cfg(marker, jobs))
    assert cli(tmp_path, "run").returncode == 1
    first = summary(tmp_path)["run"]
    (tmp_path / "fixed").touch()
    assert cli(tmp_path, "run", "--resume").returncode == 0
    st = {j["id"]: j["status"] for j in summary(tmp_path)["jobs"]}
    assert st == {"ok": "skipped", "flop": "succeeded"}
    assert (tmp_path / "ok.count").read_text().count("run") == 1
    assert (tmp_path / "flop.count").read_text().count("run") == 2
    # a changed command is re-run even though it succeeded before
    write_config(tmp_path, cfg(marker, jobs.replace("echo run", "echo  run")))
    assert cli(tmp_path, "run", "--resume", first).returncode == 0
    assert (tmp_path / "ok.count").read_text().count("run") == 2
    r = cli(tmp_path, "run", "--resume", "20000101T000000Z-ffff")
    assert r.returncode == 2 and "no run to resume" in r.stderr
    r = cli(tmp_path, "run", "--resume", "../../etc")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_github_step_summary(tmp_path: Path, marker: str) -> None:
    write_config(
        tmp_path,
        cfg(marker, f"[jobs.m]\ncommand = {py('print(chr(123)+chr(34)+chr(97)+chr(34)+chr(58)+chr(49)+chr(125))')}\n"),
    )
    step = tmp_path / "step.md"
    step.write_text("earlier step\n")
    assert cli(tmp_path, "run", env={"GITHUB_STEP_SUMMARY": str(step)}).returncode == 0
    text = step.read_text()
    assert text.startswith("earlier step\n") and "| m | succeeded | 1 |" in text and "a=1" in text


def test_junit_failure_carries_last_lines(tmp_path: Path, marker: str) -> None:
    code = "import sys\nfor i in range(80): print(f'line {i}')\nsys.exit(3)"
    jobs = f'[jobs.req]\ncommand = {py(code)}\n[jobs.opt]\ncommand = ["false"]\noptional = true\n'
    write_config(tmp_path, cfg(marker, jobs))
    assert cli(tmp_path, "run", "--junit-xml", "j.xml").returncode == 1
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    failure = cases["req"].find("failure")
    assert failure is not None and "exit_code=3" in (failure.get("message") or "")
    lines = (failure.text or "").splitlines()
    assert lines == [f"line {i}" for i in range(30, 80)]
    assert cases["opt"].find("skipped") is not None
    assert suite.get("failures") == "1" and suite.get("skipped") == "1"


@pytest.mark.slow
def test_bundled_examples_train(tmp_path: Path) -> None:
    """The embedded default config trains the bundled examples (short settings)."""
    pytest.importorskip("sklearn")
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "examples", repo / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "aimedres.toml", repo / "aimedres.toml")
    r = cli(repo, "run", "--epochs", "2", "--folds", "2", "--junit-xml", "junit.xml", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    jobs = {j["id"]: j for j in summary(repo)["jobs"]}
    assert len(jobs) >= 3 and all(j["status"] == "succeeded" for j in jobs.values())
    assert any(j["optional"] for j in jobs.values())
    for j in jobs.values():
        assert j["metrics"] and j["metrics"]["epochs"] == 2, j
        assert (Path(j["output_dir"]) / "metrics.json").exists()
    # the \r progress bars on stderr became records of their own
    recs = read_jsonl(run_dir(repo) / "jobs" / "breast_cancer.jsonl")
    assert sum(1 for x in recs if x.get("stream") == "stderr") > 2


def test_no_traceback_on_unwritable_logs_dir(tmp_path: Path, marker: str) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    write_config(tmp_path, cfg(marker, '[jobs.a]\ncommand = ["true"]\n', supervisor='logs_dir = "blocker/logs"'))
    r = cli(tmp_path, "run")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "blocker" in r.stderr


def test_dry_run_is_shell_quoted(tmp_path: Path) -> None:
    write_config(tmp_path, '[discovery]\nenabled = false\n[jobs.q]\ncommand = ["echo", "two words", "it\'s"]\n')
    r = cli(tmp_path, "run", "--dry-run")
    assert r.returncode == 0
    assert "echo 'two words' 'it'\"'\"'s'" in r.stdout
    assert not (tmp_path / "logs").exists()


def test_discovered_script_gets_its_flags(tmp_path: Path, marker: str) -> None:
    (tmp_path / "train_x.py").write_text(
        "import argparse, json\np = argparse.ArgumentParser()\np.add_argument('--epochs', type=int)\n"
        "p.add_argument('--output-dir')\na = p.parse_args()\nprint(json.dumps({'epochs': a.epochs, 'out': a.output_dir}))\n"
    )
    write_config(tmp_path, cfg(marker, "").replace("[discovery]\nenabled = false", '[discovery]\nroots = ["."]'))
    r = cli(tmp_path, "run", "--epochs", "7", "--folds", "3")
    assert r.returncode == 0, r.stderr
    m = job_summary(tmp_path, "x")["metrics"]
    assert m == {"epochs": 7, "out": str(tmp_path / "results" / "x")}  # --folds: not declared, not passed


def test_many_short_jobs_all_finish_and_the_run_exits(tmp_path: Path, marker: str) -> None:
    """Regression: the dispatcher was woken before a finished attempt left its running set, could
    see a job still "running" and sleep forever after the last job (seen once in 2,000 jobs)."""
    jobs = "".join(f'[jobs.t{i}]\ncommand = ["true"]\n' for i in range(600))
    write_config(tmp_path, cfg(marker, jobs).replace("max_workers = 4", "max_workers = 8"))
    for _ in range(2):
        r = cli(tmp_path, "run", "--log-format", "json", timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert summary(tmp_path)["counts"] == {"succeeded": 600}


def test_pipes_grow_only_for_jobs_that_fill_them(tmp_path: Path, marker: str) -> None:
    """Pipes start at the kernel's 64 KiB; the supervisor raises one to 1 MiB once a job fills it,
    so thousands of quiet jobs never hold 1 MiB pipe buffers each. stdin is /dev/null."""
    code = (
        "import fcntl,json,os,sys,time\n"
        "size = lambda fd: fcntl.fcntl(fd, 1032)  # F_GETPIPE_SZ\n"
        "before = size(1)\n"
        "os.write(1, b'x' * 4_000_000 + b'\\n')  # blocks until the supervisor has read it all\n"
        "time.sleep(0.2)\n"
        "print(json.dumps({'before': before, 'after': size(1), 'stderr': size(2), 'stdin': sys.stdin.read()}))\n"
    )
    quiet = "import fcntl,json; print(json.dumps({'out': fcntl.fcntl(1, 1032), 'err': fcntl.fcntl(2, 1032)}))"
    jobs = f"[jobs.loud]\ncommand = {py(code)}\n[jobs.quiet]\ncommand = {py(quiet)}\n"
    write_config(tmp_path, cfg(marker, jobs))
    r = cli(tmp_path, "run")
    assert r.returncode == 0, r.stderr
    assert job_summary(tmp_path, "loud")["metrics"] == {"before": 65536, "after": 1 << 20, "stderr": 65536, "stdin": ""}
    assert job_summary(tmp_path, "quiet")["metrics"] == {"out": 65536, "err": 65536}
    # the 4 MB line is kept whole, in max_line_bytes pieces
    parts = [p for p in output_records(tmp_path, "loud") if "line" in p and p["line"].startswith("x")]
    assert sum(len(p["line"]) for p in parts) == 4_000_000


def test_summary_entries_follow_the_job_through_the_run(tmp_path: Path, marker: str) -> None:
    """summary.json is rewritten on every state change (coalesced to one write a second, never
    dropped): read while the run goes on, it shows a job running (attempt, pid), one waiting out
    its backoff and one queued; at the end, every entry says how its job finished."""
    flaky = json.dumps(["sh", "-c", "test -e flaked || { touch flaked; exit 1; }"])
    gated = "import json,os,time\nwhile not os.path.exists('go'): time.sleep(0.05)\nprint(json.dumps({'done': 1}))"
    jobs = (
        f'[jobs.flaky]\ncommand = {flaky}\nretries = 1\nbackoff = {{ initial = "4s", jitter = 0 }}\n'
        f'[jobs.slow]\ncommand = {py(gated)}\n[jobs.q0]\ncommand = ["true"]\n'
    )
    write_config(tmp_path, cfg(marker, jobs).replace("max_workers = 4", "max_workers = 1"))
    proc = start_cli(tmp_path, "run")

    def mid_run() -> dict[str, dict[str, object]] | None:
        path = tmp_path / "logs" / "latest" / "summary.json"
        if not path.exists():
            return None
        by_id = {j["id"]: j for j in json.loads(path.read_text())["jobs"]}
        states = {k: v["status"] for k, v in by_id.items()}
        return by_id if states == {"flaky": "backoff", "slow": "running", "q0": "queued"} else None

    seen = wait_for(mid_run, timeout=15, what="a summary showing backoff, running and queued")
    started = {e["job"]: e["pid"] for e in events(tmp_path, "job.started")}
    assert seen["slow"]["attempts"] == 1 and seen["slow"]["pid"] == started["slow"]
    assert seen["flaky"]["attempts"] == 1 and seen["flaky"]["pid"] is None and seen["flaky"]["exit_code"] == 1
    assert seen["q0"]["attempts"] == 0 and seen["q0"]["pid"] is None
    (tmp_path / "go").touch()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    by_id = {j["id"]: j for j in summary(tmp_path)["jobs"]}
    assert by_id["slow"]["status"] == "succeeded" and by_id["slow"]["metrics"] == {"done": 1}
    assert by_id["slow"]["attempts"] == 1 and by_id["slow"]["exit_code"] == 0 and by_id["slow"]["pid"] is None
    assert by_id["flaky"]["status"] == "succeeded" and by_id["flaky"]["attempts"] == 2
    assert by_id["q0"]["status"] == "succeeded" and by_id["q0"]["attempts"] == 1
