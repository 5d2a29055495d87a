"""`completions bash|zsh|fish`: the script is generated from the parser, loads in a real bash, and
completes commands, options and (through the hidden `_tickets`) the spool's ticket numbers.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PY, write_config
from helpers_cli import cli

from aimedres_async.cli.parser import build_parser

# `aimedres-async` on PATH runs this checkout's CLI (the console script may not be installed).
SHIM = f"""#!/bin/sh
exec {PY} -m aimedres_async "$@"
"""


def _complete(folder: Path, script: str, words: list[str]) -> list[str]:
    """COMPREPLY after bash's completion function ran on `words` (the last one being completed)."""
    (folder / "bin").mkdir(exist_ok=True)
    shim = folder / "bin" / "aimedres-async"
    shim.write_text(SHIM)
    shim.chmod(0o755)
    (folder / "complete.bash").write_text(script)
    quoted = " ".join(f"'{w}'" for w in words)
    program = f"""
source ./complete.bash
complete -p aimedres-async
COMP_WORDS=({quoted})
COMP_CWORD={len(words) - 1}
_aimedres_async
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {**os.environ, "PATH": f"{folder / 'bin'}:{os.environ['PATH']}"}
    env.pop("AIMEDRES_CONFIG", None)
    r = subprocess.run(["bash", "-c", program], cwd=folder, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "complete -o default -F _aimedres_async aimedres-async", lines
    return lines[1:]


def test_bash_script_completes_commands_options_and_ticket_numbers(tmp_path: Path) -> None:
    write_config(tmp_path, '[supervisor]\nspool_dir = "spool"\n[discovery]\nenabled = false\n')
    r = cli(tmp_path, "completions", "bash")
    assert r.returncode == 0, r.stderr
    script = r.stdout
    assert _complete(tmp_path, script, ["aimedres-async", "re"]) == ["resume", "restart", "report"]
    assert _complete(tmp_path, script, ["aimedres-async", "submit", "--la"]) == ["--label"]
    assert _complete(tmp_path, script, ["aimedres-async", "completions", ""]) == ["bash", "zsh", "fish"]
    for _ in range(3):
        assert cli(tmp_path, "submit", "--", "true").returncode == 0
    assert _complete(tmp_path, script, ["aimedres-async", "cancel", ""]) == ["3", "2", "1"]
    assert _complete(tmp_path, script, ["aimedres-async", "--config", "aimedres.toml", "wait", "2"]) == ["2"]
    assert _complete(tmp_path, script, ["aimedres-async", "submit", "--after", ""]) == ["3", "2", "1"]


def test_every_command_and_option_of_the_parser_is_in_the_scripts(tmp_path: Path) -> None:
    """Generated, not hand-written: what the parser has, each script has."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    scripts = {shell: cli(tmp_path, "completions", shell).stdout for shell in ("bash", "zsh", "fish")}
    for name, sp in sub.choices.items():  # type: ignore[union-attr]
        if name == "_tickets":  # hidden: called by the scripts, never offered
            offered = re.search(r'compgen -W "(run [^"]*)"', scripts["bash"])
            assert offered is not None and name not in offered.group(1).split()
            assert f"-a {name} " not in scripts["fish"]
            continue
        for action in sp._actions:
            if action.help == "==SUPPRESS==":
                continue  # `run --config X`: accepted, not offered
            for spelling in action.option_strings:
                if spelling.startswith("--"):
                    assert f"{spelling} " in scripts["bash"] or f"{spelling}'" in scripts["bash"], (name, spelling)
                    assert f"-l {spelling[2:]} " in scripts["fish"] or f"-l {spelling[2:]}\n" in scripts["fish"]
        assert f" {name}) " in scripts["bash"] and f"-a {name} " in scripts["fish"]
    assert scripts["zsh"].startswith("#compdef aimedres-async\n") and "bashcompinit" in scripts["zsh"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_parse_their_script(tmp_path: Path, shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed here")
    path = tmp_path / f"complete.{shell}"
    path.write_text(cli(tmp_path, "completions", shell).stdout)
    r = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
