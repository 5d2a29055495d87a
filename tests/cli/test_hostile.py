"""Regression tests for what a hostile test of `run` and `serve` found, one test per finding.

Each drives the real command line (or daemon) as a subprocess, with real signals and processes;
the `marker` fixture fails a test if any job process, grandchildren included, outlives it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    PY,
    alive,
    death_watch_of,
    events,
    marked_processes,
    read_jsonl,
    run_dir,
    start_cli,
    wait_for,
    write_config,
)
from helpers_cli import cli, usage_error
from helpers_daemon import Daemons, daemon_config, submit, wait_final

from aimedres_async.daemon.spool import Spool


def _config(marker: str, jobs: str, workers: int = 2, extra: str = "") -> str:
    return f"""
[supervisor]
parallel = true
max_workers = {workers}
grace_period = "1s"
{extra}
[discovery]
enabled = false
[defaults]
retries = 0
env = {{ TEST_MARKER = "{marker}" }}
{jobs}
"""


# A job whose child leaves the job's session (setsid) and starts a child of its own, then the job
# exits: the setsid'd shell and its sleep form a chain outside the job's process group.
ESCAPING_CHAIN = json.dumps(["sh", "-c", "setsid sh -c 'sleep 60 & sleep 60; wait' & sleep 0.5; echo started"])


# ---------------------------------------------------------------- escaped chains


def test_escaped_chain_dies_with_the_run(tmp_path: Path, marker: str) -> None:
    """Regression: the final sweep took one /proc snapshot; children of a killed escaped process,
    re-parented after it, survived the run."""
    write_config(tmp_path, _config(marker, f"[jobs.chain]\ncommand = {ESCAPING_CHAIN}\n"))
    r = cli(tmp_path, "run", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    # the marker fixture's teardown asserts the same; here it is the point of the test
    assert marked_processes(marker) == []


def test_escaped_chain_dies_when_its_ticket_ends_while_the_daemon_runs(
    tmp_path: Path, marker: str, daemons: Daemons
) -> None:
    """Regression: in `serve`, escaped descendants of a finished job stayed alive for as long as
    the daemon ran (only its final sweep looked for them)."""
    write_config(tmp_path, daemon_config(marker, f"[jobs.chain]\ncommand = {ESCAPING_CHAIN}\n"))
    spool = Spool(tmp_path / "spool")
    spool.ensure()
    d = daemons.start(tmp_path)
    ticket = submit(tmp_path, "--job", "chain")
    wait_final(spool.root, [ticket])
    wait_for(lambda: not marked_processes(marker), timeout=10, what="the escaped chain to die")
    assert d.alive(), d.stderr()
    assert "Traceback" not in d.stderr()


def test_a_running_jobs_escaped_process_is_left_alone(tmp_path: Path, marker: str) -> None:
    """The other side of the rule: while its attempt runs, a job's daemonized helper lives."""
    body = "setsid sh -c 'echo $$ > helper.pid; sleep 60' & sleep 3; kill -0 $(cat helper.pid) && echo helper-alive"
    write_config(tmp_path, _config(marker, f"[jobs.j]\ncommand = {json.dumps(['sh', '-c', body])}\n"))
    r = cli(tmp_path, "run", timeout=60)
    assert r.returncode == 0, r.stderr
    lines = [x.get("line") for x in read_jsonl(run_dir(tmp_path) / "jobs" / "j.jsonl")]
    assert "helper-alive" in lines
    assert marked_processes(marker) == []


# ---------------------------------------------------------------- signals


STUBBORN = json.dumps(["sh", "-c", "trap '' INT TERM HUP; echo ready; sleep 60 & wait; wait"])


def test_signals_arriving_while_the_run_finishes_cannot_kill_it(tmp_path: Path, marker: str) -> None:
    """Regression: handlers were removed before the final sweep and table; a SIGHUP then killed the
    supervisor with its default action, while the log said `stopped_by=SIGINT`."""
    write_config(tmp_path, _config(marker, f"[jobs.j]\ncommand = {STUBBORN}\n"))
    proc = start_cli(tmp_path, "run")
    wait_for(lambda: events(tmp_path, "job.started"), what="the job started")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    # then HUP, TERM and INT every few ms until it exits: some land after the loop has ended
    cycle = [signal.SIGHUP, signal.SIGTERM, signal.SIGINT]
    i = 0
    deadline = time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            proc.send_signal(cycle[i % 3])
        except ProcessLookupError:
            break
        i += 1
        time.sleep(0.003)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err
    finished = events(tmp_path, "run.finished")
    assert finished and finished[0]["stopped_by"] == "SIGINT"
    assert marked_processes(marker) == []


