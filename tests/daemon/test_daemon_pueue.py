"""The daemon at pueue's level of comfort (SPEC §15): ticket numbers and prefixes, `submit -- CMD`,
`--delay`, `restart [--edit]`, `clean`, `parallel N`, groups, and what `status` shows of them.
Every test drives real `serve` and client processes; the races the issue names are here too:
concurrent submitters, restart while the daemon restarts, clean while tickets finish, parallel N
while jobs run. The `daemons` fixture stops each daemon; `marker` fails a test that leaks a job.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import textwrap
import tomllib
from pathlib import Path
from subprocess import PIPE

from conftest import PY, read_jsonl, start_cli, wait_for, write_config
from helpers_cli import cli, usage_error
from helpers_daemon import Daemons, daemon_config, drop, names, result, wait_final, where

from aimedres_async.daemon.spool import Spool

# started/<ticket> when it starts; then waits for the file `release` (in the config's folder)
BLOCK = (
    "import os, pathlib, time; p = pathlib.Path('started'); p.mkdir(exist_ok=True); "
    "(p / os.environ['AIMEDRES_JOB_ID']).touch()\n"
    "while not pathlib.Path('release').exists(): time.sleep(0.02)"
)
# one line per run in ran.txt: the ticket's id
RECORD = "import os; open('ran.txt', 'a').write(os.environ['AIMEDRES_JOB_ID'] + '\\n')"


def _jobs() -> str:
    return (
        f"[jobs.block]\ncommand = {json.dumps([PY, '-c', BLOCK])}\n"
        f"[jobs.rec]\ncommand = {json.dumps([PY, '-c', RECORD])}\n"
        f"[jobs.bad]\ncommand = {json.dumps(['sh', '-c', 'echo broken >&2; exit 3'])}\n"
    )


def _setup(folder: Path, marker: str, workers: int = 2, extra: str = "") -> Spool:
    write_config(folder, daemon_config(marker, _jobs(), workers, extra))
    spool = Spool(folder / "spool")
    spool.ensure()
    return spool


def _submit(folder: Path, *args: str) -> tuple[int, str]:
    """`submit ARGS`: (number, ticket id) from its one line."""
    r = cli(folder, "submit", *args)
    assert r.returncode == 0, (r.stdout, r.stderr)
    number, ticket = r.stdout.split()
    return int(number), ticket


def _status(folder: Path) -> dict[str, object]:
    r = cli(folder, "status", "--json")
    assert r.returncode in (0, 3), r.stderr
    state: dict[str, object] = json.loads(r.stdout)
    return state


def _started(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder / "started"))
    except FileNotFoundError:
        return set()


def _ticket(spool: Path, state: str, ticket: str) -> dict[str, object]:
    return tomllib.loads((spool / state / f"{ticket}.toml").read_text())


# ---------------------------------------------------------------- numbers


SUBMITTER = textwrap.dedent(
    """
    import sys
    from aimedres_async.cli.app import main

    for i in range(int(sys.argv[1])):
        if main(["submit", "--job", "rec", "--label", f"{sys.argv[2]}-{i}"]) != 0:
            sys.exit(1)
    """
)


def test_concurrent_submitters_never_share_a_number(tmp_path: Path, marker: str) -> None:
    """Four `submit` processes at once, ten tickets each: forty distinct numbers 1..40, each link
    naming the ticket that carries it."""
    spool = _setup(tmp_path, marker)
    procs = [
        subprocess.Popen([PY, "-c", SUBMITTER, "10", f"p{k}"], cwd=tmp_path, stdout=PIPE, stderr=PIPE, text=True)
        for k in range(4)
    ]
    lines = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        lines += out.split("\n")[:-1]
    pairs = [(int(line.split()[0]), line.split()[1]) for line in lines]
    assert sorted(n for n, _ in pairs) == list(range(1, 41))
    for n, ticket in pairs:
        assert _ticket(spool.root, "incoming", ticket)["number"] == n
        assert os.readlink(spool.root / "numbers" / str(n)) == ticket


def test_every_command_takes_a_number_an_id_or_a_unique_prefix(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    spool = _setup(tmp_path, marker)
    n1, t1 = _submit(tmp_path, "--job", "rec")
    n2, t2 = _submit(tmp_path, "--job", "bad", "--label", "the bad one")
    assert (n1, n2) == (1, 2) and t2.endswith("-the-bad-one")
    daemons.start(tmp_path)
    assert cli(tmp_path, "wait", "1").returncode == 0
    assert cli(tmp_path, "wait", t1[:-1]).returncode == 0  # a unique prefix
    r = cli(tmp_path, "wait", str(n2), t1)
    assert r.returncode == 1 and f"{t2} failed (exit 3" in r.stdout
    assert "broken" in cli(tmp_path, "logs", "2").stdout
    shared = t1[:9]  # "<date>-": both tickets' ids start with it
    line = usage_error(cli(tmp_path, "cancel", shared))
    assert "is ambiguous" in line and t1 in line and t2 in line
    line = usage_error(cli(tmp_path, "wait", "9"))
    assert "no such ticket" in line and line.endswith(": 9")
    assert "1 had already finished" not in cli(tmp_path, "cancel", "1").stdout  # printed with its id
    assert f"{t1} had already finished: succeeded" in cli(tmp_path, "cancel", "1").stdout
    # after names a ticket by its number too; the ticket stores the id
    n3, t3 = _submit(tmp_path, "--job", "rec", "--after", "1")
    assert n3 == 3
    wait_final(spool.root, [t3])
    assert where(spool.root, t3) == ["done"] and _ticket(spool.root, "done", t3)["after"] == [t1]


# ---------------------------------------------------------------- submit -- CMD


ECHO_ARGV = "import json, os, sys; open('seen.json', 'w').write(json.dumps([os.getcwd(), sys.argv[1:]]))"


def test_submit_an_inline_command_runs_it_as_argv_where_submit_ran(
    tmp_path: Path, marker: str, daemons: Daemons
) -> None:
    spool = _setup(tmp_path, marker)
    work = tmp_path / "work dir"
    other = tmp_path / "other"
    work.mkdir()
    other.mkdir()
    env = {"AIMEDRES_CONFIG": str(tmp_path / "aimedres.toml")}
    tricky = ["a b", "$HOME", ";", "*", "--epochs", "3"]
    r = cli(work, "submit", "--label", "echo args", "--retries", "1", "--", PY, "-c", ECHO_ARGV, *tricky, env=env)
    assert r.returncode == 0, r.stderr
    number, ticket = r.stdout.split()
    text = _ticket(spool.root, "incoming", ticket)
    assert text["command"] == [PY, "-c", ECHO_ARGV, *tricky] and text["cwd"] == str(work)
    assert (text["label"], text["retries"], text["number"]) == ("echo args", 1, int(number))
    r = cli(work, "submit", "--cwd", str(other), "--", "python3", "-c", ECHO_ARGV, env=env)
    assert r.returncode == 0, r.stderr
    second = r.stdout.split()[1]
    assert os.path.isabs(_ticket(spool.root, "incoming", second)["command"][0])  # looked up in submit's PATH
    daemons.start(tmp_path)
    assert cli(tmp_path, "wait", number, second).returncode == 0
    assert json.loads((work / "seen.json").read_text()) == [str(work), tricky]  # no shell saw it
    assert json.loads((other / "seen.json").read_text())[0] == str(other)

    assert "nosuchcommand-xyz: command not found" in usage_error(cli(work, "submit", "--", "nosuchcommand-xyz"))
    assert "only for --job" in usage_error(cli(work, "submit", "--epochs", "3", "--", "true", env=env))
    assert "--cwd is for a command" in usage_error(cli(work, "submit", "--cwd", "/", "--job", "rec", env=env))
    assert "nothing after `--`" in usage_error(cli(work, "submit", "--", env=env))
    assert "no group 'gpu'" in usage_error(cli(work, "submit", "--group", "gpu", "--", "true", env=env))


def test_delay_holds_a_ticket_until_its_time(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    spool = _setup(tmp_path, marker)
    daemons.start(tmp_path)
    number, ticket = _submit(tmp_path, "--delay", "2s", "--", PY, "-c", "import time; print(time.time())")
    queued = _status(tmp_path)["queued"]
    assert isinstance(queued, list) and queued and queued[0]["number"] == number and queued[0]["not_before"]
    assert cli(tmp_path, "wait", str(number)).returncode == 0
    not_before = _ticket(spool.root, "done", ticket)["not_before"]
    log = Path(str(result(spool.root, "done", ticket)["log"]))
    started = next(r for r in read_jsonl(log) if r["event"] == "job.started")["t"]
    assert started >= not_before.timestamp()  # type: ignore[attr-defined]


# ---------------------------------------------------------------- status


def test_status_shows_number_label_group_state_attempts_and_exit(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    spool = _setup(tmp_path, marker, workers=1, extra="[groups.gpu]\nmax_workers = 1\n")
    n_bad, t_bad = _submit(tmp_path, "--job", "bad", "--retries", "1")
    n_run, t_run = _submit(tmp_path, "--job", "block", "--label", "long one", "--group", "gpu")
    n_q, _t_q = _submit(tmp_path, "--job", "rec", "--label", "waits")
    daemons.start(tmp_path)
    wait_final(spool.root, [t_bad])
    wait_for(lambda: t_run in _started(tmp_path), 30, "the gpu ticket to start")
    wait_for(lambda: _status(tmp_path)["running"], 30, "the running ticket in status")
    state = _status(tmp_path)
    running = state["running"][0]  # type: ignore[index]
    assert (running["number"], running["label"], running["group"], running["ticket"]) == (
        n_run,
        "long one",
        "gpu",
        t_run,
    )
    finished = next(f for f in state["finished"] if f["ticket"] == t_bad)  # type: ignore[attr-defined]
    assert (finished["number"], finished["label"], finished["group"]) == (n_bad, "bad", "default")
    assert (finished["status"], finished["attempts"], finished["exit_code"]) == ("failed", 2, 3)
    groups = state["daemon"]["groups"]  # type: ignore[index]
    assert groups["gpu"] == {"workers": 1, "busy": 1, "paused": False, "parallel": False}
    text = cli(tmp_path, "status").stdout
    assert "group gpu: workers 1/1 busy" in text
    assert re.search(rf"^ +{n_run} +{t_run} +long one +gpu +1 ", text, re.M), text  # attempt 1
    assert re.search(rf"^ +{n_bad} +{t_bad} +bad +default +failed \[exit_code\] +2 +3 ", text, re.M), text
    (tmp_path / "release").touch()
    assert cli(tmp_path, "wait", str(n_q), str(n_run)).returncode == 0


# ---------------------------------------------------------------- restart


EDITOR = """#!/bin/sh
# the test's $EDITOR: makes the failing ticket succeed
sed -i 's/exit 3/exit 0/' "$1"
"""


def test_restart_and_restart_edit(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    spool = _setup(tmp_path, marker)
    editor = tmp_path / "editor.sh"
    editor.write_text(EDITOR)
    editor.chmod(editor.stat().st_mode | stat.S_IXUSR)
    _n1, t1 = _submit(tmp_path, "--label", "flaky", "--", "sh", "-c", "exit 3")
    assert "is queued: only a finished ticket can be restarted" in usage_error(cli(tmp_path, "restart", "1"))
    daemons.start(tmp_path)
    assert cli(tmp_path, "wait", "1").returncode == 1

    r = cli(tmp_path, "restart", "1")
    assert r.returncode == 0, r.stderr
    n2, t2 = r.stdout.split()[:2]
    assert int(n2) == 2 and r.stdout.strip().endswith(f"(restarted from {t1})")
    assert cli(tmp_path, "wait", n2).returncode == 1  # as it was: fails again
    assert _ticket(spool.root, "failed", t2)["restarted_from"] == t1

    r = cli(tmp_path, "restart", "--edit", t2, env={"EDITOR": str(editor)})
    assert r.returncode == 0, r.stderr
    n3, t3 = r.stdout.split()[:2]
    assert cli(tmp_path, "wait", n3).returncode == 0
    filed = _ticket(spool.root, "done", t3)
    sh = shutil.which("sh")  # submit looked it up in its PATH
    assert filed["command"] == [sh, "-c", "exit 0"] and filed["restarted_from"] == t2 and filed["number"] == 3
    assert _ticket(spool.root, "failed", t1)["command"] == [sh, "-c", "exit 3"]  # the original is untouched

    line = usage_error(cli(tmp_path, "restart", "--edit", "1", env={"EDITOR": "false"}))
    assert "exited 1; nothing was restarted" in line
    assert len(names(spool.root, "incoming")) == 0 and not (spool.root / "numbers" / "4").exists()


def test_restart_while_the_daemon_restarts(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    """`restart` races a daemon's SIGTERM and the next daemon's start: the new ticket runs once,
    the old one stays filed as it was."""
    spool = _setup(tmp_path, marker)
    d = daemons.start(tmp_path)
    _n, t1 = _submit(tmp_path, "--job", "rec")
    wait_final(spool.root, [t1])
    d.signal(signal.SIGTERM)
    restarting = start_cli(tmp_path, "restart", "1")
    assert d.wait(30) == 0
    daemons.start(tmp_path)
    out, err = restarting.communicate(timeout=60)
    assert restarting.returncode == 0, err
    t2 = out.split()[1]
    wait_final(spool.root, [t2])
    assert where(spool.root, t2) == ["done"] and where(spool.root, t1) == ["done"]
    assert (tmp_path / "ran.txt").read_text().splitlines() == [t1, t2]


# ---------------------------------------------------------------- clean


def test_clean_removes_finished_tickets_and_logs_never_queued_or_running(
    tmp_path: Path, marker: str, daemons: Daemons
) -> None:
    spool = _setup(tmp_path, marker, workers=1)
    _n, ok = _submit(tmp_path, "--job", "rec")
    _n, bad = _submit(tmp_path, "--job", "bad")
    drop(spool.root, "junk.toml", 'job = "nosuch"\n')
    daemons.start(tmp_path)
    wait_final(spool.root, [ok, bad, "junk"])
    bad_log = Path(str(result(spool.root, "failed", bad)["log"]))
    ok_log = Path(str(result(spool.root, "done", ok)["log"]))
    assert bad_log.exists() and ok_log.exists()
    _n, running = _submit(tmp_path, "--job", "block")
    wait_for(lambda: running in _started(tmp_path), 30, "the blocking ticket to start")
    _n, queued = _submit(tmp_path, "--job", "rec", "--after", ok)  # waits for the worker

    r = cli(tmp_path, "clean", "--failed")
    assert r.returncode == 0 and "removed 2 finished tickets (1 failed, 1 rejected) and 1 logs" in r.stdout
    assert names(spool.root, "failed") == [] and names(spool.root, "rejected") == []
    assert not bad_log.exists() and not (spool.root / "rejected" / "junk.error").exists()
    assert usage_error(cli(tmp_path, "wait", "2")).endswith(": 2")  # no such ticket: its number went with it
    r = cli(tmp_path, "clean")
    assert f"kept {ok}: queued ticket {queued} waits for it (after)" in r.stdout
    assert "removed 0 finished tickets" in r.stdout
    assert where(spool.root, running) == ["active"] and where(spool.root, queued) == ["incoming"]
    assert ok_log.exists()

    (tmp_path / "release").touch()
    wait_final(spool.root, [running, queued])
    assert "removed 0 finished tickets" in cli(tmp_path, "clean", "--succeeded", "--older-than", "1h").stdout
    r = cli(tmp_path, "clean", "--succeeded")
    assert "removed 3 finished tickets (3 done) and 3 logs" in r.stdout, r.stdout
    assert names(spool.root, "done") == [] and not ok_log.exists()
    n_new, _new = _submit(tmp_path, "--job", "rec")
    assert n_new == 5  # 1 to 4 were given (the dropped junk ticket had none), and never again


CLEANER = textwrap.dedent(
    """
    import contextlib, io, os, sys
    from aimedres_async.cli.app import main

    while not os.path.exists("stop-cleaning"):
        with contextlib.redirect_stdout(io.StringIO()):
            if main(["clean"]) != 0:
                sys.exit(1)
    """
)


def test_clean_while_tickets_finish_loses_none_and_runs_none_twice(
    tmp_path: Path, marker: str, daemons: Daemons
) -> None:
    spool = _setup(tmp_path, marker, workers=4)
    d = daemons.start(tmp_path)
    cleaner = subprocess.Popen([PY, "-c", CLEANER], cwd=tmp_path, stderr=PIPE, text=True)
    tickets = [_submit(tmp_path, "--job", "rec")[1] for _ in range(12)]

    def settled() -> bool:
        return not names(spool.root, "incoming") and not names(spool.root, "active")

    wait_for(lambda: settled() and len((tmp_path / "ran.txt").read_text().splitlines()) == 12, 120, "every ticket")
    (tmp_path / "stop-cleaning").touch()
    _out, err = cleaner.communicate(timeout=60)
    assert cleaner.returncode == 0, err
    d.kill9()  # a crash now must not bring back any ticket: none was half-filed when cleaned
    daemons.start(tmp_path)
    wait_for(lambda: _status(tmp_path)["daemon"], 30, "the second daemon")
    assert settled()
    assert sorted((tmp_path / "ran.txt").read_text().splitlines()) == sorted(tickets)
    cli(tmp_path, "clean")
    assert names(spool.root, "done") == [] and names(spool.root, "failed") == []


# ---------------------------------------------------------------- parallel


def _concurrency_at_start(events: list[dict[str, object]], job: str) -> int:
    """How many other tickets' attempts were running when `job` started (from the event log)."""
    running: set[object] = set()
    for e in events:
        if e["event"] == "job.started":
            if e["job"] == job:
                return len(running)
            running.add(e["job"])
        elif e["event"] == "job.exited":
            running.discard(e["job"])
    raise AssertionError(f"{job} never started")


