"""`serve` with executor = "slurm" on the real one-node cluster (`.ci/slurm-up`): `status` shows a
running ticket's Slurm job, a daemon restarted after kill -9 scancels what its dead self submitted,
and SIGHUP reads `[slurm]` again. Skipped, saying why, when no cluster answers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import PY, read_jsonl, wait_for, write_config
from helpers_cli import cli
from helpers_daemon import Daemons, drop, result, wait_final
from helpers_schema import check_record
from helpers_slurm import _config, _job, _job_state

from aimedres_async.daemon.orphans import LEDGERS, cancel_cluster_leftovers
from aimedres_async.engine.executors import slurm_ledger

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]
SLOW = "import time\nfor i in range(600): print(i, flush=True); time.sleep(0.2)"
LIVE = ("RUNNING", "PENDING", "COMPLETING", "CONFIGURING")


def _events(folder: Path, name: str) -> list[dict[str, Any]]:
    """Every record of this kind in the events.jsonl of every run (each daemon start is a run)."""
    runs = [p for p in sorted((folder / "logs").glob("*/events.jsonl")) if not p.parent.is_symlink()]
    return [e for p in runs for e in read_jsonl(p) if e["event"] == name]


def _started(folder: Path, ticket: str) -> list[dict[str, Any]]:
    return [e for e in _events(folder, "job.started") if e["job"] == ticket]


def _running_on_slurm(folder: Path, env: dict[str, str], ticket: str) -> str:
    """The Slurm job id of the ticket's latest attempt, once Slurm runs it and it has printed."""

    def printing() -> str | None:
        started = _started(folder, ticket)
        if not started:
            return None
        log = Path(folder / "logs" / started[-1]["run"] / "jobs" / f"{ticket}.jsonl")
        lines = [x for x in read_jsonl(log) if x["event"] == "job.output"] if log.exists() else []
        return str(started[-1]["slurm_job_id"]) if len(lines) >= 2 else None

    job_id: str = wait_for(printing, timeout=90, what=f"{ticket} running on Slurm")
    assert _job_state(env, job_id) == "RUNNING"
    return job_id


def _scancel(env: dict[str, str], *ids: str) -> None:
    if ids:
        subprocess.run(["scancel", *ids], timeout=30, env={**os.environ, **env}, capture_output=True)