def _holds_signals(pid: int) -> bool:
    """Whether the package's first lines have run in `pid`: they catch SIGHUP, which nothing
    else does before them (the interpreter catches SIGINT alone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(line.split()[1] for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(int(mask, 16) & (1 << (signal.SIGHUP - 1)))


def _wait_until_held(proc: subprocess.Popen[str]) -> None:
    """Until the package's first lines have run (polled every millisecond: the signal that
    follows is meant to land in the first moments of our code)."""
    deadline = time.monotonic() + 30
    while not _holds_signals(proc.pid):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.001)


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.005, 0.01, 0.02, 0.04, 0.08, 0.12, 0.2, 0.4])
def test_ctrl_c_at_any_moment_of_start_up_exits_130_cleanly(tmp_path: Path, marker: str, delay: float) -> None:
    """Regression: a SIGINT in the first milliseconds printed a KeyboardInterrupt traceback, or was
    swallowed by the import machinery and the run went on. From the package's first line on (seen
    from outside: SIGHUP is caught), every moment of the start-up ends in an orderly exit 130."""
    write_config(tmp_path, _config(marker, '[jobs.j]\ncommand = ["sleep", "30"]\n'))
    proc = start_cli(tmp_path, "run")
    try:
        _wait_until_held(proc)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    for finished in events(tmp_path, "run.finished") if (tmp_path / "logs" / "latest").exists() else []:
        assert finished["stopped_by"] == "SIGINT"
    assert marked_processes(marker) == []


def test_ctrl_c_in_the_interpreters_own_start_up_gets_its_default(tmp_path: Path, marker: str) -> None:
    """Before the package's first line (CPython's start-up: site, runpy) no code of ours can
    act; a SIGINT there gets CPython's own handling: the process ends by the signal (a shell
    shows 130) or with CPython's KeyboardInterrupt from its own frames, never from ours."""
    write_config(tmp_path, _config(marker, '[jobs.j]\ncommand = ["sleep", "30"]\n'))
    proc = start_cli(tmp_path, "run")
    try:
        early = not _holds_signals(proc.pid)
        proc.send_signal(signal.SIGINT)
        try:
            _out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # swallowed inside CPython's import machinery
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=30)
            assert early and proc.returncode == 130, (proc.returncode, err)
            return
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if proc.returncode == 130 or not err:
        assert "Traceback" not in err, err
        return
    assert early, (proc.returncode, err)
    frames = [line.strip() for line in err.splitlines() if line.strip().startswith("File ")]
    assert not any("aimedres_async" in f and "__init__.py" not in f for f in frames), err
    assert "KeyboardInterrupt" in err, err


# ---------------------------------------------------------------- bad input


HUGE = 99999999999999999999


def test_huge_max_workers_is_refused_by_validate_and_run(tmp_path: Path, marker: str) -> None:
    """Regression: passed `validate`, then `run` crashed with a traceback (orjson's 64-bit range)."""
    write_config(tmp_path, _config(marker, '[jobs.j]\ncommand = ["true"]\n', workers=HUGE))  # type: ignore[arg-type]
    for args in (("validate",), ("run",)):
        line = usage_error(cli(tmp_path, *args))
        assert "max_workers" in line
    write_config(tmp_path, _config(marker, '[jobs.j]\ncommand = ["true"]\n'))
    line = usage_error(cli(tmp_path, "run", "--max-workers", str(HUGE)))
    assert "--max-workers" in line


def test_reload_with_huge_max_workers_keeps_the_daemon(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    """Regression: a SIGHUP reload with max_workers = 99999999999999999999 tracebacked."""
    write_config(tmp_path, daemon_config(marker, '[jobs.j]\ncommand = ["true"]\n'))
    Spool(tmp_path / "spool").ensure()
    d = daemons.start(tmp_path)
    wait_for(lambda: (tmp_path / "logs" / "latest-daemon" / "events.jsonl").exists(), what="the daemon started")
    write_config(tmp_path, daemon_config(marker, '[jobs.j]\ncommand = ["true"]\n', workers=HUGE))
    d.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in d.stderr(), what="a reload warning")
    time.sleep(0.5)
    assert d.alive() and "Traceback" not in d.stderr()
    assert "max_workers" in d.stderr()


