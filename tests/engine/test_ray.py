"""executor = "ray": the same runs through a real local Ray head (`ray start --head`).

Skipped, with the reason printed, only when Ray is not installed (`pip install -e '.[ray]'`);
.ci/run installs it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PY, events, job_summary, read_jsonl, run_dir, start_cli, summary, wait_for, write_config
from helpers_cli import cli
from helpers_daemon import Daemons, drop, result, wait_final

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_ray_job_left_running(ray_head: str) -> Iterator[None]:
    """After each test, whatever ran before it: the cluster holds no RUNNING job."""
    yield

    def none_running() -> bool:
        return not [j for j in _jobs(ray_head) if str(getattr(j, "status", "")).endswith("RUNNING")]

    wait_for(none_running, timeout=60, what="no Ray job RUNNING after the test")


def _jobs(address: str) -> list[object]:
    from ray.job_submission import JobSubmissionClient

    return list(JobSubmissionClient(address).list_jobs())


def _config(address: str, jobs: str, extra: str = "") -> str:
    return f"""
[supervisor]
executor = "ray"
parallel = true
max_workers = 2
grace_period = "2s"
{extra}
[discovery]
enabled = false
[ray]
address = "{address}"
{jobs}
"""


def test_bundled_examples_train_through_ray(tmp_path: Path, ray_head: str) -> None:
    pytest.importorskip("sklearn")
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    body = (REPO / "aimedres.toml").read_text().replace("[supervisor]", '[supervisor]\nexecutor = "ray"')
    write_config(tmp_path, body + f'\n[ray]\naddress = "{ray_head}"\n')
    r = cli(tmp_path, "run", "--epochs", "2", "--folds", "2", timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = {j["id"]: j for j in summary(tmp_path)["jobs"]}
    assert len(jobs) == 3 and all(j["status"] == "succeeded" for j in jobs.values())
    for j in jobs.values():
        assert j["metrics"]["epochs"] == 2  # the final JSON line arrived as data
    started = events(tmp_path, "job.started")
    assert all(e["ray_submission_id"] for e in started)


def test_failing_job_is_retried_with_the_supervisors_backoff(tmp_path: Path, ray_head: str) -> None:
    code = "import sys; print('trying'); sys.exit(3)"
    jobs = (
        f"[jobs.flop]\ncommand = {json.dumps([PY, '-c', code])}\nretries = 1\n"
        'backoff = { initial = "100ms", jitter = 0.0 }\n'
    )
    write_config(tmp_path, _config(ray_head, jobs))
    r = cli(tmp_path, "run", timeout=180)
    assert r.returncode == 1, r.stderr[-2000:]
    s = job_summary(tmp_path, "flop")
    assert s["status"] == "failed" and s["attempts"] == 2 and s["exit_code"] == 3
    assert [e["delay_s"] for e in events(tmp_path, "job.retrying")] == [0.1]
    lines = [x["line"] for x in read_jsonl(run_dir(tmp_path) / "jobs" / "flop.jsonl") if x.get("event") == "job.output"]
    assert lines == ["trying", "trying"]  # Ray's own preamble lines are not output


def test_timeout_stops_the_ray_job(tmp_path: Path, ray_head: str) -> None:
    code = "import time; print('up', flush=True); time.sleep(120)"
    jobs = f'[jobs.slow]\ncommand = {json.dumps([PY, "-c", code])}\ntimeout = "4s"\n'
    write_config(tmp_path, _config(ray_head, jobs))
    r = cli(tmp_path, "run", timeout=180)
    assert r.returncode == 1
    s = job_summary(tmp_path, "slow")
    assert s["status"] == "timed_out" and s["failure"] == "timeout"
    sid = events(tmp_path, "job.started")[0]["ray_submission_id"]
    from ray.job_submission import JobSubmissionClient

    status = str(JobSubmissionClient(ray_head).get_job_status(sid))
    assert status.endswith("STOPPED"), status


def test_sigint_leaves_no_ray_job_running(tmp_path: Path, ray_head: str) -> None:
    code = "import time\nfor i in range(600): print(i, flush=True); time.sleep(0.2)"
    jobs = "".join(f"[jobs.long{i}]\ncommand = {json.dumps([PY, '-c', code])}\n" for i in range(2))
    write_config(tmp_path, _config(ray_head, jobs))
    proc = start_cli(tmp_path, "run")
    wait_for(lambda: len(events(tmp_path, "job.started")) == 2, timeout=120, what="two Ray jobs")
    ids = [e["ray_submission_id"] for e in events(tmp_path, "job.started")]
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(ray_head)
    statuses = {sid: str(client.get_job_status(sid)) for sid in ids}
    assert all(s.endswith(("STOPPED", "FAILED", "SUCCEEDED")) for s in statuses.values()), statuses
    assert {j["status"] for j in summary(tmp_path)["jobs"]} == {"cancelled"}


def test_output_arrives_as_the_same_records_as_locally(tmp_path: Path, ray_head: str) -> None:
    code = (
        "import json,sys,time\nfor i in range(3):\n    print(f'epoch {i}', flush=True)\n"
        "    sys.stdout.write(f'\\r[{\"#\" * i}] {i}/3'); sys.stdout.flush()\n"
        "print()\nprint(json.dumps({'acc': 0.5, 'model': 'm'}))\n"
    )
    job = f"[jobs.bar]\ncommand = {json.dumps([PY, '-c', code])}\n"
    records = {}
    for executor in ("local", "ray"):
        folder = tmp_path / executor
        folder.mkdir()
        write_config(folder, _config(ray_head, job).replace('executor = "ray"', f'executor = "{executor}"'))
        r = cli(folder, "run", timeout=180)
        assert r.returncode == 0, r.stderr[-2000:]
        recs = read_jsonl(run_dir(folder) / "jobs" / "bar.jsonl")
        records[executor] = [x.get("line", x.get("data")) for x in recs if x["event"] == "job.output"]
    # Ray's log pipeline turns every \r into \n, so a redraw that starts a line arrives as an
    # extra empty record; the bytes it lost cannot be recovered. All other records are the same.
    assert [x for x in records["ray"] if x != ""] == records["local"]
    assert {"acc": 0.5, "model": "m"} in records["ray"] and "[#] 1/3epoch 2" in records["ray"]


def test_unreachable_cluster_is_a_usage_error(tmp_path: Path, ray_head: str) -> None:
    write_config(tmp_path, _config("http://127.0.0.1:1", '[jobs.a]\ncommand = ["true"]\n'))
    r = cli(tmp_path, "run", timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot reach the Ray cluster" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- a connection that breaks


class ResettingProxy:
    """A TCP proxy in front of the head's dashboard. `outage()` resets (RST) every connection open
    through it, and every new one, until `restore()`: what a head behind a restarting load
    balancer, or a dropped VPN, looks like to the Jobs API client."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = threading.Event()
        self.resets = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _reset(self, s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        self.resets += 1

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.down.is_set():
                self._reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                self._reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def outage(self) -> None:
        self.down.set()
        with self._lock:
            for s in self._open:
                self._reset(s)
            self._open.clear()

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.listener.close()
        self.outage()


def test_a_connection_reset_is_retried_not_a_failed_job(tmp_path: Path, ray_head: str) -> None:
    """Every connection to the head is reset for 3 s while a job runs: each Jobs API call that
    fails is retried with backoff (a warning each), the job ends succeeded with all its output."""
    proxy = ResettingProxy(int(ray_head.rsplit(":", 1)[1]))
    try:
        code = "import time\nfor i in range(16): print(i, flush=True); time.sleep(0.5)"
        write_config(tmp_path, _config(proxy.address, f"[jobs.steady]\ncommand = {json.dumps([PY, '-c', code])}\n"))
        proc = start_cli(tmp_path, "run", "--no-progress")
        wait_for(lambda: events(tmp_path, "job.started"), timeout=120, what="the Ray job started")
        log = run_dir(tmp_path) / "jobs" / "steady.jsonl"
        wait_for(lambda: sum(1 for x in read_jsonl(log) if x["event"] == "job.output") >= 2, timeout=60, what="output")
        proxy.outage()
        time.sleep(3)
        proxy.restore()
        _out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
        assert proxy.resets > 0
        retries = [line for line in err.splitlines() if "the connection to the Ray cluster failed" in line]
        assert retries and all("steady: " in line and "retry " in line for line in retries), err[-3000:]
        s = job_summary(tmp_path, "steady")
        assert s["status"] == "succeeded" and s["attempts"] == 1
        lines = [x["line"] for x in read_jsonl(log) if x["event"] == "job.output"]
        assert lines == [str(i) for i in range(16)]  # what the broken stream missed was fetched after
    finally:
        proxy.close()


def test_sighup_reads_the_ray_table_again(tmp_path: Path, ray_head: str) -> None:
    """serve: after a SIGHUP the next ticket goes to the new [ray] address; an address that does not
    answer is one line on stderr and the old one stays."""
    proxy = ResettingProxy(int(ray_head.rsplit(":", 1)[1]))
    job = f"[jobs.quick]\ncommand = {json.dumps([PY, '-c', 'print(1)'])}\n"

    def config(address: str) -> None:
        write_config(tmp_path, _config(address, job, 'spool_dir = "spool"'))

    def address_of(ticket: str) -> str:
        wait_final(spool, [ticket], timeout=120)
        res = result(spool, "done", ticket)
        return str(next(x for x in read_jsonl(Path(res["log"])) if x["event"] == "job.started")["ray_address"])

    def reloads() -> int:
        runs = [p for p in (tmp_path / "logs").glob("*/events.jsonl") if not p.parent.is_symlink()]
        return sum(1 for p in runs for x in read_jsonl(p) if x["event"] == "daemon.reloaded")

    config(ray_head)
    spool = tmp_path / "spool"
    daemons = Daemons()
    try:
        d = daemons.start(tmp_path)
        wait_for(lambda: (spool / "incoming").is_dir(), timeout=60, what="the spool")
        drop(spool, "t1.toml", 'job = "quick"\n')
        assert address_of("t1") == ray_head
        config(proxy.address)
        d.signal(signal.SIGHUP)
        wait_for(lambda: reloads() == 1, timeout=60, what="the reload")
        drop(spool, "t2.toml", 'job = "quick"\n')
        assert address_of("t2") == proxy.address
        config("http://127.0.0.1:1")
        d.signal(signal.SIGHUP)
        wait_for(lambda: reloads() == 2, timeout=60, what="the second reload")
        drop(spool, "t3.toml", 'job = "quick"\n')
        assert address_of("t3") == proxy.address
        lines = [line for line in d.stderr().splitlines() if "127.0.0.1:1" in line]
        assert len(lines) == 1 and "keeps its old settings" in lines[0], d.stderr()[-2000:]
    finally:
        daemons.close()
        proxy.close()
