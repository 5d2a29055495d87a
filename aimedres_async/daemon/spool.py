"""The spool directory protocol: submit, claim, file, reject, recover; the folders and their rules.

    spool/tmp/       writers stage a ticket here, fsync it, then link it into incoming/
    spool/incoming/  waiting tickets <ticket_id>.toml
    spool/active/    claimed by a daemon (which holds a flock on it while it runs)
    spool/done/ failed/   finished, with a [result] table appended
    spool/rejected/  bad tickets, each with a <name>.error saying why
    spool/control/   requests to the daemons: <ticket_id>.cancel, `paused`; and each serving
                     daemon's daemon.<pid>.json (what `status` shows)

Every move is link(2) + unlink(2), so no ticket ever replaces another, followed by an fsync of
both folders, so a power cut cannot lose or resurrect one. A staging file in tmp/ is named
`.<name>.<writer pid>.<random>`; one whose writer is gone, or any file there older than 36 hours
(Maildir's rule, for other programs' staging files), is garbage and is swept. A ticket's own file
(how it is read, its [result]) is tickets.py's; the jobs a dead daemon left behind are orphans.py's.
One class keeps every rule about the folders (the lock, the moves, recovery, control/) in one
place, which makes this module a little longer than 500 lines.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from aimedres_async.daemon.orphans import job_groups, kill_groups, kill_recorded, pid_alive, start_time
from aimedres_async.daemon.tickets import (
    SUFFIX,
    Order,
    TicketError,
    filed_result,
    read_order,
    read_ticket,
    read_to_cancel,
    safe_name,
    with_result,
)
from aimedres_async.plan.config import JOB_ID_RE
from aimedres_async.plan.limits import read_regular_file
from aimedres_async.system import atomic

STATES = ("incoming", "active", "done", "failed", "rejected", "tmp", "control")
STALE_TMP_S = 36 * 3600  # any file in tmp/ this old is abandoned (Maildir's rule)
DEAD_WRITER_TMP_S = 10.0  # ... and one of ours this old whose writer pid is gone
WRITER_WAIT_S = 1.0  # how long a claim waits for a writer's unlink from tmp/ before looking later
_STAGED = re.compile(r"\..+\.(\d+)\.[0-9a-f]{8}")


class SpoolError(Exception):
    """The spool cannot be used (insecure, not a folder, ...): a one-line reason."""


@dataclass(frozen=True)
class Claimed:
    """A ticket this daemon owns: its text and the locked descriptor that proves ownership."""

    ticket_id: str
    path: Path
    text: str
    lock_fd: int


@dataclass(frozen=True)
class Queued:
    """A waiting ticket as the daemon orders them: priority (higher first), then arrival."""

    ticket_id: str
    priority: int
    after: tuple[str, ...]  # tickets that must succeed first
    mtime_ns: int  # when its writer wrote it: kept by the link into incoming/ and by recovery
    order: Order = field(default_factory=Order)  # its number, label, group, not_before


_fsync_dir = atomic.fsync_dir


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._order: dict[str, tuple[int, Order]] = {}  # see queue()

    def _hand_over(self, fd: int) -> None:
        """root writing into a spool another user owns (`cancel`, `pause` run by root): the new file
        goes to the spool's owner, whose daemon must read, lock and move it."""
        if os.geteuid() != 0:
            return
        try:
            st = os.stat(self.root)
        except OSError:
            return
        if st.st_uid != 0:
            os.fchown(fd, st.st_uid, st.st_gid)

    @property
    def identity(self) -> str:
        """The spool's real path: what a daemon puts in its jobs' AIMEDRES_SPOOL."""
        return os.path.realpath(self.root)

    def dir(self, state: str) -> Path:
        return self.root / state

    def ensure(self, check_secure: bool = True) -> None:
        """Create the folders (mode 0750); refuse a spool other users could write to."""
        try:
            self.root.mkdir(mode=0o750, parents=True, exist_ok=True)
            # incoming/ last: a client that sees it finds tmp/ (where tickets are written) there too
            for state in sorted(STATES, key=lambda s: s == "incoming"):
                (self.root / state).mkdir(mode=0o750, exist_ok=True)
        except OSError as e:
            raise SpoolError(f"cannot create spool {self.root}: {e.strerror or e}") from None
        if not check_secure:
            return
        for folder in [self.root, *(self.root / s for s in STATES)]:
            st = os.lstat(folder)
            if not stat.S_ISDIR(st.st_mode):
                raise SpoolError(f"{folder} is not a folder (a symlink?)")
            if st.st_mode & 0o022:
                mode = stat.filemode(st.st_mode)
                raise SpoolError(
                    f"refusing spool {folder}: writable by other users (mode {mode}); run `chmod go-w {folder}`"
                )
            if st.st_uid not in (os.geteuid(), 0):
                raise SpoolError(f"refusing spool {folder}: owned by uid {st.st_uid}, not by us")

    # ------------------------------------------------------------ writing

    def submit(self, text: str, ticket_id: str, owner: tuple[int, int] | None = None) -> Path:
        """Stage in tmp/, fsync, link into incoming/ (never over an existing ticket). owner: (uid,
        gid) to give the ticket (root submitting for the daemon's user)."""
        if not JOB_ID_RE.fullmatch(ticket_id):
            raise TicketError(f"invalid ticket id {ticket_id!r}")
        for state in ("incoming", "active", "done", "failed", "rejected"):
            if (self.dir(state) / f"{ticket_id}{SUFFIX}").exists():
                raise TicketError(f"ticket {ticket_id} already exists in {state}/")
        dest = self.dir("incoming") / f"{ticket_id}{SUFFIX}"
        chown = (lambda fd: os.fchown(fd, *owner)) if owner is not None else None
        if not atomic.create(dest, text.encode(), tmp=self._staging(ticket_id), fd_hook=chown):
            raise TicketError(f"ticket {ticket_id} already exists in incoming/")
        return dest

    def _staging(self, name: str) -> Path:
        """A fresh staging path in tmp/ that names its writer, so a sweep can tell it is abandoned."""
        return self.dir("tmp") / f".{name}.{os.getpid()}.{os.urandom(4).hex()}"

    def sweep_tmp(self, now: float | None = None) -> list[str]:
        """Remove abandoned staging files: ours whose writer process is gone (a submit or a daemon
        killed between writing and linking), and anything older than 36 hours. A ticket is
        submitted only once it is linked into incoming/, so nothing submitted is removed."""
        now = time.time() if now is None else now
        removed: list[str] = []
        try:
            names = os.listdir(self.dir("tmp"))
        except FileNotFoundError:
            return removed
        for name in names:
            path = self.dir("tmp") / name
            try:
                age = now - os.lstat(path).st_mtime
            except FileNotFoundError:
                continue
            m = _STAGED.fullmatch(name)
            writer_gone = m is not None and age >= DEAD_WRITER_TMP_S and not pid_alive(int(m.group(1)))
            if writer_gone or age >= STALE_TMP_S:
                with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                    os.unlink(path)
                    removed.append(name)
        return removed

    def _move(self, src: Path, dest_dir: Path, name: str, content: bytes | None = None) -> Path:
        """Move src to dest_dir/name (a free variant of it if taken), optionally with new content."""
        dest = dest_dir / name
        stem, suffix = (name[: -len(SUFFIX)], SUFFIX) if name.endswith(SUFFIX) else (name, "")
        for n in range(1, 1000):
            try:
                if content is None:
                    try:
                        os.link(src, dest, follow_symlinks=False)
                    except PermissionError:
                        # Linking a file we do not own is refused (fs.protected_hardlinks), e.g. a
                        # ticket root left unreadable to us. rename(2) needs only the folders; the
                        # target is checked free first, and only this daemon writes dest_dir.
                        if os.path.lexists(dest):
                            raise FileExistsError(dest) from None
                        os.rename(src, dest)
                        _fsync_dir(dest_dir)
                        _fsync_dir(src.parent)
                        return dest
                elif not atomic.create(dest, content, tmp=self._staging(name), fd_hook=self._hand_over):
                    raise FileExistsError(dest)
                break
            except FileExistsError:
                dest = dest_dir / f"{stem}.{n}{suffix}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(src)
        _fsync_dir(dest_dir)
        _fsync_dir(src.parent)
        return dest

    # ------------------------------------------------------------ reading

    def waiting(self) -> list[str]:
        """Names in incoming/ that look like tickets, oldest name first (ids sort by time)."""
        try:
            names = os.listdir(self.dir("incoming"))
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(SUFFIX) and not n.startswith("."))

    # ------------------------------------------------------------ the daemon's side

    @contextlib.contextmanager
    def _spool_lock(self) -> Iterator[None]:
        """Serialises claim() against recover(): a ticket is never seen linked but not yet locked."""
        fd = os.open(self.root / ".lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
        try:
            self._hand_over(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def claim(self, name: str) -> Claimed | None:
        """Move incoming/name to active/ and lock it; None if another daemon got it first.

        Raises TicketError for a ticket that must be rejected (it stays in incoming/ for reject()).
        """
        src = self.dir("incoming") / name
        ticket_id = name[: -len(SUFFIX)]
        if not JOB_ID_RE.fullmatch(ticket_id):
            raise TicketError(f"{name!r} is not a valid ticket name (<id>.toml, id = [a-z0-9][a-z0-9_.-]{{0,63}})")
        dest = self.dir("active") / name
        # Under the lock another daemon's claim is either not started or complete: the ticket is
        # gone (theirs) or has one link, never caught half-moved with two.
        with self._spool_lock():
            if not os.path.lexists(src):
                return None  # someone else claimed it first
            taken = self.name_taken(name)
            if taken == "":  # the same file as a rejected one: a rejection cut short by a crash
                os.unlink(src)
                _fsync_dir(self.dir("incoming"))
                return None
            if taken is not None:
                raise TicketError(
                    f"the name {ticket_id} is taken: a ticket of that name is already in {taken}/ "
                    "(ticket names are never reused; give the new ticket a new name)"
                )
            if not self._writer_done(src):
                return None  # its writer is between link and unlink: claimed at a later look
            text = read_ticket(src)  # hygiene before it is ours
            try:
                os.link(src, dest, follow_symlinks=False)
            except FileExistsError:
                return None  # claimed by someone else meanwhile (a recovered claim: see name_taken)
            except FileNotFoundError:
                return None  # someone else claimed it first
            fd = os.open(dest, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            fcntl.flock(fd, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(src)
        _fsync_dir(self.dir("active"))
        _fsync_dir(self.dir("incoming"))
        return Claimed(ticket_id, dest, text, fd)

    def _writer_done(self, src: Path) -> bool:
        """False while `src` still has its writer's staging name in tmp/ as a second link (the
        protocol's link, then unlink), after waiting up to WRITER_WAIT_S for the unlink. A staging
        name whose writer is dead is removed here. True otherwise: one link, or a second one that
        is not in tmp/ or has been there DEAD_WRITER_TMP_S since the link (read_ticket rejects it)."""
        deadline = time.monotonic() + WRITER_WAIT_S
        while True:
            try:
                st = os.lstat(src)
            except FileNotFoundError:
                return True  # claim() finds it gone
            linked_for = time.time() - st.st_ctime  # a link changes the ctime
            staged = self._staged_twin(st) if st.st_nlink == 2 and linked_for < DEAD_WRITER_TMP_S else None
            if staged is None:
                return True
            m = _STAGED.fullmatch(staged)
            if m is not None and not pid_alive(int(m.group(1))):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.dir("tmp") / staged)  # the writer died before its unlink
                continue
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def _staged_twin(self, st: os.stat_result) -> str | None:
        """The name in tmp/ of the file `st` describes, if it has one there."""
        try:
            names = os.listdir(self.dir("tmp"))
        except FileNotFoundError:
            return None
        for name in names:
            with contextlib.suppress(OSError):
                if os.path.samestat(os.lstat(self.dir("tmp") / name), st):
                    return name
        return None

    def name_taken(self, name: str) -> str | None:
        """Where another ticket already has this name (active/, done/, failed/, rejected/), else None.

        Ticket ids are unique for the life of the spool: logs, `wait`, `after` and crash recovery
        all find a ticket by its id. A new ticket under a used name is rejected, never dropped or
        run over the earlier one's result. "" means incoming/name is the very file in rejected/:
        the remnant of a rejection a crash cut short, not a new ticket. The same file in active/
        is a claim cut short, which recovery undoes: not taken.
        """
        src = self.dir("incoming") / name
        for state in ("active", "done", "failed", "rejected"):
            other = self.dir(state) / name
            if not os.path.lexists(other):
                continue
            with contextlib.suppress(OSError):
                if os.path.samestat(os.lstat(src), os.lstat(other)):
                    return "" if state == "rejected" else None
            return state
        return None

    def record_process(self, c: Claimed, info: dict[str, Any]) -> None:
        """Note what runs for a claimed ticket (pid, pgid, ...), for `status` and crash recovery."""
        path = self.dir("active") / f".{c.ticket_id}.json"
        # Not fsynced: it names live processes, which a machine crash ends too; the rename keeps
        # it whole across a crash of the daemon. The temp name is the one recovery knows.
        atomic.write(path, orjson.dumps(info), tmp=path.with_name(path.name + ".tmp"), durable=False)

    def _sidecar(self, ticket_id: str) -> Path:
        return self.dir("active") / f".{ticket_id}.json"

    def release(self, c: Claimed, state: str, result: dict[str, Any] | None) -> Path:
        """Finish a claimed ticket: to done/ or failed/ with a [result] table, or back to incoming/."""
        # The sidecar first: a crash in between leaves a ticket without one (recovered and re-run),
        # never a sidecar that `status` would show as running forever.
        with contextlib.suppress(FileNotFoundError):
            self._sidecar(c.ticket_id).unlink()
        if state == "incoming":
            dest = self._move(c.path, self.dir("incoming"), c.path.name)
        else:
            dest = self._move(c.path, self.dir(state), c.path.name, with_result(c.text, result or {}))
        os.close(c.lock_fd)
        return dest

    def reject_claimed(self, c: Claimed, reason: str) -> Path:
        dest = self.reject(c.path, reason)
        os.close(c.lock_fd)
        return dest

    def reject(self, path: Path, reason: str) -> Path:
        """Move a bad ticket (or whatever it is) to rejected/ with a .error file saying why."""
        name = path.name
        stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
        if not JOB_ID_RE.fullmatch(stem):
            stem = safe_name(stem)
        rejected = self.dir("rejected")
        # The first name whose ticket is free: an .error without its ticket can only be left by a
        # crashed rejection of this same ticket, and is overwritten.
        free = next(
            s
            for s in (stem, *(f"{stem}.{n}" for n in range(1, 1000)))
            if not os.path.lexists(rejected / f"{s}{SUFFIX}")
        )
        # The reason first, whole (temp + fsync + rename): a crash can never leave a rejected
        # ticket without it. Only this daemon writes rejected/, so the free name stays free.
        atomic.write(
            rejected / f"{free}.error",
            f"{name}: {reason}\n".encode(),
            tmp=self._staging(f"{free}.error"),
            fd_hook=self._hand_over,
        )
        return self._move(path, rejected, f"{free}{SUFFIX}")

    def recover(self) -> list[str]:
        """Return tickets left in active/ by a dead daemon to incoming/, after killing their jobs.

        A ticket whose lock is still held belongs to a live daemon and is left alone. Abandoned
        staging files in tmp/ are swept too (`sweep_tmp`).
        """
        with self._spool_lock():
            recovered = self._recover()
        self.sweep_tmp()
        return recovered

    def _recover(self) -> list[str]:
        recovered = []
        unrecorded: dict[str, set[int]] | None = None
        names = sorted(os.listdir(self.dir("active")))
        for name in names:  # a sidecar (or its temp) whose ticket has moved on: a crash in release()
            base = name[: -len(".tmp")] if name.endswith(".json.tmp") else name
            if base.startswith(".") and base.endswith(".json") and f"{base[1:-5]}{SUFFIX}" not in names:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.dir("active") / name)
        for name in names:
            if not name.endswith(SUFFIX) or name.startswith("."):
                continue
            path = self.dir("active") / name
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # a live daemon runs it
            ticket_id = name[: -len(SUFFIX)]
            kill_recorded(self._sidecar(ticket_id))
            if unrecorded is None:  # one /proc scan for all the tickets recovered here
                unrecorded = job_groups(self.identity)
            kill_groups(unrecorded.get(ticket_id, set()))
            incoming = self.dir("incoming") / name
            # Ticket ids are unique across states, so a copy in a final folder means the ticket was
            # filed and only the unlink of active/ was lost to the crash: finish that, never re-run.
            filed = any(os.path.lexists(self.dir(s) / name) for s in ("done", "failed", "rejected"))
            try:
                if filed:
                    os.unlink(path)
                elif incoming.exists() and os.path.samefile(incoming, path):
                    os.unlink(path)  # a crash between link and unlink of claim(): undo the claim
                else:
                    self._move(path, self.dir("incoming"), name)
            finally:
                os.close(fd)
            for leftover in (self._sidecar(ticket_id), self._sidecar(ticket_id).with_suffix(".json.tmp")):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
            recovered.append(ticket_id)
        return recovered

    def counts(self) -> dict[str, int]:
        out = {}
        for state in ("incoming", "active", "done", "failed", "rejected"):
            try:
                out[state] = sum(1 for n in os.listdir(self.dir(state)) if n.endswith(SUFFIX) and not n.startswith("."))
            except FileNotFoundError:
                out[state] = 0
        return out

    def running(self) -> Iterator[dict[str, Any]]:
        """What `record_process` noted for each active ticket."""
        try:
            names = sorted(os.listdir(self.dir("active")))
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith(".") and name.endswith(".json"):
                try:
                    yield orjson.loads(read_regular_file(self.dir("active") / name, 1 << 20))
                except (OSError, ValueError):  # orjson.JSONDecodeError is a ValueError
                    continue

    def queue(self) -> list[Queued]:
        """The waiting tickets in the order they will be claimed: priority (higher first), then the
        time they were written (FIFO), then name. Each ticket is looked at once, when it first shows
        up (a ticket in incoming/ is never rewritten in place: writers link whole files)."""
        out = []
        for name in self.waiting():
            cached = self._order.get(name)
            if cached is None:
                path = self.dir("incoming") / name
                mtime_ns = 0
                try:
                    mtime_ns = os.lstat(path).st_mtime_ns
                    order = read_order(path)
                except FileNotFoundError:
                    continue
                except OSError:
                    order = Order()  # claim() rejects it in its turn
                cached = self._order[name] = (mtime_ns, order)
            mtime_ns, order = cached
            out.append(Queued(name[: -len(SUFFIX)], order.priority, order.after, mtime_ns, order))
        if len(self._order) > len(out):
            live = {f"{q.ticket_id}{SUFFIX}" for q in out}
            self._order = {n: v for n, v in self._order.items() if n in live}
        out.sort(key=lambda q: (-q.priority, q.mtime_ns, q.ticket_id))
        return out

    def state_of(self, ticket_id: str) -> tuple[str, dict[str, Any]] | None:
        """Where a ticket is ("incoming", "active", "done", "failed", "rejected") and, once filed,
        its [result] table (for rejected/: the reason, as `error`). None: no such ticket."""
        for state in ("done", "failed", "rejected", "active", "incoming"):
            path = self.dir(state) / f"{ticket_id}{SUFFIX}"
            if not os.path.lexists(path):
                continue
            if state in ("done", "failed"):
                return state, filed_result(path)
            if state == "rejected":
                try:
                    error = read_regular_file(self.dir(state) / f"{ticket_id}.error", 1 << 20)
                    reason = error.decode("utf-8", "replace").strip()
                except (OSError, ValueError):
                    reason = "rejected"
                return state, {"status": "rejected", "error": reason}
            return state, {}
        return None

    # ------------------------------------------------------------ control: cancel, pause, daemons

    def request_cancel(self, ticket_id: str) -> None:
        """Ask the daemon running this ticket to cancel it (control/<id>.cancel, kept until it is filed)."""
        self._put(self.dir("control") / f"{ticket_id}.cancel", f"{os.getpid()} {time.time():.3f}\n".encode())

    def cancel_requests(self) -> list[str]:
        try:
            names = os.listdir(self.dir("control"))
        except FileNotFoundError:
            return []
        return sorted(n[: -len(".cancel")] for n in names if n.endswith(".cancel") and not n.startswith("."))

    def drop_request(self, ticket_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dir("control") / f"{ticket_id}.cancel")

    def paused(self) -> bool:
        return os.path.lexists(self.dir("control") / "paused")

    def set_paused(self, paused: bool) -> None:
        """`pause` / `resume`, kept in the spool so a restarted daemon keeps it."""
        flag = self.dir("control") / "paused"
        if paused:
            self._put(flag, f"{os.getpid()} {time.time():.3f}\n".encode())
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(flag)
                _fsync_dir(flag.parent)

    def put_control(self, name: str, data: bytes, replace: bool) -> None:
        """Write control/<name> whole: replace it, or (replace=False) leave an existing one."""
        path = self.dir("control") / name
        if replace:
            atomic.write(path, data, mode=0o640, tmp=self._staging(name), fd_hook=self._hand_over)
        else:
            self._put(path, data)

    def _put(self, path: Path, data: bytes) -> None:
        """Create path whole (staged in tmp/, linked); an existing one is left as it is."""
        atomic.create(path, data, tmp=self._staging(path.name), fd_hook=self._hand_over)

    def cancel_waiting(self, ticket_id: str, result: dict[str, Any]) -> Path | None:
        """File a waiting ticket under failed/ with this [result] before any daemon claims it.

        Under the spool lock, so a daemon's claim comes before or after, never halfway. None: it
        is not waiting (any more). A ticket too broken to read is rejected instead, saying so.
        """
        name = f"{ticket_id}{SUFFIX}"
        src = self.dir("incoming") / name
        with self._spool_lock():
            if not os.path.lexists(src):
                return None
            try:
                text = read_to_cancel(src)
            except (OSError, TicketError) as e:
                reason = e.strerror if isinstance(e, OSError) else str(e)
                return self.reject(src, f"cancelled before it ran; it was not a valid ticket: {reason}")
            return self._move(src, self.dir("failed"), name, with_result(text, result))

    def write_daemon(self, info: dict[str, Any]) -> None:
        """This daemon's record for `status` (pid, start time, version, config, workers, ...)."""
        path = self.dir("control") / f"daemon.{os.getpid()}.json"
        # Not fsynced: it describes a live process (see record_process).
        atomic.write(path, orjson.dumps(info), tmp=self._staging(path.name), durable=False)

    def remove_daemon(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dir("control") / f"daemon.{os.getpid()}.json")

    def daemons(self) -> list[dict[str, Any]]:
        """The daemons serving this spool now: records whose process is alive and is the same
        process (its start time matches), oldest first. A dead daemon's record is ignored."""
        try:
            names = sorted(os.listdir(self.dir("control")))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if not (name.startswith("daemon.") and name.endswith(".json")):
                continue
            try:
                info = orjson.loads(read_regular_file(self.dir("control") / name, 1 << 20))
                pid = int(info["pid"])
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            if pid_alive(pid) and start_time(pid) == info.get("start_time"):
                out.append(info)
        return sorted(out, key=lambda i: float(i.get("started", 0)))

    def sweep_daemons(self) -> None:
        """Remove the records of daemons that are gone (a kill -9 leaves its record behind)."""
        live = {f"daemon.{i['pid']}.json" for i in self.daemons()}
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.dir("control")):
                if name.startswith("daemon.") and name.endswith(".json") and name not in live:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.dir("control") / name)

    def find(self, ticket_id: str) -> tuple[str, Path] | None:
        for state in ("active", "done", "failed", "incoming", "rejected"):
            path = self.dir(state) / f"{ticket_id}{SUFFIX}"
            if path.exists():
                return state, path
        return None