def _unwritable(tmp_path: Path) -> Path:
    """A logs folder this process cannot create anything in."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return folder
    # root writes through file modes; sysfs refuses a new folder even to root
    sysfs = Path("/sys/kernel")
    try:
        (sysfs / "aimedres-test").mkdir()
    except OSError:
        return sysfs
    (sysfs / "aimedres-test").rmdir()
    pytest.skip("no folder this user cannot write to (root, and sysfs accepts folders)")


def test_unwritable_logs_dir_is_one_line_exit_2(tmp_path: Path, marker: str) -> None:
    """Regression: a logs_dir that is read-only or not writable gave a traceback and exit 1."""
    write_config(tmp_path, _config(marker, '[jobs.j]\ncommand = ["true"]\n'))
    line = usage_error(cli(tmp_path, "run", "--logs-dir", str(_unwritable(tmp_path))))
    assert "cannot write logs" in line


def test_unwritable_logs_dir_is_one_line_exit_2_for_serve(tmp_path: Path, marker: str) -> None:
    logs = _unwritable(tmp_path)
    write_config(tmp_path, daemon_config(marker, '[jobs.j]\ncommand = ["true"]\n', extra=f'logs_dir = "{logs}"'))
    line = usage_error(cli(tmp_path, "serve", timeout=30))
    assert "cannot write logs" in line


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "folder"])
def test_config_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    """Regression: `--config /dev/zero` read without bound (GBs in seconds); a FIFO hung."""
    if kind == "dev-zero":
        path = Path("/dev/zero")
    elif kind == "fifo":
        path = tmp_path / "config.fifo"
        os.mkfifo(path)
    else:
        path = tmp_path
    line = usage_error(cli(tmp_path, "--config", str(path), "validate", timeout=10))
    assert "cannot read config" in line


def test_oversized_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    with open(path, "wb") as f:
        f.write(b"# " + b"x" * (17 << 20) + b"\n")
    line = usage_error(cli(tmp_path, "--config", str(path), "validate", timeout=10))
    assert "larger than" in line


# ---------------------------------------------------------------- terminal escapes

HOSTILE_OUTPUT = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\x00nul\x9bcsi\x1b[0m"


def test_terminal_escapes_in_job_output_are_made_visible(tmp_path: Path, marker: str) -> None:
    """Regression: ESC, OSC, NUL and C1 bytes a job printed reached the terminal raw through
    `--verbose` and `logs`; the JSON-lines log keeps them as printed."""
    script = tmp_path / "hostile.py"
    script.write_text(f"import sys\nsys.stdout.buffer.write({HOSTILE_OUTPUT.encode('utf-8')!r} + b'\\n')\n")
    write_config(tmp_path, _config(marker, f'[jobs.j]\ncommand = ["{PY}", "hostile.py"]\n'))
    for args in (("run", "--verbose"), ("logs", "j")):
        r = subprocess.run([PY, "-m", "aimedres_async", *args], cwd=tmp_path, capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")
        for raw in ("\x1b", "\x07", "\x00", "\x9b"):
            assert raw not in out, (args, out)
        assert "\\x1b]0;owned\\x07" in out and "\\x00nul" in out and "\\x9bcsi" in out, out
    lines = [x["line"] for x in read_jsonl(run_dir(tmp_path) / "jobs" / "j.jsonl") if "line" in x]
    assert lines == [HOSTILE_OUTPUT]


# ---------------------------------------------------------------- kill -9 of `run`

NAPPER = json.dumps([PY, "-c", "import os, time; print('up', flush=True); time.sleep(float(os.environ['NAP']))"])
FORKER = json.dumps(["sh", "-c", 'sleep "$NAP" & sleep "$NAP" & echo up; wait'])


def _start_two_jobs(tmp_path: Path, marker: str) -> tuple[subprocess.Popen[str], Path, dict[str, int]]:
    jobs = f"[jobs.napper]\ncommand = {NAPPER}\n[jobs.forker]\ncommand = {FORKER}\n"
    write_config(tmp_path, _config(marker, jobs))
    proc = start_cli(tmp_path, "run", env={"NAP": "60"})
    first = wait_for(
        lambda: run_dir(tmp_path) if len(events(tmp_path, "job.started")) == 2 else None, what="both jobs started"
    )
    wait_for(
        lambda: all(
            any(r["event"] == "job.output" for r in read_jsonl(first / "jobs" / f"{j}.jsonl"))
            for j in ("napper", "forker")
        ),
        what="both jobs printed",
    )
    wait_for(lambda: len(marked_processes(marker)) == 4, what="the jobs and the forker's two sleeps")
    return proc, first, {e["job"]: e["pid"] for e in events(tmp_path, "job.started")}


def _resume_marks_interrupted(tmp_path: Path, first: Path) -> None:
    r = cli(tmp_path, "run", "--resume", env={"NAP": "0"})
    assert r.returncode == 0, r.stderr
    assert f"run {first.name} was cut short" in r.stderr
    dead = json.loads((first / "summary.json").read_text())
    assert dead["interrupted"] is True and dead["stopped_by"] == "supervisor died"
    assert {j["id"]: j["status"] for j in dead["jobs"]} == {"napper": "interrupted", "forker": "interrupted"}
    # --resume re-ran the interrupted jobs (nothing had succeeded)
    resumed = json.loads((run_dir(tmp_path) / "summary.json").read_text())
    assert resumed["run"] != dead["run"]
    assert {j["id"]: j["status"] for j in resumed["jobs"]} == {"napper": "succeeded", "forker": "succeeded"}


def test_kill9_of_run_takes_its_jobs_along_and_the_next_run_marks_it_interrupted(tmp_path: Path, marker: str) -> None:
    """Regression: after `kill -9` of `run`, its jobs kept running under PID 1, summary.json said
    every job was "queued" forever, and neither the next run nor --resume noticed."""
    proc, first, pids = _start_two_jobs(tmp_path, marker)
    proc.kill()
    proc.communicate(timeout=10)
    # the death watch kills the jobs, and the forker's sleeps (its own session's children) too
    # (a process in the middle of exiting has no environment left, but is not gone yet)
    wait_for(
        lambda: not marked_processes(marker) and not any(alive(p) for p in pids.values()),
        timeout=10,
        what="every job process to die with run",
    )
    _resume_marks_interrupted(tmp_path, first)


def test_what_a_dead_run_left_behind_is_killed_by_the_next_run(tmp_path: Path, marker: str) -> None:
    """Where even the death watch was killed (`kill -9` of both), the next run in the same logs
    folder kills the dead run's processes, found by the run id in their environment."""
    proc, first, _pids = _start_two_jobs(tmp_path, marker)
    os.kill(death_watch_of(proc.pid), signal.SIGKILL)
    proc.kill()
    proc.communicate(timeout=10)
    time.sleep(0.5)
    assert len(marked_processes(marker)) == 4, "nothing should have killed the jobs yet"
    _resume_marks_interrupted(tmp_path, first)
    assert marked_processes(marker) == []


