"""executor = "slurm": the same runs through a real one-node Slurm cluster.

`.ci/slurm-up` starts the cluster (munged, slurmctld, slurmd from Debian's packages) and `.ci/run`
runs it around pytest. Skipped, with the reason printed, when no cluster answers: the reason
slurm-up gave, or that it was not run.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import PY, events, job_summary, read_jsonl, run_dir, start_cli, summary, wait_for, write_config
from helpers_cli import cli
from helpers_daemon import Daemons, drop, result, wait_final
from helpers_schema import check_run_folder
from helpers_slurm import _config, _job, _job_state, _squeue

from aimedres_async.engine.attempt import AttemptContext, AttemptResult, JobOutput, StopRequest
from aimedres_async.engine.executors.slurm import SlurmExecutor
from aimedres_async.plan.config import Backoff, Resources, SlurmConfig
from aimedres_async.plan.jobs import JobSpec, Outcome

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]


def _outputs(folder: Path, job: str) -> list[dict[str, object]]:
    path = run_dir(folder) / "jobs" / f"{job}.jsonl"
    return [x for x in read_jsonl(path) if x["event"] == "job.output"] if path.exists() else []


def _kill(proc: subprocess.Popen[str], folder: Path, env: dict[str, str]) -> None:
    """A test that failed half-way: kill `run`, and scancel what it had submitted (it cannot now)."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
        ids = [e["slurm_job_id"] for e in events(folder, "job.started")]
        if ids:
            subprocess.run(["scancel", *ids], timeout=30, env={**os.environ, **env})


# ---------------------------------------------------------------- runs


