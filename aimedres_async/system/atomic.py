"""Files that must never be seen torn: written whole to a temp file, fsynced, then put in place.

Two ways to put the file in place, one helper each:

- `write` replaces whatever is there (rename(2)): summary.json, reports, the daemon's records.
  Readers see the old file or the new one, whole.
- `create` never replaces (link(2)): spool tickets and flags, where a name once used is never
  overwritten. It reports whether the name was free.

Both fsync the file before it appears under its name, and the folder after, so that after a
crash the name holds either nothing or the whole content.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

FdHook = Callable[[int], None]  # called with the temp file's fd before the data (e.g. fchown)


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a rename, link or unlink in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: Path, tmp_dir: Path | None = None) -> Path:
    """A fresh temp name for `path`, in `tmp_dir` (same file system) or beside it; it names its
    writer's pid, so a sweep can tell an abandoned one."""
    return (tmp_dir or path.parent) / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}"


WRITE_BUFFER = 1 << 20  # pieces are gathered into writes of up to this much


def _stage(tmp: Path, data: bytes | Sequence[bytes], mode: int, fd_hook: FdHook | None, durable: bool = True) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        if fd_hook is not None:
            fd_hook(fd)
        if isinstance(data, (bytes, bytearray, memoryview)):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        else:  # pieces: never joined into one copy (a file object's buffer gathers them)
            with open(fd, "wb", buffering=WRITE_BUFFER, closefd=False) as f:
                f.writelines(data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def write(
    path: Path,
    data: bytes | Sequence[bytes],
    *,
    mode: int = 0o644,
    tmp: Path | None = None,
    fd_hook: FdHook | None = None,
    durable: bool = True,
) -> None:
    """Replace `path` with `data` (bytes, or pieces written one after the other), whole: temp
    file, fsync, rename, fsync of the folder.

    `tmp`: the temp file's path (default: a fresh one beside `path`); it must be on the same file
    system. The temp file is removed if anything fails. `durable=False` skips both fsyncs, for a
    record that only matters while the machine stays up (a live process's pid): the rename alone
    keeps it whole for readers and across a crash of the writing process.
    """
    tmp = tmp or temp_path(path)
    try:
        _stage(tmp, data, mode, fd_hook, durable)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def create(
    path: Path, data: bytes, *, mode: int = 0o640, tmp: Path | None = None, fd_hook: FdHook | None = None
) -> bool:
    """Create `path` with `data`, whole, never over an existing file: temp file, fsync, link,
    fsync of the folder. False (and nothing changed) if `path` already exists."""
    tmp = tmp or temp_path(path)
    try:
        _stage(tmp, data, mode, fd_hook)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    fsync_dir(path.parent)
    return True
