"""Operating the spool daemon (SPEC §15): reused ticket names, cancel, wait, status, priorities and
dependencies, pause/resume, submit's checks, serve's exit codes. Every test drives a real `serve`
process with real tickets; the `daemons` fixture stops each daemon and `marker` then fails the test
if a job process survived.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import read_jsonl, wait_for, write_config
from helpers_daemon import Daemons, daemon_config, drop, names, wait_final, where

from aimedres_async.spool import Spool


@pytest.fixture
def daemons(marker: str) -> Iterator[Daemons]:
    ds = Daemons()
    try:
        yield ds
    finally:
        ds.close()


def _cmd(*argv: str) -> str:
    return json.dumps(list(argv))


def _setup(folder: Path, marker: str, jobs: str, workers: int = 2, extra: str = "") -> Spool:
    write_config(folder, daemon_config(marker, jobs, workers, extra))
    spool = Spool(folder / "spool")
    spool.ensure()
    return spool


def _lines(log: Path) -> list[str]:
    return [r["line"] for r in read_jsonl(log) if r["event"] == "job.output" and "line" in r]


# ---------------------------------------------------------------- 1. a reused ticket name


@pytest.mark.parametrize("first_ends_in", ["done", "failed", "rejected"])
def test_a_reused_ticket_name_is_rejected_not_dropped(tmp_path: Path, marker: str, daemons: Daemons,
                                                       first_ends_in: str) -> None:  # fmt: skip
    """Regression: a ticket written with the README's protocol (tmp/, then link into incoming/) under a
    name already in done/, failed/ or rejected/ was deleted by claim() without a word: it never ran,
    was not rejected, and nothing was logged."""
    jobs = f"[jobs.ok]\ncommand = {_cmd('sh', '-c', 'echo ran >> ran.txt')}\n[jobs.bad]\ncommand = {_cmd('false')}\n"
    spool = _setup(tmp_path, marker, jobs)
    d = daemons.start(tmp_path)
    first = {"done": 'job = "ok"\n', "failed": 'job = "bad"\n', "rejected": 'job = "nosuch"\n'}[first_ends_in]
    drop(spool.root, "nightly.toml", first)
    wait_final(spool.root, ["nightly"])
    assert where(spool.root, "nightly") == [first_ends_in]
    before = (spool.root / first_ends_in / "nightly.toml").read_text()

    drop(spool.root, "nightly.toml", 'job = "ok"\n# the second one\n')
    rejected_copy = "nightly.1" if first_ends_in == "rejected" else "nightly"
    wait_for(lambda: (spool.root / "rejected" / f"{rejected_copy}.error").exists(), what="the second nightly rejected")
    error = (spool.root / "rejected" / f"{rejected_copy}.error").read_text()
    assert error.startswith("nightly.toml: the name nightly is taken")
    assert f"already in {first_ends_in}/" in error
    assert "the second one" in (spool.root / "rejected" / f"{rejected_copy}.toml").read_text()
    assert (spool.root / first_ends_in / "nightly.toml").read_text() == before  # the earlier result kept
    assert names(spool.root, "incoming") == []
    ran = (tmp_path / "ran.txt").read_text().split() if (tmp_path / "ran.txt").exists() else []
    assert len(ran) == (1 if first_ends_in == "done" else 0)  # the second one did not run
    assert d.alive()
