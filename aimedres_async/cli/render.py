"""`logs`: a job's JSON-lines log rendered for a person, optionally followed as it grows."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from aimedres_async.daemon.spool import Spool
from aimedres_async.daemon.tickets import filed_result
from aimedres_async.plan.config import JOB_ID_RE, Config
from aimedres_async.plan.sweeps import file_stem
from aimedres_async.records.terminal import visible

RUN_ID_RE = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{4}")


def find_log(cfg: Config, spool: Spool, target: str, run: str | None) -> Path:
    """The log of a ticket (from its [result] or the running daemon) or of a job in a run."""
    base, bracket, params = target.partition("[")  # a swept job: base[k=v,...]
    if not JOB_ID_RE.fullmatch(base) or (bracket and not params.endswith("]")):
        raise ValueError(f"{target!r} is not a job or ticket id")
    if run is not None and not RUN_ID_RE.fullmatch(run):
        raise ValueError(f"{run!r} is not a run id (like 20261123T114430Z-b31a)")
    logs_dir = cfg.resolve(cfg.supervisor.logs_dir)
    if run is None and not bracket:  # a ticket id is a plain id, never a swept job's
        found = spool.find(target)
        if found is not None:
            state, path = found
            if state in ("done", "failed"):
                log = filed_result(path).get("log")
                if log:
                    return Path(log)
            for info in spool.running():
                if info.get("ticket") == target and info.get("log"):
                    return Path(info["log"])
            if state in ("incoming", "rejected"):
                raise ValueError(f"ticket {target} is {state}: it has no log yet")
    path = logs_dir / (run or "latest") / "jobs" / f"{file_stem(target)}.jsonl"
    if not path.exists():
        raise ValueError(f"no log for {target!r} in {path.parent.parent}")
    return path


def render(rec: dict[str, Any]) -> str:
    ts = str(rec.get("ts", ""))[11:23]
    event = rec.get("event")
    attempt = rec.get("attempt")
    if event == "job.output":
        err = "!" if rec.get("stream") == "stderr" else " "
        if "data" in rec:
            body = " ".join(
                f"{k}={orjson.dumps(v).decode() if not isinstance(v, str) else v}" for k, v in rec["data"].items()
            )
        else:
            body = rec.get("line", "") + ("…" if rec.get("partial") else "")
        return visible(f"{ts} #{attempt}{err}| {body}")
    skip = {"ts", "t", "schema", "event", "run", "job", "attempt", "argv", "env_keys", "script_sha256"}
    extra = " ".join(f"{k}={_value(v)}" for k, v in rec.items() if k not in skip and v is not None)
    line = visible(f"{ts} == {event}" + (f" (attempt {attempt})" if attempt is not None else ""))
    line += f" {visible(extra)}" if extra else ""
    if event == "job.started":
        line = f"{'-' * 20} attempt {attempt} {'-' * 20}\n" + line
    return line


def _value(v: Any) -> str:
    """Strings as they are; everything else (metrics, counts, lists) as JSON, never a Python repr."""
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def show(path: Path, follow: bool = False, poll: float = 0.2, running: Callable[[], bool] | None = None) -> int:
    """Print the rendered log; with follow, keep going until the job's job.finished record, or
    until running() says the job is no longer running (its daemon died) and the file is drained."""
    out = sys.stdout
    drained = False
    with open(path, "rb") as f:
        buf = b""
        while True:
            chunk = f.read(1 << 16)
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                finished = False
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        rec = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue
                    if rec.get("event") == "job.sample":  # memory once a second: for the report, not for reading
                        continue
                    out.write(render(rec) + "\n")
                    finished = finished or rec.get("event") == "job.finished"
                out.flush()
                if finished and follow:
                    return 0
                continue
            if not follow:
                return 0
            if running is not None and not running():
                if drained:
                    return 0
                drained = True  # one more read: what it wrote before it stopped
                continue
            time.sleep(poll)
