"""Spool-daemon benchmark (SPEC §8, §11 "Spool: median time from submit to job.started <= 50 ms").

Everything runs against a real daemon, `python -m aimedres_async --config CFG serve`, started as a
subprocess in a temp dir with this config (discovery off, one job that does nothing):

    [supervisor]  logs_dir = "logs", spool_dir = "spool", max_workers = 4
    [discovery]   enabled = false
    [jobs.t]      command = ["true"]

The daemon's run log `logs/latest-daemon/events.jsonl` (SPEC §7) is tailed; a ticket's `job.queued` and
`job.started` records carry the ticket id in their `job` field and their time in `ts` (RFC 3339 UTC,
microseconds, from the daemon's `time.time()`, the same wall clock this script reads).

1. Latency: `--tickets` tickets (default 100) submitted one at a time, each as soon as the previous
   one's `job.started` record has appeared; latency = `job.started` ts minus the wall time taken just
   before the ticket was submitted. Two paths:
   a. in-process: `Spool(spool_dir).submit('job = "t"', new_ticket_id("t"))`, the clock read right
      before the call (the call stages the ticket in tmp/, fsyncs it, links it into incoming/ and
      fsyncs incoming/; its own duration is reported as "submit call"). This is the path judged
      against the §11 target: PASS if the median <= 50 ms, else MISS.
   b. CLI: `python -m aimedres_async --config CFG submit --job t` as a subprocess, the clock read
      before the process is started. This includes the interpreter's start-up and imports, which are
      not the daemon's latency: the CLI process's own wall time and a bare `python -c pass` are
      reported separately, and this path is not judged against the target.
   Each latency is split at the `job.queued` record (written when the daemon has noticed, claimed
   and parsed the ticket): submit -> queued is detection + claim, queued -> started is the spawn.
   A few warm-up tickets (`--warmup`, default 3) go first and are not counted (the first one also
   proves the daemon is watching incoming/). Submitted at once, a ticket often lands while the
   daemon is still filing the previous (`true` exits within a millisecond), whose slot-free wake-up
   then finds it before inotify does; `--gap 0.2` waits first, so that every ticket reaches an idle
   daemon and is noticed through inotify alone (a few ms slower).
2. Throughput: `--drain` tickets (default 1,000) submitted in-process as fast as possible, then the
   time until all of them are in spool/done/ is measured (from the first submit; the rate after the
   last submit is shown too), with the daemon's own CPU use meanwhile. Every one of them must end
   in done/; otherwise the result is INVALID. The daemon's CPU over 2 idle seconds is shown as well.

The daemon gets SIGTERM at the end (SIGKILL if it has not exited 30 s later) and must exit 0. Results
are measurements, not tests: the exit status is 0 whatever the verdict (2 if the bench cannot run).

Run from the repository root with the project's interpreter, e.g.

    python bench/spool.py                      # 100 + 100 tickets, drain 1,000
    python bench/spool.py --tickets 30 --drain 200
    python bench/spool.py --json               # last stdout line: the results as JSON

`--keep` keeps the temp dir (spool, logs, daemon.out); `--tmpdir DIR` chooses where it is made.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    REPO_ROOT,
    check_supervisor_importable,
    format_table,
    git_commit,
    machine_info,
    percentile,
    supervisor_cmd,
    supervisor_env,
    timed_run,
    write_config,
)

TARGET_MS = 50.0  # SPEC §11: median submit -> job.started <= 50 ms
JOB = "t"
TICKET_TEXT = f'job = "{JOB}"\n'
WORKERS = 4
POLL_S = 0.0005  # how often the bench looks at events.jsonl (does not enter the measured latency)
STOP_GRACE_S = 30.0


def parse_ts(ts: str) -> float:
    """RFC 3339 UTC (…Z) as POSIX seconds."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


class DaemonDied(Exception):
    pass


