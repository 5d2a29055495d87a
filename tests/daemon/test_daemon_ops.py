"""Operating the spool daemon (SPEC §15): reused ticket names, cancel, wait, status, priorities and
dependencies, pause/resume, submit's checks, serve's exit codes. Every test drives a real `serve`
process with real tickets; the `daemons` fixture stops each daemon and `marker` then fails the test
if a job process survived.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import PY, read_jsonl, start_cli, wait_for, write_config
from helpers_cli import cli, usage_error
from helpers_daemon import (
    Daemons,
    NotifyListener,
    alive,
    daemon_config,
    drop,
    group_members,
    names,
    result,
    submit,
    wait_final,
    where,
)

from aimedres_async.daemon.spool import Spool


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
def test_a_reused_ticket_name_is_rejected_not_dropped(
    tmp_path: Path, marker: str, daemons: Daemons, first_ends_in: str
) -> None:
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

    r = cli(tmp_path, "cancel", ticket)
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

    r = cli(tmp_path, "cancel", queued[0])
    assert r.returncode == 0 and r.stdout.strip() == f"{queued[0]} cancelled (it was queued)", r
    assert where(spool.root, queued[0]) == ["failed"]
    assert result(spool.root, "failed", queued[0]) == {
        **result(spool.root, "failed", queued[0]),
        "status": "cancelled",
        "attempts": 0,
    }

    line = usage_error(cli(tmp_path, "cancel", "no-such-ticket"))
    assert "no such ticket" in line and "no-such-ticket" in line
    usage_error(cli(tmp_path, "cancel"))
    usage_error(cli(tmp_path, "cancel", "../x"))
    r = cli(tmp_path, "cancel", queued[0])  # again: already finished, not an error
    assert r.returncode == 0 and "already finished: cancelled" in r.stdout

    r = cli(tmp_path, "cancel", "--all")
    assert r.returncode == 0, r.stderr
    for t in [running, *queued]:
        assert where(spool.root, t) == ["failed"], t
        assert result(spool.root, "failed", t)["status"] == "cancelled"
    assert not (tmp_path / "order.txt").exists()  # none of them got past its gate
    assert d.alive()


def test_cancel_of_a_ticket_whose_daemon_is_down_applies_after_recovery(
    tmp_path: Path, marker: str, daemons: Daemons
) -> None:
    spool = _setup(tmp_path, marker, f"[jobs.long]\ncommand = {_cmd('sh', '-c', POLITE)}\n")
    d = daemons.start(tmp_path)
    ticket = submit(tmp_path, "--job", "long")
    wait_for(lambda: _running(spool, ticket), what="the ticket running")
    d.kill9()
    r = cli(tmp_path, "cancel", ticket)
    assert r.returncode == 0 and "will be cancelled when a daemon serves" in r.stdout, r
    d2 = daemons.start(tmp_path, name="restarted")
    wait_final(spool.root, [ticket])
    assert where(spool.root, ticket) == ["failed"]
    assert result(spool.root, "failed", ticket)["status"] == "cancelled"
    assert d2.alive()


# ---------------------------------------------------------------- 3. wait and logs -f


def test_wait_exit_codes(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    jobs = (
        f"[jobs.ok]\ncommand = {_cmd('true')}\n[jobs.bad]\ncommand = {_cmd('sh', '-c', 'echo oops >&2; exit 3')}\n"
        f"[jobs.gate]\ncommand = {_cmd('sh', '-c', GATE)}\n"
    )
    spool = _setup(tmp_path, marker, jobs)
    daemons.start(tmp_path)
    ok, bad = submit(tmp_path, "--job", "ok"), submit(tmp_path, "--job", "bad")
    r = cli(tmp_path, "wait", ok)
    assert r.returncode == 0 and r.stdout.startswith(f"{ok} succeeded"), r
    r = cli(tmp_path, "wait", ok, bad)
    assert r.returncode == 1, r
    assert f"{bad} failed (exit 3, " in r.stdout

    gated = submit(tmp_path, "--job", "gate")
    r = cli(tmp_path, "wait", gated, "--timeout", "300ms")
    assert r.returncode == 124 and gated in r.stderr, r
    waiter = start_cli(tmp_path, "wait", ok, gated)
    try:
        wait_for(lambda: _running(spool, gated), what="the gated ticket running")
        assert cli(tmp_path, "cancel", "--no-wait", gated).returncode == 0
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    assert waiter.returncode == 130, (out, err)
    assert f"{gated} cancelled" in out
    usage_error(cli(tmp_path, "wait", "nosuch"))


def test_logs_follow_waits_for_a_queued_ticket_and_exits_like_wait(
    tmp_path: Path, marker: str, daemons: Daemons
) -> None:
    body = "echo first; while [ ! -e go ]; do sleep 0.05; done; echo last; exit 4"
    spool = _setup(tmp_path, marker, f"[jobs.j]\ncommand = {_cmd('sh', '-c', body)}\n")
    cli(tmp_path, "pause")
    daemons.start(tmp_path)
    ticket = submit(tmp_path, "--job", "j")
    follower = start_cli(tmp_path, "logs", "-f", ticket)
    try:
        assert follower.stderr is not None
        first = follower.stderr.readline()  # it waits instead of failing at once
        assert first.strip() == f"{ticket} is queued; waiting for it to start"
        assert where(spool.root, ticket) == ["incoming"]
        cli(tmp_path, "resume")
        wait_for(lambda: _running(spool, ticket), what="the ticket running")
        (tmp_path / "go").touch()
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 1, (out, err)  # the job failed: exit like `wait`
    assert out.index("first") < out.index("last") < out.index("job.finished")
    assert f"{ticket} failed (exit 4" in err


# ---------------------------------------------------------------- 4. status


def test_status_with_and_without_a_daemon(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    body = "echo warming up; echo epoch 3; while [ ! -e go ]; do sleep 0.05; done"
    jobs = f"[jobs.j]\ncommand = {_cmd('sh', '-c', body)}\n[jobs.bad]\ncommand = {_cmd('false')}\n"
    spool = _setup(tmp_path, marker, jobs, workers=1)
    r = cli(tmp_path, "status")
    assert r.returncode == 3 and "none is serving" in r.stdout, r
    d = daemons.start(tmp_path)
    bad = submit(tmp_path, "--job", "bad")
    wait_final(spool.root, [bad])
    running = submit(tmp_path, "--job", "j")
    wait_for(lambda: (info := _running(spool, running)) and (tmp_path / "logs").exists() and info, what="running")
    low, high = submit(tmp_path, "--job", "j"), submit(tmp_path, "--job", "j", "--priority", "5")
    wait_for(
        lambda: json.loads(cli(tmp_path, "status", "--json").stdout)["running"][0]["last_line"] == "epoch 3",
        what="the last line in status",
    )

    r = cli(tmp_path, "status", "--json")
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

    r = cli(tmp_path, "status")
    assert r.returncode == 0
    out = r.stdout
    assert f"pid {d.pid}" in out and "workers 1/1 busy" in out and "active 1" in out
    assert out.index(high) < out.index(low) and "epoch 3" in out and bad in out

    assert d.stop() == 0
    r = cli(tmp_path, "status", "--json")
    assert r.returncode == 3 and json.loads(r.stdout)["daemon"] is None


# ---------------------------------------------------------------- 5. priorities and dependencies


def test_priority_fifo_and_after(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    jobs = f"[jobs.rec]\ncommand = {_cmd('sh', '-c', 'echo $AIMEDRES_JOB_ID >> order.txt')}\n"
    jobs += f"[jobs.bad]\ncommand = {_cmd('sh', '-c', 'echo $AIMEDRES_JOB_ID >> order.txt; exit 1')}\n"
    spool = _setup(tmp_path, marker, jobs, workers=1)
    assert cli(tmp_path, "pause").returncode == 0
    daemons.start(tmp_path)
    a = submit(tmp_path, "--job", "rec")
    b = submit(tmp_path, "--job", "rec")
    c = submit(tmp_path, "--job", "rec", "--priority", "5")
    (tmp_path / "e.toml").write_text('job = "rec"\n')
    e = submit(tmp_path, "e.toml", "--after", c)  # priority 0, written last: runs after a and b
    d = submit(tmp_path, "--job", "rec", "--priority", "5")
    low = submit(tmp_path, "--job", "rec", "--priority", "-1")
    bad = submit(tmp_path, "--job", "bad", "--priority", "-5")
    dep = submit(tmp_path, "--job", "rec", "--after", bad, "--priority", "9")  # waits for bad, then fails
    drop(spool.root, "direct.toml", f'job = "rec"\nafter = ["{a}", "{b}"]\npriority = 1\n')  # ticket keys
    drop(spool.root, "orphan.toml", 'job = "rec"\nafter = "no-such-ticket"\n')
    assert cli(tmp_path, "resume").returncode == 0
    wait_final(spool.root, [a, b, c, d, e, low, bad, dep, "direct", "orphan"])

    order = (tmp_path / "order.txt").read_text().split()
    assert order == [c, d, a, b, "direct", e, low, bad], order  # priority, FIFO within, after
    res = result(spool.root, "failed", dep)
    assert res["status"] == "failed" and res["failure"] == "dependency" and res["attempts"] == 0
    assert bad in res["error"]
    assert where(spool.root, "orphan") == ["rejected"]
    assert "no ticket no-such-ticket" in (spool.root / "rejected" / "orphan.error").read_text()


def test_a_cycle_of_after_is_rejected_not_left_waiting(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    spool = _setup(tmp_path, marker, f"[jobs.rec]\ncommand = {_cmd('true')}\n")
    cli(tmp_path, "pause")
    daemons.start(tmp_path)
    drop(spool.root, "one.toml", 'job = "rec"\nafter = "two"\n')
    drop(spool.root, "two.toml", 'job = "rec"\nafter = "three"\n')
    drop(spool.root, "three.toml", 'job = "rec"\nafter = "one"\n')
    cli(tmp_path, "resume")
    wait_final(spool.root, ["one", "two", "three"])
    [first] = names(spool.root, "rejected")  # the first in line; the others then depend on a rejected ticket
    assert "is a cycle: none of them could ever start" in (spool.root / "rejected" / f"{first}.error").read_text()
    for other in {"one", "two", "three"} - {first}:
        assert result(spool.root, "failed", other)["failure"] == "dependency"


def test_a_cancelled_dependency_fails_its_dependent(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    spool = _setup(tmp_path, marker, f"[jobs.rec]\ncommand = {_cmd('true')}\n")
    cli(tmp_path, "pause")
    daemons.start(tmp_path)
    first = submit(tmp_path, "--job", "rec")
    then = submit(tmp_path, "--job", "rec", "--after", first)
    assert cli(tmp_path, "cancel", first).returncode == 0
    cli(tmp_path, "resume")
    r = cli(tmp_path, "wait", then)
    assert r.returncode == 1 and "dependency" in r.stdout, r
    assert f"ticket {first} (after) was cancelled" in result(spool.root, "failed", then)["error"]


def test_submit_checks_priority_and_after(tmp_path: Path, marker: str) -> None:
    spool = _setup(tmp_path, marker, f"[jobs.rec]\ncommand = {_cmd('true')}\n")
    assert "no ticket nosuch" in usage_error(cli(tmp_path, "submit", "--job", "rec", "--after", "nosuch"))
    usage_error(cli(tmp_path, "submit", "--job", "rec", "--priority", "high"))
    (tmp_path / "t.toml").write_text('job = "rec"\npriority = 2\n')
    assert "sets priority itself" in usage_error(cli(tmp_path, "submit", "t.toml", "--priority", "3"))
    (tmp_path / "u.toml").write_text('job = "rec"\npriority = "high"\n')
    assert "priority" in usage_error(cli(tmp_path, "submit", "u.toml"))
    assert names(spool.root, "incoming") == []


# ---------------------------------------------------------------- 6. pause and resume


def test_pause_is_kept_across_a_restart_and_shown(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    spool = _setup(tmp_path, marker, f"[jobs.ok]\ncommand = {_cmd('true')}\n")
    sock = tmp_path / "notify.sock"
    listener = NotifyListener(str(sock))
    try:
        d = daemons.start(tmp_path, env={"NOTIFY_SOCKET": str(sock)})
        ready = listener.wait("READY", "1")
        r = cli(tmp_path, "pause")
        assert r.returncode == 0 and "paused" in r.stdout
        ticket = submit(tmp_path, "--job", "ok")
        # the daemon saw the ticket while paused, and did not claim it
        listener.wait("STATUS", "paused; running 0, waiting 1, done 0, failed 0, rejected 0", after=ready)
        assert where(spool.root, ticket) == ["incoming"]
        state = json.loads(cli(tmp_path, "status", "--json").stdout)
        assert state["paused"] is True and state["daemon"]["paused"] is True
        assert "PAUSED" in cli(tmp_path, "status").stdout
        assert d.stop() == 0
    finally:
        listener.close()

    d2 = daemons.start(tmp_path, name="restarted")
    wait_for(
        lambda: (
            (s := json.loads(cli(tmp_path, "status", "--json").stdout))["daemon"]
            and s["daemon"]["status"].startswith("paused; running 0, waiting 1")
        ),
        what="the restarted daemon paused",
    )
    assert where(spool.root, ticket) == ["incoming"]
    assert cli(tmp_path, "resume").returncode == 0
    wait_final(spool.root, [ticket])
    assert where(spool.root, ticket) == ["done"] and d2.alive()
    events = read_jsonl(tmp_path / "logs" / "latest-daemon" / "events.jsonl")
    assert [r["event"] for r in events if r["event"].startswith("daemon.")] == ["daemon.paused", "daemon.resumed"]


# ---------------------------------------------------------------- 7. what submit refuses, what a ticket cannot set


def test_a_ticket_cannot_override_the_daemons_variables(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    spool = _setup(tmp_path, marker, f"[jobs.ok]\ncommand = {_cmd('true')}\n")
    (tmp_path / "t.toml").write_text('job = "ok"\nenv = { AIMEDRES_SPOOL = "/elsewhere" }\n')
    line = usage_error(cli(tmp_path, "submit", "t.toml"))
    assert "AIMEDRES_SPOOL" in line and "cannot override" in line
    d = daemons.start(tmp_path)
    drop(spool.root, "sneaky.toml", 'job = "ok"\nenv = { AIMEDRES_JOB_ID = "other", OK = "1" }\n')
    wait_final(spool.root, ["sneaky"])
    assert where(spool.root, "sneaky") == ["rejected"]
    assert "AIMEDRES_JOB_ID" in (spool.root / "rejected" / "sneaky.error").read_text()
    assert d.alive()


def _as_nobody(tmp_path: Path) -> list[str]:
    tool = shutil.which("setpriv")
    if tool is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv(1) to run `submit` as another user")
    return [tool, "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


def test_submit_refuses_a_ticket_the_daemons_user_could_not_read(tmp_path: Path, marker: str) -> None:
    """Regression: `submit` as another user printed an id and exited 0; the daemon later rejected the
    ticket ("cannot open: Permission denied")."""
    spool = _setup(tmp_path, marker, f"[jobs.ok]\ncommand = {_cmd('true')}\n")
    prefix = _as_nobody(tmp_path)
    # the spool belongs to the daemon's user (uid 4242 here); nobody may write to it, and is not it
    for folder in [spool.root, *(spool.root / s for s in ("incoming", "tmp", "control"))]:
        os.chown(folder, 4242, 4242)
        os.chmod(folder, 0o777 if folder.name in ("incoming", "tmp") else 0o755)
    opened = []
    try:
        for parent in tmp_path.parents:  # let uid 65534 reach the test folder
            if parent == Path(parent.anchor) or not parent.name.startswith("pytest-"):
                continue
            opened.append((parent, parent.stat().st_mode))
            os.chmod(parent, parent.stat().st_mode | 0o011)
        os.chmod(tmp_path, 0o755)
        env = {k: v for k, v in os.environ.items() if k != "AIMEDRES_CONFIG"}
        r = subprocess.run(
            [*prefix, PY, "-m", "aimedres_async", "submit", "--job", "ok"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    finally:
        for parent, mode in opened:
            os.chmod(parent, mode)
    line = usage_error(r)
    assert "uid 4242" in line and "could not read a ticket" in line and "runuser -u" in line
    assert names(spool.root, "incoming") == []

    # root submits for the daemon's user: the ticket is handed to it
    ticket = submit(tmp_path, "--job", "ok")
    st = (spool.root / "incoming" / f"{ticket}.toml").stat()
    assert (st.st_uid, st.st_gid) == (4242, 4242) and st.st_mode & 0o022 == 0


# ---------------------------------------------------------------- 8. serve: exit codes and its own logs pointer


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_serve_exit_code_is_what_it_logs(tmp_path: Path, marker: str, daemons: Daemons, sig: int, code: int) -> None:
    _setup(tmp_path, marker, f"[jobs.ok]\ncommand = {_cmd('true')}\n")
    d = daemons.start(tmp_path)
    wait_for(lambda: json.loads(cli(tmp_path, "status", "--json").stdout)["daemon"], what="serving")
    d.signal(sig)
    assert d.wait(30) == code
    [finished] = [
        r for r in read_jsonl(tmp_path / "logs" / "latest-daemon" / "events.jsonl") if r["event"] == "run.finished"
    ]
    assert finished["exit_code"] == code
    assert not list((tmp_path / "spool" / "control").glob("daemon.*.json"))  # its status record is gone


def test_serve_leaves_logs_latest_to_run(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    """Regression: starting `serve` moved logs/latest, so `logs <job>` no longer found a job of the
    earlier `run`."""
    _setup(tmp_path, marker, f"[jobs.ok]\ncommand = {_cmd('sh', '-c', 'echo from-run')}\n")
    assert cli(tmp_path, "run").returncode == 0
    latest = os.readlink(tmp_path / "logs" / "latest")
    daemons.start(tmp_path)
    wait_for(lambda: (tmp_path / "logs" / "latest-daemon").exists(), what="the daemon's pointer")
    assert os.readlink(tmp_path / "logs" / "latest") == latest
    assert os.readlink(tmp_path / "logs" / "latest-daemon") != latest
    r = cli(tmp_path, "logs", "ok")
    assert r.returncode == 0 and "from-run" in r.stdout, r


def test_root_operating_a_spool_it_does_not_own_hands_its_files_over(tmp_path: Path, marker: str) -> None:
    """root runs submit, cancel and pause on the service user's spool: every file it creates there
    (the ticket, the cancelled ticket, the request, the pause, the spool lock) belongs to that user,
    whose daemon must read, lock and move them."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    spool = _setup(tmp_path, marker, f"[jobs.ok]\ncommand = {_cmd('true')}\n")
    for folder in [spool.root, *(p for p in spool.root.iterdir() if p.is_dir())]:
        os.chown(folder, 4242, 4242)
    queued = submit(tmp_path, "--job", "ok")
    urgent = submit(tmp_path, "--job", "ok", "--priority", "7")
    state = json.loads(cli(tmp_path, "status", "--json").stdout)  # root reads the user's tickets
    assert [(q["ticket"], q["priority"]) for q in state["queued"]] == [(urgent, 7), (queued, 0)]
    assert cli(tmp_path, "pause").returncode == 0
    r = cli(tmp_path, "cancel", queued)
    assert r.returncode == 0 and f"{queued} cancelled (it was queued)" in r.stdout, r
    made = [spool.root / "failed" / f"{queued}.toml", spool.root / "control" / "paused", spool.root / ".lock"]
    for path in made:
        assert (path.stat().st_uid, path.stat().st_gid) == (4242, 4242), path
    assert result(spool.root, "failed", queued)["status"] == "cancelled"