def test_a_live_runs_summary_is_not_marked_interrupted(tmp_path: Path, marker: str) -> None:
    write_config(tmp_path, _config(marker, f"[jobs.napper]\ncommand = {NAPPER}\n"))
    proc = start_cli(tmp_path, "run", env={"NAP": "60"})
    first = wait_for(lambda: run_dir(tmp_path) if events(tmp_path, "job.started") else None, what="the job started")
    other = tmp_path / "other"
    other.mkdir()
    write_config(other, _config(marker, '[jobs.quick]\ncommand = ["true"]\n'))
    r = cli(other, "run", "--logs-dir", str(tmp_path / "logs"))
    assert r.returncode == 0 and "cut short" not in r.stderr, r.stderr
    assert "interrupted" not in json.loads((first / "summary.json").read_text())
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143


# ---------------------------------------------------------------- logs folder removed mid-run


def test_logs_dir_removed_mid_run_is_recreated_with_one_warning(tmp_path: Path, marker: str) -> None:
    """Regression: a run folder deleted mid-run lost events and job logs without a word."""
    ticker = json.dumps([PY, "-c", "import time\nfor i in range(40):\n print('tick', i, flush=True); time.sleep(0.1)"])
    write_config(tmp_path, _config(marker, f"[jobs.ticker]\ncommand = {ticker}\n"))
    proc = start_cli(tmp_path, "run")
    folder = wait_for(lambda: run_dir(tmp_path) if events(tmp_path, "job.started") else None, what="the job")
    wait_for(lambda: (folder / "jobs" / "ticker.jsonl").exists(), what="the job's log")
    import shutil

    shutil.rmtree(folder)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err.count("was removed while running") == 1, err
    assert "Traceback" not in err
    # recreated: the rest of the run is on disk
    assert [e["event"] for e in read_jsonl(folder / "events.jsonl")][-2:] == ["job.finished", "run.finished"]
    lines = [r["line"] for r in read_jsonl(folder / "jobs" / "ticker.jsonl") if r["event"] == "job.output"]
    assert lines and lines[-1] == "tick 39"
    assert json.loads((folder / "summary.json").read_text())["jobs"][0]["status"] == "succeeded"


