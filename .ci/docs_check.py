"""Run every command the README and docs/ show, in a scratch copy of the repository, and check its exit code.

Commands are the `$ ` lines of ```console blocks and every line of ```sh blocks (a trailing `\\`
continues a line). An HTML comment on the line just before a block changes how it is checked:

    <!-- docs-check: exit=2 -->                  every command of the block must exit 2
    <!-- docs-check: network "REASON" -->        run only with --network (it installs from PyPI, into
                                                 a venv of its own that is first on PATH)
    <!-- docs-check: skip "REASON" -->           never run here (a daemon, root, Ray, Slurm); REASON is printed
    <!-- docs-check: in "FOLDER" -->             run in a fresh copy of FOLDER (a folder of this repository,
                                                 e.g. a fixture repository a guide is tried on), made a
                                                 repository of its own (a .git folder); the block's
                                                 commands run there one after another

Each command runs with `bash -c` in the copy's root, with `python` the interpreter running this
script and the copy's package first on the import path. Exit 0 when every command that ran exited
as the docs say, 1 otherwise.

    python .ci/docs_check.py                 # README.md and docs/**/*.md, PyPI-free commands
    python .ci/docs_check.py --network       # also the set-up commands that create venvs
    python .ci/docs_check.py --list          # what would run, without running it
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r'<!--\s*docs-check:\s*(exit=(\d+)|network|skip|in)\s*(?:"([^"]*)")?\s*-->')
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Command:
    file: str
    line: int
    text: str
    expect: int = 0
    mode: str = "run"  # run | network | skip | in
    reason: str = ""  # why it is skipped; for `in`, the folder the block runs in a copy of
    block: int = 0  # the line of its block's fence


def commands_in(path: Path, rel: str) -> list[Command]:
    """The shell commands of a Markdown file's ```console and ```sh blocks, with their markers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Command] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group(1):
            i += 1
            continue
        lang = m.group(1)
        prev = lines[i - 1] if i > 0 else ""
        marker = MARKER.search(prev)
        expect, mode, reason = 0, "run", ""
        if marker:
            if marker.group(2):
                expect = int(marker.group(2))
            else:
                mode = marker.group(1)
                reason = marker.group(3) or ""
                if not reason:
                    raise SystemExit(f"{rel}:{i}: a docs-check {mode} marker needs a reason in quotes")
        j = i + 1
        pending, start = "", 0
        while j < len(lines) and not lines[j].startswith("```"):
            raw = lines[j]
            j += 1
            if lang == "console":
                if pending:
                    text = raw
                elif raw.startswith("$ "):
                    text, start = raw[2:], j
                else:
                    continue  # output shown after a command
            elif lang == "sh":
                if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
                    continue
                text = raw
                start = start if pending else j
            else:
                break
            if text.rstrip().endswith("\\"):
                pending += text.rstrip()[:-1] + " "
                continue
            out.append(Command(rel, start, pending + text, expect, mode, reason, i + 1))
            pending = ""
        i = j + 1
    return out


def documents(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def scratch_copy(dest: Path) -> None:
    """The repository's files (tracked and new, not ignored) copied to dest, without logs or venvs."""
    try:
        names = (
            subprocess.run(
                ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True, capture_output=True
            )
            .stdout.decode()
            .split("\0")
        )
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(
            ROOT,
            dest,
            ignore=shutil.ignore_patterns(
                ".git", "logs", "results", "spool", "site", ".venv", ".ci-venv", "__pycache__"
            ),
        )
        return
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def fixture_copy(copy: Path, tmp: Path, c: Command) -> Path:
    """The fresh copy of the folder an `in` block runs in: made at the block's first command."""
    dest = tmp / "in" / f"{c.file.replace('/', '_')}-{c.block}"
    if not dest.exists():
        shutil.copytree(copy / c.reason, dest)
        (dest / ".git").mkdir()  # a repository of its own: the config lookup stops here
    return dest


def environment(copy: Path, tmp: Path) -> dict[str, str]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("python", "python3"):  # a wrapper, not a symlink: a venv is found from the path it runs as
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        wrapper.chmod(0o755)
    drop = {"AIMEDRES_CONFIG", "GITHUB_STEP_SUMMARY", "VIRTUAL_ENV", "PYTHONHOME"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    # `python` is this interpreter; the tools installed beside it (mkdocs) come next
    env["PATH"] = os.pathsep.join((str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")))
    env["PYTHONPATH"] = str(copy)
    env["TMPDIR"] = str(tmp)
    return env


def network_environment(env: dict[str, str], tmp: Path) -> dict[str, str]:
    """For the commands that install from PyPI: a fresh venv of their own, first on PATH."""
    venv = tmp / "network-venv"
    if not venv.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    path = env["PATH"].split(os.pathsep, 1)[1]  # without the wrappers that pin `python` to ours
    return {**env, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{path}"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None, allow_abbrev=False)
    ap.add_argument("--network", action="store_true", help="also run the blocks marked network")
    ap.add_argument("--list", action="store_true", help="print the commands and what would happen; run nothing")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per command (default: 600)")
    ap.add_argument("files", nargs="*", type=Path, help="Markdown files (default: README.md and docs/**/*.md)")
    a = ap.parse_args(argv)
    files = [f.resolve() for f in a.files] or documents(ROOT)
    cmds = [c for f in files for c in commands_in(f, str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else str(f))]
    failed = ran = 0
    with tempfile.TemporaryDirectory(prefix="docs-check-") as tmp_name:
        tmp = Path(tmp_name)
        copy = tmp / "repo"
        copy.mkdir()
        scratch_copy(copy)
        env = environment(copy, tmp)
        for c in cmds:
            where = f"{c.file}:{c.line}"
            if c.mode == "skip" or (c.mode == "network" and not a.network):
                hint = "; run with --network" if c.mode == "network" else ""
                print(f"skip {where}: {c.text}\n     ({c.reason}{hint})")
                continue
            if a.list:
                print(f"run  {where}: {c.text}  (expect exit {c.expect})")
                continue
            ran += 1
            run_env = env
            if c.mode == "network":  # its own venv first on PATH: a bare `pip install` must not touch ours
                run_env = network_environment(env, tmp)
            cwd = fixture_copy(copy, tmp, c) if c.mode == "in" else copy
            code, out = run_command(c.text, cwd, run_env, a.timeout)
            if code == c.expect:
                print(f"ok   {where}: {c.text}")
            else:
                failed += 1
                tail = "\n".join(out.strip().splitlines()[-15:])
                print(f"FAIL {where}: {c.text}\n     exit {code}, expected {c.expect}\n{tail}")
    print(f"docs-check: {ran} commands run, {failed} failed, {len(cmds) - ran} not run")
    return 1 if failed else 0


def run_command(text: str, cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run one docs command in a session of its own; whatever it left behind (`cmd &`) is killed.

    Output goes to a file, not a pipe, so a background process holding it cannot hang the check.
    """
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            ["bash", "-c", text],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = -1
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        out.seek(0)
        text_out = out.read().decode(errors="replace")
    if code == -1:
        text_out += f"\ntimed out after {timeout:g}s"
    return code, text_out


if __name__ == "__main__":
    sys.exit(main())
