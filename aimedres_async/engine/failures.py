"""How a failed attempt is named more closely than exit_code/signal: `oom_killed` (the kernel's
OOM killer, or a SIGKILL near the declared memory) and `cuda_oom` (the job said so on its output).
Every executor uses it; the supervisor acts on the names (`_after_oom`).
"""

from __future__ import annotations

import functools
import os
import re
import signal

from aimedres_async.engine.attempt import JobOutput
from aimedres_async.records.framing import ATTEMPT_MARK

_CUDA_OOM = re.compile(
    rb"CUDA out of memory|CUDA error: out of memory|CUBLAS_STATUS_ALLOC_FAILED|OutOfMemoryError: CUDA"
)
NEAR_LIMIT = 0.9  # a SIGKILL at >= 90% of the declared memory is taken for the OOM killer


def classify(
    code: int, peak: int, declared_memory: int, oom_before: int | None, oom_after: int | None, output: JobOutput
) -> str | None:
    """A closer name for a failure than exit_code/signal: oom_killed or cuda_oom, else None."""
    if code == -signal.SIGKILL:
        if oom_before is not None and oom_after is not None and oom_after > oom_before:
            return "oom_killed"  # the kernel's OOM killer acted in our cgroup meanwhile
        if declared_memory and peak >= NEAR_LIMIT * declared_memory:
            return "oom_killed"
    recent: list[bytes] = []
    for stream, block in reversed(output.tail):
        if stream == ATTEMPT_MARK:
            break
        recent.append(block)
    if any(_CUDA_OOM.search(block) for block in recent[:8]):
        return "cuda_oom"
    return None


def cgroup_oom_kills() -> int | None:
    """oom_kill count of our cgroup (v2), or None where it cannot be read."""
    path = _memory_events_path()
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            for line in f:
                key, _, value = line.partition(b" ")
                if key == b"oom_kill":
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


@functools.cache
def _memory_events_path() -> str | None:
    """Our cgroup's memory.events, looked up once (a process does not change cgroup by itself)."""
    try:
        with open("/proc/self/cgroup") as f:
            cgroup = next((line.split("::", 1)[1].strip() for line in f if line.startswith("0::")), None)
    except OSError:
        return None
    if cgroup is None:
        return None
    path = f"/sys/fs/cgroup{cgroup}/memory.events"
    return path if os.path.exists(path) else None
