"""Helpers for driving the real command line as a subprocess, to its end (`cli`), and for reading
what it said."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

PY = sys.executable


def cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m aimedres_async ARGS` in `cwd`; $AIMEDRES_CONFIG only when the test gives it."""
    base = {k: v for k, v in os.environ.items() if k not in ("AIMEDRES_CONFIG", "GITHUB_STEP_SUMMARY")}
    return subprocess.run(
        [PY, "-m", "aimedres_async", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **(env or {})},
    )


def usage_error(result: subprocess.CompletedProcess[str]) -> str:
    """Assert exit 2 with exactly one clean error line on stderr; return that line."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("aimedres-async: error: "), lines[0]
    return lines[0]


def dry_run_commands(stdout: str) -> dict[str, list[str]]:
    """`--dry-run` output (`# <id>  (cwd …)` then the shell-quoted command) as job id -> argv."""
    commands: dict[str, list[str]] = {}
    current: str | None = None
    for line in stdout.splitlines():
        if line.startswith("# "):
            current = line[2:].split()[0]
        elif line.strip():
            assert current is not None and current not in commands, stdout
            commands[current] = shlex.split(line)
    return commands


def write_script(folder: Path, rel: str, *flags: str, body: str = "") -> Path:
    """A script declaring `flags` through argparse; `body` runs after parsing."""
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["import argparse", "p = argparse.ArgumentParser()"]
    lines += [f"p.add_argument({f!r})" for f in flags]
    lines += ["a, _ = p.parse_known_args()", body]
    path.write_text("\n".join(lines) + "\n")
    return path
