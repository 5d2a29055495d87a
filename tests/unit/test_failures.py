"""engine.failures.classify, in-process: a failure named more closely than exit_code/signal:
oom_killed (the kernel's OOM killer, or a SIGKILL near the declared memory) and cuda_oom (said on
the job's output), or None so the caller keeps the name it had (exit_code, signal, timeout, stalled)."""

from __future__ import annotations

import signal
from collections import deque

import pytest

from aimedres_async.engine.attempt import JobOutput
from aimedres_async.engine.failures import NEAR_LIMIT, cgroup_oom_kills, classify
from aimedres_async.records.framing import ATTEMPT_MARK

GiB = 1 << 30
KILL = -signal.SIGKILL
CUDA_TRACEBACK = b"Traceback (most recent call last):\n  ...\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"


def output(*blocks: tuple[str, bytes]) -> JobOutput:
    return JobOutput(tail=deque(blocks))  # as an attempt's running output has it


def quiet() -> JobOutput:
    return output(("stdout", b"epoch 1\n"), ("stderr", b"some warning\n"))


# ---------------------------------------------------------------- what stays as the caller named it


@pytest.mark.parametrize("code", [1, 2, 137, 255])
def test_an_exit_code_stays_an_exit_code(code: int) -> None:
    assert classify(code, peak=3 * GiB, declared_memory=3 * GiB, oom_before=0, oom_after=0, output=quiet()) is None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGSEGV, signal.SIGABRT, signal.SIGINT])
def test_a_signal_other_than_sigkill_stays_a_signal(sig: signal.Signals) -> None:
    """Even at the memory limit: only SIGKILL is what the OOM killer sends."""
    assert classify(-sig, peak=4 * GiB, declared_memory=4 * GiB, oom_before=0, oom_after=1, output=quiet()) is None


def test_a_sigkill_far_below_the_declared_memory_stays_a_signal() -> None:
    assert classify(KILL, peak=GiB, declared_memory=4 * GiB, oom_before=2, oom_after=2, output=quiet()) is None


def test_a_sigkill_without_declared_memory_or_oom_count_stays_a_signal() -> None:
    assert classify(KILL, peak=64 * GiB, declared_memory=0, oom_before=None, oom_after=None, output=quiet()) is None


def test_a_clean_exit_with_plain_output_is_not_named() -> None:
    assert classify(0, peak=0, declared_memory=0, oom_before=None, oom_after=None, output=JobOutput()) is None


# ---------------------------------------------------------------- oom_killed


def test_the_oom_killer_acting_in_our_cgroup_names_a_sigkill_oom_killed() -> None:
    assert classify(KILL, peak=GiB, declared_memory=0, oom_before=3, oom_after=4, output=quiet()) == "oom_killed"


def test_an_oom_count_known_only_before_or_after_proves_nothing() -> None:
    assert classify(KILL, peak=GiB, declared_memory=0, oom_before=None, oom_after=4, output=quiet()) is None
    assert classify(KILL, peak=GiB, declared_memory=0, oom_before=4, oom_after=None, output=quiet()) is None


def test_a_sigkill_near_the_declared_memory_is_oom_killed() -> None:
    declared = 10 * GiB
    at_limit = int(NEAR_LIMIT * declared) + 1
    assert NEAR_LIMIT == 0.9
    assert classify(KILL, at_limit, declared, None, None, quiet()) == "oom_killed"
    assert classify(KILL, declared, declared, None, None, quiet()) == "oom_killed"
    assert classify(KILL, 2 * declared, declared, None, None, quiet()) == "oom_killed"
    assert classify(KILL, int(0.89 * declared), declared, None, None, quiet()) is None


def test_oom_killed_wins_over_a_cuda_message() -> None:
    out = output(("stderr", CUDA_TRACEBACK))
    assert classify(KILL, GiB, GiB, None, None, out) == "oom_killed"


# ---------------------------------------------------------------- cuda_oom


@pytest.mark.parametrize(
    "said",
    [
        CUDA_TRACEBACK,
        b"RuntimeError: CUDA error: out of memory\n",
        b"RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`\n",
        b"torch.cuda.OutOfMemoryError: CUDA out of memory.\n",
    ],
)
def test_a_cuda_out_of_memory_on_the_output_is_cuda_oom(said: bytes) -> None:
    assert classify(1, GiB, 0, None, None, output(("stdout", b"epoch 3\n"), ("stderr", said))) == "cuda_oom"


def test_cuda_oom_is_found_on_stdout_too() -> None:
    assert classify(1, 0, 0, None, None, output(("stdout", CUDA_TRACEBACK))) == "cuda_oom"


def test_an_ordinary_out_of_memory_is_not_a_cuda_one() -> None:
    out = output(
        ("stderr", b"MemoryError\n"), ("stderr", b"numpy.core._exceptions._ArrayMemoryError: Unable to allocate\n")
    )
    assert classify(1, 0, 0, None, None, out) is None


def test_an_earlier_attempts_cuda_oom_does_not_name_this_one() -> None:
    out = output(
        (ATTEMPT_MARK, b"1"),
        ("stderr", CUDA_TRACEBACK),
        (ATTEMPT_MARK, b"2"),
        ("stderr", b"ValueError: bad label\n"),
    )
    assert classify(1, 0, 0, None, None, out) is None
    out.tail.append(("stderr", CUDA_TRACEBACK))
    assert classify(1, 0, 0, None, None, out) == "cuda_oom"


def test_only_the_last_blocks_of_output_are_searched() -> None:
    """A CUDA message long before the end (the job recovered from it and failed later for another
    reason) does not name the failure."""
    old = output(("stderr", CUDA_TRACEBACK), *((("stdout" if i % 2 else "stderr"), b"line %d\n" % i) for i in range(8)))
    assert classify(1, 0, 0, None, None, old) is None
    recent = output(
        ("stderr", CUDA_TRACEBACK), *((("stdout" if i % 2 else "stderr"), b"line %d\n" % i) for i in range(7))
    )
    assert classify(1, 0, 0, None, None, recent) == "cuda_oom"


def test_the_cgroup_oom_count_is_read_without_a_process() -> None:
    count = cgroup_oom_kills()
    assert count is None or (isinstance(count, int) and count >= 0)