def test_logs_follow_keeps_following_a_ticket_a_stop_put_back(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    body = "echo run by $PPID; while [ ! -e go ]; do sleep 0.05; done; echo finished"
    spool = _setup(tmp_path, marker, f"[jobs.j]\ncommand = {_cmd('sh', '-c', body)}\n")
    d = daemons.start(tmp_path)
    ticket = submit(tmp_path, "--job", "j")
    wait_for(lambda: _running(spool, ticket), what="the ticket running")
    follower = start_cli(tmp_path, "logs", "-f", ticket)
    try:
        assert follower.stdout is not None
        wait_for(lambda: "run by" in (follower.stdout.readline() if follower.stdout else ""), what="first log line")
        assert d.stop() == 0  # the ticket goes back to incoming/; the follower waits for the next daemon
        assert where(spool.root, ticket) == ["incoming"] and follower.poll() is None
        (tmp_path / "go").touch()
        daemons.start(tmp_path, name="second")
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 0, (out, err)
    assert "finished" in out and "status=cancelled" in out and "status=succeeded" in out
    assert f"{ticket} succeeded" in err


def test_wait_and_logs_follow_on_a_rejected_ticket(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    spool = _setup(tmp_path, marker, f"[jobs.ok]\ncommand = {_cmd('true')}\n")
    daemons.start(tmp_path)
    drop(spool.root, "bad.toml", 'job = "nosuch"\n')
    r = cli(tmp_path, "wait", "bad")
    assert r.returncode == 1 and r.stdout.startswith("bad rejected"), r
    r = cli(tmp_path, "logs", "-f", "bad")
    assert r.returncode == 1 and "bad was rejected: bad.toml: unknown job 'nosuch'" in r.stderr, r
