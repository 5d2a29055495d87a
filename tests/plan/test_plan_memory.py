"""What a big plan holds per job. A 100,000-job run keeps its config and its plan to the end, so
what each job costs here is multiplied by the run: jobs that set nothing of their own share one
settings object, commands one empty set of accepted flags, and the per-job objects have no
`__dict__`. Measured with tracemalloc: the same on every run of one Python version."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from aimedres_async.plan.config_load import parse
from aimedres_async.plan.jobs import plan

JOBS = 5000
# 3.11: ~710 bytes a job (its command tuple, its id, a JobConfig, a JobSpec, their
# dicts' entries); 1,296 with a settings object, an empty frozenset and a __dict__ per job
MAX_BYTES_PER_JOB = 1000


def test_a_big_plan_of_commands_holds_little_per_job(tmp_path: Path) -> None:
    tables = "".join(f'[jobs.j{i}]\ncommand = ["/bin/true"]\n\n' for i in range(JOBS))
    text = f"[discovery]\nenabled = false\n\n{tables}"
    parse(text, None, tmp_path)  # the modules' own first-use allocations, outside the count
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cfg = parse(text, None, tmp_path)
        p = plan(cfg)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(p.jobs) == JOBS
    assert held / JOBS < MAX_BYTES_PER_JOB, f"{held / JOBS:.0f} bytes a job"
    assert cfg.jobs[0].settings is cfg.jobs[1].settings
    assert p.jobs[0].accepts is p.jobs[1].accepts
