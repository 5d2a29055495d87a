"""No event-loop callback of the supervisor blocks the loop for more than 20 ms (issue #15).

A smaller relative of bench/chaos.py: a `run` of a few hundred short jobs, and a `serve` daemon
fed a few hundred tickets. Every callback and task step is timed as asyncio's debug mode does with
`slow_callback_duration = 0.02` (bench/_slow_callbacks.py says what is not counted and why), and one that held the
loop longer is logged as debug mode logs it, "Executing <callback> took N seconds", to a file that
must hold none. The same driver with an injected 50 ms blocking call shows that the check catches one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
from pathlib import Path

from conftest import PY, wait_for, write_config
from helpers_daemon import daemon_config

SLOW = re.compile(r"Executing .* took \d+\.\d+ seconds")

# Runs the real command line with every event-loop step timed; see its docstring for what is not
# counted and why.
DRIVER = Path(__file__).resolve().parents[2] / "bench" / "_slow_callbacks.py"

JOBS = 300


def run_config(marker: str) -> str:
    jobs = "".join(f'[jobs.j{i:03d}]\ncommand = ["true"]\n' for i in range(JOBS))
    return f"""
[supervisor]
parallel = true
max_workers = 8
grace_period = "1s"
[discovery]
enabled = false
[defaults]
retries = 0
env = {{ TEST_MARKER = "{marker}" }}
{jobs}"""


def slow_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if SLOW.search(line)] if log.exists() else []


def drive(tmp_path: Path, mode: str, *args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], Path]:
    log = tmp_path / f"asyncio-{mode}.log"
    env = {k: v for k, v in os.environ.items() if k != "AIMEDRES_CONFIG"}
    proc = subprocess.run(
        [PY, str(DRIVER), str(log), mode, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return proc, log


def test_a_run_of_many_short_jobs_never_blocks_the_loop(tmp_path: Path, marker: str) -> None:
    write_config(tmp_path, run_config(marker))
    proc, log = drive(tmp_path, "plain", "run", "--log-format", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert slow_lines(log) == [], "\n".join(slow_lines(log))


FLOOD = 200_000


def test_a_job_printing_a_flood_of_tiny_records_never_blocks_the_loop(tmp_path: Path, marker: str) -> None:
    """Regression: a chunk of tiny records (a progress bar redrawn with a bare \\r, two bytes a
    record) was framed in one callback: 64 KiB held the loop ~65 ms, 256 KiB ~250 ms. Chunks are
    now framed a slice at a time within a budget, the rest on the loop's next turn."""
    flood = json.dumps([PY, "-c", f"import sys; sys.stdout.buffer.write(b'x\\r' * {FLOOD})"])
    jobs = f"[jobs.flood]\ncommand = {flood}\n[jobs.noise]\ncommand = {json.dumps([PY, '-c', NOISE])}\n"
    write_config(tmp_path, run_config(marker).split("[jobs.j000]")[0] + jobs)
    proc, log = drive(tmp_path, "plain", "run", "--log-format", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert slow_lines(log) == [], "\n".join(slow_lines(log))
    (run,) = [d for d in (tmp_path / "logs").iterdir() if d.is_dir() and not d.is_symlink()]
    records = (run / "jobs" / "flood.jsonl").read_bytes().count(b'"event":"job.output"')
    assert records == FLOOD  # every "x\\r" is a record, none lost or doubled by the slicing


# bytes that are not UTF-8 and need escaping, cut by random line ends: the framer's slow path
NOISE = "import os, sys\nfor _ in range(32): sys.stdout.buffer.write(os.urandom(65536))"


def test_the_check_catches_a_50ms_blocking_call(tmp_path: Path, marker: str) -> None:
    write_config(tmp_path, run_config(marker).split("[jobs.j010]")[0])  # ten jobs are enough here
    proc, log = drive(tmp_path, "inject", "run", "--log-format", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = slow_lines(log)
    assert found, f"the injected 50 ms block was not reported: {log.read_text() if log.exists() else 'no log'}"
    assert all(float(re.findall(r"took (\d+\.\d+) seconds", line)[0]) >= 0.02 for line in found)


def test_a_daemon_taking_many_tickets_never_blocks_the_loop(tmp_path: Path, marker: str) -> None:
    spool = tmp_path / "spool"
    write_config(tmp_path, daemon_config(marker, '[jobs.quick]\ncommand = ["true"]\n', workers=8))
    log = tmp_path / "asyncio-daemon.log"
    env = {k: v for k, v in os.environ.items() if k != "AIMEDRES_CONFIG"}
    tickets = 200
    # output to files, not pipes: a busy daemon would block on a full pipe nobody reads
    with open(tmp_path / "daemon.out", "wb") as out, open(tmp_path / "daemon.err", "wb") as err:
        daemon = subprocess.Popen(
            [PY, str(DRIVER), str(log), "plain", "serve"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        try:
            wait_for(lambda: (spool / "incoming").is_dir(), timeout=30, what="the spool")
            submit = subprocess.run(
                [PY, "-c", SUBMIT, str(tickets)], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env
            )
            assert submit.returncode == 0, submit.stderr
            done = spool / "done"
            wait_for(
                lambda: done.is_dir() and len(list(done.glob("*.toml"))) >= tickets,
                timeout=240,
                what=f"{tickets} tickets done",
            )
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    assert daemon.returncode == 0, (tmp_path / "daemon.err").read_text()[-2000:]
    assert slow_lines(log) == [], "\n".join(slow_lines(log))


# Submits N tickets in one process through the command line's own `submit` (not N interpreters).
SUBMIT = textwrap.dedent(
    """
    import contextlib, io, sys
    from aimedres_async.cli.app import main

    for i in range(int(sys.argv[1])):
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["submit", "--job", "quick"])
        if code != 0:
            sys.exit(code)
    """
)
