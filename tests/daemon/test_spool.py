"""The spool directory protocol (aimedres_async/daemon/spool.py), driven in-process on real folders.

Submit, claim, read hygiene, reject, release and crash recovery; real locks, real links, and real
process groups for recovery (a live "daemon" is a held flock or a real subprocess that holds it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from helpers_daemon import group_members

from aimedres_async.daemon.orphans import process_identity
from aimedres_async.daemon.spool import Claimed, Spool, SpoolError
from aimedres_async.daemon.tickets import MAX_TICKET_BYTES, TicketError, read_ticket

PY = sys.executable
TICKET = 'job = "ok"\nepochs = 3\n'


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    s = Spool(tmp_path / "spool")
    s.ensure()
    return s


@pytest.fixture
def group(marker: str) -> Iterator[subprocess.Popen[bytes]]:
    """A job-like process group: `sh -c "sleep 60 & sleep 60"` in its own session, reaped afterwards."""
    p = subprocess.Popen(
        ["sh", "-c", "sleep 60 & sleep 60"], start_new_session=True, env={**os.environ, "TEST_MARKER": marker}
    )
    wait_for(lambda: len(group_members(p.pid)) >= 2, what="sh and its background sleep")
    yield p
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(10)
    wait_for(lambda: group_members(p.pid) == [], what="the group to die")


def _files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# ---------------------------------------------------------------- ensure


def test_ensure_creates_every_folder_private(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool")
    s.ensure()
    for state in ("incoming", "active", "done", "failed", "rejected", "tmp"):
        mode = stat.S_IMODE(os.stat(s.dir(state)).st_mode)
        assert mode & 0o022 == 0, (state, oct(mode))
    assert stat.S_IMODE(os.stat(s.root).st_mode) & 0o022 == 0


@pytest.mark.parametrize(("where", "mode"), [("", 0o757), ("", 0o770), ("incoming", 0o777), ("done", 0o752)])
def test_ensure_refuses_a_spool_others_can_write(tmp_path: Path, where: str, mode: int) -> None:
    s = Spool(tmp_path / "spool")
    s.ensure()
    os.chmod(s.root / where, mode)
    with pytest.raises(SpoolError, match="writable by other users") as e:
        s.ensure()
    assert "\n" not in str(e.value)
    s.ensure(check_secure=False)  # `submit` only creates; it does not judge


def test_ensure_refuses_a_symlinked_state_folder(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool")
    s.ensure()
    os.rmdir(s.dir("active"))
    (tmp_path / "elsewhere").mkdir(mode=0o750)
    os.symlink(tmp_path / "elsewhere", s.dir("active"))
    with pytest.raises(SpoolError, match="not a folder"):
        s.ensure()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder to another user")
def test_ensure_refuses_a_spool_owned_by_someone_else(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool")
    s.ensure()
    os.chown(s.dir("incoming"), 4242, 4242)
    with pytest.raises(SpoolError, match="owned by uid 4242"):
        s.ensure()


# ---------------------------------------------------------------- submit


def test_submit_stages_and_links_into_incoming(spool: Spool) -> None:
    path = spool.submit(TICKET, "t1")
    assert path == spool.dir("incoming") / "t1.toml"
    assert path.read_text() == TICKET
    st = os.stat(path)
    assert st.st_nlink == 1  # the staged name in tmp/ is gone
    assert st.st_mode & 0o022 == 0
    assert _files(spool.dir("tmp")) == []
    assert read_ticket(path) == TICKET  # what submit writes passes the daemon's hygiene


def test_submit_never_replaces_an_existing_ticket(spool: Spool) -> None:
    spool.submit(TICKET, "t1")
    with pytest.raises(TicketError, match="already exists in incoming"):
        spool.submit('job = "other"\n', "t1")
    assert (spool.dir("incoming") / "t1.toml").read_text() == TICKET
    # the id is taken while the ticket is anywhere in the spool, not only while it waits
    (spool.dir("done") / "t2.toml").write_text(TICKET)
    with pytest.raises(TicketError, match="already exists in done"):
        spool.submit(TICKET, "t2")
    assert _files(spool.dir("tmp")) == []
    assert _files(spool.dir("incoming")) == ["t1.toml"]


@pytest.mark.parametrize("bad", ["Bad", "../escape", "a/b", ".hidden", "", "x" * 65])
def test_submit_refuses_an_invalid_id(spool: Spool, bad: str) -> None:
    with pytest.raises(TicketError, match="invalid ticket id"):
        spool.submit(TICKET, bad)
    assert _files(spool.dir("incoming")) == [] and _files(spool.dir("tmp")) == []


# ---------------------------------------------------------------- claim


def test_claim_moves_to_active_and_holds_the_lock(spool: Spool) -> None:
    spool.submit(TICKET, "t1")
    c = spool.claim("t1.toml")
    assert isinstance(c, Claimed)
    try:
        assert (c.ticket_id, c.text, c.path) == ("t1", TICKET, spool.dir("active") / "t1.toml")
        assert _files(spool.dir("incoming")) == []
        assert os.stat(c.path).st_nlink == 1
        other = os.open(c.path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    finally:
        os.close(c.lock_fd)


def test_claim_refuses_a_ticket_whose_name_runs(spool: Spool) -> None:
    """Regression: a second ticket of a running ticket's name waited in incoming/ and, once the first
    was filed, was deleted unseen. Now its name is taken: claim() raises for reject()."""
    spool.submit(TICKET, "t1")
    first = spool.claim("t1.toml")
    assert first is not None
    try:
        (spool.dir("incoming") / "t1.toml").write_text(TICKET)  # the same id dropped again
        os.chmod(spool.dir("incoming") / "t1.toml", 0o640)
        with pytest.raises(TicketError, match=r"the name t1 is taken: .* already in active/"):
            spool.claim("t1.toml")
        assert _files(spool.dir("incoming")) == ["t1.toml"]  # left for reject()
    finally:
        os.close(first.lock_fd)


@pytest.mark.parametrize("state", ["done", "failed", "rejected"])
def test_claim_refuses_a_used_name(spool: Spool, state: str) -> None:
    (spool.dir(state) / "t1.toml").write_text(TICKET + '\n[result]\nstatus = "x"\n')
    (spool.dir("incoming") / "t1.toml").write_text(TICKET)
    os.chmod(spool.dir("incoming") / "t1.toml", 0o640)
    with pytest.raises(TicketError, match=f"already in {state}/"):
        spool.claim("t1.toml")
    assert _files(spool.dir("incoming")) == ["t1.toml"]


def test_claim_drops_the_remnant_of_a_rejection_cut_short(spool: Spool) -> None:
    """reject() links into rejected/ before it unlinks from incoming/: the same file in both is that."""
    (spool.dir("incoming") / "t1.toml").write_text(TICKET)
    os.chmod(spool.dir("incoming") / "t1.toml", 0o640)
    os.link(spool.dir("incoming") / "t1.toml", spool.dir("rejected") / "t1.toml")
    assert spool.claim("t1.toml") is None
    assert _files(spool.dir("incoming")) == [] and _files(spool.dir("rejected")) == ["t1.toml"]


def test_claim_returns_none_when_another_claim_won(spool: Spool) -> None:
    """Regression: claim() read the ticket before linking it, so a ticket another daemon had already
    claimed raised TicketError('cannot open: No such file') and the daemon tried to reject it."""
    spool.submit(TICKET, "t1")
    names = spool.waiting()  # both daemons list incoming/ ...
    won = Spool(spool.root).claim(names[0])  # ... the other one claims first
    assert won is not None
    try:
        assert spool.claim(names[0]) is None
    finally:
        os.close(won.lock_fd)


def test_claim_during_another_daemons_claim_is_not_a_rejection(spool: Spool) -> None:
    """Regression: claim() ran its hygiene read outside the spool lock, so a ticket another daemon was
    claiming (linked into active/, not yet unlinked from incoming/) had 2 links, raised TicketError, and
    was moved to rejected/ while it ran (it then ended in both done/ and rejected/)."""
    spool.submit(TICKET, "t1")
    src, dest = spool.dir("incoming") / "t1.toml", spool.dir("active") / "t1.toml"
    # the other daemon is inside claim(): it holds the spool lock and has linked but not unlinked yet
    lock = os.open(spool.root / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
    fcntl.flock(lock, fcntl.LOCK_EX)
    os.link(src, dest)
    outcome: list[object] = []

    def ours() -> None:
        try:
            outcome.append(spool.claim("t1.toml"))
        except TicketError as e:
            outcome.append(e)

    t = threading.Thread(target=ours, daemon=True)
    t.start()
    t.join(0.5)
    os.unlink(src)  # the other daemon finishes its claim and lets go of the spool lock
    os.close(lock)
    t.join(10)
    assert not t.is_alive()
    assert outcome == [None]


def test_claim_rejects_an_invalid_name_without_moving_it(spool: Spool) -> None:
    bad = spool.dir("incoming") / "Bad Name.toml"
    bad.write_text(TICKET)
    with pytest.raises(TicketError, match="not a valid ticket name"):
        spool.claim("Bad Name.toml")
    assert bad.exists() and _files(spool.dir("active")) == []


# ---------------------------------------------------------------- read hygiene


def _regular(path: Path, data: bytes, mode: int = 0o640) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)


def _symlink(path: Path) -> None:
    target = path.parent.parent / "tmp" / "target.toml"
    _regular(target, TICKET.encode())
    os.symlink(target, path)


def _hardlink(path: Path) -> None:
    _regular(path, TICKET.encode())
    os.link(path, path.parent.parent / "tmp" / "second-name")


HOSTILE = {
    "symlink": (_symlink, "symbolic link"),
    "hardlink": (_hardlink, "2 hard links"),
    "group-writable": (lambda p: _regular(p, TICKET.encode(), 0o660), "group- or world-writable"),
    "world-writable": (lambda p: _regular(p, TICKET.encode(), 0o646), "group- or world-writable"),
    "empty": (lambda p: _regular(p, b""), "is empty"),
    "whitespace": (lambda p: _regular(p, b" \n\t\r\n  \n"), "is empty"),
    "too-big": (lambda p: _regular(p, b"#" + b"x" * MAX_TICKET_BYTES + b"\n"), "byte limit"),
    "not-utf8": (lambda p: _regular(p, b'job = "ok"\nnote = "\xff\xfe"\n'), "not UTF-8"),
    "fifo": (lambda p: os.mkfifo(p, 0o640), "not a regular file"),
    "directory": (lambda p: p.mkdir(mode=0o750), "not a regular file"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_read_refuses_hostile_files(spool: Spool, kind: str) -> None:
    make, reason = HOSTILE[kind]
    path = spool.dir("incoming") / "x.toml"
    make(path)
    outcome: list[object] = []

    def read() -> None:  # in a thread: a FIFO opened without O_NONBLOCK would block forever
        try:
            outcome.append(read_ticket(path))
        except TicketError as e:
            outcome.append(e)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "read() blocked"
    assert len(outcome) == 1 and isinstance(outcome[0], TicketError), outcome
    assert reason in str(outcome[0])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_read_refuses_a_ticket_owned_by_someone_else(spool: Spool) -> None:
    path = spool.dir("incoming") / "x.toml"
    _regular(path, TICKET.encode())
    os.chown(path, 4242, 4242)
    with pytest.raises(TicketError, match="owned by uid 4242"):
        read_ticket(path)


def test_read_accepts_exactly_the_size_limit(spool: Spool) -> None:
    path = spool.dir("incoming") / "x.toml"
    body = TICKET.encode()
    _regular(path, body + b"#" * (MAX_TICKET_BYTES - len(body)))
    assert len(read_ticket(path).encode()) == MAX_TICKET_BYTES


def test_waiting_ignores_hidden_and_foreign_names(spool: Spool) -> None:
    for name in ("b.toml", "a.toml", ".hidden.toml", "notes.txt", "c.toml.tmp", "partial.tom", "Upper.toml"):
        (spool.dir("incoming") / name).write_text(TICKET)
    assert spool.waiting() == ["Upper.toml", "a.toml", "b.toml"]  # an invalid name is claim()'s to reject


# ---------------------------------------------------------------- reject


def test_reject_moves_the_ticket_and_says_why(spool: Spool) -> None:
    spool.submit(TICKET, "t1")
    dest = spool.reject(spool.dir("incoming") / "t1.toml", "unknown job 'ok'")
    assert dest == spool.dir("rejected") / "t1.toml"
    assert dest.read_text() == TICKET
    assert (spool.dir("rejected") / "t1.error").read_text() == "t1.toml: unknown job 'ok'\n"
    assert _files(spool.dir("incoming")) == []


def test_reject_sanitises_an_invalid_name(spool: Spool) -> None:
    bad = spool.dir("incoming") / "Bad Name.toml"
    bad.write_text(TICKET)
    dest = spool.reject(bad, "not a valid ticket name")
    assert dest.parent == spool.dir("rejected")
    assert " " not in dest.name and dest.name.startswith("bad_name-") and dest.suffix == ".toml"
    assert dest.read_text() == TICKET
    err = dest.with_suffix(".error")
    assert err.read_text() == "Bad Name.toml: not a valid ticket name\n"
    assert sorted(os.listdir(spool.dir("rejected"))) == sorted([dest.name, err.name])
    assert not bad.exists()


def test_reject_moves_what_cannot_be_hard_linked(spool: Spool) -> None:
    """Regression: _move() used only link(2); a directory named x.toml (EPERM) could never be rejected."""
    (spool.dir("incoming") / "d.toml").mkdir(mode=0o750)
    with pytest.raises(TicketError, match="not a regular file") as e:
        read_ticket(spool.dir("incoming") / "d.toml")
    dest = spool.reject(spool.dir("incoming") / "d.toml", str(e.value))
    assert dest == spool.dir("rejected") / "d.toml" and dest.is_dir()
    assert (spool.dir("rejected") / "d.error").read_text() == "d.toml: is not a regular file\n"
    assert _files(spool.dir("incoming")) == []
    (spool.dir("incoming") / "d.toml").mkdir(mode=0o750)  # and a second one never lands on the first
    assert spool.reject(spool.dir("incoming") / "d.toml", "again") == spool.dir("rejected") / "d.1.toml"


def test_reject_never_overwrites_an_earlier_rejection(spool: Spool) -> None:
    for reason in ("first", "second"):
        path = spool.dir("incoming") / "t1.toml"
        _regular(path, f"# {reason}\n".encode())
        spool.reject(path, reason)
    assert (spool.dir("rejected") / "t1.toml").read_text() == "# first\n"
    assert (spool.dir("rejected") / "t1.error").read_text() == "t1.toml: first\n"
    assert (spool.dir("rejected") / "t1.1.toml").read_text() == "# second\n"
    assert (spool.dir("rejected") / "t1.1.error").read_text() == "t1.toml: second\n"


def test_reject_claimed_releases_the_lock(spool: Spool) -> None:
    spool.submit(TICKET, "t1")
    c = spool.claim("t1.toml")
    assert c is not None
    spool.reject_claimed(c, "bad")
    assert _files(spool.dir("active")) == []
    assert (spool.dir("rejected") / "t1.error").read_text() == "t1.toml: bad\n"


# ---------------------------------------------------------------- release


@pytest.mark.parametrize("text", [TICKET, 'job = "ok"  # no newline at the end', '[env]\nA = "1"'])
def test_release_appends_a_result_table_and_keeps_the_ticket(spool: Spool, text: str) -> None:
    spool.submit(text, "t1")
    c = spool.claim("t1.toml")
    assert c is not None
    spool.record_process(c, {"pid": 1, "ticket": "t1"})
    res = {
        "status": "succeeded",
        "attempts": 1,
        "exit_code": 0,
        "duration_s": 0.5,
        "log": "/x/t1.jsonl",
        "finished_at": "2026-01-01T00:00:00.000000Z",
        "metrics": {"acc": 0.9, "epochs": 3},
    }
    dest = spool.release(c, "done", res)
    assert dest == spool.dir("done") / "t1.toml"
    content = dest.read_text()
    assert content.startswith(text)
    parsed = tomllib.loads(content)
    assert parsed["result"] == res
    assert {k: v for k, v in parsed.items() if k != "result"} == tomllib.loads(text)
    assert _files(spool.dir("active")) == []  # ticket and sidecar both gone
    assert _files(spool.dir("tmp")) == []


def test_release_back_to_incoming_keeps_the_text_unchanged(spool: Spool) -> None:
    spool.submit(TICKET, "t1")
    c = spool.claim("t1.toml")
    assert c is not None
    dest = spool.release(c, "incoming", None)
    assert dest == spool.dir("incoming") / "t1.toml"
    assert dest.read_text() == TICKET
    assert read_ticket(dest) == TICKET  # and it can be claimed again
    again = spool.claim("t1.toml")
    assert again is not None
    os.close(again.lock_fd)


# ---------------------------------------------------------------- recover


def test_recover_returns_an_unlocked_ticket_and_kills_its_group(spool: Spool, group: subprocess.Popen[bytes]) -> None:
    spool.submit(TICKET, "t1")
    c = spool.claim("t1.toml")
    assert c is not None
    spool.record_process(c, process_identity(group.pid) | {"ticket": "t1", "attempt": 1})
    before = group_members(group.pid)
    assert len(before) >= 2
    os.close(c.lock_fd)  # the daemon died: the kernel dropped its lock
    assert spool.recover() == ["t1"]
    assert _files(spool.dir("active")) == []
    assert (spool.dir("incoming") / "t1.toml").read_text() == TICKET
    group.wait(10)
    wait_for(lambda: group_members(group.pid) == [], what="the whole process group to die")


def test_recover_leaves_a_ticket_whose_lock_is_held(spool: Spool, group: subprocess.Popen[bytes]) -> None:
    spool.submit(TICKET, "t1")
    c = spool.claim("t1.toml")
    assert c is not None
    spool.record_process(c, process_identity(group.pid) | {"ticket": "t1"})
    os.close(c.lock_fd)
    held = os.open(spool.dir("active") / "t1.toml", os.O_RDONLY)  # a live daemon's lock
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert spool.recover() == []
        assert _files(spool.dir("active")) == [".t1.json", "t1.toml"]
        assert _files(spool.dir("incoming")) == []
        assert len(group_members(group.pid)) >= 2  # its job was not touched
        assert group.poll() is None
    finally:
        os.close(held)
    assert spool.recover() == ["t1"]  # once that daemon is gone


def test_recover_does_not_kill_a_recycled_pid(spool: Spool, group: subprocess.Popen[bytes]) -> None:
    spool.submit(TICKET, "t1")
    c = spool.claim("t1.toml")
    assert c is not None
    info = process_identity(group.pid)
    spool.record_process(c, info | {"start_time": info["start_time"] + 1})  # the job we started is long gone
    os.close(c.lock_fd)
    assert spool.recover() == ["t1"]
    assert len(group_members(group.pid)) >= 2 and group.poll() is None
    assert _files(spool.dir("incoming")) == ["t1.toml"]


def _job_group(marker: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        ["sh", "-c", "sleep 60 & sleep 60"], start_new_session=True, env={**os.environ, "TEST_MARKER": marker, **env}
    )
    wait_for(lambda: len(group_members(p.pid)) >= 2, what="sh and its background sleep")
    return p


def test_recover_kills_a_job_that_no_sidecar_names(spool: Spool, marker: str) -> None:
    """A daemon killed between a spawn and the sidecar's write leaves a job no record names: it is
    found by AIMEDRES_JOB_ID=<ticket> and AIMEDRES_SPOOL=<this spool> in its environment. A job with
    the same ticket name from another spool is left alone."""
    spool.submit(TICKET, "t1")
    c = spool.claim("t1.toml")
    assert c is not None
    ours = _job_group(marker, {"AIMEDRES_JOB_ID": "t1", "AIMEDRES_SPOOL": spool.identity})
    other = _job_group(marker, {"AIMEDRES_JOB_ID": "t1", "AIMEDRES_SPOOL": spool.identity + "-elsewhere"})
    try:
        os.close(c.lock_fd)  # the daemon died before record_process(): no sidecar
        assert not (spool.dir("active") / ".t1.json").exists()
        assert spool.recover() == ["t1"]
        ours.wait(10)
        wait_for(lambda: group_members(ours.pid) == [], what="the unrecorded job's whole group to die")
        assert other.poll() is None and len(group_members(other.pid)) >= 2
    finally:
        for p in (ours, other):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
            wait_for(lambda p=p: group_members(p.pid) == [], what="the group to die")  # its background sleep too


def test_recover_undoes_a_claim_cut_between_link_and_unlink(spool: Spool) -> None:
    spool.submit(TICKET, "t1")
    os.link(spool.dir("incoming") / "t1.toml", spool.dir("active") / "t1.toml")  # then the daemon died
    assert spool.recover() == ["t1"]
    assert _files(spool.dir("active")) == []
    path = spool.dir("incoming") / "t1.toml"
    assert os.stat(path).st_nlink == 1 and path.read_text() == TICKET
    c = spool.claim("t1.toml")
    assert c is not None
    os.close(c.lock_fd)


def test_recover_ignores_sidecars_and_foreign_names(spool: Spool) -> None:
    (spool.dir("active") / ".t9.json").write_text('{"pid": 1}')
    (spool.dir("active") / "notes.txt").write_text("x")
    assert spool.recover() == []
    assert "notes.txt" in _files(spool.dir("active")) and _files(spool.dir("incoming")) == []


def test_recover_drops_a_sidecar_whose_ticket_has_finished(spool: Spool) -> None:
    spool.submit(TICKET, "t1")
    c = spool.claim("t1.toml")
    assert c is not None
    spool.record_process(c, {"ticket": "t1", "pid": 123, "attempt": 1})
    spool._move(c.path, spool.dir("done"), "t1.toml")  # release()'s first step; then the daemon is killed
    os.close(c.lock_fd)
    spool.recover()
    assert list(spool.running()) == []


CLAIMER = textwrap.dedent("""
    import os, subprocess, sys, time
    from pathlib import Path
    from aimedres_async.daemon.orphans import process_identity
    from aimedres_async.daemon.spool import Spool
    spool = Spool(Path(sys.argv[1]))
    c = spool.claim("t1.toml")
    job = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60"], start_new_session=True)
    spool.record_process(c, process_identity(job.pid) | {"ticket": c.ticket_id, "attempt": 1})
    print(job.pid, flush=True)
    time.sleep(120)
