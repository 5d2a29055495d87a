"""The documentation (SPEC §16): a short README, docs/ built strictly by mkdocs, every command the docs
show really run (.ci/docs_check.py), and no absolute path of one machine anywhere in the repository.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / ".ci" / "docs_check.py"

# Paths that only exist on one machine. Built from pieces so that this file does not match itself.
_SLASH = "/"
MACHINE_PATH = re.compile(
    "(?<![\\w.~-])" + _SLASH + "(?:work|root|home" + _SLASH + "[a-z_][a-z0-9_-]*)" + _SLASH + "[\\w.-]"
)
TMP_PATH = re.compile("(?<![\\w.~-])" + _SLASH + "tmp" + _SLASH + "[\\w.-]")


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot list the repository's files with git: {e}")
    return [ROOT / n for n in out.split("\0") if n and (ROOT / n).is_file()]


def test_no_absolute_path_of_one_machine_in_the_repository() -> None:
    """No /work/…, /root/…, /home/<user>/… anywhere, and no /tmp/<something> in the docs and
    the benchmarks' instructions (tests may use their own temp paths in code)."""
    hits = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        rel = path.relative_to(ROOT).as_posix()
        docs_like = rel.endswith(".md") or rel.startswith(("docs/", "bench/")) or rel == "aimedres.toml"
        for n, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATH.search(line) or (docs_like and TMP_PATH.search(line)):
                hits.append(f"{rel}:{n}: {line.strip()[:120]}")
    assert not hits, "machine-specific paths:\n" + "\n".join(hits)


def test_the_path_check_catches_what_it_should() -> None:
    s = _SLASH
    for bad in (
        f"python at {s}work{s}venv{s}bin{s}python",
        f"cd {s}root{s}src",
        f"{s}home{s}alice{s}x",
        f"`{s}work{s}x`",
    ):
        assert MACHINE_PATH.search(bad), bad
    for fine in ("/opt/aimedres-async/venv", "not under /home or /root (pyenv)", "~/work/x", "a private /tmp"):
        assert not MACHINE_PATH.search(fine) and not TMP_PATH.search(fine), fine
    assert TMP_PATH.search(f"config={s}tmp{s}tr{s}aimedres.toml")


def test_readme_is_short_and_keeps_the_two_setup_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "pip install -e '.[examples]' && python -m aimedres_async run" in text
    assert "pip install -e '.[test]' && python -m pytest" in text


def test_every_docs_command_runs_and_exits_as_shown() -> None:
    """.ci/docs_check.py runs each ```console/```sh command of README.md and docs/ in a scratch copy
    of the repository; commands that need PyPI, root, a daemon or Ray are listed with their reason."""
    r = subprocess.run([sys.executable, str(CHECK)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(r.stdout)  # every skipped command with its reason
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"docs-check: (\d+) commands run, 0 failed", r.stdout)
    assert m and int(m.group(1)) >= 5, r.stdout
    assert "ok   docs/getting-started.md" in r.stdout


def _check(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    doc = tmp_path / "page.md"
    doc.write_text(body)
    return subprocess.run([sys.executable, str(CHECK), str(doc)], capture_output=True, text=True, timeout=120)


def test_docs_check_fails_on_a_command_that_fails(tmp_path: Path) -> None:
    r = _check(tmp_path, "```console\n$ false\nsome output\n$ true\n```\n")
    assert r.returncode == 1, r.stdout
    assert "FAIL" in r.stdout and "1 failed" in r.stdout and "2 commands run" in r.stdout


def test_docs_check_markers(tmp_path: Path) -> None:
    body = (
        "<!-- docs-check: exit=2 -->\n```console\n$ sh -c 'exit 2'\n```\n\n"
        '<!-- docs-check: skip "needs a daemon" -->\n```sh\nfalse\n```\n\n'
        "```sh\n# a comment\ntest \\\n  -n x\n```\n\n"
        "```text\n$ false\n```\n"
    )
    r = _check(tmp_path, body)
    assert r.returncode == 0, r.stdout
    assert "needs a daemon" in r.stdout and "2 commands run, 0 failed, 1 not run" in r.stdout


def test_docs_check_runs_an_in_block_in_a_fresh_copy_of_its_folder(tmp_path: Path) -> None:
    body = (
        '<!-- docs-check: in "examples/old-orchestrator" -->\n```console\n'
        "$ test -f train.py && test -d .git && touch made-here\n$ test -f made-here\n```\n\n"
        '<!-- docs-check: in "examples/old-orchestrator" -->\n```console\n$ test ! -e made-here\n```\n\n'
        "```console\n$ test ! -e train.py\n```\n"
    )
    r = _check(tmp_path, body)
    assert r.returncode == 0, r.stdout
    assert "4 commands run, 0 failed" in r.stdout


def _mkdocs() -> list[str]:
    exe = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if exe is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    return [exe]


def test_mkdocs_build_strict_passes(tmp_path: Path) -> None:
    r = subprocess.run(
        [*_mkdocs(), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "site" / "reference" / "log-records" / "index.html").exists()


def test_mkdocs_strict_fails_on_a_broken_link(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with open(tmp_path / "docs" / "index.md", "a") as f:
        f.write("\nSee [nowhere](how-to/no-such-page.md).\n")
    r = subprocess.run([*_mkdocs(), "build", "--strict"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "no-such-page.md" in r.stderr, r.stderr
