"""systemd/aimedres-async.service: the SPEC §8 rules, `systemd-analyze verify` and `systemd-analyze
security --offline=true` (exposure at most 1.5), the sysusers/tmpfiles files, and the service guides'
config and tickets run through the real CLI.

The systemd-analyze checks skip only when the tool is missing (CI installs it: .ci/run).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "aimedres-async.service"
SYSUSERS = ROOT / "systemd" / "aimedres-async.sysusers.conf"
TMPFILES = ROOT / "systemd" / "aimedres-async.tmpfiles.conf"
DOCS = ROOT / "docs"

STATE = "/var/lib/aimedres-async"
WRITABLE = {f"{STATE}/spool", f"{STATE}/logs", f"{STATE}/results"}
EXEC_START = "/opt/aimedres-async/venv/bin/python -m aimedres_async --config /etc/aimedres-async/aimedres.toml serve"
DEFAULT_GRACE_S = 10.0  # [supervisor] grace_period's default
FLUSH_S = 20.0  # after the grace: write logs and summaries, move tickets back, exit
MAX_EXPOSURE = 1.5

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """A systemd unit file: section -> key -> every value given, in order (keys may repeat, and
    an empty assignment resets the list, as systemd does). Comments and continuation lines too."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    logical: list[str] = []
    lines: list[str] = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not logical and (not stripped or stripped[0] in "#;"):
            continue
        if stripped.endswith("\\"):
            logical.append(stripped[:-1])
            continue
        logical.append(stripped)
        lines.append(" ".join(logical))
        logical = []
    for line in lines:
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"assignment outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        key, value = key.strip(), value.strip()
        if value == "":
            section[key] = []
        else:
            section.setdefault(key, []).append(value)
    return unit


