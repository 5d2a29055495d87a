"""Where a result came from: the git commit and state of the tree, and hashes of the inputs."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any


def _git(cwd: Path, *args: str) -> bytes | None:
    try:
        r = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            timeout=10,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def git_info(cwd: Path) -> dict[str, Any] | None:
    """Commit, dirty flag and a hash of the uncommitted diff; None outside a git checkout."""
    commit = _git(cwd, "rev-parse", "HEAD")
    if commit is None:
        return None
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no") or b""
    info: dict[str, Any] = {"commit": commit.decode().strip(), "dirty": bool(status.strip())}
    if info["dirty"]:
        diff = _git(cwd, "diff", "HEAD", "--binary") or b""
        info["diff_sha256"] = hashlib.sha256(diff).hexdigest()
    return info


def host_info() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform": platform_text(),
    }


def platform_text() -> str:
    """platform.platform() ("Linux-6.1.0-x86_64-with-glibc2.36") without its `uname -p` child
    process, a fork and exec at every start whose answer on Linux is "unknown" or the machine."""
    if not sys.platform.startswith("linux"):
        return platform.platform(terse=True)
    u = os.uname()
    parts = [u.sysname, u.release, u.machine]
    libc, version = platform.libc_ver()  # os.confstr with glibc: no child process, no file read
    if libc:
        parts += ["with", libc + version]
    return "-".join(p.replace(" ", "_") for p in parts if p)


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
