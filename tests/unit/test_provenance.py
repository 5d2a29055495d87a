"""system.provenance, in-process: what a run records of its host, computed without a child
process (git_info runs git, so it is tested with real processes elsewhere)."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import sys

from aimedres_async.system.provenance import bytes_sha256, host_info, platform_text


def test_platform_text_starts_no_process_and_names_the_kernel() -> None:
    """platform.platform() runs `uname -p`; this must not (the guard fails a test that does)."""
    text = platform_text()
    u = os.uname()
    assert text.startswith(f"{u.sysname}-{u.release.replace(' ', '_')}-{u.machine}")
    assert " " not in text


def test_platform_text_names_the_c_library_as_platform_does() -> None:
    libc, version = platform.libc_ver()
    if libc:
        assert platform_text().endswith(f"-with-{libc}{version}")


def test_host_info_fields() -> None:
    info = host_info()
    assert info == {"host": socket.gethostname(), "python": sys.version.split()[0], "platform": platform_text()}


def test_bytes_sha256() -> None:
    assert bytes_sha256(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert bytes_sha256(b"abc") == hashlib.sha256(b"abc").hexdigest()