""")


def test_recover_after_a_real_daemon_is_killed(spool: Spool, marker: str) -> None:
    """A real process claims and starts a job group; alive it keeps its ticket, after kill -9 it loses it."""
    spool.submit(TICKET, "t1")
    daemon = subprocess.Popen(
        [PY, "-c", CLAIMER, str(spool.root)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TEST_MARKER": marker},
    )
    pgid = 0
    try:
        assert daemon.stdout is not None
        pgid = int(daemon.stdout.readline())
        wait_for(lambda: len(group_members(pgid)) >= 2, what="the job's sh and its background sleep")
        assert spool.recover() == []  # its lock is alive with it
        assert _files(spool.dir("active")) == [".t1.json", "t1.toml"]
        daemon.kill()
        daemon.wait(10)
        assert len(group_members(pgid)) >= 2  # orphaned, still running
        assert spool.recover() == ["t1"]
        wait_for(lambda: group_members(pgid) == [], what="the orphaned group to be killed")
        assert _files(spool.dir("incoming")) == ["t1.toml"] and _files(spool.dir("active")) == []
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
        if pgid:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_for(lambda: group_members(pgid) == [], what="the group to die")
        if daemon.stdout is not None:
            daemon.stdout.close()


# ---------------------------------------------------------------- tmp/ sweep

STAGER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from aimedres_async.daemon.spool import Spool
    tmp = Spool(Path(sys.argv[1]))._staging(sys.argv[2])
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.write(fd, b'job = "ok"\\n')
    print(tmp.name, flush=True)
    os.kill(os.getpid(), 9)  # killed between writing and linking
""")


