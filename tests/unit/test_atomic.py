"""system.atomic, in-process with real files: a file replaced whole (`write`) or created only where
the name is free (`create`), never seen torn, and no temp file left behind either way."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from aimedres_async.system.atomic import create, temp_path, write


def leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def test_write_creates_and_replaces_whole(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write(path, b"first")
    assert path.read_bytes() == b"first"
    inode = path.stat().st_ino
    write(path, b"second, longer than the first")
    assert path.read_bytes() == b"second, longer than the first"
    assert path.stat().st_ino != inode  # a new file put in place, not the old one rewritten
    assert leftovers(tmp_path, "summary.json") == []


def test_write_takes_pieces_and_any_bytes_like_object(tmp_path: Path) -> None:
    """Pieces are written one after the other (summary.json's entries, never joined); a single
    bytes-like object, a bytearray too, is written as it is, not taken for pieces."""
    path = tmp_path / "summary.json"
    pieces = [b"{", *[b'"k%d": %d, ' % (i, i) for i in range(100_000)], b'"end": 0}']
    write(path, pieces, durable=False)
    assert path.read_bytes() == b"".join(pieces)
    write(path, bytearray(b"from a bytearray"))
    assert path.read_bytes() == b"from a bytearray"
    write(path, memoryview(b"from a view"))
    assert path.read_bytes() == b"from a view"
    assert leftovers(tmp_path, "summary.json") == []


def test_a_reader_holding_the_old_file_keeps_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    write(path, b"old content")
    with open(path, "rb") as reader:
        write(path, b"new")
        assert reader.read() == b"old content"


def test_write_sets_the_mode(tmp_path: Path) -> None:
    write(tmp_path / "a", b"x", mode=0o600)
    write(tmp_path / "b", b"x")
    old = os.umask(0)
    os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o644 & ~old


def test_write_without_durability_is_still_whole(tmp_path: Path) -> None:
    write(tmp_path / "pid", b"1234\n", durable=False)
    assert (tmp_path / "pid").read_bytes() == b"1234\n"
    assert leftovers(tmp_path, "pid") == []


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    write(path, b"old")
    (tmp_path / "dir").mkdir()

    def hook(fd: int) -> None:
        raise OSError("disk full (pretend)")

    with pytest.raises(OSError, match="pretend"):
        write(path, b"new", fd_hook=hook)
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path, "s.json") == []
    with pytest.raises(IsADirectoryError):
        write(tmp_path / "dir", b"x")  # rename(2) over a folder
    assert leftovers(tmp_path, "dir") == []


def test_write_through_a_given_temp_path(tmp_path: Path) -> None:
    staging = tmp_path / "tmp"
    staging.mkdir()
    write(tmp_path / "t.toml", b"x = 1\n", tmp=staging / "t.toml.staged")
    assert (tmp_path / "t.toml").read_bytes() == b"x = 1\n" and list(staging.iterdir()) == []


def test_the_fd_hook_runs_before_the_data_is_written(tmp_path: Path) -> None:
    seen: list[int] = []

    def hook(fd: int) -> None:
        seen.append(os.fstat(fd).st_size)

    write(tmp_path / "a", b"data", fd_hook=hook)
    assert seen == [0]


def test_create_never_replaces(tmp_path: Path) -> None:
    path = tmp_path / "ticket.toml"
    assert create(path, b"first") is True
    assert create(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert leftovers(tmp_path, "ticket.toml") == []


def test_create_default_mode_is_private_to_the_group(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        create(tmp_path / "t", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "t").stat().st_mode) == 0o640


def test_create_with_a_given_temp_path_removes_it(tmp_path: Path) -> None:
    staging = tmp_path / "tmp"
    staging.mkdir()
    assert create(tmp_path / "a.toml", b"a", tmp=staging / "a.staged") is True
    assert create(tmp_path / "a.toml", b"b", tmp=staging / "b.staged") is False
    assert list(staging.iterdir()) == [] and (tmp_path / "a.toml").read_bytes() == b"a"


def test_temp_path_names_its_writer_and_is_fresh(tmp_path: Path) -> None:
    a, b = temp_path(tmp_path / "x.json"), temp_path(tmp_path / "x.json")
    assert a != b and a.parent == tmp_path
    assert a.name.startswith(f".x.json.{os.getpid()}.")
    assert temp_path(tmp_path / "x.json", tmp_path / "t").parent == tmp_path / "t"