def test_bundled_examples_train_on_slurm(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    pytest.importorskip("sklearn")
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    body = (REPO / "aimedres.toml").read_text().replace("[supervisor]", '[supervisor]\nexecutor = "slurm"')
    write_config(tmp_path, body + '\n[slurm]\npoll_interval = "300ms"\n')
    r = cli(tmp_path, "run", "--epochs", "2", "--folds", "2", "--junit-xml", "junit.xml", timeout=280, env=slurm_env)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = {j["id"]: j for j in summary(tmp_path)["jobs"]}
    assert len(jobs) == 3 and all(j["status"] == "succeeded" for j in jobs.values()), jobs
    for j in jobs.values():
        assert j["metrics"]["epochs"] == 2  # the final JSON line arrived as data, from the output file
    started = events(tmp_path, "job.started")
    assert all(e["slurm_job_id"].isdigit() and e["pid"] is None for e in started)
    exited = events(tmp_path, "job.exited")
    assert all(e["slurm_state"] == "COMPLETED" and e["queued_s"] >= 0 for e in exited), exited
    assert 'tests="3"' in (tmp_path / "junit.xml").read_text()
    check_run_folder(tmp_path)  # every record and summary.json against the shipped JSON Schema


def test_failing_job_is_retried_as_new_slurm_jobs(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    code = "import sys; print('trying'); sys.exit(3)"
    write_config(tmp_path, _config(_job("flop", code, 'retries = 1\nbackoff = { initial = "100ms", jitter = 0.0 }\n')))
    r = cli(tmp_path, "run", timeout=120, env=slurm_env)
    assert r.returncode == 1, r.stderr[-2000:]
    s = job_summary(tmp_path, "flop")
    assert s["status"] == "failed" and s["attempts"] == 2 and s["exit_code"] == 3 and s["failure"] == "exit_code"
    assert [e["delay_s"] for e in events(tmp_path, "job.retrying")] == [0.1]
    started = events(tmp_path, "job.started")
    run_id = summary(tmp_path)["run"]
    assert [e["slurm_job_name"] for e in started] == [f"flop.1.{run_id}", f"flop.2.{run_id}"]
    assert len({e["slurm_job_id"] for e in started}) == 2
    assert [x["line"] for x in _outputs(tmp_path, "flop")] == ["trying", "trying"]
    check_run_folder(tmp_path)  # every record and summary.json against the shipped JSON Schema


def test_timeout_stops_the_slurm_job_with_the_stop_signal(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda s, f: (print('got', s, flush=True), sys.exit(5)))\n"
        "print('up', flush=True)\ntime.sleep(120)\n"
    )
    write_config(tmp_path, _config(_job("slow", code, 'timeout = "3s"\n')))
    r = cli(tmp_path, "run", timeout=120, env=slurm_env)
    assert r.returncode == 1, r.stderr[-2000:]
    s = job_summary(tmp_path, "slow")
    assert s["status"] == "timed_out" and s["failure"] == "timeout"
    assert [x["line"] for x in _outputs(tmp_path, "slow") if x["stream"] == "stdout"] == ["up", "got 2"]
    job_id = events(tmp_path, "job.started")[0]["slurm_job_id"]
    assert _job_state(slurm_env, job_id) in ("FAILED", "CANCELLED", "COMPLETED")  # ended, whichever way
    assert _squeue(slurm_env, summary(tmp_path)["run"]) == []
    check_run_folder(tmp_path)  # every record and summary.json against the shipped JSON Schema


@pytest.mark.slow
def test_slurms_own_time_limit_is_timed_out(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    """No timeout of ours; `--time=1` (minute) from sbatch_options: Slurm ends it TIMEOUT (~60-90 s)."""
    write_config(
        tmp_path,
        _config(
            _job("limit", "import time; print('up', flush=True); time.sleep(600)"),
            slurm='sbatch_options = ["--time=1"]',
        ),
    )
    r = cli(tmp_path, "run", timeout=280, env=slurm_env)
    assert r.returncode == 1, r.stderr[-2000:]
    s = job_summary(tmp_path, "limit")
    assert s["status"] == "timed_out" and s["failure"] == "timeout" and "TIMEOUT" in s["error"]
    assert events(tmp_path, "job.exited")[0]["slurm_state"] == "TIMEOUT"


def test_job_over_its_memory_is_oom_killed(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    code = (
        "import time\nx = []\nfor i in range(60):\n"
        "    x.append(bytearray(20 << 20)); print(f'{20 * (i + 1)} MiB', flush=True); time.sleep(0.1)\n"
        "time.sleep(30)\n"
    )
    write_config(tmp_path, _config(_job("hog", code, 'resources = { memory = "100MiB" }\n')))
    r = cli(tmp_path, "run", timeout=120, env=slurm_env)
    assert r.returncode == 1, r.stderr[-2000:]
    s = job_summary(tmp_path, "hog")
    assert s["status"] == "failed" and s["failure"] == "oom_killed", s
    lines = [x["line"] for x in _outputs(tmp_path, "hog") if x["stream"] == "stdout"]
    assert lines and lines[-1] != "1200 MiB"  # stopped on the way up, not after it had it all
    check_run_folder(tmp_path)  # every record and summary.json against the shipped JSON Schema


def test_peak_rss_comes_from_sstat(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    code = "import time\nx = bytearray(300 << 20)\nfor i in range(len(x) // 4096): x[i * 4096] = 1\ntime.sleep(8)\n"
    write_config(tmp_path, _config(_job("big", code)))
    r = cli(tmp_path, "run", timeout=120, env=slurm_env)
    assert r.returncode == 0, r.stderr[-2000:]
    peak = job_summary(tmp_path, "big")["peak_rss_bytes"]
    assert 300 << 20 <= peak < 2 << 30, peak


def test_sigint_leaves_no_job_of_the_run_in_squeue(tmp_path: Path, slurm_env: dict[str, str], marker: str) -> None:
    code = "import time\nfor i in range(600): print(i, flush=True); time.sleep(0.2)"
    # long2 asks for every CPU of the node, so it never runs beside the others: whichever starts
    # first, the run has jobs running and a job waiting in Slurm's queue (Resources) when stopped
    cpus = max(
        int(c.rstrip("+"))
        for c in subprocess.run(
            ["sinfo", "--noheader", "--format=%c"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env={**os.environ, **slurm_env},
        ).stdout.split()
    )
    jobs = (
        _job("long0", code, "resources = { cpus = 1 }\n")
        + _job("long1", code, "resources = { cpus = 1 }\n")
        + _job("long2", code, f"resources = {{ cpus = {cpus} }}\n")
    )
    write_config(tmp_path, _config(jobs, workers=3, marker=marker))
    proc = start_cli(tmp_path, "run", "--no-progress", env=slurm_env)
    try:
        wait_for(lambda: len(events(tmp_path, "job.started")) == 3, timeout=60, what="three Slurm jobs")
        run_id = summary(tmp_path)["run"]

        def running_and_pending() -> bool:
            states = {st for _n, st in _squeue(slurm_env, run_id)}
            return {"RUNNING", "PENDING"} <= states

        wait_for(running_and_pending, timeout=60, what="jobs running and a job pending")
        wait_for(
            lambda: any(len(_outputs(tmp_path, f"long{i}")) >= 2 for i in range(3)),
            timeout=30,
            what="output of a running job",
        )
        assert running_and_pending()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    finally:
        _kill(proc, tmp_path, slurm_env)
    assert proc.returncode == 130, err[-2000:]
    assert _squeue(slurm_env, run_id) == []  # nothing of the run pending or running once `run` is back
    assert {j["status"] for j in summary(tmp_path)["jobs"]} == {"cancelled"}
    # the processes are gone too (the marker fixture checks again afterwards)
    wait_for(lambda: not _marked(marker), timeout=20, what="the jobs' processes to end")


def _marked(marker: str) -> list[int]:
    from conftest import marked_processes

    return marked_processes(marker)


def test_output_arrives_as_the_same_records_as_locally(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    code = (
        "import json, os, sys, time\nfor i in range(3):\n    print(f'epoch {i}', flush=True)\n"
        "    sys.stdout.write(f'\\r[{\"#\" * i}] {i}/3'); sys.stdout.flush(); time.sleep(0.3)\n"
        "print()\nprint('warn: MRN1234567', file=sys.stderr, flush=True)\n"
        "print('env', os.environ['AIMEDRES_JOB_ID'], os.environ['AIMEDRES_ATTEMPT'], os.environ['EXTRA'], "
        "os.getcwd() == os.environ['WANT_CWD'], 'CUDA_VISIBLE_DEVICES' in os.environ, flush=True)\n"
        "sys.stdout.write('no newline at the end ' + 'x' * 3000)\n"
        "print(json.dumps({'acc': 0.5, 'model': 'm'}), file=sys.stderr)\n"
    )
    job = _job("bar", code, 'env = { EXTRA = "a b\'c", PYTHONUNBUFFERED = "1" }\n')
    records, started, exited = {}, {}, {}
    for executor in ("local", "slurm"):
        folder = tmp_path / executor
        folder.mkdir()
        body = _config(job, 'max_line_bytes = 1024\n[logging]\nredact = ["MRN\\\\d{6,}"]\n')
        write_config(folder, body.replace('executor = "slurm"', f'executor = "{executor}"'))
        r = cli(folder, "run", "--log-file", "all.jsonl", timeout=120, env={**slurm_env, "WANT_CWD": str(folder)})
        assert r.returncode == 0, r.stderr[-2000:]
        records[executor] = {
            stream: [
                (x.get("line", x.get("data")), x.get("partial", False))
                for x in _outputs(folder, "bar")
                if x["stream"] == stream
            ]
            for stream in ("stdout", "stderr")
        }
        full = read_jsonl(folder / "all.jsonl")
        named = [{**x, "run": run_dir(folder).name, "job": "bar"} for x in _outputs(folder, "bar")]
        assert [x for x in full if x["event"] == "job.output"] == named  # the stream names run and job
        started[executor] = events(folder, "job.started")[0]
        exited[executor] = events(folder, "job.exited")[0]
    assert records["slurm"] == records["local"]
    assert ("warn: [REDACTED]", False) in records["slurm"]["stderr"]
    assert ("env bar 1 a b'c True False", False) in records["slurm"]["stdout"]
    assert any(partial for _line, partial in records["slurm"]["stdout"])  # cut at max_line_bytes, as locally
    assert set(started["local"]) <= set(started["slurm"]) and set(exited["local"]) <= set(exited["slurm"])
    for key in ("argv", "cwd", "env_keys", "script_sha256"):
        assert started["slurm"][key] == started["local"][key] or key == "cwd"
    assert started["slurm"]["cwd"] == str(tmp_path / "slurm")


def test_max_pending_fails_with_slurms_reason(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    write_config(
        tmp_path,
        _config(_job("later", "print('ran')"), slurm='max_pending = "2s"\nsbatch_options = ["--begin=now+3600"]'),
    )
    r = cli(tmp_path, "run", timeout=120, env=slurm_env)
    assert r.returncode == 1, r.stderr[-2000:]
    s = job_summary(tmp_path, "later")
    assert s["status"] == "failed" and s["failure"] == "max_pending" and "BeginTime" in s["error"], s
    ex = events(tmp_path, "job.exited")[0]
    assert ex["queued_s"] >= 2 and ex["duration_s"] == 0
    assert _squeue(slurm_env, summary(tmp_path)["run"]) == []
    check_run_folder(tmp_path)  # every record and summary.json against the shipped JSON Schema


def test_job_cancelled_outside_is_failed_and_not_retried(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    code = "import time\nfor i in range(600): print(i, flush=True); time.sleep(0.2)"
    write_config(tmp_path, _config(_job("victim", code, "retries = 2\n")))
    proc = start_cli(tmp_path, "run", "--no-progress", env=slurm_env)
    try:
        wait_for(lambda: len(_outputs(tmp_path, "victim")) >= 2, timeout=60, what="the job running")
        job_id = events(tmp_path, "job.started")[0]["slurm_job_id"]
        subprocess.run(["scancel", job_id], check=True, timeout=30, env={**os.environ, **slurm_env})
        _out, err = proc.communicate(timeout=120)
    finally:
        _kill(proc, tmp_path, slurm_env)
    assert proc.returncode == 1, err[-2000:]
    s = job_summary(tmp_path, "victim")
    assert s["status"] == "failed" and s["failure"] == "cancelled_externally" and s["attempts"] == 1, s
    check_run_folder(tmp_path)  # every record and summary.json against the shipped JSON Schema


# ---------------------------------------------------------------- the command line


def test_no_slurm_on_path_is_one_line_exit_2(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    write_config(tmp_path, _config(_job("a", "print(1)")))
    empty = tmp_path / "bin"
    empty.mkdir()
    r = cli(tmp_path, "run", timeout=60, env={**slurm_env, "PATH": str(empty)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not found: sbatch" in lines[0], lines


def test_controller_down_is_one_line_exit_2(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    conf = Path(slurm_env.get("SLURM_CONF") or os.environ["SLURM_CONF"]).read_text()
    down = tmp_path / "down.conf"
    down.write_text(
        re.sub(r"SlurmctldPort=\d+", "SlurmctldPort=1", conf).replace("MessageTimeout=10", "MessageTimeout=2")
    )
    write_config(tmp_path, _config(_job("a", "print(1)")))
    r = cli(tmp_path, "run", timeout=120, env={"SLURM_CONF": str(down)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Slurm controller does not answer" in lines[0], lines


def test_validate_checks_the_partition(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    write_config(tmp_path, _config(_job("a", "print(1)")))
    ok = cli(tmp_path, "validate", env=slurm_env)
    assert ok.returncode == 0 and "ok" in ok.stdout, ok.stderr
    write_config(tmp_path, _config(_job("a", "print(1)"), slurm='partition = "nosuch"'))
    bad = cli(tmp_path, "validate", env=slurm_env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "no such partition" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_list_says_which_jobs_fit_the_cluster(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    jobs = _job("small", "print(1)", 'resources = { cpus = 1, memory = "64MiB" }\n') + _job(
        "huge", "print(1)", "resources = { cpus = 4096 }\n"
    )
    write_config(tmp_path, _config(jobs).replace('executor = "slurm"', 'executor = "local"'))
    r = cli(tmp_path, "list", "--executor", "slurm", env=slurm_env)
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    col = header.index("FITS")
    fits = {line.split()[0]: line[col:].split()[0] for line in rows}
    assert fits == {"small": "yes", "huge": "NO"}, r.stdout


def test_slurm_table_is_validated_strictly(tmp_path: Path) -> None:
    body = _config(_job("a", "print(1)"), slurm='partiton = "gpu"\nmax_pending = "soon"\nsbatch_options = "-N 2"')
    write_config(tmp_path, body.replace('poll_interval = "300ms"', 'poll_interval = "1ms"'))
    r = cli(tmp_path, "validate")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "slurm.partiton: unknown key (did you mean 'partition'?)" in r.stderr
    assert "slurm.poll_interval: must be at least 100ms" in r.stderr
    assert "slurm.max_pending: 'soon' is not a duration" in r.stderr
    assert "slurm.sbatch_options: expected a list of strings" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 4


# ---------------------------------------------------------------- the spool daemon


def test_daemon_runs_a_ticket_as_a_slurm_job_and_stop_scancels(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    quick = _job("quick", "print('from slurm'); print('{\"loss\": 0.25}')")
    slow = _job("slow", "import time\nfor i in range(600): print(i, flush=True); time.sleep(0.2)")
    write_config(tmp_path, _config(quick + slow, 'spool_dir = "spool"'))
    daemons = Daemons()
    try:
        d = daemons.start(tmp_path, env=slurm_env)
        spool = tmp_path / "spool"
        wait_for(lambda: (spool / "incoming").is_dir(), timeout=30, what="the spool")
        drop(spool, "t1.toml", 'job = "quick"\n')
        wait_final(spool, ["t1"], timeout=120)
        res = result(spool, "done", "t1")
        assert res["status"] == "succeeded" and res["metrics"] == {"loss": 0.25}, res
        started = [e for e in read_jsonl(Path(res["log"])) if e["event"] == "job.started"]
        assert started and started[0]["slurm_job_id"].isdigit()
        # a running ticket: stopping the daemon scancels its Slurm job and puts the ticket back
        drop(spool, "t2.toml", 'job = "slow"\n')
        wait_for(lambda: (spool / "active" / "t2.toml").exists(), timeout=60, what="t2 claimed")
        log = Path(res["log"]).parent / "t2.jsonl"
        wait_for(
            lambda: log.exists() and sum(1 for x in read_jsonl(log) if x["event"] == "job.output") >= 2,
            timeout=60,
            what="t2 running on Slurm",
        )
        job_id = next(x for x in read_jsonl(log) if x["event"] == "job.started")["slurm_job_id"]
        assert d.stop(timeout=60) == 0, d.stderr()[-2000:]
        assert (spool / "incoming" / "t2.toml").exists()
        assert _job_state(slurm_env, job_id) not in ("RUNNING", "PENDING", "COMPLETING")
    finally:
        daemons.close()


# ---------------------------------------------------------------- in-process: the stop paths of one attempt


def _spec(tmp_path: Path, code: str, marker: str) -> JobSpec:
    return JobSpec(
        id="one",
        argv=(PY, "-c", code),
        cwd=tmp_path,
        env={"TEST_MARKER": marker, "PYTHONUNBUFFERED": "1"},
        output_dir=None,
        script=None,
        accepts=frozenset(),
        retries=0,
        backoff=Backoff(),
        timeout=None,
        optional=False,
        resources=Resources(),
        origin="config",
    )


async def _running(
    tmp_path: Path,
    slurm_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    marker: str,
) -> tuple[asyncio.Task[AttemptResult], AttemptContext, list[tuple[str, dict[str, object]]]]:
    for k, v in slurm_env.items():
        monkeypatch.setenv(k, v)
    executor = SlurmExecutor(SlurmConfig(poll_interval=0.3), str(tmp_path), str(tmp_path / "logs"))
    emitted: list[tuple[str, dict[str, object]]] = []
    written: list[object] = []
    ctx = AttemptContext(
        run_id="r1",
        emit=lambda ev, **kw: emitted.append((ev, kw)),
        write_output=lambda job, b: written.append(b),
        stop=StopRequest(),
        grace_period=2.0,
    )
    code = "import time\nfor i in range(600): print(i, flush=True); time.sleep(0.2)"
    task = asyncio.create_task(executor.run_attempt(_spec(tmp_path, code, marker), 1, ctx, JobOutput()))
    for _ in range(300):
        if written:
            break
        await asyncio.sleep(0.1)
    assert written, "the Slurm job printed nothing"
    return task, ctx, emitted


@pytest.mark.asyncio
async def test_cancelling_an_attempt_scancels_its_slurm_job(
    tmp_path: Path, slurm_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, marker: str
) -> None:
    """The task of an attempt cancelled (as a ticket's cancel or a supervisor error does): its job is
    scancelled before the cancellation propagates."""
    task, _ctx, emitted = await _running(tmp_path, slurm_env, monkeypatch, marker)
    job_id = str(next(kw for ev, kw in emitted if ev == "job.started")["slurm_job_id"])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    state = await asyncio.to_thread(_job_state, slurm_env, job_id)
    assert state in ("CANCELLED", "COMPLETING"), state  # scancel has been accepted by the controller
    await asyncio.to_thread(wait_for, lambda: _job_state(slurm_env, job_id) == "CANCELLED", 30, "CANCELLED")


@pytest.mark.asyncio
async def test_stop_request_signals_then_scancels(
    tmp_path: Path, slurm_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, marker: str
) -> None:
    task, ctx, emitted = await _running(tmp_path, slurm_env, monkeypatch, marker)
    ctx.stop.request("SIGTERM")
    result = await asyncio.wait_for(task, 60)
    assert result.outcome is Outcome.CANCELLED and result.failure is None
    exited = next(kw for ev, kw in emitted if ev == "job.exited")
    assert exited["slurm_state"] in ("FAILED", "CANCELLED") and exited["outcome"] == "cancelled"


@pytest.mark.asyncio
async def test_end_state_from_the_jobcomp_file_once_scontrol_has_forgotten(
    tmp_path: Path, slurm_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After MinJobAge the controller drops a job; its record in the jobcomp file still says how it ended."""
    for k, v in slurm_env.items():
        monkeypatch.setenv(k, v)
    r = subprocess.run(
        ["sbatch", "--parsable", "--output=/dev/null", "--wrap=exit 4"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    job_id = r.stdout.strip().split(";")[0]
    await asyncio.to_thread(wait_for, lambda: _job_state(slurm_env, job_id) == "FAILED", 30, "the job to end")
    executor = SlurmExecutor(SlurmConfig(), str(tmp_path), str(tmp_path / "logs"))
    record = await asyncio.to_thread(executor._jobcomp_record, job_id)
    assert record.get("JobState") == "FAILED" and record.get("ExitCode") == "4:0", record
    assert await asyncio.to_thread(executor._jobcomp_record, "999999999") == {}


def test_fail_fast_scancels_the_other_jobs(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    long = "import time\nfor i in range(600): print(i, flush=True); time.sleep(0.2)"
    jobs = _job("long", long) + _job("boom", "import time, sys; time.sleep(2); sys.exit(9)")
    write_config(tmp_path, _config(jobs))
    r = cli(tmp_path, "run", "--fail-fast", timeout=120, env=slurm_env)
    assert r.returncode == 1, r.stderr[-2000:]
    statuses = {j["id"]: (j["status"], j["failure"]) for j in summary(tmp_path)["jobs"]}
    assert statuses == {"boom": ("failed", "exit_code"), "long": ("cancelled", None)}, statuses
    assert _squeue(slurm_env, summary(tmp_path)["run"]) == []


def test_stall_timeout_stops_a_silent_slurm_job(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    code = "import time; print('loading', flush=True); time.sleep(120)"
    write_config(tmp_path, _config(_job("hung", code, 'stall_timeout = "3s"\n')))
    r = cli(tmp_path, "run", timeout=120, env=slurm_env)
    assert r.returncode == 1, r.stderr[-2000:]
    s = job_summary(tmp_path, "hung")
    assert s["status"] == "stalled" and s["failure"] == "stalled", s
    assert _squeue(slurm_env, summary(tmp_path)["run"]) == []


def test_a_job_sbatch_refuses_is_spawn_failed_with_its_message(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    write_config(tmp_path, _config(_job("odd", "print(1)", "retries = 2\n"), slurm='sbatch_options = ["--time=bogus"]'))
    r = cli(tmp_path, "run", timeout=60, env=slurm_env)
    assert r.returncode == 1, r.stderr[-2000:]
    s = job_summary(tmp_path, "odd")
    assert s["status"] == "spawn_failed" and s["attempts"] == 1, s
    assert s["error"].startswith("sbatch refused the job: ") and "--time" in s["error"], s


def test_a_job_no_node_could_run_is_refused_before_anything_starts(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    jobs = _job("fine", "print(1)") + _job("huge", "print(1)", "resources = { cpus = 4096 }\n")
    write_config(tmp_path, _config(jobs))
    r = cli(tmp_path, "run", timeout=60, env=slurm_env)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "job huge can never run on the Slurm cluster: it asks for cpus=4096" in lines[0], lines
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").glob("*/events.jsonl"))


# ---------------------------------------------------------------- states this one-node cluster cannot produce


@pytest.mark.parametrize(
    ("state", "exit_code", "outcome", "failure"),
    [
        ("COMPLETED", "0:0", "succeeded", None),
        ("FAILED", "3:0", "failed", "exit_code"),
        ("FAILED", "0:11", "failed", "signal"),
        ("OUT_OF_MEMORY", "0:125", "failed", "oom_killed"),  # cgroup enforcement (not on this node)
        ("TIMEOUT", "0:15", "timed_out", "timeout"),
        ("DEADLINE", "0:0", "timed_out", "timeout"),
        ("CANCELLED", "0:15", "failed", "cancelled_externally"),
        ("NODE_FAIL", "0:0", "failed", "node_fail"),
        ("BOOT_FAIL", "0:0", "failed", "node_fail"),
        ("PREEMPTED", "0:15", "failed", "preempted"),
        ("UNKNOWN", "", "failed", "slurm_state"),
    ],
)
def test_slurm_states_map_to_outcomes(
    tmp_path: Path, state: str, exit_code: str, outcome: str, failure: str | None
) -> None:
    from aimedres_async.engine.executors.slurm import _classify, _End, _exit_code

    end = _End(state=state, reason=None, info={"ExitCode": exit_code, "NodeList": "n1"})
    code, sig = _exit_code(exit_code)
    got = _classify(end, code, sig, _spec(tmp_path, "pass", "m"), JobOutput(), SlurmConfig())
    assert (got[0].value, got[1]) == (outcome, failure)


@pytest.mark.asyncio
async def test_an_sbatch_that_times_out_leaves_no_job_behind(
    tmp_path: Path, slurm_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, marker: str
) -> None:
    """A controller too slow to answer sbatch may still have queued the job: it is found by its
    unique name and cancelled, and the attempt is spawn_failed."""
    import aimedres_async.engine.executors.slurm_cluster as slurm_cluster

    real = shutil.which("sbatch")
    slow = tmp_path / "bin"
    slow.mkdir()
    (slow / "sbatch").write_text(f'#!/bin/sh\n{real} "$@"\nexec sleep 30\n')
    (slow / "sbatch").chmod(0o755)
    for k, v in slurm_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PATH", f"{slow}:{os.environ['PATH']}")
    monkeypatch.setattr(slurm_cluster, "COMMAND_TIMEOUT", 3.0)
    executor = SlurmExecutor(SlurmConfig(poll_interval=0.3), str(tmp_path), str(tmp_path / "logs"))
    emitted: list[tuple[str, dict[str, object]]] = []
    ctx = AttemptContext(
        run_id="r2",
        emit=lambda ev, **kw: emitted.append((ev, kw)),
        write_output=lambda job, b: None,
        stop=StopRequest(),
        grace_period=2.0,
    )
    code = "import time; time.sleep(300)"
    result = await executor.run_attempt(_spec(tmp_path, code, marker), 1, ctx, JobOutput())
    assert result.outcome is Outcome.SPAWN_FAILED and "did not answer within 3s" in (result.error or ""), result
    assert [ev for ev, _kw in emitted] == ["job.exited"]
    # the job sbatch did submit is cancelled: at most COMPLETING now, and soon gone
    assert {st for _n, st in _squeue(slurm_env, "r2")} <= {"COMPLETING"}
    await asyncio.to_thread(wait_for, lambda: _squeue(slurm_env, "r2") == [], 30, "the job to end")


@pytest.mark.asyncio
async def test_an_attempt_cancelled_during_sbatch_leaves_no_job_behind(
    tmp_path: Path, slurm_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, marker: str
) -> None:
    """sbatch runs shielded: an attempt cancelled (its cancel scope) while sbatch is still answering
    waits for the answer, cancels the job it submitted, then ends cancelled."""
    import anyio

    real = shutil.which("sbatch")
    slow = tmp_path / "bin"
    slow.mkdir()
    (slow / "sbatch").write_text(f'#!/bin/sh\n{real} "$@"\nexec sleep 2\n')  # submits, then answers late
    (slow / "sbatch").chmod(0o755)
    for k, v in slurm_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PATH", f"{slow}:{os.environ['PATH']}")
    executor = SlurmExecutor(SlurmConfig(poll_interval=0.3), str(tmp_path), str(tmp_path / "logs"))
    emitted: list[str] = []
    ctx = AttemptContext(
        run_id="r3",
        emit=lambda ev, **kw: emitted.append(ev),
        write_output=lambda job, b: None,
        stop=StopRequest(),
        grace_period=2.0,
    )
    code = "import time; time.sleep(300)"
    with anyio.move_on_after(0.5) as scope:
        await executor.run_attempt(_spec(tmp_path, code, marker), 1, ctx, JobOutput())
    assert scope.cancelled_caught and emitted == []
    assert {st for _n, st in _squeue(slurm_env, "r3")} <= {"COMPLETING"}
    await asyncio.to_thread(wait_for, lambda: _squeue(slurm_env, "r3") == [], 30, "the job to end")
