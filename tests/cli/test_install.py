"""systemd/install.sh run for real against a scratch root (its --root), twice: the service user, a venv
made with the system Python that the service user can execute, the config, the state folders and the
spool, the unit; then `systemd-analyze verify --root=...` on what it installed. Never boots systemd.

The venv gets the project from a wheelhouse built here (the project's wheel and its dependencies'),
so the install itself needs no network; building the wheelhouse does, once, and the tests skip with
the reason when it cannot be built.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "systemd" / "install.sh"
UNIT = ROOT / "systemd" / "aimedres-async.service"
DOC = ROOT / "docs" / "how-to" / "install-the-service.md"
SYSTEM_PYTHON = Path("/usr/bin/python3")
VENV = "opt/aimedres-async/venv"
STATE = "var/lib/aimedres-async"
SPOOL_FOLDERS = ("incoming", "active", "done", "failed", "rejected", "tmp", "control")


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed")
    return path


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("install.sh runs as root (it creates a user and chowns folders)")
    if not SYSTEM_PYTHON.exists():
        pytest.skip("no /usr/bin/python3: install.sh makes the venv with the system Python")
    for tool in ("systemd-sysusers", "systemd-tmpfiles", "systemd-analyze", "setpriv"):
        _need(tool)
    version = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip()
    if version != str(sys.version_info[:2]):
        pytest.skip(f"/usr/bin/python3 is {version}, the tests' Python {sys.version_info[:2]}: wheels would differ")
    wh = tmp_path_factory.mktemp("wheelhouse")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-build-isolation", "-w", str(wh), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot build the wheelhouse (network?): {r.stderr.strip().splitlines()[-1:]}")
    return wh


def _install(wheelhouse: Path, root: Path, shim_dir: Path) -> subprocess.CompletedProcess[str]:
    """install.sh --root, with root's umask 077, and a `python3` shim (pyenv's) first on PATH."""
    [wheel] = wheelhouse.glob("aimedres_async-*.whl")
    env = {
        **os.environ,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse),
        "PATH": f"{shim_dir}:{os.environ['PATH']}",
        "PYTHONPATH": "",
    }
    r = subprocess.run(
        ["sh", "-c", 'umask 077; exec "$@"', "sh", str(INSTALL), "--root", str(root), "--source", str(wheel)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    print(r.stdout, r.stderr)
    return r


@contextmanager
def _reachable(path: Path) -> Iterator[None]:
    """Let other users traverse the folders above `path` (pytest's are 0700) for a moment."""
    changed = []
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o001 == 0:
            changed.append((parent, mode))
            os.chmod(parent, stat.S_IMODE(mode) | 0o011)
    try:
        yield
    finally:
        for parent, mode in changed:
            os.chmod(parent, stat.S_IMODE(mode))


def _ids(root: Path) -> tuple[int, int]:
    users = [line.split(":") for line in (root / "etc/passwd").read_text().splitlines()]
    groups = [line.split(":") for line in (root / "etc/group").read_text().splitlines()]
    [user] = [u for u in users if u[0] == "aimedres"]
    [group] = [g for g in groups if g[0] == "aimedres"]
    assert user[5] == "/var/lib/aimedres-async" and user[6].endswith("nologin")
    return int(user[2]), int(group[2])


def _verify(root: Path) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify on the installed tree. Only what every system has is stood in for:
    /bin/kill (ExecReload=) and /usr/bin/python3, which the venv's python links to."""
    for exe in ("bin/kill", "usr/bin/python3"):
        stub = root / exe
        if not stub.exists():
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    return subprocess.run(
        [_need("systemd-analyze"), "verify", f"--root={root}", "--recursive-errors=no", "aimedres-async.service"],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("users", ["sysusers", "useradd"])
def test_install_sh_into_a_scratch_root_twice(tmp_path: Path, wheelhouse: Path, users: str) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    if users == "sysusers":  # a systemd system; without sysusers.d install.sh falls back to useradd
        (root / "usr/lib/sysusers.d").mkdir(parents=True)
    else:
        _need("useradd")
        for name in ("passwd", "group", "shadow", "gshadow"):
            (root / "etc" / name).write_text(
                "root:x:0:0:root:/root:/bin/bash\n"
                if name == "passwd"
                else "root:x:0:\n"
                if name == "group"
                else "root:*::\n"
                if name == "gshadow"
                else "root:*:19000:0:99999:7:::\n"
            )
    shim_dir = tmp_path / "shims"
    shim_dir.mkdir()
    (shim_dir / "python3").write_text(f"#!/bin/sh\ntouch {tmp_path}/shim-used\nexit 1\n")
    (shim_dir / "python3").chmod(0o755)

    r = _install(wheelhouse, root, shim_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"user aimedres: {'systemd-sysusers' if users == 'sysusers' else 'useradd'}" in r.stdout
    assert not (tmp_path / "shim-used").exists()  # never the python3 on PATH
    uid, gid = _ids(root)

    # the venv: made with /usr/bin/python3, readable and executable by the service user
    cfg = (root / VENV / "pyvenv.cfg").read_text()
    assert re.search(r"^home = /usr/bin$", cfg, re.M), cfg
    assert os.path.realpath(root / VENV / "bin/python").startswith("/usr/bin/python3")
    with _reachable(root / VENV):
        run = subprocess.run(
            [
                "setpriv",
                f"--reuid={uid}",
                f"--regid={gid}",
                "--clear-groups",
                "--",
                str(root / VENV / "bin/python"),
                "-c",
                "import aimedres_async, orjson, watchfiles; print(aimedres_async.__version__)",
            ],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin"},
        )
    assert run.returncode == 0 and run.stdout.strip(), run.stderr

    # config (root:aimedres 0640) and the examples beside it; the CLI of the venv accepts it
    config = root / "etc/aimedres-async/aimedres.toml"
    st = config.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o640)
    assert (root / "etc/aimedres-async/training").is_dir()
    val = subprocess.run(
        [str(root / VENV / "bin/python"), "-m", "aimedres_async", "--config", str(config), "validate"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert val.returncode == 0 and "breast_cancer" in val.stdout, val.stdout + val.stderr

    # state folders and the spool: the service user's, 0750 (the daemon refuses anything looser)
    for folder in ["", "spool", "logs", "results", *(f"spool/{s}" for s in SPOOL_FOLDERS)]:
        st = (root / STATE / folder).stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, 0o750), folder

    # the unit as shipped, enabled
    assert (root / "etc/systemd/system/aimedres-async.service").read_text() == UNIT.read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants/aimedres-async.service"
    assert os.readlink(wants) == "../aimedres-async.service"
    v = _verify(root)
    print(f"$ systemd-analyze verify --root=<scratch> aimedres-async.service\nexit {v.returncode}{v.stdout}{v.stderr}")
    assert v.returncode == 0 and (v.stdout + v.stderr).strip() == ""

    # again: nothing duplicated, the edited config kept, still valid
    config.write_text(config.read_text().replace("max_workers = 2", "max_workers = 3"))
    r = _install(wheelhouse, root, shim_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "config: /etc/aimedres-async/aimedres.toml (kept)" in r.stdout
    assert "max_workers = 3" in config.read_text()
    assert _ids(root) == (uid, gid)
    assert sum(line.startswith("aimedres:") for line in (root / "etc/passwd").read_text().splitlines()) == 1
    assert _verify(root).returncode == 0


def test_install_sh_refuses_bad_use(tmp_path: Path) -> None:
    r = subprocess.run(["sh", str(INSTALL), "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("install.sh: error: unknown option --bogus")
    r = subprocess.run(["sh", str(INSTALL), "--root", str(tmp_path / "missing")], capture_output=True, text=True)
    assert r.returncode == 2 and "no such folder" in r.stderr
    if shutil.which("setpriv") and os.geteuid() == 0:
        r = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                "sh",
                "-c",
                f"sh -s -- --root /nonexistent < {INSTALL}",
            ],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 2 and "run as root" in r.stderr and "sudo is not needed" in r.stderr, r.stderr
    r = subprocess.run(["sh", str(INSTALL), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--root DIR" in r.stdout


def test_the_docs_and_the_unit_files_name_the_same_paths() -> None:
    """Every install path the unit files' comments and the how-to name is one install.sh uses."""
    script = INSTALL.read_text()
    texts = {p.name: p.read_text() for p in (ROOT / "systemd").iterdir() if p.name != "install.sh"}
    if DOC.exists():
        texts[DOC.name] = DOC.read_text()
    pattern = re.compile(r"/(?:etc|usr/lib|opt|var/lib)/[\w./-]*aimedres[\w./{},-]*")
    for name, text in texts.items():
        for path in set(pattern.findall(text)):
            base = Path(path.split("{")[0].rstrip(".,/"))
            named = [p for p in (base, *base.parents) if "aimedres" in p.name and str(p) in script]
            assert named, (name, path)
    assert "/etc/sysusers.d" not in "".join(texts.values())  # stock Debian 12 has no such folder
    assert "sudo " not in "".join(texts.values())  # many servers have no sudo: runuser/setpriv
