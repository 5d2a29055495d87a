"""Operating the spool daemon (SPEC §15): reused ticket names, cancel, wait, status, priorities and
dependencies, pause/resume, submit's checks, serve's exit codes. Every test drives a real `serve`
process with real tickets; the `daemons` fixture stops each daemon and `marker` then fails the test
if a job process survived.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import read_jsonl, run_cli, start_cli, wait_for, write_config
from helpers_cli import usage_error
from helpers_daemon import Daemons, alive, daemon_config, drop, group_members, names, result, submit, wait_final, where

from aimedres_async.spool import Spool


@pytest.fixture
def daemons(marker: str) -> Iterator[Daemons]:
    ds = Daemons()
    try:
        yield ds
    finally:
        ds.close()


def _cmd(*argv: str) -> str:
    return json.dumps(list(argv))


def _setup(folder: Path, marker: str, jobs: str, workers: int = 2, extra: str = "") -> Spool:
    write_config(folder, daemon_config(marker, jobs, workers, extra))
    spool = Spool(folder / "spool")
    spool.ensure()
    return spool


def _lines(log: Path) -> list[str]:
    return [r["line"] for r in read_jsonl(log) if r["event"] == "job.output" and "line" in r]


# ---------------------------------------------------------------- 1. a reused ticket name


@pytest.mark.parametrize("first_ends_in", ["done", "failed", "rejected"])
def test_a_reused_ticket_name_is_rejected_not_dropped(tmp_path: Path, marker: str, daemons: Daemons,
                                                       first_ends_in: str) -> None:  # fmt: skip
    """Regression: a ticket written with the README's protocol (tmp/, then link into incoming/) under a
    name already in done/, failed/ or rejected/ was deleted by claim() without a word: it never ran,
    was not rejected, and nothing was logged."""
    jobs = f"[jobs.ok]\ncommand = {_cmd('sh', '-c', 'echo ran >> ran.txt')}\n[jobs.bad]\ncommand = {_cmd('false')}\n"
    spool = _setup(tmp_path, marker, jobs)
    d = daemons.start(tmp_path)
    first = {"done": 'job = "ok"\n', "failed": 'job = "bad"\n', "rejected": 'job = "nosuch"\n'}[first_ends_in]
    drop(spool.root, "nightly.toml", first)
    wait_final(spool.root, ["nightly"])
    assert where(spool.root, "nightly") == [first_ends_in]
    before = (spool.root / first_ends_in / "nightly.toml").read_text()

    drop(spool.root, "nightly.toml", 'job = "ok"\n# the second one\n')
    rejected_copy = "nightly.1" if first_ends_in == "rejected" else "nightly"
    wait_for(lambda: (spool.root / "rejected" / f"{rejected_copy}.error").exists(), what="the second nightly rejected")
    error = (spool.root / "rejected" / f"{rejected_copy}.error").read_text()
    assert error.startswith("nightly.toml: the name nightly is taken")
    assert f"already in {first_ends_in}/" in error
    assert "the second one" in (spool.root / "rejected" / f"{rejected_copy}.toml").read_text()
    assert (spool.root / first_ends_in / "nightly.toml").read_text() == before  # the earlier result kept
    assert names(spool.root, "incoming") == []
    ran = (tmp_path / "ran.txt").read_text().split() if (tmp_path / "ran.txt").exists() else []
    assert len(ran) == (1 if first_ends_in == "done" else 0)  # the second one did not run
    assert d.alive()


# ---------------------------------------------------------------- 2. cancel

# The job says it started, keeps a background sleep in its group, and on the stop signal (SIGINT)
# writes "stopped" and exits 5; STUBBORN ignores the signal, so only SIGKILL ends it.
POLITE = 'trap "echo stopped >> stops.txt; exit 5" INT; echo started; sleep 60 & wait'
STUBBORN = 'trap "echo ignored >> stops.txt" INT; echo started; sleep 60 & while :; do wait; done'
GATE = "while [ ! -e go ]; do sleep 0.05; done; echo $AIMEDRES_JOB_ID >> order.txt"


def _running(spool: Spool, ticket: str) -> dict[str, object] | None:
    return next((r for r in spool.running() if r.get("ticket") == ticket), None)


@pytest.mark.parametrize("script", ["polite", "stubborn"])
def test_cancel_a_running_ticket_stops_its_group_and_files_it_cancelled(
    tmp_path: Path, marker: str, daemons: Daemons, script: str
) -> None:
    body = POLITE if script == "polite" else STUBBORN
    jobs = f"[jobs.long]\ncommand = {_cmd('sh', '-c', body)}\nretries = 3\n"
    spool = _setup(tmp_path, marker, jobs)
    d = daemons.start(tmp_path)
    ticket = submit(tmp_path, "--job", "long")
    info = wait_for(lambda: _running(spool, ticket), what="the ticket running")
    pgid = int(info["pgid"])  # type: ignore[call-overload]
    wait_for(lambda: len(group_members(pgid)) == 2, what="the job and its background sleep")

    r = run_cli(tmp_path, "cancel", ticket)
    assert r.returncode == 0, r.stderr
    assert f"{ticket} cancelled" in r.stdout  # it waited for the daemon to file it
    assert where(spool.root, ticket) == ["failed"]
    res = result(spool.root, "failed", ticket)
    assert res["status"] == "cancelled" and res["attempts"] == 1  # not retried (retries = 3)
    assert group_members(pgid) == []  # the whole group, the background sleep too
    stops = (tmp_path / "stops.txt").read_text().split()
    assert stops == (["stopped"] if script == "polite" else ["ignored"])  # stop_signal first, then SIGKILL
    assert not list((spool.root / "control").glob("*.cancel"))
    assert d.alive()
    events = [r for r in read_jsonl(Path(res["log"])) if r["event"] == "job.exited"]
    assert [e["outcome"] for e in events] == ["cancelled"]
    if script == "stubborn":
        assert events[0].get("signal") == "SIGKILL"


def test_cancel_queued_all_and_unknown(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    jobs = f"[jobs.gate]\ncommand = {_cmd('sh', '-c', GATE)}\n"
    spool = _setup(tmp_path, marker, jobs, workers=1)
    d = daemons.start(tmp_path)
    running = submit(tmp_path, "--job", "gate")
    wait_for(lambda: _running(spool, running), what="the first ticket running")
    queued = [submit(tmp_path, "--job", "gate") for _ in range(3)]

    r = run_cli(tmp_path, "cancel", queued[0])
    assert r.returncode == 0 and r.stdout.strip() == f"{queued[0]} cancelled (it was queued)", r
    assert where(spool.root, queued[0]) == ["failed"]
    assert result(spool.root, "failed", queued[0]) == {**result(spool.root, "failed", queued[0]),
                                                      "status": "cancelled", "attempts": 0}  # fmt: skip

    line = usage_error(run_cli(tmp_path, "cancel", "no-such-ticket"))
    assert "no such ticket" in line and "no-such-ticket" in line
    usage_error(run_cli(tmp_path, "cancel"))
    usage_error(run_cli(tmp_path, "cancel", "../x"))
    r = run_cli(tmp_path, "cancel", queued[0])  # again: already finished, not an error
    assert r.returncode == 0 and "already finished: cancelled" in r.stdout

    r = run_cli(tmp_path, "cancel", "--all")
    assert r.returncode == 0, r.stderr
    for t in [running, *queued]:
        assert where(spool.root, t) == ["failed"], t
        assert result(spool.root, "failed", t)["status"] == "cancelled"
    assert not (tmp_path / "order.txt").exists()  # none of them got past its gate
    assert d.alive()


def test_cancel_of_a_ticket_whose_daemon_is_down_applies_after_recovery(tmp_path: Path, marker: str,
                                                                         daemons: Daemons) -> None:  # fmt: skip
    spool = _setup(tmp_path, marker, f"[jobs.long]\ncommand = {_cmd('sh', '-c', POLITE)}\n")
    d = daemons.start(tmp_path)
    ticket = submit(tmp_path, "--job", "long")
    wait_for(lambda: _running(spool, ticket), what="the ticket running")
    d.kill9()
    r = run_cli(tmp_path, "cancel", ticket)
    assert r.returncode == 0 and "will be cancelled when a daemon serves" in r.stdout, r
    d2 = daemons.start(tmp_path, name="restarted")
    wait_final(spool.root, [ticket])
    assert where(spool.root, ticket) == ["failed"]
    assert result(spool.root, "failed", ticket)["status"] == "cancelled"
    assert d2.alive()


# ---------------------------------------------------------------- 3. wait and logs -f


def test_wait_exit_codes(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    jobs = (f"[jobs.ok]\ncommand = {_cmd('true')}\n[jobs.bad]\ncommand = {_cmd('sh', '-c', 'echo oops >&2; exit 3')}\n"
            f"[jobs.gate]\ncommand = {_cmd('sh', '-c', GATE)}\n")  # fmt: skip
    spool = _setup(tmp_path, marker, jobs)
    daemons.start(tmp_path)
    ok, bad = submit(tmp_path, "--job", "ok"), submit(tmp_path, "--job", "bad")
    r = run_cli(tmp_path, "wait", ok)
    assert r.returncode == 0 and r.stdout.startswith(f"{ok} succeeded"), r
    r = run_cli(tmp_path, "wait", ok, bad)
    assert r.returncode == 1, r
    assert f"{bad} failed (exit 3, " in r.stdout

    gated = submit(tmp_path, "--job", "gate")
    r = run_cli(tmp_path, "wait", gated, "--timeout", "300ms")
    assert r.returncode == 124 and gated in r.stderr, r
    waiter = start_cli(tmp_path, "wait", ok, gated)
    try:
        wait_for(lambda: _running(spool, gated), what="the gated ticket running")
        assert run_cli(tmp_path, "cancel", "--no-wait", gated).returncode == 0
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    assert waiter.returncode == 130, (out, err)
    assert f"{gated} cancelled" in out
    usage_error(run_cli(tmp_path, "wait", "nosuch"))


def test_logs_follow_waits_for_a_queued_ticket_and_exits_like_wait(tmp_path: Path, marker: str,
                                                                    daemons: Daemons) -> None:  # fmt: skip
    body = "echo first; while [ ! -e go ]; do sleep 0.05; done; echo last; exit 4"
    spool = _setup(tmp_path, marker, f"[jobs.j]\ncommand = {_cmd('sh', '-c', body)}\n")
    run_cli(tmp_path, "pause")
    daemons.start(tmp_path)
    ticket = submit(tmp_path, "--job", "j")
    follower = start_cli(tmp_path, "logs", "-f", ticket)
    try:
        wait_for(lambda: where(spool.root, ticket) == ["incoming"], what="queued")
        assert follower.poll() is None  # it waits instead of failing at once
        run_cli(tmp_path, "resume")
        wait_for(lambda: _running(spool, ticket), what="the ticket running")
        (tmp_path / "go").touch()
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 1, (out, err)  # the job failed: exit like `wait`
    assert "is queued; waiting for it to start" in err
    assert out.index("first") < out.index("last") < out.index("job.finished")
    assert f"{ticket} failed (exit 4" in err


# ---------------------------------------------------------------- 4. status


def test_status_with_and_without_a_daemon(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    body = "echo warming up; echo epoch 3; while [ ! -e go ]; do sleep 0.05; done"
    jobs = f"[jobs.j]\ncommand = {_cmd('sh', '-c', body)}\n[jobs.bad]\ncommand = {_cmd('false')}\n"
    spool = _setup(tmp_path, marker, jobs, workers=1)
    r = run_cli(tmp_path, "status")
    assert r.returncode == 3 and "none is serving" in r.stdout, r
    d = daemons.start(tmp_path)
    bad = submit(tmp_path, "--job", "bad")
    wait_final(spool.root, [bad])
    running = submit(tmp_path, "--job", "j")
    wait_for(lambda: (info := _running(spool, running)) and (tmp_path / "logs").exists() and info,
             what="running")  # fmt: skip
    low, high = submit(tmp_path, "--job", "j"), submit(tmp_path, "--job", "j", "--priority", "5")
    wait_for(lambda: json.loads(run_cli(tmp_path, "status", "--json").stdout)["running"][0]["last_line"] == "epoch 3",
             what="the last line in status")  # fmt: skip

    r = run_cli(tmp_path, "status", "--json")
    assert r.returncode == 0, r.stderr
    state = json.loads(r.stdout)
    daemon = state["daemon"]
    assert daemon["pid"] == d.pid and daemon["workers"] == 1 and daemon["busy"] == 1
    assert daemon["paused"] is False and daemon["config"] == str(tmp_path / "aimedres.toml")
    assert daemon["since"].endswith("Z") and daemon["version"]
    assert [q["ticket"] for q in state["queued"]] == [high, low]  # run order: priority first
    [run] = state["running"]
    assert run["ticket"] == running and run["job"] == "j" and run["attempt"] == 1 and alive(run["pid"])
    assert run["last_line"] == "epoch 3" and run["elapsed_s"] >= 0
    [fin] = state["finished"]
    assert fin["ticket"] == bad and fin["status"] == "failed" and fin["exit_code"] == 1
    assert fin["duration_s"] >= 0

    r = run_cli(tmp_path, "status")
    assert r.returncode == 0
    out = r.stdout
    assert f"pid {d.pid}" in out and "workers 1/1 busy" in out and "active 1" in out
    assert out.index(high) < out.index(low) and "epoch 3" in out and bad in out

    assert d.stop() == 0
    r = run_cli(tmp_path, "status", "--json")
    assert r.returncode == 3 and json.loads(r.stdout)["daemon"] is None