def test_a_signal_during_the_imports_is_held_not_raised_inside_one() -> None:
    """Regression: a Ctrl+C landing inside an import raised KeyboardInterrupt there and could leave a
    C extension half-initialised; the interpreter then crashed (SIGSEGV in orjson or libpython) as it
    exited. The entry point holds the signals from before the first heavy import."""
    code = (
        "import os, signal, sys\n"
        "from aimedres_async.system import startup_signals\n"
        "startup_signals.hold()\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "import orjson, asyncio, aimedres_async.cli.app\n"  # no KeyboardInterrupt in here
        "print(','.join(s.name for s in startup_signals.arrived))\n"
        "print(startup_signals.release().name, signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.split() == ["SIGINT", "SIGINT", "True"], r.stdout


CONSOLE_SCRIPT_PROBE = """
import signal, sys
from importlib.metadata import entry_points

seen = []


class Probe:  # notes the SIGINT handler at the moment the command line's module is imported
    def find_spec(self, name, path, target=None):
        if name == "aimedres_async.cli":
            seen.append(getattr(signal.getsignal(signal.SIGINT), "__name__", "?"))
        return None


sys.meta_path.insert(0, Probe())
(ep,) = [e for e in entry_points(group="console_scripts") if e.name == "aimedres-async"]
sys.argv = ["aimedres-async", "--help"]
try:
    ep.load()()
except SystemExit:
    pass
print("handler at the cli import:", seen[0], file=sys.stderr)
"""


def test_the_console_script_holds_the_signals_before_the_command_lines_imports() -> None:
    """Regression: the `aimedres-async` entry point named `cli.main_exit`, so loading it imported
    the whole command line (orjson, structlog, ...) before the signals were held: a Ctrl+C in
    that window could land inside a C extension's import, as `python -m` once did."""
    r = subprocess.run([PY, "-c", CONSOLE_SCRIPT_PROBE], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "handler at the cli import: _record" in r.stderr, r.stderr


SIGINT_DURING_OUR_IMPORT = """
import os, signal, sys


class Probe:  # a Ctrl+C just as the console script imports the package's __main__
    def find_spec(self, name, path, target=None):
        if name == "aimedres_async.__main__":
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, Probe())
sys.argv = [os.path.join(sys.prefix, "bin", "aimedres-async"), "run"]  # as pip's wrapper has it
from aimedres_async.__main__ import console_script

console_script()
"""


def test_a_ctrl_c_while_the_console_script_imports_the_package_ends_the_run_130(tmp_path: Path, marker: str) -> None:
    """Regression: the signals were held only once `console_script` ran, after the package and
    its `__main__` were imported: a Ctrl+C in between raised KeyboardInterrupt inside an import
    (a traceback), or was swallowed by the import machinery and the run went on. The package's
    first line holds them when it is run as the program."""
    write_config(tmp_path, _config(marker, '[jobs.j]\ncommand = ["sleep", "30"]\n'))
    r = subprocess.run([PY, "-c", SIGINT_DURING_OUR_IMPORT], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 130, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    assert not (tmp_path / "logs").exists()  # stopped before anything started
    assert marked_processes(marker) == []


def test_importing_the_package_as_a_library_changes_no_signal_handler() -> None:
    # compared with what the interpreter had before the import: a shell's background job starts
    # with SIGINT ignored, and Python then leaves it so
    code = (
        "import signal\n"
        "names = ('SIGINT', 'SIGTERM', 'SIGHUP')\n"
        "before = [signal.getsignal(getattr(signal, n)) for n in names]\n"
        "import aimedres_async\n"
        "print([signal.getsignal(getattr(signal, n)) for n in names] == before)"
    )
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["True"], r.stderr