class EventTail:
    """Follows the daemon's events.jsonl (append-only): ts of job.queued and job.started per ticket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: Any = None
        self._buf = b""
        self.queued: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.seen: set[str] = set()  # every event name, e.g. to find run.started
        self.last = b""  # the last complete line, for diagnostics
        self.bad_lines = 0

    def poll(self) -> None:
        if self._f is None:
            try:
                self._f = open(self.path, "rb")  # noqa: SIM115 - kept open while the daemon runs
            except FileNotFoundError:
                return
        data = self._f.read()
        if not data:
            return
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for raw in lines:
            if not raw.strip():
                continue
            self.last = raw
            try:
                rec = json.loads(raw)
                ev = rec["event"]
            except (ValueError, KeyError, TypeError):
                self.bad_lines += 1
                continue
            self.seen.add(ev)
            if ev == "job.started":
                self.started.setdefault(rec["job"], parse_ts(rec["ts"]))  # first attempt
            elif ev == "job.queued" and "job" in rec:
                self.queued.setdefault(rec["job"], parse_ts(rec["ts"]))

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


class Daemon:
    """One `serve` subprocess in tmp; always stopped by stop() (SIGTERM, then SIGKILL)."""

    def __init__(self, tmp: Path, config: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.out_path = tmp / "daemon.out"
        self._out = open(self.out_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            supervisor_cmd(config, "serve"),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=tmp,
            env=env,
        )
        self.tail = EventTail(tmp / "logs" / "latest-daemon" / "events.jsonl")
        self.spool_root = tmp / "spool"
        self.exit_code: int | None = None
        self.killed = False

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise DaemonDied(
                f"the daemon exited with status {self.proc.returncode}; output ends:\n{self.output_tail()}"
            )

    def wait_for(self, cond: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.tail.poll()
            if cond():
                return
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(POLL_S)

    def wait_started(self, ticket_id: str, timeout: float) -> float:
        try:
            self.wait_for(lambda: ticket_id in self.tail.started, timeout, f"job.started of {ticket_id}")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; {self.diagnose(ticket_id)}") from None
        return self.tail.started[ticket_id]

    def diagnose(self, ticket_id: str) -> str:
        """Where a ticket that did not start is, and what the daemon last logged and printed."""
        counts = {s: len(os.listdir(self.spool_root / s)) for s in ("incoming", "active", "done", "failed", "rejected")}
        return (
            f"the ticket is in {where_is(self.spool_root, ticket_id)}/ "
            f"(job.queued {'seen' if ticket_id in self.tail.queued else 'not seen'}); spool: {counts}; "
            f"last event: {self.tail.last!r}; daemon output ends:\n{self.output_tail(600)}"
        )

    def cpu_seconds(self) -> float | None:
        """user+sys of the daemon process itself (its threads, not its jobs), from /proc."""
        try:
            raw = Path(f"/proc/{self.proc.pid}/stat").read_bytes()
        except OSError:
            return None
        fields = raw[raw.rfind(b")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait()
        self.exit_code = self.proc.returncode
        self.tail.close()
        self._out.close()

    def output_tail(self, n: int = 1500) -> str:
        try:
            return self.out_path.read_bytes()[-n:].decode("utf-8", "replace").strip()
        except OSError:
            return ""


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def stats_ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "median_ms": None, "p95_ms": None, "max_ms": None, "min_ms": None}
    return {
        "n": len(values),
        "median_ms": statistics.median(values) * 1000,
        "p95_ms": percentile(values, 95) * 1000,
        "max_ms": max(values) * 1000,
        "min_ms": min(values) * 1000,
    }


def where_is(spool_root: Path, ticket_id: str) -> str:
    for state in ("done", "failed", "rejected", "active", "incoming"):
        if (spool_root / state / f"{ticket_id}.toml").exists():
            return state
    return "nowhere"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--tickets", type=int, default=100, metavar="N", help="latency samples per submit path (default 100)"
    )
    ap.add_argument(
        "--drain", type=int, default=1000, metavar="N", help="tickets for the throughput test (default 1,000)"
    )
    ap.add_argument(
        "--gap",
        type=float,
        default=0.0,
        metavar="S",
        help="pause between a job.started and the next latency ticket (default 0: at once)",
    )
    ap.add_argument("--warmup", type=int, default=3, metavar="N", help="uncounted tickets first (default 3)")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object (last line)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (spool, logs, daemon output)")
    ap.add_argument("--tmpdir", metavar="DIR", help="make the temp dir here (default: $TMPDIR or /tmp)")
    ap.add_argument(
        "--timeout",
        type=float,
        default=30,
        metavar="S",
        help="longest wait for one job.started (default 30 s; the drain gets 20x)",
    )
    a = ap.parse_args(argv)
    if a.tickets < 1 or a.drain < 0 or a.warmup < 1 or a.gap < 0:
        ap.error("--tickets and --warmup must be >= 1, --drain and --gap >= 0")

    version = check_supervisor_importable(supervisor_env())
    if version is None:
        return 2
    sys.path.insert(0, str(REPO_ROOT))
    from aimedres_async.daemon.spool import Spool
    from aimedres_async.daemon.tickets import TicketError, new_ticket_id

    tmp = Path(tempfile.mkdtemp(prefix="aimedres-bench-spool-", dir=a.tmpdir))
    env = supervisor_env(tmp)
    config = write_config(
        tmp / "aimedres.toml", {JOB: ["true"]}, supervisor={"spool_dir": "spool", "max_workers": WORKERS}
    )
    spool_root = tmp / "spool"
    spool = Spool(spool_root)

    def submit_inproc() -> tuple[str, float, float]:
        """(ticket id, wall time before the call, wall time after it)."""
        for _ in range(10):
            ticket_id = new_ticket_id(JOB)
            t0 = time.time()
            try:
                spool.submit(TICKET_TEXT, ticket_id)
            except TicketError:  # an id collision (same second, same 3 random bytes): draw again
                continue
            return ticket_id, t0, time.time()
        raise RuntimeError("could not draw a free ticket id in 10 tries")

    def submit_cli() -> tuple[str, float, float]:
        t0 = time.time()
        proc = subprocess.run(
            supervisor_cmd(config, "submit", "--job", JOB),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=tmp,
            env=env,
            timeout=a.timeout,
            check=False,
        )
        t1 = time.time()
        if proc.returncode != 0 or not proc.stdout.strip():
            raise RuntimeError(f"submit exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
        return proc.stdout.split()[-1], t0, t1

    problems: list[str] = []
    samples: dict[str, dict[str, list[Any]]] = {}
    warm: list[float] = []
    drain: dict[str, Any] | None = None
    idle_cpu: float | None = None
    startup = [timed_run([sys.executable, "-c", "pass"], env=env).wall_s for _ in range(10)]

    print(
        f"spool: {a.tickets} tickets per submit path (+{a.warmup} warm-up), drain {a.drain:,}, "
        f"{WORKERS} workers" + (f", {a.gap:g}s between latency tickets" if a.gap else "") + f", temp dir {tmp}",
        flush=True,
    )
    daemon = Daemon(tmp, config, env)
    try:
        daemon.wait_for(lambda: "run.started" in daemon.tail.seen, a.timeout, "the daemon's run.started")
        # warm-up: also proves the daemon is watching (a ticket it misses waits for the rescan)
        for _ in range(a.warmup):
            tid, t0, _t1 = submit_inproc()
            warm.append(daemon.wait_started(tid, a.timeout) - t0)
        print("  warm-up: " + ", ".join(f"{ms(x)} ms" for x in warm), flush=True)

        # idle cost, by the way: the daemon's own CPU while nothing happens
        time.sleep(0.5)
        c0, w0 = daemon.cpu_seconds(), time.monotonic()
        time.sleep(2.0)
        c1, w1 = daemon.cpu_seconds(), time.monotonic()
        if c0 is not None and c1 is not None:
            idle_cpu = (c1 - c0) / (w1 - w0)

        for name, submit in (("in-process", submit_inproc), ("CLI", submit_cli)):
            lat: list[float] = []
            calls: list[float] = []
            to_queued: list[float] = []
            queued_to_started: list[float] = []
            after_return: list[float] = []
            ids: list[str] = []
            # filled in place, so that an aborted phase still reports what it measured
            samples[name] = {
                "lat": lat,
                "calls": calls,
                "to_queued": to_queued,
                "queued_to_started": queued_to_started,
                "after": after_return,
                "ids": ids,
            }
            for i in range(a.tickets):
                if a.gap:
                    time.sleep(a.gap)
                tid, t0, t1 = submit()
                ts = daemon.wait_started(tid, a.timeout)
                ids.append(tid)
                lat.append(ts - t0)
                calls.append(t1 - t0)
                after_return.append(ts - t1)
                tq = daemon.tail.queued.get(tid)
                if tq is not None:
                    to_queued.append(tq - t0)
                    queued_to_started.append(ts - tq)
                if (i + 1) % max(1, a.tickets // 4) == 0:
                    print(f"  {name}: {i + 1}/{a.tickets}, median so far {ms(statistics.median(lat))} ms", flush=True)

        if a.drain:
            drain_ids: list[str] = []
            cpu0 = daemon.cpu_seconds()
            t0 = time.monotonic()
            for _ in range(a.drain):
                drain_ids.append(submit_inproc()[0])
            t_dropped = time.monotonic()
            want = set(drain_ids)
            done_dir = spool_root / "done"

            def done_count() -> int:
                return sum(1 for n in os.listdir(done_dir) if n.endswith(".toml") and n[:-5] in want)

            at_drop = done_count()
            deadline = t_dropped + a.timeout * 20
            n_done = at_drop
            while n_done < a.drain and time.monotonic() < deadline:
                daemon.check_alive()
                time.sleep(0.005)
                n_done = done_count()
            t_end = time.monotonic()
            cpu1 = daemon.cpu_seconds()
            states: dict[str, int] = {}
            for tid in drain_ids:
                s = where_is(spool_root, tid)
                states[s] = states.get(s, 0) + 1
            wall = t_end - t0
            drain = {
                "tickets": a.drain,
                "drop_s": t_dropped - t0,
                "submit_per_s": a.drain / (t_dropped - t0),
                "wall_s": wall,
                "tickets_per_s": n_done / wall if wall > 0 else float("nan"),
                "done_at_end_of_drop": at_drop,
                "after_drop_s": t_end - t_dropped,
                "after_drop_per_s": (n_done - at_drop) / (t_end - t_dropped) if t_end > t_dropped else None,
                "done": n_done,
                "states": states,
                "valid": n_done == a.drain,
                "daemon_cpu_fraction": (cpu1 - cpu0) / (t_end - t0) if cpu0 is not None and cpu1 is not None else None,
            }
            if not drain["valid"]:
                problems.append(f"drain: only {n_done:,} of {a.drain:,} tickets reached done/ (states: {states})")
    except (DaemonDied, TimeoutError, RuntimeError, subprocess.TimeoutExpired) as e:
        problems.append(f"aborted: {e}")
    finally:
        daemon.stop()

    paths: dict[str, dict[str, Any]] = {}
    for name, r in samples.items():
        if not r["lat"]:
            continue
        paths[name] = {
            "latency": stats_ms(r["lat"]),
            "submit_call": stats_ms(r["calls"]),
            "submit_to_queued": stats_ms(r["to_queued"]),
            "queued_to_started": stats_ms(r["queued_to_started"]),
            "started_after_submit_returned": stats_ms(r["after"]),
            "latencies_ms": [round(x * 1000, 3) for x in r["lat"]],
            "ids": r["ids"],
        }
        if len(r["lat"]) < a.tickets:
            problems.append(f"{name}: only {len(r['lat'])} of {a.tickets} latency samples (aborted)")
    if daemon.killed:
        problems.append(f"the daemon did not exit within {STOP_GRACE_S:g}s of SIGTERM and was killed")
    elif daemon.exit_code != 0:
        problems.append(
            f"the daemon exited {daemon.exit_code} after SIGTERM (SPEC §8: 0); output ends:\n{daemon.output_tail()}"
        )
    if daemon.tail.bad_lines:
        problems.append(f"events.jsonl: {daemon.tail.bad_lines} lines that are not JSON records")
    for name, d in paths.items():
        not_done = [(t, where_is(spool_root, t)) for t in d["ids"] if where_is(spool_root, t) != "done"]
        if not_done:
            problems.append(f"{name}: {len(not_done)} latency tickets did not end in done/: {not_done[:5]}")
    latency_problems = [p for p in problems if not p.startswith("drain")]

    # -- report ----------------------------------------------------------------------------------
    print()
    rows = []
    for name, d in paths.items():
        s_lat = d["latency"]
        rows.append(
            [
                f"{name} submit -> job.started",
                str(s_lat["n"]),
                f"{s_lat['median_ms']:.1f}",
                f"{s_lat['p95_ms']:.1f}",
                f"{s_lat['max_ms']:.1f}",
            ]
        )
        for key, label in (
            ("submit_to_queued", "  of which submit -> job.queued"),
            ("queued_to_started", "  of which job.queued -> job.started"),
            ("submit_call", "  submit call / CLI process wall"),
            ("started_after_submit_returned", "  job.started - submit returned"),
        ):
            s = d[key]
            if s["n"]:
                rows.append([label, str(s["n"]), f"{s['median_ms']:.1f}", f"{s['p95_ms']:.1f}", f"{s['max_ms']:.1f}"])
    st = stats_ms(startup)
    rows.append(
        [
            "python -c pass (interpreter start-up)",
            str(st["n"]),
            f"{st['median_ms']:.1f}",
            f"{st['p95_ms']:.1f}",
            f"{st['max_ms']:.1f}",
        ]
    )
    if rows:
        print(format_table(["latency", "n", "median ms", "p95 ms", "max ms"], rows, [False, True, True, True, True]))
    if drain is not None:
        print()
        print(
            format_table(
                ["throughput", "value"],
                [
                    ["tickets dropped (in-process submit)", f"{drain['tickets']:,}"],
                    ["drop time", f"{drain['drop_s']:.2f} s ({drain['submit_per_s']:.0f} submits/s)"],
                    ["done/ when the drop ended", f"{drain['done_at_end_of_drop']:,}"],
                    ["first submit -> all in done/", f"{drain['wall_s']:.2f} s"],
                    [f"drained ({WORKERS} workers)", f"{drain['tickets_per_s']:.0f} tickets/s"],
                    [
                        "after the drop",
                        f"{drain['after_drop_per_s'] or 0:.0f} tickets/s over {drain['after_drop_s']:.2f} s",
                    ],
                    [
                        "daemon CPU (its own process, not the jobs)",
                        f"{(drain['daemon_cpu_fraction'] or 0) * 100:.0f}% of one core",
                    ],
                    ["in done/", f"{drain['done']:,} / {drain['tickets']:,}" + ("" if drain["valid"] else "  INVALID")],
                ],
                [False, True],
            )
        )
    print()
    if idle_cpu is not None:
        print(f"daemon CPU while idle (2 s, no tickets): {idle_cpu * 100:.1f}% of one core")
    inproc = paths.get("in-process", {}).get("latency", {})
    median = inproc.get("median_ms")
    if median is None:
        verdict = "INVALID (no in-process latency measured)"
    elif latency_problems:
        verdict = "INVALID (see PROBLEMS)"
    else:
        verdict = "PASS" if median <= TARGET_MS else "MISS"
    print(
        f"SPEC §11 spool target, median submit -> job.started <= {TARGET_MS:.0f} ms (in-process submit): "
        + (f"{median:.1f} ms: " if median is not None else "")
        + verdict
    )
    if "CLI" in paths:
        cli = paths["CLI"]
        print(
            f"CLI path: {cli['latency']['median_ms']:.1f} ms median, of which the `submit` process itself takes "
            f"{cli['submit_call']['median_ms']:.1f} ms (Python start-up alone: {st['median_ms']:.1f} ms) —\n"
            "  interpreter start-up and imports, not the daemon's latency; not judged against the target."
        )
    if drain is not None:
        print(
            f"throughput: {drain['tickets_per_s']:.0f} tickets/s drained with {WORKERS} workers"
            + ("" if drain["valid"] else " — INVALID (not every ticket ended in done/)")
        )
    if problems:
        print("\nPROBLEMS:")
        for p in problems:
            print(f"  - {p}")
    if a.keep:
        print(f"\nkept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)

    if a.json:
        result = {
            "bench": "spool",
            "tickets": a.tickets,
            "gap_s": a.gap,
            "warmup_ms": [round(x * 1000, 3) for x in warm],
            "target": {"median_ms_max": TARGET_MS, "path": "in-process"},
            "verdict": verdict.split()[0],
            "latency": {k: {kk: vv for kk, vv in v.items() if kk != "ids"} for k, v in paths.items()},
            "python_startup": st,
            "drain": drain,
            "idle_cpu_fraction": idle_cpu,
            "workers": WORKERS,
            "problems": problems,
            "versions": {"aimedres_async": version, "git": git_commit()},
            "machine": machine_info(),
        }
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