def _stage_and_die(spool: Spool, name: str) -> str:
    p = subprocess.run([PY, "-c", STAGER, str(spool.root), name], capture_output=True, text=True, timeout=60)
    assert p.returncode == -signal.SIGKILL, p.stderr
    return p.stdout.strip()


def _age(path: Path, seconds: float) -> None:
    t = path.stat().st_mtime - seconds
    os.utime(path, (t, t), follow_symlinks=False)


def test_sweep_removes_the_staging_file_of_a_killed_writer(spool: Spool) -> None:
    left = _stage_and_die(spool, "t1")
    assert _files(spool.dir("tmp")) == [left] and left.startswith(".t1.")
    assert spool.sweep_tmp() == []  # seconds old: its writer might be in another pid namespace
    _age(spool.dir("tmp") / left, 11)
    assert spool.sweep_tmp() == [left]
    assert _files(spool.dir("tmp")) == []


def test_sweep_keeps_a_live_writers_file_and_removes_anything_36_hours_old(spool: Spool) -> None:
    ours = spool._staging("t2")  # this process: alive
    ours.write_text(TICKET)
    _age(ours, 3600)
    foreign = spool.dir("tmp") / "upload-7"  # another program's staging name (README: tmp/<anything>)
    foreign.write_text(TICKET)
    _age(foreign, 35 * 3600)
    spool.submit(TICKET, "t3")
    assert spool.sweep_tmp() == []
    _age(foreign, 3600 + 1)
    _age(ours, 35 * 3600)
    assert sorted(spool.sweep_tmp()) == sorted([foreign.name, ours.name])
    assert _files(spool.dir("tmp")) == []
    assert _files(spool.dir("incoming")) == ["t3.toml"]  # a submitted ticket is never touched


def test_recover_sweeps_tmp_and_sidecar_temps(spool: Spool) -> None:
    """A daemon killed mid-write leaves a staging file in tmp/ and maybe a sidecar's temp in active/."""
    left = _stage_and_die(spool, "t4.toml")
    _age(spool.dir("tmp") / left, 60)
    spool.submit(TICKET, "t5")
    c = spool.claim("t5.toml")
    assert c is not None
    (spool.dir("active") / ".t5.json.tmp").write_text('{"pid": 1')  # cut short
    (spool.dir("active") / ".gone.json.tmp").write_text("{}")  # its ticket has moved on
    os.close(c.lock_fd)  # the daemon dies
    assert spool.recover() == ["t5"]
    assert _files(spool.dir("tmp")) == []
    assert _files(spool.dir("active")) == []
    assert _files(spool.dir("incoming")) == ["t5.toml"]


def test_status_helpers_see_claimed_tickets(spool: Spool) -> None:
    spool.submit(TICKET, "t1")
    spool.submit(TICKET, "t2")
    c = spool.claim("t1.toml")
    assert c is not None
    spool.record_process(c, {"ticket": "t1", "pid": 123, "attempt": 1})
    assert spool.counts() == {"incoming": 1, "active": 1, "done": 0, "failed": 0, "rejected": 0}
    assert list(spool.running()) == [{"ticket": "t1", "pid": 123, "attempt": 1}]
    assert spool.find("t1") == ("active", spool.dir("active") / "t1.toml")
    assert spool.find("t2") == ("incoming", spool.dir("incoming") / "t2.toml")
    assert spool.find("t3") is None
    spool.release(c, "failed", {"status": "failed"})
    assert list(spool.running()) == []
    assert spool.find("t1") == ("failed", spool.dir("failed") / "t1.toml")
