"""Regression tests for hostile input (issue 28): integers out of range, nesting bombs, FIFOs where
files belong, a ticket caught between its writer's link and unlink, a YAML billion laughs.

Each drives the real command line or daemon as a subprocess: bad input must give one line on
stderr and exit 2, and the daemon must reject the ticket and go on serving.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import PY, death_watch_of, events, marked_processes, start_cli, wait_for, write_config
from helpers_cli import cli, usage_error
from helpers_daemon import Daemons, daemon_config, names, result, submit, wait_final

from aimedres_async.daemon.spool import Spool

HUGE = 99999999999999999999
DEEP_ARGS = "args = " + "[" * 600 + "]" * 600 + "\n"  # a 1 KiB ticket nesting 600 arrays


def _serving(tmp_path: Path, marker: str, daemons: Daemons, jobs: str = '[jobs.j]\ncommand = ["true"]\n') -> Path:
    """A daemon serving tmp_path/spool, started and ready; returns the spool."""
    write_config(tmp_path, daemon_config(marker, jobs))
    spool = tmp_path / "spool"
    Spool(spool).ensure()
    daemons.start(tmp_path)
    wait_for(lambda: (tmp_path / "logs" / "latest-daemon" / "events.jsonl").exists(), what="the daemon started")
    return spool


def _stage(spool: Path, name: str, text: str) -> tuple[Path, Path]:
    """A ticket written in tmp/ (named as `submit` names its staging files) and linked into
    incoming/; the staging name is left for the caller to unlink."""
    staged = spool / "tmp" / f".{name}.{os.getpid()}.{os.urandom(4).hex()}"
    staged.write_text(text)
    staged.chmod(0o640)
    dest = spool / "incoming" / f"{name}.toml"
    os.link(staged, dest)
    return staged, dest


def _drop_ticket(spool: Path, name: str, text: str) -> None:
    """A ticket put straight into incoming/ (by the protocol), as a program other than `submit` might."""
    staged, _dest = _stage(spool, name, text)
    staged.unlink()


# ---------------------------------------------------------------- integers


def test_an_out_of_range_priority_is_refused_by_submit(tmp_path: Path, marker: str) -> None:
    write_config(tmp_path, daemon_config(marker, '[jobs.j]\ncommand = ["true"]\n'))
    (tmp_path / "t.toml").write_text(f'job = "j"\npriority = {HUGE}\n')
    assert "priority" in usage_error(cli(tmp_path, "submit", "t.toml"))
    assert "--priority" in usage_error(cli(tmp_path, "submit", "--job", "j", "--priority", str(HUGE)))
    assert not names(tmp_path / "spool", "incoming")


def test_the_daemon_rejects_an_out_of_range_priority_and_goes_on(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    """Regression: such a ticket stopped the daemon at once and on every restart (orjson's 64-bit
    range, "internal error in Daemon._intake"): under systemd, a restart loop."""
    spool = _serving(tmp_path, marker, daemons)
    _drop_ticket(spool, "huge", f'job = "j"\npriority = {HUGE}\n')
    wait_final(spool, ["huge"])
    assert names(spool, "rejected") == ["huge"]
    assert "priority" in (spool / "rejected" / "huge.error").read_text()
    good = submit(tmp_path, "--job", "j")
    wait_final(spool, [good])
    assert result(spool, "done", good)["status"] == "succeeded"
    d = daemons.started[0]
    assert d.alive() and "internal error" not in d.stderr()


@pytest.mark.parametrize(
    ("setting", "where"),
    [
        ("[supervisor]\ngpus = [-1]\n", "gpus"),
        (f"[supervisor]\ngpus = [0, {HUGE}]\n", "gpus"),
        ('[supervisor]\ngpus = ["0,1"]\n', "gpus"),
        (f"[defaults]\nretries = {HUGE}\n", "retries"),
        ("[defaults]\ntimeout = 1e300\n", "timeout"),
        (f"[defaults]\nepochs = {HUGE}\n", "epochs"),
        ("[defaults.resources]\nmemory = 99999999999999999999\n", "memory"),
    ],
)
def test_out_of_range_config_integers_are_one_line_exit_2(tmp_path: Path, setting: str, where: str) -> None:
    (tmp_path / "aimedres.toml").write_text(f'{setting}\n[jobs.j]\ncommand = ["true"]\n')
    assert where in usage_error(cli(tmp_path, "validate"))


# ---------------------------------------------------------------- nesting and size


def test_a_deeply_nested_ticket_is_one_line_for_submit_and_status(tmp_path: Path, marker: str) -> None:
    """Regression: `submit` and `status` died with a RecursionError traceback."""
    write_config(tmp_path, daemon_config(marker, '[jobs.j]\ncommand = ["true"]\n'))
    (tmp_path / "deep.toml").write_text('job = "j"\n' + DEEP_ARGS)
    assert "nested more than 32 deep" in usage_error(cli(tmp_path, "submit", "deep.toml"))
    spool = tmp_path / "spool"
    Spool(spool).ensure()
    _drop_ticket(spool, "deep", 'job = "j"\n' + DEEP_ARGS)
    r = cli(tmp_path, "status")
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr  # no daemon; the queue is shown
    assert "deep" in r.stdout


def test_the_daemon_rejects_a_deeply_nested_ticket_and_goes_on(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    spool = _serving(tmp_path, marker, daemons)
    _drop_ticket(spool, "deep", 'job = "j"\n' + DEEP_ARGS)
    wait_final(spool, ["deep"])
    assert "nested more than 32 deep" in (spool / "rejected" / "deep.error").read_text()
    good = submit(tmp_path, "--job", "j")
    wait_final(spool, [good])
    assert names(spool, "done") == [good]
    assert "Traceback" not in daemons.started[0].stderr()


def test_a_deeply_nested_config_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "aimedres.toml").write_text(
        '[jobs.j]\ncommand = ["true"]\n[ray]\nruntime_env = { a = ' + "[" * 600 + "]" * 600 + " }\n"
    )
    line = usage_error(cli(tmp_path, "validate"))
    assert "aimedres.toml: line 4: nested more than 32 deep" in line


def test_a_reload_with_a_deeply_nested_config_keeps_the_old_one(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    """Regression: SIGHUP printed a ~1,000-line asyncio traceback ("Exception in callback")."""
    spool = _serving(tmp_path, marker, daemons)
    d = daemons.started[0]
    (tmp_path / "aimedres.toml").write_text(
        daemon_config(marker, '[jobs.j]\ncommand = ["true"]\n')
        + "[ray]\nruntime_env = { a = "
        + "[" * 600
        + "]" * 600
        + " }\n"
    )
    d.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in d.stderr(), what="a reload warning")
    err = d.stderr()
    assert "Traceback" not in err and "Exception in callback" not in err, err
    reload_lines = [line for line in err.splitlines() if "reload failed" in line]
    assert len(reload_lines) == 1 and reload_lines[0].endswith("(arrays or tables inside each other)"), err
    _drop_ticket(spool, "good", 'job = "j"\n')  # the old config still serves (`submit` reads the new one)
    wait_final(spool, ["good"])
    assert names(spool, "done") == ["good"] and d.alive()


BILLION_LAUGHS = "\n".join(
    [
        "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
        *(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
        "jobs: [*i]",
    ]
)


def test_init_from_a_yaml_billion_laughs_is_one_line_exit_2(tmp_path: Path) -> None:
    """Regression: a ~500-byte file ran 10 minutes, used 11 GB and wrote a 2.8 GB config."""
    (tmp_path / "bomb.yaml").write_text(BILLION_LAUGHS)
    line = usage_error(cli(tmp_path, "init", "--from-yaml", "bomb.yaml", timeout=30))
    assert "more than 100000 values once its aliases are expanded" in line
    assert not (tmp_path / "aimedres.toml").exists()


def test_init_from_deeply_nested_yaml_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "deep.yaml").write_text("jobs: " + "[" * 2000 + "]" * 2000 + "\n")
    assert "nested more than 32 deep" in usage_error(cli(tmp_path, "init", "--from-yaml", "deep.yaml"))


def _big_yaml(path: Path) -> None:
    """A valid job list just under the size limit: PyYAML takes seconds over it."""
    job = "  - name: job{n}\n    script: train_{n}.py\n    args: {{epochs: 3, seed: {n}}}\n"
    text = "jobs:\n"
    n = 0
    while len(text) < 1_000_000:
        text += job.format(n=n)
        n += 1
    path.write_text(text)


@pytest.mark.parametrize(("sig", "codes"), [(signal.SIGINT, (130,)), (signal.SIGTERM, (143, -signal.SIGTERM))])
def test_init_stops_on_a_signal_while_it_converts(tmp_path: Path, sig: signal.Signals, codes: tuple[int, ...]) -> None:
    """Regression: SIGINT and SIGTERM were held (recorded, not acted on) for the whole of `init`.
    SIGTERM ends it as it ends every command that runs no job: by its default action (143 in a
    shell), or exit 143 if it came before the command took its signals back."""
    _big_yaml(tmp_path / "big.yaml")
    proc = subprocess.Popen(
        [PY, "-m", "aimedres_async", "init", "--from-yaml", "big.yaml"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # well into the conversion (it takes several seconds)
    assert proc.poll() is None
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode in codes, (proc.returncode, err)
    assert "Traceback" not in err
    assert not (tmp_path / "aimedres.toml").exists()


# ---------------------------------------------------------------- FIFOs and other non-files


def test_a_fifo_as_a_jobs_script_is_an_error_not_a_hang(tmp_path: Path, marker: str) -> None:
    """Regression: `validate` and `submit` hung forever in open()."""
    os.mkfifo(tmp_path / "train.py")
    write_config(tmp_path, daemon_config(marker, '[jobs.f]\nscript = "train.py"\n[jobs.j]\ncommand = ["true"]\n'))
    assert "is a FIFO" in usage_error(cli(tmp_path, "validate", timeout=30))
    (tmp_path / "t.toml").write_text('script = "train.py"\n')
    assert "is a FIFO" in usage_error(cli(tmp_path, "submit", "t.toml", timeout=30))
    assert "not a regular file" in usage_error(cli(tmp_path, "submit", "train.py", timeout=30))


def test_the_daemon_rejects_a_ticket_whose_script_is_a_fifo_and_goes_on(
    tmp_path: Path, marker: str, daemons: Daemons
) -> None:
    """Regression: the daemon blocked in open() on the FIFO: it ran nothing more and ignored SIGTERM."""
    spool = _serving(tmp_path, marker, daemons)
    os.mkfifo(tmp_path / "train.py")
    _drop_ticket(spool, "fifo", 'script = "train.py"\n')
    wait_final(spool, ["fifo"])
    assert "is a FIFO" in (spool / "rejected" / "fifo.error").read_text()
    good = submit(tmp_path, "--job", "j")
    wait_final(spool, [good])
    assert names(spool, "done") == [good]
    assert daemons.started[0].stop() == 0  # and SIGTERM is heard


def test_a_fifo_as_the_metrics_file_is_a_warning_not_a_hang(tmp_path: Path, marker: str) -> None:
    """A job that leaves a FIFO where its metrics file goes: the run warns and ends."""
    write_config(
        tmp_path,
        daemon_config(marker, '[jobs.j]\ncommand = ["mkfifo", "m.json"]\nmetrics_file = "m.json"\n'),
    )
    r = cli(tmp_path, "run", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "m.json: not a regular file; not read" in r.stderr + r.stdout
    assert marked_processes(marker) == []


def test_resume_from_a_fifo_summary_is_one_line_exit_2(tmp_path: Path, marker: str) -> None:
    write_config(tmp_path, daemon_config(marker, '[jobs.j]\ncommand = ["true"]\n'))
    run = tmp_path / "logs" / "20260101T000000Z-abcd"
    run.mkdir(parents=True)
    os.mkfifo(run / "summary.json")
    line = usage_error(cli(tmp_path, "run", "--resume", "20260101T000000Z-abcd", timeout=30))
    assert "not a regular file" in line


# ---------------------------------------------------------------- the writer's link and unlink


def test_a_ticket_read_between_its_writers_link_and_unlink_is_run(
    tmp_path: Path, marker: str, daemons: Daemons
) -> None:
    """Regression: a ticket written by the documented protocol (stage in tmp/, link into
    incoming/, unlink) was rejected as "has 2 hard links" when the daemon read it in between."""
    spool = _serving(tmp_path, marker, daemons)
    staged, dest = _stage(spool, "slow-writer", 'job = "j"\n')
    os.utime(spool / "incoming", None)  # the daemon looks now, with the staging name still there
    time.sleep(1.5)  # longer than a claim waits for the unlink: it must look again later
    assert dest.exists() and not names(spool, "rejected")
    staged.unlink()
    wait_final(spool, ["slow-writer"])
    assert names(spool, "done") == ["slow-writer"]


def test_a_ticket_whose_writer_died_before_its_unlink_is_run(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    spool = _serving(tmp_path, marker, daemons)
    dead = subprocess.run([PY, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    staged = spool / "tmp" / f".orphan.{dead}.0123abcd"
    staged.write_text('job = "j"\n')
    staged.chmod(0o640)
    os.link(staged, spool / "incoming" / "orphan.toml")
    wait_final(spool, ["orphan"])
    assert names(spool, "done") == ["orphan"] and not staged.exists()


# ---------------------------------------------------------------- the death watch


def test_a_killed_death_watch_is_restarted_and_a_later_kill9_leaves_no_job(tmp_path: Path, marker: str) -> None:
    """Regression: killing the death-watch process went unnoticed (not restarted, not logged);
    a later kill -9 of the supervisor then left every job running."""
    write_config(
        tmp_path,
        daemon_config(
            marker, '[jobs.a]\ncommand = ["sleep", "60"]\n[jobs.b]\ncommand = ["sh", "-c", "sleep 60 & wait"]\n'
        ),
    )
    proc = start_cli(tmp_path, "run", "--parallel", "-j", "2", "--no-progress")
    try:
        wait_for(lambda: len(marked_processes(marker)) >= 3, what="both jobs running")
        first = death_watch_of(proc.pid)
        os.kill(first, signal.SIGKILL)
        restarted = wait_for(lambda: events(tmp_path, "run.deathwatch_restarted"), what="a new death watch")
        assert restarted[0]["old_pid"] == first and restarted[0]["pid"] == death_watch_of(proc.pid) != first
        proc.kill()
        proc.communicate(timeout=30)
        wait_for(lambda: marked_processes(marker) == [], what="every job killed by the new death watch")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# ---------------------------------------------------------------- exact integers in metrics

BIG = 123456789012345678901234567890


def test_integers_beyond_64_bits_in_metrics_stay_exact(tmp_path: Path, marker: str) -> None:
    """Regression: integers above 64 bits in metrics silently became floats (orjson reads them
    so). The job's log keeps the digits printed; the final metrics keep them as text."""
    import json

    code = (
        f'import json; print(\'{{"epoch": 1, "seen": {BIG}, "loss": 0.5}}\'); '
        f"open('m.json', 'w').write('{{\"tokens\": {BIG + 1}}}')"
    )
    write_config(
        tmp_path,
        daemon_config(marker, f'[jobs.j]\ncommand = {json.dumps([PY, "-c", code])}\nmetrics_file = "m.json"\n'),
    )
    r = cli(tmp_path, "run", "--no-progress")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    run = (tmp_path / "logs" / "latest").resolve()
    records = [json.loads(line) for line in (run / "jobs" / "j.jsonl").read_text().splitlines()]
    assert [rec["data"]["seen"] for rec in records if "data" in rec] == [BIG]
    final = json.loads((run / "summary.json").read_text())["jobs"][0]["metrics"]
    assert final["seen"] == str(BIG) and final["tokens"] == str(BIG + 1) and final["loss"] == 0.5


def test_fifos_in_the_spools_own_folders_do_not_hang_status(tmp_path: Path, marker: str) -> None:
    """The spool's own records (a daemon's control/daemon.<pid>.json, a running ticket's sidecar,
    a rejection's .error, the number counter) are read only if they are regular files."""
    write_config(tmp_path, daemon_config(marker, '[jobs.j]\ncommand = ["true"]\n'))
    spool = tmp_path / "spool"
    Spool(spool).ensure()
    os.mkfifo(spool / "control" / "daemon.999999.json")
    os.mkfifo(spool / "active" / ".x.json")
    (spool / "rejected" / "r.toml").write_text('job = "j"\n')
    os.mkfifo(spool / "rejected" / "r.error")
    r = cli(tmp_path, "status", timeout=30)
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr  # no daemon serves the spool
    r = cli(tmp_path, "status", "--json", timeout=30)
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr
