"""Chaos test of the spool daemon (SPEC §8, §13): thousands of tickets, SIGKILLs, restarts, reloads.

Against a real daemon, `python -m aimedres_async --config CFG serve` (a subprocess in a temp dir):

1. Submits `--tickets` tickets (default 2,000) the way the protocol says (write `tmp/<x>`, fsync,
   `link` into `incoming/<id>.toml`, unlink), in random batches while the daemon works, keeping a
   backlog of at most a few hundred. The mix (fixed by `--seed`):

       ok          a tiny `sh` job that exits 0                                -> done
       okcmd       the same, as a whole-job ticket (`command = [...]`)         -> done
       flaky       fails until its counter file reaches 3, retries = 3         -> done
       fail        exits 3, retries = 1                                        -> failed (failed)
       timeout     sleeps 5 s with timeout = "300ms"                           -> failed (timed_out)
       huge        prints one 1.2 MB line (over max_line_bytes: partial records) -> done
       binary      prints 64 KiB of /dev/urandom                               -> done
       crflood     2,000 `\r` progress redraws and 200 KB of bare `\r`        -> done
       grandchild  leaves `sleep 2 &` holding the pipe and exits 0             -> done
       bad_toml, unknown_job, symlink (to a valid ticket), empty              -> rejected + .error

2. SIGKILLs the daemon `--kills` times (default 10) at random moments — when a random share of
   the tickets (2-80 %) is final, plus a random 0-0.4 s; about a quarter of the kills instead hit
   a restarted daemon 0.02-0.4 s after its start, i.e. often during its recovery of `active/` —
   and starts a new one each time (after 0-0.2 s). Between kills it sends SIGHUP reloads with a
   changed `max_workers` (4, 3, 2, ...), every third one with a broken config that the daemon
   must refuse while keeping the old one (the good file is restored once it has answered).
   The daemon's readiness and reloads are seen through the sd_notify protocol: `NOTIFY_SOCKET`
   points at a datagram socket of this script (`READY=1` with `MAINPID=`).

3. When every ticket is final, checks (each one must hold; exit 0 if all do, 1 if not):
   - every ticket is in exactly one final state (counting renamed copies like `<id>.1.toml`),
     the one its kind should reach, with the right `[result] status`; each rejected one has its
     `.error` naming the reason; nothing is left in `incoming/` or `active/`; nothing was lost
     and nothing turned up that was not submitted;
   - no job ran twice at the same time: every job appends `start <ticket> <ns> <run> <attempt>`
     and `end ...` to `runs.log` (O_APPEND, one write each) and holds an flock on
     `locks/<ticket>` for its whole life (its children inherit it); a run that finds the lock
     taken writes `overlap ...`. The checker counts those, and per ticket the intervals of the
     runs that ended must not overlap. Rejected tickets must never have run;
   - no job process is left: /proc/*/environ is scanned for the `CHAOS_MARKER=<uuid>` that every
     job carries (zombies do not count), once with the drained daemon still up and once after it
     has stopped;
   - the daemon's open file descriptors did not grow: /proc/<pid>/fd of the final daemon, drained
     and idle, vs the first daemon right after its start (before any ticket); allowed: +5;
   - SIGTERM stops the final daemon with exit 0, no daemon printed a Traceback, and none exited
     unless it was killed.

Figures printed: tickets/s (submitted tickets / time from the first submit until all are final),
kills, restarts, reloads, recovered tickets (put back from `active/` by a restarted daemon, as it
reported), final counts vs expected, runs and tickets run more than once, duplicate-overlap count,
leftover processes, fd counts, and leftovers in `tmp/` (staging files of moves a kill cut short:
harmless, reported only).

    python bench/chaos.py                         # 2,000 tickets, 10 kills
    python bench/chaos.py --tickets 200 --kills 3 --json

`--seed` fixes the ticket mix, the batches and the kill/reload plan (the timing of a real daemon
still varies); `--workers` sets max_workers (default 4); `--timeout` bounds the whole run;
`--slow-callbacks` runs each daemon through `bench/_slow_callbacks.py`: every event-loop step that
holds the loop over 20 ms (not counting time spent waiting for a CPU, nor a job's fork/exec) is
logged, and the check `no_loop_step_over_20ms` is added (SPEC §11, "Event loop").

`--keep` keeps the temp dir (spool, logs, runs.log, daemon-*.err; a run whose checks fail keeps it
too, to be looked at), `--tmpdir DIR` chooses where it is made. SIGTERM or Ctrl+C stops the daemon,
kills what is left of its jobs and exits 2. With `--json` the last stdout line is one JSON object
(bench/all.py collects it). Exit status: 0 every check holds, 1 a check failed, 2 the chaos could
not run (e.g. no daemon started).
Standard library only; Linux (/proc).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parent.parent
FINAL_STATES = ("done", "failed", "rejected")
ALL_STATES = ("incoming", "active", "done", "failed", "rejected")
FD_ALLOWANCE = 5
MAX_BACKLOG = 300  # submitted but not yet final

# kind -> (weight, expected final state, expected [result] status)
KINDS: dict[str, tuple[int, str, str | None]] = {
    "ok": (34, "done", "succeeded"),
    "okcmd": (6, "done", "succeeded"),
    "flaky": (12, "done", "succeeded"),
    "fail": (10, "failed", "failed"),
    "timeout": (5, "failed", "timed_out"),
    "huge": (3, "done", "succeeded"),
    "binary": (4, "done", "succeeded"),
    "crflood": (4, "done", "succeeded"),
    "grandchild": (2, "done", "succeeded"),
    "bad_toml": (5, "rejected", None),
    "unknown_job": (5, "rejected", None),
    "symlink": (5, "rejected", None),
    "empty": (5, "rejected", None),
}
# what the .error of a rejected ticket must say
REJECT_REASON = {
    "bad_toml": "TOML syntax error",
    "unknown_job": "unknown job",
    "symlink": "symbolic link",
    "empty": "empty",
}

# Every job: take the ticket's lock (children inherit fd 9, so it is held until the whole group is
# gone), record start, do its thing, record end (not reached when it is killed), exit with its status.
PRE = (
    'exec 9>>"locks/$AIMEDRES_JOB_ID"; '
    'flock -n 9 || echo "overlap $AIMEDRES_JOB_ID $(date +%s%N) $AIMEDRES_RUN_ID $AIMEDRES_ATTEMPT" >> runs.log; '
    'echo "start $AIMEDRES_JOB_ID $(date +%s%N) $AIMEDRES_RUN_ID $AIMEDRES_ATTEMPT" >> runs.log; '
)
POST = '; rc=$?; echo "end $AIMEDRES_JOB_ID $(date +%s%N) $AIMEDRES_RUN_ID $AIMEDRES_ATTEMPT" >> runs.log; exit $rc'
BODIES = {
    "ok": "true",
    "flaky": (
        'c=$(cat "counters/$AIMEDRES_JOB_ID" 2>/dev/null || echo 0); c=$((c + 1)); '
        'echo $c > "counters/$AIMEDRES_JOB_ID"; echo "run $c"; [ $c -ge 3 ]'
    ),
    "fail": "echo failing >&2; (exit 3)",
    "timeout": "sleep 5",
    "huge": "head -c 1200000 /dev/zero | tr '\\0' x; echo",
    "binary": "head -c 65536 /dev/urandom",
    "crflood": (
        "i=0; while [ $i -lt 2000 ]; do printf 'step %d\\r' $i; i=$((i + 1)); done; "
        "head -c 200000 /dev/zero | tr '\\0' '\\r'; echo done"
    ),
    "grandchild": "sleep 2 & echo started",
}
JOB_EXTRA = {
    "flaky": "retries = 3\n",
    "fail": "retries = 1\n",
    "timeout": 'timeout = "300ms"\nretries = 0\n',
}


def job_command(body: str) -> list[str]:
    return ["sh", "-c", PRE + body + POST]


def config_text(marker: str, workers: int, broken: bool = False) -> str:
    lines = [
        "# written by bench/chaos.py",
        "[supervisor]",
        "parallel = true",
        f"max_workers = {workers}",
        'spool_dir = "spool"',
        'logs_dir = "logs"',
        'output_dir = "results"',
        'grace_period = "300ms"',
        "[discovery]",
        "enabled = false",
        "[defaults]",
        "retries = 0",
        'backoff = { initial = "50ms", factor = 2.0, max = "1s", jitter = 0.1 }',
        f'env = {{ CHAOS_MARKER = "{marker}" }}',
    ]
    for kind, body in BODIES.items():
        lines.append(f"[jobs.{kind}]")
        lines.append(f"command = {json.dumps(job_command(body))}")
        lines.append(JOB_EXTRA.get(kind, ""))
    if broken:
        lines.append("[supervisor.typo]\nmax_wrokers = 'x'")  # unknown key: a reload must refuse it
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------- tickets


@dataclass
class Ticket:
    id: str
    kind: str

    @property
    def expected_state(self) -> str:
        return KINDS[self.kind][1]

    @property
    def expected_status(self) -> str | None:
        return KINDS[self.kind][2]


def plan_tickets(n: int, rng: random.Random) -> list[Ticket]:
    kinds = list(KINDS)
    weights = [KINDS[k][0] for k in kinds]
    return [Ticket(f"c{i:05d}-{k.replace('_', '-')}", k) for i, k in enumerate(rng.choices(kinds, weights, k=n))]


def ticket_text(t: Ticket, marker: str) -> bytes:
    if t.kind in BODIES:
        return f'job = "{t.kind}"\n'.encode()
    if t.kind == "okcmd":
        return (f'command = {json.dumps(job_command("true"))}\nenv = {{ CHAOS_MARKER = "{marker}" }}\n').encode()
    if t.kind == "bad_toml":
        return b'job = "ok\nepochs = [1,\n'
    if t.kind == "unknown_job":
        return b'job = "no-such-job"\n'
    if t.kind == "empty":
        return b""
    raise AssertionError(t.kind)


def submit(spool: Path, t: Ticket, marker: str, targets: Path) -> None:
    """The protocol: stage in tmp/, fsync, link into incoming/ (never over a ticket), unlink."""
    dest = spool / "incoming" / f"{t.id}.toml"
    if t.kind == "symlink":  # a symlink to a perfectly valid ticket: must still be rejected
        target = targets / f"{t.id}.toml"
        target.write_text('job = "ok"\n')
        tmp = spool / "tmp" / f".chaos-{t.id}"
        os.symlink(target, tmp)
        os.rename(tmp, dest)
        return
    tmp = spool / "tmp" / f".chaos-{t.id}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, ticket_text(t, marker))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, dest)
    finally:
        os.unlink(tmp)


# ---------------------------------------------------------------- the daemon and sd_notify


class NotifyListener:
    """Stands in for systemd: a datagram socket; counts READY=1 per MAINPID, RELOADING=1, STOPPING=1."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.cond = threading.Condition()
        self.ready: Counter[int] = Counter()
        self.reloading = 0
        self.messages = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(x.split("=", 1) for x in data.decode(errors="replace").split("\n") if "=" in x)
            with self.cond:
                self.messages += 1
                if fields.get("READY") == "1" and fields.get("MAINPID", "").isdigit():
                    self.ready[int(fields["MAINPID"])] += 1
                if fields.get("RELOADING") == "1":
                    self.reloading += 1
                self.cond.notify_all()

    def wait_ready(self, pid: int, more_than: int, timeout: float, alive: Any) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.ready[pid] <= more_than:
                left = deadline - time.monotonic()
                if left <= 0 or not alive():
                    return False
                self.cond.wait(min(left, 0.1))
        return True

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=2)
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


SLOW_STEP = re.compile(r"Executing .* took \d+\.\d+ seconds")


class Daemon:
    def __init__(self, work: Path, config: Path, n: int, notify_path: str, timed: bool = False) -> None:
        self.n = n
        self.err_path = work / f"daemon-{n:02d}.err"
        self._out: IO[bytes] = open(work / f"daemon-{n:02d}.out", "wb")  # noqa: SIM115 - closed in reap()
        self._err: IO[bytes] = open(self.err_path, "wb")  # noqa: SIM115
        drop = ("AIMEDRES_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CHAOS_MARKER")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env["NOTIFY_SOCKET"] = notify_path
        # --slow-callbacks: every event-loop step over 20 ms is logged to asyncio-NN.log
        timing = [str(Path(__file__).with_name("_slow_callbacks.py")), str(work / f"asyncio-{n:02d}.log"), "plain"]
        self.proc = subprocess.Popen(
            [sys.executable, *(timing if timed else ["-m", "aimedres_async"]), "--config", str(config), "serve"],
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            env=env,
        )
        self.pid = self.proc.pid
        self.started = time.monotonic()
        self.killed = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.reap(10)

    def reap(self, timeout: float) -> int | None:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._out.close()
        self._err.close()
        return code

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, wait; SIGKILL if it has not exited in time (then None)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.reap(timeout)
            if code is not None:
                return code
            self.killed = True
            self.proc.kill()
            self.reap(10)
            return None
        return self.reap(1)

    def stderr(self) -> str:
        try:
            return self.err_path.read_text(errors="replace")
        except OSError:
            return ""


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def marked_processes(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment has CHAOS_MARKER=<marker>."""
    needle = f"CHAOS_MARKER={marker}".encode()
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
            if needle not in env.split(b"\0"):
                continue
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X"):
            found.append(int(name))
    return found


# ---------------------------------------------------------------- the spool, read back


_VARIANT = re.compile(r"^(.*)\.(\d+)$")


def spool_files(spool: Path) -> dict[str, list[tuple[str, str]]]:
    """ticket id -> [(state, file name)] for every ticket file (`<id>.toml`, `<id>.N.toml`)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for state in ALL_STATES:
        try:
            entries = os.listdir(spool / state)
        except FileNotFoundError:
            continue
        for name in entries:
            if name.startswith(".") or not name.endswith(".toml"):
                continue
            stem = name[: -len(".toml")]
            m = _VARIANT.match(stem)
            tid = m.group(1) if m else stem
            out.setdefault(tid, []).append((state, name))
    return out


def final_count(spool: Path) -> int:
    """How many distinct tickets are in a final state (a copy like `<id>.1.toml` is not one more)."""
    ids = set()
    for state in FINAL_STATES:
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(spool / state):
                if name.endswith(".toml") and not name.startswith("."):
                    stem = name[: -len(".toml")]
                    m = _VARIANT.match(stem)
                    ids.add(m.group(1) if m else stem)
    return len(ids)


def check_runs(runs_log: Path, tickets: dict[str, Ticket]) -> dict[str, Any]:
    """Parse runs.log: overlaps (flock and intervals), runs per ticket, malformed lines."""
    lines = runs_log.read_bytes().splitlines() if runs_log.exists() else []
    malformed = 0
    flock_overlaps: list[str] = []
    runs: dict[str, dict[tuple[str, str], dict[str, int]]] = {}
    for raw in lines:
        parts = raw.decode(errors="replace").split()
        if len(parts) != 5 or parts[0] not in ("start", "end", "overlap") or not parts[2].isdigit():
            malformed += 1
            continue
        what, tid, ns, run, attempt = parts
        if what == "overlap":
            flock_overlaps.append(tid)
            continue
        r = runs.setdefault(tid, {}).setdefault((run, attempt), {})
        if what in r:
            malformed += 1  # the same run started (or ended) twice
        r[what] = int(ns)
    interval_overlaps: list[str] = []
    end_without_start = 0
    for tid, per in runs.items():
        spans = []
        for r in per.values():
            if "start" not in r:
                end_without_start += 1
                continue
            spans.append((r["start"], r.get("end")))
        spans.sort()
        for (_s1, e1), (s2, _e2) in itertools.pairwise(spans):
            if e1 is not None and s2 < e1:
                interval_overlaps.append(tid)
    ran_rejected = sorted(t for t in runs if t in tickets and tickets[t].expected_state == "rejected")
    unknown = sorted(t for t in runs if t not in tickets)
    total_runs = sum(len(per) for per in runs.values())
    return {
        "lines": len(lines),
        "malformed": malformed + end_without_start,
        "runs": total_runs,
        "tickets_run": len(runs),
        "tickets_run_more_than_once": sum(1 for per in runs.values() if len(per) > 1),
        "flock_overlaps": sorted(set(flock_overlaps)),
        "interval_overlaps": sorted(set(interval_overlaps)),
        "ran_but_rejected": ran_rejected,
        "ran_unknown": unknown,
        "per_ticket": {t: len(per) for t, per in runs.items()},
    }


def check_spool(spool: Path, tickets: dict[str, Ticket]) -> dict[str, Any]:
    files = spool_files(spool)
    counts: Counter[str] = Counter()
    misfiled, lost, duplicated, bad_result, bad_error = [], [], [], [], []
    for tid, t in tickets.items():
        where = files.get(tid, [])
        if not where:
            lost.append(tid)
            continue
        if len(where) > 1:
            duplicated.append(f"{tid}: {sorted(where)}")
        state, name = where[0]
        counts[state] += 1
        if state != t.expected_state or name != f"{tid}.toml":
            misfiled.append(f"{tid} ({t.kind}): {state}/{name}, expected {t.expected_state}/")
            continue
        path = spool / state / name
        if state == "rejected":
            err = spool / "rejected" / f"{tid}.error"
            try:
                text = err.read_text(errors="replace")
            except OSError:
                bad_error.append(f"{tid} ({t.kind}): no .error")
                continue
            if REJECT_REASON[t.kind] not in text:
                bad_error.append(f"{tid} ({t.kind}): .error says {text.strip()!r}")
            continue
        try:
            result = tomllib.loads(path.read_text()).get("result", {})
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            bad_result.append(f"{tid}: unreadable: {e}")
            continue
        if result.get("status") != t.expected_status:
            bad_result.append(f"{tid} ({t.kind}): status {result.get('status')!r}, expected {t.expected_status!r}")
    strays = sorted(tid for tid in files if tid not in tickets)
    leftovers = {s: sorted(n for n in os.listdir(spool / s) if n != ".lock") for s in ("incoming", "active")}
    tmp_left = sorted(os.listdir(spool / "tmp"))
    return {
        "counts": {s: counts.get(s, 0) for s in ALL_STATES},
        "lost": lost,
        "duplicated": duplicated,
        "misfiled": misfiled,
        "bad_result": bad_result,
        "bad_error": bad_error,
        "strays": strays,
        "left_in": leftovers,
        "tmp_leftovers": tmp_left,
    }


# ---------------------------------------------------------------- the run


@dataclass
class Chaos:
    args: argparse.Namespace
    work: Path
    rng: random.Random
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    log: list[str] = field(default_factory=list)
    daemons: list[Daemon] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    kills: int = 0
    early_kills: int = 0
    restarts: int = 0
    reloads: int = 0
    broken_reloads: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    workers: int = 4

    def say(self, text: str) -> None:
        line = f"[{time.monotonic() - self.t0:7.1f}s] {text}"
        self.log.append(line)
        if not self.args.quiet:
            print(line, flush=True)

    @property
    def daemon(self) -> Daemon:
        return self.daemons[-1]

    def start_daemon(self, wait_ready: bool) -> Daemon:
        d = Daemon(self.work, self.config, len(self.daemons), self.notify.path, timed=self.args.slow_callbacks)
        self.daemons.append(d)
        if wait_ready and not self.notify.wait_ready(d.pid, 0, 60, d.alive):
            raise RuntimeError(
                f"daemon {d.pid} did not send READY=1 within 60 s (exit {d.proc.poll()}): {d.stderr()[-2000:]}"
            )
        return d

    def ensure_ready(self) -> None:
        d = self.daemon
        if not self.notify.wait_ready(d.pid, 0, 60, d.alive):
            raise RuntimeError(
                f"daemon {d.pid} did not send READY=1 within 60 s (exit {d.proc.poll()}): {d.stderr()[-2000:]}"
            )

    def check_daemon_alive(self) -> None:
        d = self.daemon
        if not d.alive():
            code = d.reap(1)
            msg = f"daemon #{d.n} (pid {d.pid}) exited by itself with {code}"
            self.unexpected_exits.append(msg)
            self.say(msg + "; starting another")
            self.start_daemon(wait_ready=True)

    def kill_and_restart(self, early_next: bool) -> None:
        d = self.daemon
        running = len([n for n in os.listdir(self.spool / "active") if n.endswith(".toml")])
        d.kill9()
        self.kills += 1
        time.sleep(self.rng.uniform(0.0, 0.2))
        nd = self.start_daemon(wait_ready=not early_next)
        self.restarts += 1
        final = final_count(self.spool)
        self.say(
            f"kill {self.kills}/{self.args.kills}: SIGKILL daemon #{d.n} (pid {d.pid}, {running} tickets in "
            f"active/, {final}/{self.args.tickets} final) -> daemon #{nd.n} pid {nd.pid}"
        )

    def reload(self) -> None:
        d = self.daemon
        self.ensure_ready()
        broken = self.reloads % 3 == 1
        before = self.notify.ready[d.pid]
        if broken:
            write_atomic(self.config, config_text(self.marker, self.workers, broken=True))
        else:
            self.workers = [4, 3, 2, 4, 1, 3][self.reloads % 6] if self.args.workers == 4 else self.args.workers
            write_atomic(self.config, config_text(self.marker, self.workers))
        d.proc.send_signal(signal.SIGHUP)
        self.reloads += 1
        ok = self.notify.wait_ready(d.pid, before, 20, d.alive)
        if broken:
            self.broken_reloads += 1
            write_atomic(self.config, config_text(self.marker, self.workers))  # what a restart reads
        if not ok and d.alive():
            self.problems.append(f"no READY=1 within 20 s of SIGHUP #{self.reloads} (daemon #{d.n})")
        self.say(
            f"SIGHUP #{self.reloads} to daemon #{d.n}: "
            + ("broken config (must be refused)" if broken else f"max_workers = {self.workers}")
        )

    def run(self) -> dict[str, Any]:
        a = self.args
        self.t0 = time.monotonic()
        self.spool = self.work / "spool"
        for sub in ("locks", "counters", "targets"):
            (self.work / sub).mkdir()
        self.config = self.work / "aimedres.toml"
        self.workers = a.workers
        write_atomic(self.config, config_text(self.marker, self.workers))
        notify_path = str(self.work / "notify.sock")
        if len(notify_path) > 100:  # sockaddr_un holds 108 bytes
            self.short_dir = tempfile.mkdtemp(prefix="chaos-")
            notify_path = os.path.join(self.short_dir, "notify.sock")
        self.notify = NotifyListener(notify_path)

        tickets = plan_tickets(a.tickets, self.rng)
        by_id = {t.id: t for t in tickets}
        # the kill plan: thresholds (share of tickets final), some kills right after a restart instead
        early = [i > 0 and self.rng.random() < 0.25 for i in range(a.kills)]
        thresholds = sorted(self.rng.uniform(0.02, 0.8) for _ in range(a.kills))
        kill_delay = [self.rng.uniform(0.0, 0.4) for _ in range(a.kills)]
        reload_gap = lambda: self.rng.uniform(0.5, 2.5)  # noqa: E731

        first = self.start_daemon(wait_ready=True)
        (self.spool / "tmp").mkdir(parents=True, exist_ok=True)
        time.sleep(1.0)  # the watcher thread, the first status line: then it is "fresh"
        fd_fresh = fd_count(first.pid)
        self.say(
            f"daemon #0 pid {first.pid} ready; {fd_fresh} open fds; submitting {a.tickets} tickets, "
            f"{a.kills} kills planned"
        )

        submitted = 0
        t_submit0 = time.monotonic()
        deadline = t_submit0 + a.timeout
        next_reload = time.monotonic() + reload_gap()
        k = 0
        pending_kill_at: float | None = None
        done_n = 0
        last_count = 0.0
        t_all_final: float | None = None
        while True:
            now = time.monotonic()
            if now > deadline:
                self.problems.append(f"timed out after {a.timeout:g}s with {done_n}/{a.tickets} tickets final")
                break
            if now - last_count > 0.05:
                done_n = final_count(self.spool)
                last_count = now
                if done_n >= a.tickets and t_all_final is None:
                    t_all_final = now
            if done_n >= a.tickets and k >= a.kills and self.reloads >= 2:
                break
            # submit
            if submitted < a.tickets and submitted - done_n < MAX_BACKLOG:
                batch = min(a.tickets - submitted, self.rng.randint(1, 40))
                for t in tickets[submitted : submitted + batch]:
                    submit(self.spool, t, self.marker, self.work / "targets")
                submitted += batch
            # kill
            if k < a.kills:
                if pending_kill_at is None:
                    if early[k]:
                        pending_kill_at = self.daemon.started + self.rng.uniform(0.02, 0.4)
                    elif done_n >= thresholds[k] * a.tickets:
                        pending_kill_at = now + kill_delay[k]
                if pending_kill_at is not None and now >= pending_kill_at:
                    if early[k]:
                        self.early_kills += 1
                    self.kill_and_restart(early_next=k + 1 < a.kills and early[k + 1])
                    k += 1
                    pending_kill_at = None
                    continue
            self.check_daemon_alive()
            # reload (only a daemon that said READY has its SIGHUP handler)
            if now >= next_reload and (k >= a.kills or not early[k]):
                self.reload()
                next_reload = time.monotonic() + reload_gap()
            time.sleep(0.01)
        wall = (t_all_final or time.monotonic()) - t_submit0
        elapsed = time.monotonic() - self.t0

        # drained: idle, then count fds and look for processes, then stop
        d = self.daemon
        self.ensure_ready()
        idle_deadline = time.monotonic() + 30
        while time.monotonic() < idle_deadline and any(os.listdir(self.spool / s) for s in ("incoming", "active")):
            time.sleep(0.05)
        time.sleep(1.0)
        fd_final = fd_count(d.pid)
        left_running = marked_processes(self.marker)
        code = d.stop(30)
        left_after = marked_processes(self.marker)
        if code != 0:
            self.problems.append(f"the final daemon #{d.n} exited {code} on SIGTERM (expected 0)")
        for pid in set(left_running + left_after):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

        spool = check_spool(self.spool, by_id)
        runs = check_runs(self.work / "runs.log", by_id)
        err = "".join(x.stderr() for x in self.daemons)
        recovered = len(re.findall(r"ticket \S+ was left in active/ by a dead daemon", err))
        refused = err.count("reload failed, keeping the old config")
        tracebacks = err.count("Traceback")
        internal = err.count("internal error in")
        expected = Counter(t.expected_state for t in tickets)
        overlaps = len(runs["flock_overlaps"]) + len(runs["interval_overlaps"])
        leftover = len(set(left_running) | set(left_after))
        fd_growth = None if fd_fresh is None or fd_final is None else fd_final - fd_fresh

        slow = [
            line
            for log in sorted(self.work.glob("asyncio-*.log"))
            for line in log.read_text(errors="replace").splitlines()
            if SLOW_STEP.search(line)
        ]
        checks = {
            "every_ticket_final_once": not spool["lost"]
            and not spool["duplicated"]
            and not spool["strays"]
            and not any(spool["left_in"].values()),
            "final_state_as_expected": not spool["misfiled"] and not spool["bad_result"] and not spool["bad_error"],
            "no_overlapping_runs": overlaps == 0 and runs["malformed"] == 0,
            "rejected_never_ran": not runs["ran_but_rejected"] and not runs["ran_unknown"],
            "no_leftover_processes": leftover == 0,
            "fds_did_not_grow": fd_growth is not None and fd_growth <= FD_ALLOWANCE,
            "kills_and_restarts_done": self.kills >= a.kills and self.restarts >= a.kills,
            "broken_reloads_refused": refused >= self.broken_reloads,
            "daemons_clean": tracebacks == 0 and internal == 0 and not self.unexpected_exits and code == 0,
            "no_other_problems": not self.problems,
        }
        if a.slow_callbacks:
            checks["no_loop_step_over_20ms"] = not slow
        return {
            "bench": "chaos",
            "ok": all(checks.values()),
            "checks": checks,
            "seed": a.seed,
            "tickets": a.tickets,
            "workers": a.workers,
            "wall_s": round(wall, 2),
            "elapsed_s": round(elapsed, 2),
            "tickets_per_s": round(a.tickets / wall, 1) if wall > 0 else None,
            "kills": self.kills,
            "early_kills": self.early_kills,
            "restarts": self.restarts,
            "reloads": self.reloads,
            "broken_reloads": self.broken_reloads,
            "broken_reloads_refused": refused,
            "slow_loop_steps": slow[:20] if a.slow_callbacks else None,
            "slow_loop_step_count": len(slow) if a.slow_callbacks else None,
            "recovered_tickets": recovered,
            "final_counts": {s: spool["counts"][s] for s in FINAL_STATES},
            "expected_counts": {s: expected.get(s, 0) for s in FINAL_STATES},
            "kinds": dict(Counter(t.kind for t in tickets)),
            "runs": runs["runs"],
            "tickets_run_more_than_once": runs["tickets_run_more_than_once"],
            "runs_log_lines": runs["lines"],
            "duplicate_overlaps": overlaps,
            "flock_overlaps": runs["flock_overlaps"][:20],
            "interval_overlaps": runs["interval_overlaps"][:20],
            "malformed_run_lines": runs["malformed"],
            "ran_but_rejected": runs["ran_but_rejected"][:20],
            "leftover_processes": leftover,
            "leftover_while_up": len(left_running),
            "fds_fresh": fd_fresh,
            "fds_final": fd_final,
            "fd_growth": fd_growth,
            "fd_allowance": FD_ALLOWANCE,
            "lost": spool["lost"][:20],
            "duplicated": spool["duplicated"][:20],
            "misfiled": spool["misfiled"][:20],
            "bad_result": spool["bad_result"][:20],
            "bad_error": spool["bad_error"][:20],
            "strays": spool["strays"][:20],
            "left_in": spool["left_in"],
            "tmp_leftovers": len(spool["tmp_leftovers"]),
            "tracebacks": tracebacks,
            "internal_errors": internal,
            "unexpected_exits": self.unexpected_exits,
            "final_daemon_exit": code,
            "notify_messages": self.notify.messages,
            "problems": self.problems,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        }

    def cleanup(self) -> None:
        for d in self.daemons:
            if d.alive():
                d.stop(30)
            else:
                d.reap(1)
        for pid in marked_processes(self.marker):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if hasattr(self, "notify"):
            self.notify.close()
        if getattr(self, "short_dir", None):
            shutil.rmtree(self.short_dir, ignore_errors=True)


def report(r: dict[str, Any]) -> str:
    fc, ec = r["final_counts"], r["expected_counts"]
    rows = [
        (
            "tickets",
            f"{r['tickets']:,} (seed {r['seed']}, max_workers {r['workers']}, {r['cpus']} CPUs, Python {r['python']})",
        ),
        (
            "first submit -> all final",
            f"{r['wall_s']:.1f} s = {r['tickets_per_s']} tickets/s (whole chaos run {r['elapsed_s']:.0f} s)",
        ),
        ("kills (SIGKILL)", f"{r['kills']} ({r['early_kills']} within 0.4 s of a restart)"),
        ("restarts", f"{r['restarts']}"),
        (
            "SIGHUP reloads",
            f"{r['reloads']} ({r['broken_reloads']} with a broken config; refused: {r['broken_reloads_refused']})",
        ),
        ("recovered tickets", f"{r['recovered_tickets']} (put back from active/ by a restarted daemon)"),
        (
            "final: done / failed / rejected",
            f"{fc['done']} / {fc['failed']} / {fc['rejected']} "
            f"(expected {ec['done']} / {ec['failed']} / {ec['rejected']})",
        ),
        (
            "lost / duplicated / misfiled",
            f"{len(r['lost'])} / {len(r['duplicated'])} / "
            f"{len(r['misfiled']) + len(r['bad_result']) + len(r['bad_error'])}",
        ),
        (
            "job runs",
            f"{r['runs']:,} ({r['tickets_run_more_than_once']} tickets ran more than once: "
            "retries and re-runs after a kill)",
        ),
        ("duplicate-overlap count", f"{r['duplicate_overlaps']} (must be 0)"),
        ("leftover processes", f"{r['leftover_processes']} (must be 0)"),
        (
            "daemon open fds",
            f"fresh {r['fds_fresh']}, final {r['fds_final']} after the drain "
            f"(growth {r['fd_growth']}, allowed {r['fd_allowance']})",
        ),
        ("Tracebacks / internal errors", f"{r['tracebacks']} / {r['internal_errors']}"),
        (
            "event-loop steps over 20 ms",
            "not timed (--slow-callbacks)" if r["slow_loop_step_count"] is None else f"{r['slow_loop_step_count']}",
        ),
        ("tmp/ leftovers (informational)", f"{r['tmp_leftovers']}"),
    ]
    width = max(len(k) for k, _ in rows)
    out = ["chaos: " + ("PASS" if r["ok"] else "FAIL")]
    out += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    failed = [name for name, ok in r["checks"].items() if not ok]
    out.append("  checks: " + ("all hold" if not failed else "FAILED: " + ", ".join(failed)))
    for key in (
        "lost",
        "duplicated",
        "misfiled",
        "bad_result",
        "bad_error",
        "strays",
        "flock_overlaps",
        "interval_overlaps",
        "ran_but_rejected",
        "unexpected_exits",
        "problems",
        "slow_loop_steps",
    ):
        if r.get(key):
            out.append(f"  {key}: {r[key]}")
    if any(r["left_in"].values()):
        out.append(f"  left in incoming/active: {r['left_in']}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="See the module docstring (bench/chaos.py) for what is checked."
    )
    ap.add_argument("--tickets", type=int, default=2000, metavar="N", help="tickets to submit (default 2000)")
    ap.add_argument("--kills", type=int, default=10, metavar="N", help="SIGKILLs of the daemon (default 10)")
    ap.add_argument("--seed", type=int, default=1, help="the ticket mix and the kill/reload plan (default 1)")
    ap.add_argument("--workers", type=int, default=4, metavar="N", help="max_workers (default 4)")
    ap.add_argument("--timeout", type=float, default=900, metavar="S", help="give up after S seconds (default 900)")
    ap.add_argument(
        "--slow-callbacks",
        action="store_true",
        help="time every event-loop step of the daemons (bench/_slow_callbacks.py); a check fails on one over 20 ms",
    )
    ap.add_argument("--json", action="store_true", help="last stdout line: the results as one JSON object")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--tmpdir", metavar="DIR", help="where to make the temp dir")
    a = ap.parse_args(argv)
    if a.tickets < 1 or a.kills < 0 or a.workers < 1:
        ap.error("--tickets and --workers must be >= 1, --kills >= 0")
    if not sys.platform.startswith("linux"):
        print("chaos: needs Linux (/proc)", file=sys.stderr)
        return 2

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    work = Path(tempfile.mkdtemp(prefix="aimedres-chaos-", dir=a.tmpdir))
    chaos = Chaos(a, work, random.Random(a.seed))
    try:
        try:
            result = chaos.run()
        finally:
            chaos.cleanup()
    except (RuntimeError, OSError, KeyboardInterrupt) as e:
        print(f"chaos: could not run: {e!r}", file=sys.stderr)
        if a.keep or not isinstance(e, KeyboardInterrupt):
            print(f"chaos: files kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
        if a.json:
            print(json.dumps({"bench": "chaos", "ok": False, "error": str(e), "verdict": "ERROR"}))
        return 2
    result["verdict"] = "PASS" if result["ok"] else "FAIL"
    result["figures"] = [
        {
            "figure": f"chaos: {result['tickets']:,} tickets, {result['kills']} kills",
            "aimedres": f"{result['tickets_per_s']} tickets/s",
            "peer": "-",
            "ratio": None,
            "target": "every check holds",
            "verdict": result["verdict"],
            "value": result["tickets_per_s"],
            "peer_value": None,
            "unit": "tickets/s",
        }
    ]
    print(report(result), flush=True)
    if a.keep or not result["ok"]:
        result["kept"] = str(work)
        print(f"chaos: files kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        print(json.dumps(result, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
