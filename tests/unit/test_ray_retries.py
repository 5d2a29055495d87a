"""The Ray executor's retries of a dropped connection, in process: which failures are retried, how
often, what is said, and one attempt through a Jobs API client whose connection breaks.
(tests/engine/test_ray.py does the same against a real head behind a proxy that resets.)
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aimedres_async.engine.attempt import AttemptContext, JobOutput, StopRequest
from aimedres_async.engine.executors import ray
from aimedres_async.engine.executors.ray import RayExecutor, call, transient
from aimedres_async.plan.config import Backoff, RayConfig, Resources
from aimedres_async.plan.jobs import JobSpec, Outcome


class Flaky:
    """A callable that fails with `errors` in turn, then returns `value`."""

    def __init__(self, errors: list[Exception], value: object = "ok") -> None:
        self.errors, self.value, self.calls = list(errors), value, 0

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


def test_a_reset_or_a_restarting_head_is_transient_an_answer_is_not() -> None:
    requests = pytest.importorskip("requests")
    assert transient(ConnectionResetError(104, "Connection reset by peer"))
    assert transient(requests.exceptions.ConnectionError("('Connection aborted.', RemoteDisconnected())"))
    assert transient(requests.exceptions.ReadTimeout())
    assert transient(requests.exceptions.ChunkedEncodingError())
    assert transient(RuntimeError("Request failed with status code 503: Service Unavailable."))
    assert not transient(RuntimeError("Request failed with status code 404: Job does not exist."))
    assert not transient(RuntimeError("Job with submission_id x already exists."))
    assert not transient(PermissionError(13, "Permission denied"))  # packaging working_dir: not the network
    assert not transient(ValueError("bad entrypoint"))


@pytest.mark.asyncio
async def test_a_dropped_connection_is_retried_and_each_retry_said() -> None:
    said: list[str] = []
    fn = Flaky([ConnectionResetError(104, "Connection reset by peer"), TimeoutError()])
    assert await call(fn, "sid", what="t1: get_job_status", warn=said.append, delays=(0, 0, 0)) == "ok"
    assert fn.calls == 3
    assert said == [
        "t1: get_job_status: the connection to the Ray cluster failed ([Errno 104] Connection reset by peer); "
        "retry 1/3 in 0s",
        "t1: get_job_status: the connection to the Ray cluster failed (TimeoutError); retry 2/3 in 0s",
    ]


@pytest.mark.asyncio
async def test_retries_are_bounded_and_the_last_failure_is_raised() -> None:
    said: list[str] = []
    fn = Flaky([ConnectionRefusedError(111, f"refused {n}") for n in range(5)])
    with pytest.raises(ConnectionRefusedError, match="refused 2"):
        await call(fn, what="x", warn=said.append, delays=(0, 0))
    assert fn.calls == 3 and len(said) == 2


@pytest.mark.asyncio
async def test_an_answer_is_raised_at_once() -> None:
    fn = Flaky([RuntimeError("Request failed with status code 404: no such job.")])
    with pytest.raises(RuntimeError, match="404"):
        await call(fn, what="x", warn=None, delays=(0, 0))
    assert fn.calls == 1


def test_the_default_retries_wait_about_half_a_minute_in_all() -> None:
    assert 20 <= sum(ray.RETRY_DELAYS) <= 60
    assert list(ray.RETRY_DELAYS) == sorted(ray.RETRY_DELAYS)  # backing off


class BrokenHead:
    """A Jobs API client whose connection is reset once per kind of call: after submit_job got
    through (its answer lost), on the status poll, on the job's info. The log stream breaks."""

    def __init__(self) -> None:
        self.jobs: dict[str, str] = {}
        self.reset = {"submit_job", "get_job_status", "get_job_info"}
        self.polls = 0

    def _drop(self, method: str) -> None:
        if method in self.reset:
            self.reset.discard(method)
            raise ConnectionResetError(104, "Connection reset by peer")

    def submit_job(self, *, submission_id: str, **kwargs: Any) -> str:
        if submission_id in self.jobs:
            raise RuntimeError(
                f"Request failed with status code 500: Job with submission_id {submission_id} already exists."
            )
        self.jobs[submission_id] = kwargs["entrypoint"]
        self._drop("submit_job")  # taken, but the answer never came back
        return submission_id

    def get_job_status(self, sid: str) -> str:
        self._drop("get_job_status")
        self.polls += 1
        return "JobStatus.SUCCEEDED" if self.polls >= 2 else "JobStatus.RUNNING"

    def get_job_info(self, sid: str) -> Any:
        self._drop("get_job_info")
        return SimpleNamespace(status="SUCCEEDED", driver_exit_code=0, message="")

    def get_job_logs(self, sid: str) -> str:
        return f"Running entrypoint for job {sid}: {self.jobs[sid]}\nepoch 1\n"

    async def tail_job_logs(self, sid: str) -> AsyncIterator[str]:
        raise ConnectionResetError(104, "Connection reset by peer")
        yield ""  # an async generator


@pytest.mark.asyncio
async def test_an_attempt_rides_out_connection_resets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ray, "RETRY_DELAYS", (0.0, 0.0))
    monkeypatch.setattr(ray, "POLL", 0.01)
    executor = object.__new__(RayExecutor)
    executor.cfg, executor.base_dir, executor.client = (
        RayConfig(address="http://head:8265"),
        str(tmp_path),
        BrokenHead(),
    )
    said: list[str] = []
    emitted: list[tuple[str, dict[str, Any]]] = []
    ctx = AttemptContext(
        run_id="r1",
        emit=lambda ev, **kw: emitted.append((ev, kw)),
        write_output=lambda job, pieces: None,
        stop=StopRequest(),
        warn=said.append,
    )
    spec = JobSpec(
        id="t1",
        argv=(sys.executable, "-c", "print('epoch 1')"),
        cwd=tmp_path,
        env={},
        output_dir=None,
        script=None,
        accepts=frozenset(),
        retries=0,
        backoff=Backoff(),
        timeout=None,
        optional=False,
        resources=Resources(),
        origin="config",
    )
    result = await executor.run_attempt(spec, 1, ctx, JobOutput())
    assert result.outcome is Outcome.SUCCEEDED and result.exit_code == 0, result
    assert [ev for ev, _ in emitted if ev.startswith("job.")][:1] == ["job.started"]
    assert [s.split(":")[1].strip() for s in said] == ["submit_job", "get_job_status", "get_job_info"]