def test_status_shows_the_slurm_job_id_of_a_running_ticket(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    write_config(tmp_path, _config(_job("slow", SLOW), 'spool_dir = "spool"'))
    daemons = Daemons()
    job_id = ""
    try:
        daemons.start(tmp_path, env=slurm_env)
        spool = tmp_path / "spool"
        wait_for(lambda: (spool / "incoming").is_dir(), timeout=30, what="the spool")
        drop(spool, "t1.toml", 'job = "slow"\n')
        job_id = _running_on_slurm(tmp_path, slurm_env, "t1")
        r = cli(tmp_path, "status", "--json", env=slurm_env)
        assert r.returncode == 0, r.stderr
        running = json.loads(r.stdout)["running"]
        assert [(x["ticket"], x["slurm_job_id"], x["pid"]) for x in running] == [("t1", job_id, None)]
        text = cli(tmp_path, "status", env=slurm_env)
        assert text.returncode == 0, text.stderr
        header = next(line for line in text.stdout.splitlines() if "TICKET" in line and "ELAPSED" in line)
        row = next(line for line in text.stdout.splitlines() if line.split()[1:2] == ["t1"])
        assert header.split()[:8] == ["#", "TICKET", "LABEL", "GROUP", "ATTEMPT", "PID", "SLURM", "JOB"]
        assert row.split()[1:7] == ["t1", "slow", "default", "1", "-", job_id], text.stdout
    finally:
        daemons.close()
        _scancel(slurm_env, job_id)


def test_a_daemon_restarted_after_kill_9_scancels_the_slurm_jobs_its_dead_self_submitted(
    tmp_path: Path, slurm_env: dict[str, str]
) -> None:
    write_config(tmp_path, _config(_job("slow", SLOW), 'spool_dir = "spool"'))
    spool = tmp_path / "spool"
    daemons = Daemons()
    ids: list[str] = []
    try:
        first = daemons.start(tmp_path, env=slurm_env)
        wait_for(lambda: (spool / "incoming").is_dir(), timeout=30, what="the spool")
        drop(spool, "t1.toml", 'job = "slow"\n')
        ids.append(_running_on_slurm(tmp_path, slurm_env, "t1"))
        first.kill9()
        assert _job_state(slurm_env, ids[0]) == "RUNNING"  # nobody cancelled it: the daemon is dead

        second = daemons.start(tmp_path, env=slurm_env)
        wait_for(lambda: _job_state(slurm_env, ids[0]) not in LIVE, timeout=60, what="the orphan scancelled")
        assert _job_state(slurm_env, ids[0]) == "CANCELLED"
        cancelled = wait_for(lambda: _events(tmp_path, "ticket.orphan_cancelled"), timeout=30, what="the event")
        assert [(e["ticket"], e["slurm_job_id"], e["attempt"]) for e in cancelled] == [("t1", ids[0], 1)]
        check_record(cancelled[0], "events.jsonl")
        assert f"Slurm job {ids[0]} of ticket t1, left by a dead daemon: scancelled" in second.stderr()
        # the ticket runs again, as a new Slurm job of the new daemon; the dead one's ledger is gone
        ids.append(_running_on_slurm(tmp_path, slurm_env, "t1"))
        assert ids[1] != ids[0]
        assert [p.name for p in (spool / LEDGERS).iterdir()] == [f"{second.pid}-{_start(second.pid)}"]
        assert second.stop(timeout=60) == 0, second.stderr()[-2000:]
        assert _job_state(slurm_env, ids[1]) not in LIVE
        assert not list((spool / LEDGERS).iterdir())  # its records went as its jobs ended, then its folder
    finally:
        daemons.close()
        _scancel(slurm_env, *ids)


def _start(pid: int) -> str:
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return raw[raw.rfind(b")") + 2 :].split()[19].decode()


def test_a_submission_recorded_before_sbatch_answered_is_found_by_its_name(
    tmp_path: Path, slurm_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon killed between its record and sbatch's answer left a record with no job id: the job
    is found by its unique name and cancelled; a record of a live daemon is left alone."""
    for k, v in slurm_env.items():
        monkeypatch.setenv(k, v)
    name = "t9.1.20260101T000000Z-dead"
    r = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--job-name={name}",
            f"--output={tmp_path}/%j.out",
            "--wrap",
            f"{PY} -c 'import time; time.sleep(300)'",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip().split(";")[0]
    try:
        dead = subprocess.run(
            [PY, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        ).stdout.strip()
        slurm_ledger.record(tmp_path / LEDGERS / f"{dead}-1", "t9", 1, "20260101T000000Z-dead", name)
        mine = slurm_ledger.record(tmp_path / LEDGERS / f"{os.getpid()}-{_start(os.getpid())}", "t8", 1, "r", "t8.1.r")
        done = cancel_cluster_leftovers(tmp_path)
        assert [(d["ticket"], d["slurm_job_id"], d["error"]) for d in done] == [("t9", job_id, None)]
        wait_for(lambda: _job_state(slurm_env, job_id) not in LIVE, timeout=60, what="the job found by name cancelled")
        assert not (tmp_path / LEDGERS / f"{dead}-1").exists()
        assert mine.exists()  # a live daemon's record is its own business
    finally:
        _scancel(slurm_env, job_id)


def test_sighup_reads_the_slurm_table_again(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    """The next ticket after a SIGHUP goes with the new [slurm] table; a table the cluster refuses
    (an unknown partition) is one line on stderr and the old table stays."""
    quick = _job("quick", "print('hi')")

    def config(slurm: str) -> None:
        write_config(tmp_path, _config(quick, 'spool_dir = "spool"', slurm=slurm))

    def comment(ticket: str) -> str:
        wait_final(spool, [ticket], timeout=120)
        assert result(spool, "done", ticket)["status"] == "succeeded"
        job_id = _started(tmp_path, ticket)[-1]["slurm_job_id"]
        r = subprocess.run(
            ["scontrol", "show", "job", "--oneliner", job_id],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **slurm_env},
        )
        return next((f[len("Comment=") :] for f in r.stdout.split() if f.startswith("Comment=")), "")

    def reloads() -> int:
        return len(_events(tmp_path, "daemon.reloaded"))

    config('sbatch_options = ["--comment=first"]')
    spool = tmp_path / "spool"
    daemons = Daemons()
    try:
        d = daemons.start(tmp_path, env=slurm_env)
        wait_for(lambda: (spool / "incoming").is_dir(), timeout=30, what="the spool")
        drop(spool, "t1.toml", 'job = "quick"\n')
        assert comment("t1") == "first"

        config('sbatch_options = ["--comment=second"]')
        d.signal(signal.SIGHUP)
        wait_for(lambda: reloads() == 1, timeout=60, what="the reload")
        drop(spool, "t2.toml", 'job = "quick"\n')
        assert comment("t2") == "second"

        config('partition = "nosuch"\nsbatch_options = ["--comment=third"]')
        d.signal(signal.SIGHUP)
        wait_for(lambda: reloads() == 2, timeout=60, what="the second reload")
        drop(spool, "t3.toml", 'job = "quick"\n')
        assert comment("t3") == "second"
        lines = [line for line in d.stderr().splitlines() if "nosuch" in line]
        assert len(lines) == 1 and "keeps its old settings" in lines[0], d.stderr()[-2000:]
        assert d.alive()
    finally:
        daemons.close()


def test_a_record_whose_scancel_fails_is_kept_for_the_next_start(
    tmp_path: Path, slurm_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller does not answer: the first record's scancel fails and says why, the others
    are not tried (a start stays quick), and all are kept; the next start, with Slurm back, cancels."""
    conf = Path(slurm_env.get("SLURM_CONF") or os.environ["SLURM_CONF"]).read_text()
    down = tmp_path / "down.conf"
    down.write_text(
        re.sub(r"SlurmctldPort=\d+", "SlurmctldPort=1", conf).replace("MessageTimeout=10", "MessageTimeout=2")
    )
    monkeypatch.setenv("SLURM_CONF", str(down))
    folder = tmp_path / LEDGERS / "999999999-1"  # no such process
    first = slurm_ledger.record(folder, "t1", 1, "r", "t1.1.r", "999990")
    second = slurm_ledger.record(folder, "t2", 2, "r", "t2.2.r", "999991")
    done = cancel_cluster_leftovers(tmp_path)
    assert [d["ticket"] for d in done] == ["t1", "t2"]
    assert done[0]["error"].startswith("scancel 999990: ") and done[1]["error"].startswith("not tried: ")
    assert first.exists() and second.exists()
    monkeypatch.setenv("SLURM_CONF", slurm_env.get("SLURM_CONF") or os.environ["SLURM_CONF"])
    done = cancel_cluster_leftovers(tmp_path)  # Slurm never had those ids: nothing left to cancel
    assert [(d["ticket"], d["error"]) for d in done] == [("t1", None), ("t2", None)]
    assert not folder.exists()
