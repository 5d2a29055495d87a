"""Id rules, in-process: a job id, ticket id or run id is one safe file name before anything uses it
as a path (a job's log, a ticket in the spool, `logs --run`), with real files in tmp_path."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aimedres_async.cli.render import find_log
from aimedres_async.daemon.spool import Spool
from aimedres_async.daemon.tickets import TicketError, new_ticket_id
from aimedres_async.plan.config import JOB_ID_RE, builtin

GOOD = ["a", "0", "als", "a.b-c_d", "train_x.v2", "x" * 64, "9-lives", "a..b"]
BAD = [
    "",
    "A",
    "Als",
    "-x",
    ".x",
    "_x",
    ".",
    "..",
    "../x",
    "a/b",
    "/etc",
    "a b",
    "x" * 65,
    "é",
    "a\n",
    "a\x00b",
    "a\\b",
]


@pytest.mark.parametrize("job_id", GOOD)
def test_valid_job_ids(job_id: str) -> None:
    assert JOB_ID_RE.fullmatch(job_id)


@pytest.mark.parametrize("job_id", BAD)
def test_invalid_job_ids(job_id: str) -> None:
    assert not JOB_ID_RE.fullmatch(job_id)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=70))
def test_any_valid_id_is_one_plain_file_name_inside_its_folder(text: str) -> None:
    if not JOB_ID_RE.fullmatch(text):
        return
    base = Path("/srv/logs/jobs")
    assert 1 <= len(text) <= 64 and "/" not in text and "\0" not in text
    assert text not in (".", "..") and not text.startswith(("-", "."))  # never an option, never hidden
    assert os.path.normpath(base / f"{text}.jsonl").startswith(f"{base}/")


@settings(max_examples=100, deadline=None)
@given(st.from_regex(JOB_ID_RE, fullmatch=True))
def test_a_ticket_id_made_for_any_job_is_a_valid_id(job: str) -> None:
    ticket = new_ticket_id(job)
    assert JOB_ID_RE.fullmatch(ticket), ticket
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}-.+", ticket)


def test_ticket_ids_are_fresh_and_name_their_job() -> None:
    a, b = new_ticket_id("als"), new_ticket_id("als")
    assert a != b and a.endswith("-als") and b.endswith("-als")
    assert len(new_ticket_id("x" * 64)) == 64  # cut to the id limit


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    s = Spool(tmp_path / "spool")
    s.ensure()
    return s


def files(spool: Spool) -> list[str]:
    return sorted(str(p.relative_to(spool.root)) for p in spool.root.rglob("*") if p.is_file())


@pytest.mark.parametrize("ticket_id", ["../escape", "a/b", "", "Upper", ".hidden", "x" * 65])
def test_submit_refuses_an_id_that_is_not_a_file_name(spool: Spool, ticket_id: str) -> None:
    with pytest.raises(TicketError, match="invalid ticket id"):
        spool.submit('job = "ok"\n', ticket_id)
    assert files(spool) == []
    assert not (spool.root.parent / "escape.toml").exists()


def test_submit_files_a_valid_ticket_once(spool: Spool) -> None:
    path = spool.submit('job = "ok"\n', "t-1")
    assert path == spool.dir("incoming") / "t-1.toml" and path.read_text() == 'job = "ok"\n'
    with pytest.raises(TicketError, match="already exists in incoming/"):
        spool.submit('job = "other"\n', "t-1")
    assert path.read_text() == 'job = "ok"\n'


def test_a_file_with_an_invalid_name_is_rejected_under_a_safe_one(spool: Spool) -> None:
    hostile = spool.dir("incoming") / "Bad Name;rm -rf.toml"
    hostile.write_text('job = "ok"\n')
    with pytest.raises(TicketError, match="is not a valid ticket name"):
        spool.claim(hostile.name)
    dest = spool.reject(hostile, "bad name")
    assert dest.parent == spool.dir("rejected") and JOB_ID_RE.fullmatch(dest.name.removesuffix(".toml"))
    assert dest.read_text() == 'job = "ok"\n' and not hostile.exists()
    error = dest.with_suffix(".error").read_text()
    assert error == "Bad Name;rm -rf.toml: bad name\n"


def test_two_rejected_names_that_clean_up_alike_stay_apart(spool: Spool) -> None:
    a, b = spool.dir("incoming") / "A.toml", spool.dir("incoming") / "a!.toml"
    a.write_text("1")
    b.write_text("2")
    da, db = spool.reject(a, "x"), spool.reject(b, "y")
    assert da != db and da.read_text() == "1" and db.read_text() == "2"


@pytest.mark.parametrize("target", ["../../etc/passwd", "a/b", "..", "-rf", "Job"])
def test_logs_refuses_a_target_that_is_not_an_id(tmp_path: Path, spool: Spool, target: str) -> None:
    with pytest.raises(ValueError, match="is not a job or ticket id"):
        find_log(builtin(tmp_path), spool, target, None)


@pytest.mark.parametrize("run", ["../20261123T114430Z-b31a", "latest", "20261123T114430Z-b31a/../x", ""])
def test_logs_refuses_a_run_that_is_not_a_run_id(tmp_path: Path, spool: Spool, run: str) -> None:
    with pytest.raises(ValueError, match="is not a run id"):
        find_log(builtin(tmp_path), spool, "als", run)


def test_logs_finds_a_jobs_log_in_a_named_run(tmp_path: Path, spool: Spool) -> None:
    log = tmp_path / "logs" / "20261123T114430Z-b31a" / "jobs" / "als.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text("{}\n")
    assert find_log(builtin(tmp_path), spool, "als", "20261123T114430Z-b31a") == log
    with pytest.raises(ValueError, match="no log for 'other'"):
        find_log(builtin(tmp_path), spool, "other", "20261123T114430Z-b31a")