def seconds(value: str) -> float:
    """A systemd time span ("60s", "1min 30s", "90", "2m") in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}
    if re.fullmatch(r"\d+(\.\d+)?", value.strip()):
        return float(value)
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", value)
    assert parts and "".join(f"{n}{u}" for n, u in parts) == value.replace(" ", ""), f"bad time span {value!r}"
    for number, unit in parts:
        total += float(number) * units[unit]
    return total


def yes(value: str) -> bool:
    return value.lower() in ("1", "yes", "true", "on")


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text())


def one(unit: Unit, key: str, section: str = "Service") -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"{section}.{key}: expected one value, got {values}"
    return values[0]


def words(unit: Unit, key: str, section: str = "Service") -> list[str]:
    return [w for v in unit.get(section, {}).get(key, []) for w in v.split()]


def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed: apt-get install systemd (.ci/run does it in CI)")
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True).stdout
    m = re.match(r"systemd (\d+)", out)
    assert m, out
    version = int(m.group(1))
    assert version >= 252, f"systemd-analyze {version}: `security --offline` needs systemd >= 252"
    return tool


# ---------------------------------------------------------------- the rules of SPEC §8, read from the file


def test_unit_is_a_notify_service_that_systemd_can_supervise(unit: Unit) -> None:
    assert one(unit, "Type") == "notify"
    assert one(unit, "NotifyAccess") == "main"  # READY/STATUS/WATCHDOG come from the main process
    assert one(unit, "ExecStart") == EXEC_START
    reload = shlex.split(one(unit, "ExecReload"))
    assert reload[0] in ("/bin/kill", "/usr/bin/kill") and reload[1:] == ["-HUP", "$MAINPID"]
    assert seconds(one(unit, "WatchdogSec")) > 0
    assert one(unit, "Restart") == "on-failure"
    assert one(unit, "WantedBy", "Install") == "multi-user.target"


def test_exec_start_is_a_command_line_the_cli_accepts(unit: Unit) -> None:
    from aimedres_async.cli.parser import build_parser

    argv = shlex.split(one(unit, "ExecStart"))
    assert argv[1:3] == ["-m", "aimedres_async"]
    args = build_parser().parse_args(argv[3:])
    assert args.command == "serve" and args.config == "/etc/aimedres-async/aimedres.toml"


def test_stop_gives_jobs_their_grace_period_and_a_flush(unit: Unit) -> None:
    from aimedres_async.plan.config import SupervisorConfig

    assert one(unit, "KillMode") == "mixed"  # SIGTERM to the daemon only; it stops the jobs itself
    assert one(unit, "KillSignal") == "SIGTERM"
    grace = SupervisorConfig().grace_period
    assert grace == DEFAULT_GRACE_S
    timeout = seconds(one(unit, "TimeoutStopSec"))
    print(f"TimeoutStopSec={timeout:g}s, default grace_period={grace:g}s, flush allowance={FLUSH_S:g}s")
    assert timeout > grace + FLUSH_S


def test_runs_as_its_own_user_with_no_privileges(unit: Unit) -> None:
    assert one(unit, "User") not in ("", "root", "0")
    assert one(unit, "User") == "aimedres" and one(unit, "Group") == "aimedres"
    assert yes(one(unit, "NoNewPrivileges"))
    assert unit["Service"].get("CapabilityBoundingSet") == []  # present and empty: no capabilities
    assert not unit["Service"].get("AmbientCapabilities")
    assert one(unit, "UMask") == "0027"


def test_writes_only_to_the_spool_logs_and_results(unit: Unit) -> None:
    svc = unit["Service"]
    assert one(unit, "ProtectSystem") == "strict"
    assert one(unit, "ProtectHome") in ("yes", "read-only", "tmpfs")
    assert yes(one(unit, "PrivateTmp"))
    writable = {f"/var/lib/{d}" for d in words(unit, "StateDirectory")}
    writable |= {p.lstrip("-") for p in words(unit, "ReadWritePaths")}
    assert writable == WRITABLE
    for key in (
        "RuntimeDirectory",
        "CacheDirectory",
        "LogsDirectory",
        "ConfigurationDirectory",
        "BindPaths",
        "DynamicUser",
    ):
        assert not svc.get(key), f"{key}= would add writable places"
    assert int(one(unit, "StateDirectoryMode"), 8) == 0o750


def test_hardening_does_not_break_training(unit: Unit) -> None:
    svc = unit["Service"]
    # SPEC §8: PrivateDevices= hides the GPUs; MemoryDenyWriteExecute= breaks JITs.
    assert not any(yes(v) for v in svc.get("PrivateDevices", [])), "PrivateDevices= hides the GPUs"
    assert not any(yes(v) for v in svc.get("MemoryDenyWriteExecute", [])), "MemoryDenyWriteExecute= breaks JITs"
    families = words(unit, "RestrictAddressFamilies")
    assert families and not families[0].startswith("~")
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)  # sd_notify; Ray and NCCL
    assert not svc.get("IPAddressDeny") and not any(yes(v) for v in svc.get("PrivateNetwork", []))
    assert one(unit, "DevicePolicy") == "closed"
    assert any(re.fullmatch(r"(char-nvidia\*|/dev/nvidia\S*)\s+rw", v) for v in svc.get("DeviceAllow", [])), (
        "the NVIDIA devices must stay reachable"
    )
    assert "pid" not in svc.get("ProcSubset", []), "CUDA reads /proc/driver/nvidia, psutil /proc/meminfo"
    filters = svc["SystemCallFilter"]
    assert filters[0] == "@system-service"
    assert not any("@resources" in f for f in filters[1:]), "mbind/sched_setaffinity: OpenBLAS, OpenMP"
    for key in (
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "RestrictNamespaces",
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "LockPersonality",
    ):
        assert yes(one(unit, key)), key
    assert one(unit, "SystemCallArchitectures") == "native"
    assert one(unit, "ProtectProc") in ("invisible", "noaccess", "ptraceable")


# ---------------------------------------------------------------- systemd-analyze


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` checks that every Exec*= binary exists, and /opt/aimedres-async/venv
    does not on a test machine. We verify the unit file exactly as shipped, under `--root`: a
    scratch root holding the unit in etc/systemd/system/ and stand-ins for its Exec*= executables
    (a rewritten copy with ExecStart=sys.executable would test a different file). Any warning
    (unknown key, bad value) makes verify fail, and its output is asserted empty."""
    tool = analyze()
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    unit = parse_unit(UNIT.read_text())
    for key in ("ExecStart", "ExecReload", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost"):
        for line in unit["Service"].get(key, []):
            exe = shlex.split(line)[0].lstrip("-@:+!")
            stub = root / exe.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    r = subprocess.run(
        [tool, "verify", f"--root={root}", "--recursive-errors=no", UNIT.name], capture_output=True, text=True
    )
    print(
        f"$ systemd-analyze verify --root=<scratch> --recursive-errors=no {UNIT.name}\n"
        f"exit {r.returncode}{r.stdout}{r.stderr}"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (r.stdout + r.stderr).strip() == ""


def test_systemd_analyze_verify_sees_a_missing_binary(tmp_path: Path) -> None:
    """The --root set-up above is not vacuous: without the stand-ins verify fails."""
    tool = analyze()
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    r = subprocess.run(
        [tool, "verify", f"--root={root}", "--recursive-errors=no", UNIT.name], capture_output=True, text=True
    )
    assert r.returncode != 0 and "/opt/aimedres-async/venv/bin/python" in r.stdout + r.stderr


def test_systemd_analyze_security_exposure() -> None:
    tool = analyze()
    threshold = round(MAX_EXPOSURE * 10)  # --threshold is in tenths of the exposure level
    cmd = [tool, "security", "--offline=true", f"--threshold={threshold}", "--no-pager", str(UNIT)]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SYSTEMD_COLORS": "0"})
    failed = [line.strip() for line in r.stdout.splitlines() if line.lstrip().startswith("✗")]
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", r.stdout)
    assert m, r.stdout + r.stderr
    exposure = float(m.group(1))
    print(f"$ systemd-analyze security --offline=true --threshold={threshold} systemd/{UNIT.name}")
    print("\n".join(failed))
    print(f"{m.group(0)} (at most {MAX_EXPOSURE}; exit {r.returncode})")
    assert exposure <= MAX_EXPOSURE
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- the user and the folders


def test_sysusers_and_tmpfiles_make_the_user_and_private_state_folders(tmp_path: Path) -> None:
    analyze()
    sysusers, tmpfiles = shutil.which("systemd-sysusers"), shutil.which("systemd-tmpfiles")
    if sysusers is None or tmpfiles is None:
        pytest.skip("systemd-sysusers/systemd-tmpfiles not installed")
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles can only chown to the service user as root")
    root = tmp_path / "root"
    (root / "etc/sysusers.d").mkdir(parents=True)
    (root / "etc/tmpfiles.d").mkdir(parents=True)
    shutil.copy(SYSUSERS, root / "etc/sysusers.d/aimedres-async.conf")
    shutil.copy(TMPFILES, root / "etc/tmpfiles.d/aimedres-async.conf")
    subprocess.run([sysusers, f"--root={root}"], check=True, capture_output=True)
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    assert "aimedres" in users
    uid, home, shell = int(users["aimedres"][2]), users["aimedres"][5], users["aimedres"][6]
    assert 0 < uid < 1000 and home == STATE and shell.endswith("nologin")
    subprocess.run([tmpfiles, f"--root={root}", "--create"], check=True, capture_output=True)
    for folder in (STATE, *sorted(WRITABLE)):
        st = os.lstat(root / folder.lstrip("/"))
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750, folder
        assert st.st_uid == uid, folder


# ---------------------------------------------------------------- the service guides' config and tickets


def readme_service_section() -> str:
    """The service guides in docs/how-to: install (the config), service (the tickets), operate."""
    return "\n".join(
        (DOCS / "how-to" / f"{name}.md").read_text()
        for name in ("install-the-service", "service", "operate-the-daemon")
    )


def toml_blocks(section: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", section, re.S)


def test_readme_service_config_matches_the_unit(unit: Unit) -> None:
    section = readme_service_section()
    cfg = tomllib.loads(toml_blocks(section)[0])["supervisor"]
    assert {cfg["spool_dir"], cfg["logs_dir"], cfg["output_dir"]} == WRITABLE
    assert cfg["logs_dir"].endswith("/logs") and cfg["output_dir"].endswith("/results")
    for path in (UNIT, SYSUSERS, TMPFILES):
        assert f"systemd/{path.name}" in section
    assert EXEC_START.split(" -m ")[0] in section and "/etc/aimedres-async/aimedres.toml" in section
    assert (
        "runuser -u aimedres -- /opt/aimedres-async/venv/bin/python -m aimedres_async --config "
        "/etc/aimedres-async/aimedres.toml submit --job breast_cancer --epochs 3" in section
    )
    timeout = seconds(one(unit, "TimeoutStopSec"))
    assert f"TimeoutStopSec={one(unit, 'TimeoutStopSec')}" in section or f"({one(unit, 'TimeoutStopSec')})" in section
    assert timeout > seconds(cfg["grace_period"]) + FLUSH_S


def test_readme_service_config_and_tickets_work(tmp_path: Path) -> None:
    """The service guides' config (its state folders moved into tmp_path) with the bundled examples
    beside it, as the install steps put them: validate, then submit both tickets of the guide and the
    guide's `submit --job` line through the real CLI."""
    config = toml_blocks(readme_service_section())[0]
    tickets = toml_blocks((DOCS / "how-to" / "service.md").read_text())  # the guide's two example tickets
    assert len(tickets) == 2
    (tmp_path / "etc").mkdir()
    shutil.copytree(ROOT / "examples" / "training", tmp_path / "etc" / "training")
    cfg_path = tmp_path / "etc" / "aimedres.toml"
    cfg_path.write_text(config.replace(STATE, str(tmp_path / "state")))
    for i, ticket in enumerate(tickets):
        (tmp_path / f"ticket{i}.toml").write_text(ticket)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aimedres_async", "--config", str(cfg_path), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    r = cli("validate")
    assert r.returncode == 0 and "breast_cancer" in r.stdout, r.stdout + r.stderr
    r = cli("submit", str(tmp_path / "ticket0.toml"), str(tmp_path / "ticket1.toml"))
    assert r.returncode == 0, r.stderr
    r2 = cli("submit", "--job", "breast_cancer", "--epochs", "3")
    assert r2.returncode == 0, r2.stderr
    ids = [line.split()[1] for line in (r.stdout + r2.stdout).splitlines()]  # "<number> <ticket id>"
    incoming = tmp_path / "state" / "spool" / "incoming"
    assert sorted(p.name for p in incoming.iterdir()) == sorted(f"{i}.toml" for i in ids)
    for name in ("incoming", "active", "done", "failed", "rejected", "tmp"):
        assert (tmp_path / "state" / "spool" / name).is_dir()