def test_parallel_while_jobs_run_and_across_a_restart(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    spool = _setup(tmp_path, marker, workers=1)
    d = daemons.start(tmp_path)
    ticks = [_submit(tmp_path, "--job", "block")[1] for _ in range(3)]
    wait_for(lambda: len(_started(tmp_path)) == 1, 30, "the first ticket to start")
    r = cli(tmp_path, "parallel", "3")
    assert r.returncode == 0 and "group default: 3 tickets at once (set by `parallel`)" in r.stdout
    wait_for(lambda: _started(tmp_path) == set(ticks), 30, "all three to run at once")

    assert cli(tmp_path, "parallel", "2").returncode == 0  # below the three running: none is stopped
    wait_for(lambda: _status(tmp_path)["daemon"]["workers"] == 2, 30, "the daemon to take 2")  # type: ignore[index]
    _n, late = _submit(tmp_path, "--job", "block")
    (tmp_path / "release").touch()
    wait_final(spool.root, [*ticks, late])
    for t in [*ticks, late]:
        assert where(spool.root, t) == ["done"] and result(spool.root, "done", t)["attempts"] == 1
    log = Path(str(_status(tmp_path)["daemon"]["logs"])) / "events.jsonl"  # type: ignore[index]
    events = read_jsonl(log)
    assert _concurrency_at_start(events, late) <= 1  # it started in a free slot of two
    assert [e["workers"] for e in events if e["event"] == "daemon.parallel"] == [{"default": 3}, {"default": 2}]

    assert d.stop() == 0
    daemons.start(tmp_path)
    wait_for(lambda: _status(tmp_path)["daemon"], 30, "the next daemon")
    groups = _status(tmp_path)["daemon"]["groups"]  # type: ignore[index]
    assert groups["default"]["workers"] == 2 and groups["default"]["parallel"] is True
    assert "group default: 1 ticket at once (the config's)" in cli(tmp_path, "parallel", "--reset").stdout
    wait_for(lambda: _status(tmp_path)["daemon"]["workers"] == 1, 30, "the config's count")  # type: ignore[index]
    assert "no group 'gpu'" in usage_error(cli(tmp_path, "parallel", "2", "--group", "gpu"))
    assert "not both" in usage_error(cli(tmp_path, "parallel", "2", "--reset"))


# ---------------------------------------------------------------- groups


def test_groups_have_their_own_workers_and_pause(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    spool = _setup(tmp_path, marker, workers=2, extra="[groups.gpu]\nmax_workers = 1\n")
    _n, g1 = _submit(tmp_path, "--job", "block", "--group", "gpu")
    _n, g2 = _submit(tmp_path, "--job", "block", "--group", "gpu")
    _n, d1 = _submit(tmp_path, "--job", "block")
    daemons.start(tmp_path)
    wait_for(lambda: {g1, d1} <= _started(tmp_path), 30, "g1 and d1 to start")
    # d1 was claimed after g2 in queue order, so g2 was passed over: gpu has one worker, busy
    assert where(spool.root, g2) == ["incoming"] and g2 not in _started(tmp_path)
    text = cli(tmp_path, "status").stdout
    assert "group gpu: workers 1/1 busy, 1 queued" in text and "group default: workers 1/2 busy, 0 queued" in text

    r = cli(tmp_path, "pause", "--group", "gpu")
    assert r.returncode == 0 and "paused group gpu" in r.stdout
    wait_for(lambda: _status(tmp_path)["daemon"]["groups"]["gpu"]["paused"], 30, "the pause")  # type: ignore[index]
    (tmp_path / "release").touch()
    wait_final(spool.root, [g1, d1])
    (tmp_path / "release").unlink()
    _n, d2 = _submit(tmp_path, "--job", "rec")  # the default group still runs
    wait_final(spool.root, [d2])
    assert where(spool.root, g2) == ["incoming"] and "PAUSED" in cli(tmp_path, "status").stdout
    assert cli(tmp_path, "resume", "--group", "gpu").returncode == 0
    wait_for(lambda: g2 in _started(tmp_path), 30, "g2 to start after resume")
    (tmp_path / "release").touch()
    wait_final(spool.root, [g2])
    assert "no group 'cpu'" in usage_error(cli(tmp_path, "pause", "--group", "cpu"))
    drop(spool.root, "stray.toml", 'job = "rec"\ngroup = "cpu"\n')
    wait_final(spool.root, ["stray"])
    assert "no group 'cpu'" in (spool.root / "rejected" / "stray.error").read_text()


# ---------------------------------------------------------------- a group's budget

# started/<ticket> when it starts; then waits for go/<ticket> (or the file `release`)
GATE = (
    "import os, pathlib, time; me = os.environ['AIMEDRES_JOB_ID']; p = pathlib.Path('started'); "
    "p.mkdir(exist_ok=True); (p / me).touch()\n"
    "while not (pathlib.Path('go') / me).exists() and not pathlib.Path('release').exists(): time.sleep(0.02)"
)
GIB = 1 << 30
MIB = 1 << 20


def _budget_config(memory: str) -> str:
    """The daemon has 8GiB; group big may hold `memory` of what its tickets declare; job half
    declares 600MiB (so two of them need 1.2GiB)."""
    return (
        f'memory = "8GiB"\n[groups.big]\nmax_workers = 4\nmemory = "{memory}"\n'
        f'[jobs.half]\ncommand = {json.dumps([PY, "-c", GATE])}\nresources = {{ memory = "600MiB" }}\n'
    )


def _go(folder: Path, ticket: str) -> None:
    (folder / "go").mkdir(exist_ok=True)
    (folder / "go" / ticket).touch()


def _big(folder: Path) -> dict[str, object]:
    """Group big as the daemon's record for `status` shows it ({} before the daemon has written one)."""
    daemon = _status(folder)["daemon"]
    group: dict[str, object] = daemon["groups"]["big"] if isinstance(daemon, dict) else {}
    return group


def _overlapped(events: list[dict[str, object]], a: str, b: str) -> bool:
    """Whether the attempts of tickets a and b ever ran at the same time (from the event log)."""
    running: set[object] = set()
    for e in events:
        if e["event"] == "job.started":
            running.add(e["job"])
            if {a, b} <= running:
                return True
        elif e["event"] == "job.exited":
            running.discard(e["job"])
    return False


def test_a_group_budget_holds_its_tickets_back_while_other_groups_run(
    tmp_path: Path, marker: str, daemons: Daemons
) -> None:
    """[groups.big] memory = "1GiB": two tickets declaring 600MiB each never run together (the
    second waits in incoming/ though big has free workers and the daemon memory to spare), while a
    ticket of the default group runs beside them; one declaring 8GiB is rejected saying why, and
    the daemon goes on serving."""
    spool = _setup(tmp_path, marker, workers=2, extra=_budget_config("1GiB"))
    _n, b1 = _submit(tmp_path, "--job", "half", "--group", "big")
    _n, b2 = _submit(tmp_path, "--job", "half", "--group", "big")
    _n, d1 = _submit(tmp_path, "--job", "block")
    d = daemons.start(tmp_path)
    wait_for(lambda: {b1, d1} <= _started(tmp_path), 60, "b1 and d1 to start")
    wait_for(lambda: _big(tmp_path).get("in_use") == {"memory": 600 * MIB}, 60, "big's use in status")
    assert where(spool.root, b2) == ["incoming"] and b2 not in _started(tmp_path)
    assert _big(tmp_path) == {
        "workers": 4,
        "busy": 1,
        "paused": False,
        "parallel": False,
        "budget": {"memory": GIB},
        "in_use": {"memory": 600 * MIB},
    }
    assert "budget" not in _status(tmp_path)["daemon"]["groups"]["default"]  # type: ignore[index]
    text = cli(tmp_path, "status").stdout
    assert "group big: workers 1/4 busy, memory 600.0MiB/1.0GiB in use, 1 queued" in text, text

    # never fits big's budget (it would fit the daemon's 8GiB): rejected at once, b1 still running
    drop(spool.root, "huge.toml", 'job = "rec"\ngroup = "big"\nresources = { memory = "8GiB" }\n')
    wait_final(spool.root, ["huge"])
    error = (spool.root / "rejected" / "huge.error").read_text()
    assert "can never run in group big" in error and "8.0GiB of memory" in error and "[groups.big] memory" in error
    assert len(error.strip().splitlines()) == 1
    assert where(spool.root, b2) == ["incoming"]

    _go(tmp_path, b1)
    wait_for(lambda: b2 in _started(tmp_path), 60, "b2 to start once b1 has ended")
    (tmp_path / "release").touch()  # b2 and d1
    _n, after = _submit(tmp_path, "--job", "rec", "--group", "big")  # the daemon serves on
    wait_final(spool.root, [b1, b2, d1, after])
    assert all(where(spool.root, t) == ["done"] for t in (b1, b2, d1, after))
    assert d.alive() and "Traceback" not in d.stderr()
    events = read_jsonl(Path(str(_status(tmp_path)["daemon"]["logs"])) / "events.jsonl")  # type: ignore[index]
    assert not _overlapped(events, b1, b2)
    assert _overlapped(events, b1, d1) and _overlapped(events, b2, d1)


def test_a_reload_changes_a_group_budget_and_never_stops_a_running_ticket(
    tmp_path: Path, marker: str, daemons: Daemons
) -> None:
    spool = _setup(tmp_path, marker, workers=2, extra=_budget_config("1GiB"))
    d = daemons.start(tmp_path)
    _n, b1 = _submit(tmp_path, "--job", "half", "--group", "big")
    _n, b2 = _submit(tmp_path, "--job", "half", "--group", "big")
    wait_for(lambda: b1 in _started(tmp_path), 60, "b1 to start")
    wait_for(lambda: _big(tmp_path).get("in_use") == {"memory": 600 * MIB}, 60, "big's use in status")
    assert where(spool.root, b2) == ["incoming"]

    write_config(tmp_path, daemon_config(marker, _jobs(), 2, _budget_config("2GiB")))
    d.signal(signal.SIGHUP)
    wait_for(lambda: b2 in _started(tmp_path), 60, "b2 to start beside b1 under the raised budget")
    assert _big(tmp_path)["budget"] == {"memory": 2 * GIB}

    write_config(tmp_path, daemon_config(marker, _jobs(), 2, _budget_config("1GiB")))
    d.signal(signal.SIGHUP)
    wait_for(lambda: _big(tmp_path)["budget"] == {"memory": GIB}, 60, "the lowered budget")
    _n, b3 = _submit(tmp_path, "--job", "half", "--group", "big")
    _n, free = _submit(tmp_path, "--job", "rec", "--group", "big")  # declares nothing: not held back
    wait_final(spool.root, [free])
    # over the lowered budget: both go on running, b3 waits
    assert where(spool.root, b1) == ["active"] and where(spool.root, b2) == ["active"]
    assert where(spool.root, b3) == ["incoming"]
    assert _big(tmp_path)["in_use"] == {"memory": 1200 * MIB}
    _go(tmp_path, b1)
    wait_final(spool.root, [b1])
    assert where(spool.root, b3) == ["incoming"]  # 600MiB still used: 1.2GiB would be over 1GiB
    _go(tmp_path, b2)
    wait_for(lambda: b3 in _started(tmp_path), 60, "b3 to start once b1 and b2 have ended")
    _go(tmp_path, b3)
    wait_final(spool.root, [b2, b3])
    assert all(where(spool.root, t) == ["done"] for t in (b1, b2, b3))
    assert d.alive() and "Traceback" not in d.stderr()
