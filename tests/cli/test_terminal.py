"""The console (README "The console"; SPEC §2, §7): the live display on a real terminal (a pty),
the plain-line fallback, and the human-facing commands `init`, `logs` and `validate`.

Every test runs the real `python -m aimedres_async`; terminals are real ptys (the `pty` module) and
what they show is checked byte for byte and, where `pyte` is installed, as the final screen.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import read_jsonl, run_dir, summary, wait_for
from helpers_cli import cli, usage_error

PY = sys.executable
REPO = Path(__file__).resolve().parents[2]
COLS, ROWS = 100, 30
HIDE_CURSOR, SHOW_CURSOR = b"\x1b[?25l", b"\x1b[?25h"
ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
CLOCK = re.compile(r"^\d\d:\d\d:\d\d ")
LIFECYCLE = ("run.started", "job.queued", "job.started", "job.exited", "job.retrying", "job.finished", "run.finished")


def config(marker: str, jobs: str, workers: int = 4, retries: int = 0, extra: str = "") -> str:
    return f"""
[supervisor]
parallel = true
max_workers = {workers}
grace_period = "5s"
[discovery]
enabled = false
[defaults]
retries = {retries}
backoff = {{ initial = "50ms", jitter = 0.0 }}
env = {{ TEST_MARKER = "{marker}", PYTHONUNBUFFERED = "1" }}
{extra}
{jobs}
"""


def job(name: str, code: str, extra: str = "") -> str:
    return f"[jobs.{name}]\ncommand = {json.dumps([PY, '-c', code])}\n{extra}\n"


def write(folder: Path, body: str) -> Path:
    path = folder / "aimedres.toml"
    path.write_text(body)
    return path


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment minus what would change the console's size, colour or target."""
    drop = {
        "COLUMNS",
        "LINES",
        "NO_COLOR",
        "FORCE_COLOR",
        "TTY_COMPATIBLE",
        "TTY_INTERACTIVE",
        "GITHUB_STEP_SUMMARY",
        "AIMEDRES_CONFIG",
        "JUPYTER_COLUMNS",
        "JUPYTER_LINES",
    }
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["TERM"] = "xterm-256color"
    env.update(extra or {})
    return env


class PtyRun:
    """`python -m aimedres_async ARGS` with stdin, stdout and stderr on a pty of cols x rows."""

    def __init__(self, folder: Path, *args: str, cols: int = COLS, rows: int = ROWS) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        try:
            self.proc = subprocess.Popen(
                [PY, "-m", "aimedres_async", *args],
                cwd=folder,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=clean_env(),
                start_new_session=True,
            )
        finally:
            os.close(slave)
        self.master = master
        self.out = bytearray()

    def read_until(self, done: Callable[[bytes], bool] | None = None, timeout: float = 90) -> bool:
        """Read from the terminal until done(everything so far) or EOF (True when EOF)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done is not None and done(bytes(self.out)):
                return False
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:  # EIO: every slave end is closed
                return True
            if not data:
                return True
            self.out += data
        self.proc.kill()
        raise AssertionError(f"timed out; the terminal shows:\n{plain(bytes(self.out))[-3000:]}")

    def finish(self, timeout: float = 90) -> tuple[int, bytes]:
        try:
            assert self.read_until(timeout=timeout)
            return self.proc.wait(timeout=30), bytes(self.out)
        finally:
            with contextlib.suppress(OSError):
                os.close(self.master)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def on_pty(folder: Path, *args: str) -> tuple[int, bytes]:
    return PtyRun(folder, *args).finish()


def plain(data: bytes) -> str:
    return ANSI.sub(b"", data).decode("utf-8", "replace")


def terminal_lines(data: bytes) -> list[str]:
    """What a plain (no live display) run printed, as lines: the pty turned each \\n into \\r\\n."""
    return data.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")


def screen(data: bytes, cols: int = COLS, rows: int = ROWS) -> list[str]:
    """The final screen of a cols x rows terminal after `data`, via the pyte terminal emulator."""
    pyte = pytest.importorskip("pyte")
    scr = pyte.Screen(cols, rows)
    pyte.ByteStream(scr).feed(data)
    return [line.rstrip() for line in scr.display]


def lifecycle_names(folder: Path) -> list[str]:
    return [r["event"] for r in read_jsonl(run_dir(folder) / "events.jsonl")]


# ------------------------------------------------------------------------------- the live display

# Each job prints its kind of progress every 0.1 s for at least 2 s, and until the test has seen all
# three jobs' rows in the live display (it then creates `go`): the display is certain to be used.
LIVE_JOBS = {
    "alpha": "import json, os, time\ni = 0\n"
    "while i < 20 or not os.path.exists('go'):\n    print(f'epoch {i} loss={1/(i+1):.3f}'); time.sleep(0.1); i += 1\n"
    "    assert i < 900\nprint(json.dumps({'acc': 0.93}))\n",
    "beta": "import os, sys, time\ni = 0\n"
    "while i < 20 or not os.path.exists('go'):\n    sys.stderr.write(f'\\rprogress {i % 101}%'); sys.stderr.flush()\n"
    "    time.sleep(0.1); i += 1\n    assert i < 900\nsys.stderr.write('\\n')\n",
    "gamma": "import os, time\ni = 0\n"
    "while i < 20 or not os.path.exists('go'):\n    print(f'step {i}'); time.sleep(0.1); i += 1\n    assert i < 900\n",
}
ROW = {
    "alpha": r"alpha\s+#1\s+\S+\s+epoch \d+",
    "beta": r"beta\s+#1\s+\S+\s+progress \d+%",
    "gamma": r"gamma\s+#1\s+\S+\s+step \d+",
}


def live_run(folder: Path, marker: str) -> tuple[int, bytes]:
    write(folder, config(marker, "".join(job(n, c) for n, c in LIVE_JOBS.items())))
    run = PtyRun(folder, "run")

    def all_rows_shown(out: bytes) -> bool:
        text = plain(out)
        return all(re.search(rx, text) for rx in ROW.values())

    eof = run.read_until(all_rows_shown)
    assert not eof, plain(bytes(run.out))
    (folder / "go").touch()
    return run.finish()


def test_live_display_on_a_terminal(tmp_path: Path, marker: str) -> None:
    code, out = live_run(tmp_path, marker)
    assert code == 0, plain(out)
    # the live display was used: cursor hidden, lines erased and redrawn in place, cursor shown again
    assert HIDE_CURSOR in out and SHOW_CURSOR in out and out.rindex(SHOW_CURSOR) > out.rindex(HIDE_CURSOR)
    assert b"\x1b[2K" in out and b"\x1b[1A" in out
    text = plain(out)
    assert re.search(r"\d/3 done · \d running · \d failed", text)
    # a line per finished job scrolled above it
    for name in LIVE_JOBS:
        assert re.search(rf"succeeded {name} \(attempts 1\)", text), name
    assert "succeeded alpha (attempts 1) acc=0.93" in text
    # then the results table (after the display is gone)
    tail = text[text.rindex("JOB") :]
    assert re.match(r"JOB\s+STATUS\s+ATTEMPTS\s+EXIT\s+TIME\s+PEAK RSS\s+FINAL METRICS", tail)
    for name in LIVE_JOBS:
        assert re.search(rf"^{name}\s+succeeded\s+1\s+0\s+", tail, re.M), tail
    assert f"logs: {run_dir(tmp_path)}" in tail
    # job output itself is not printed to the terminal: only its last line, inside the display
    # (a row of the display may end with it; a line of its own may not)
    assert not re.search(r"(?m)^epoch 0 loss=1\.000\r?$", text), text


def test_live_display_leaves_a_clean_screen(tmp_path: Path, marker: str) -> None:
    pytest.importorskip("pyte")
    code, out = live_run(tmp_path, marker)
    assert code == 0
    lines = screen(out)
    text = "\n".join(lines)
    assert "━" not in text and "done ·" not in text, text  # no leftover progress rows
    assert not re.search(r"#1\s+\S+\s+(epoch|progress|step)", text), text  # no leftover job rows
    # the finished-job lines, in the order the jobs finished, then the table, intact
    finished = [
        i for i, line in enumerate(lines) if re.fullmatch(r"succeeded (alpha|beta|gamma) \(attempts 1\).*", line)
    ]
    assert len(finished) == 3, text
    header = lines.index(next(line for line in lines if line.startswith("JOB ")))
    assert header > max(finished)
    assert re.fullmatch(r"JOB\s+STATUS\s+ATTEMPTS\s+EXIT\s+TIME\s+PEAK RSS\s+FINAL METRICS", lines[header])
    rows = lines[header + 1 : header + 4]
    assert [r.split()[:4] for r in rows] == [[n, "succeeded", "1", "0"] for n in LIVE_JOBS], text
    assert rows[0].endswith("acc=0.93")
    assert "".join(lines[header + 4 :]) == f"logs: {run_dir(tmp_path)}"  # (a long path wraps)


def test_ctrl_c_on_a_terminal_restores_it(tmp_path: Path, marker: str) -> None:
    code = "import time\nfor i in range(3000):\n    print(f'epoch {i}'); time.sleep(0.1)\n"
    jobs = job("alpha", code) + job("beta", code.replace("epoch", "step")) + job("gamma", "print('never ran')")
    write(tmp_path, config(marker, jobs, workers=2))
    run = PtyRun(tmp_path, "run")
    eof = run.read_until(lambda out: bool(re.search(r"alpha\s+#1.*epoch \d+", plain(out))))
    assert not eof
    run.proc.send_signal(signal.SIGINT)
    rc, out = run.finish()
    assert rc == 130, plain(out)
    assert out.rindex(SHOW_CURSOR) > out.rindex(HIDE_CURSOR)  # the cursor is visible again
    text = plain(out)
    assert "SIGINT" in text
    tail = text[text.rindex("JOB") :]
    for name, attempts in (("alpha", 1), ("beta", 1), ("gamma", 0)):
        assert re.search(rf"^{name}\s+cancelled\s+{attempts}\s", tail, re.M), tail
    assert {j["id"]: j["status"] for j in summary(tmp_path)["jobs"]} == dict.fromkeys(
        ("alpha", "beta", "gamma"), "cancelled"
    )
    if importlib.util.find_spec("pyte") is not None:  # the final screen, too, when pyte can show it
        lines = screen(out)
        assert not any("━" in line or "done ·" in line for line in lines), lines
        assert any(re.match(r"alpha\s+cancelled\s+1\s+SIGINT", line) for line in lines), lines


def test_live_display_keeps_identifiers_redacted(tmp_path: Path, marker: str) -> None:
    code = (
        "import os, time\nI = 'MRN' + str(4815000 + 162)\ni = 0\n"
        "while not os.path.exists('go'):\n    print(f'patient {I} epoch {i}'); time.sleep(0.1); i += 1\n    assert i < 900\n"
    )
    write(tmp_path, config(marker, job("p", code), extra='[logging]\nredact = ["MRN\\\\d{6,}"]'))
    run = PtyRun(tmp_path, "run")
    assert not run.read_until(lambda out: b"patient [REDACTED] epoch" in out)
    (tmp_path / "go").touch()
    rc, out = run.finish()
    assert rc == 0
    assert b"4815162" not in out


def test_escape_sequences_in_job_output_do_not_garble_the_display(tmp_path: Path, marker: str) -> None:
    pytest.importorskip("pyte")
    code = (
        "import os, time\ni = 0\nwhile not os.path.exists('go'):\n"
        "    print(f'\\x1b[A\\x1b[A\\x1b[2Kbar {i} \\x1b[31mred'); time.sleep(0.1); i += 1\n    assert i < 900\n"
    )
    jobs = job("tq", code) + job("calm", "import time\nfor i in range(5): print(f'step {i}'); time.sleep(0.1)\n")
    write(tmp_path, config(marker, jobs))
    run = PtyRun(tmp_path, "run")
    # wait until the display has drawn the job's last line (with or without its escapes)
    assert not run.read_until(lambda out: b"succeeded" in out and re.search(rb"bar \d+", out) is not None)
    (tmp_path / "go").touch()
    rc, out = run.finish()
    assert rc == 0
    lines = screen(out)
    assert any(line.startswith("succeeded calm (attempts 1)") for line in lines), lines
    assert any(line.startswith("succeeded tq (attempts 1)") for line in lines), lines
    assert not any("━" in line for line in lines), lines


def test_rich_is_a_declared_dependency() -> None:
    """The live display imports rich on every terminal; a plain `pip install` must bring it."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].strip().lower() for d in deps}
    assert "rich" in names, deps


# ------------------------------------------------------------------------------ plain lines

PLAIN_JOBS = job("talk", "import sys\nprint('line one')\nprint('line two')\nprint('oops', file=sys.stderr)\n") + job(
    "flaky",
    "import os, sys\nprint('try', os.environ['AIMEDRES_ATTEMPT'])\nsys.exit(0 if os.environ['AIMEDRES_ATTEMPT'] == '2' else 1)\n",
)


def check_human_lines(lines: list[str], folder: Path) -> None:
    """First the config in use, then one human line per lifecycle record, in the order of events.jsonl."""
    assert lines and lines[0] == f"config: {folder / 'aimedres.toml'}", lines[:1]
    lines = lines[1:]
    names = lifecycle_names(folder)
    assert len(lines) == len(names), lines
    for line, name in zip(lines, names, strict=True):
        assert CLOCK.match(line), line
        assert line[9:].split()[0] == name, (line, name)
    assert names[0] == "run.started" and names[-1] == "run.finished" and "job.retrying" in names


def test_plain_lines_when_stderr_is_not_a_terminal(tmp_path: Path, marker: str) -> None:
    write(tmp_path, config(marker, PLAIN_JOBS, retries=1))
    r = cli(tmp_path, "run")
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stderr and "\x1b" not in r.stdout
    check_human_lines(r.stderr.splitlines(), tmp_path)
    assert "line one" not in r.stdout + r.stderr  # job output is not echoed without --verbose
    assert re.search(r"^flaky\s+succeeded\s+2\s+0\s", r.stdout, re.M)
    assert re.search(r"run\.finished\s+succeeded=2 .*exit_code=0", r.stderr)


def test_no_progress_on_a_terminal_gives_plain_lines(tmp_path: Path, marker: str) -> None:
    write(tmp_path, config(marker, PLAIN_JOBS, retries=1))
    rc, out = on_pty(tmp_path, "run", "--no-progress")
    assert rc == 0
    assert HIDE_CURSOR not in out and b"\x1b" not in out
    lines = terminal_lines(out)
    blank = lines.index("")
    check_human_lines(lines[:blank], tmp_path)
    assert re.match(r"JOB\s+STATUS", lines[blank + 1])


def test_json_log_format_on_a_terminal(tmp_path: Path, marker: str) -> None:
    write(tmp_path, config(marker, PLAIN_JOBS, retries=1))
    rc, out = on_pty(tmp_path, "run", "--log-format", "json")
    assert rc == 0
    assert HIDE_CURSOR not in out and b"\x1b" not in out
    records = [json.loads(line) for line in terminal_lines(out) if line]  # every line is JSON: no table either
    assert records == read_jsonl(run_dir(tmp_path) / "events.jsonl")


def test_verbose_on_a_terminal_gives_plain_lines_and_job_output(tmp_path: Path, marker: str) -> None:
    write(tmp_path, config(marker, PLAIN_JOBS, retries=1))
    rc, out = on_pty(tmp_path, "run", "--verbose")
    assert rc == 0
    assert HIDE_CURSOR not in out and b"\x1b" not in out
    lines = terminal_lines(out)
    blank = lines.index("")
    head = lines[:blank]
    echoed = [line for line in head if line.startswith("[")]
    check_human_lines([line for line in head if not line.startswith("[")], tmp_path)
    assert [x for x in echoed if x.startswith("[talk]")] == ["[talk] line one", "[talk] line two"]
    assert "[talk:err] oops" in echoed
    assert [x for x in echoed if x.startswith("[flaky]")] == ["[flaky] try 1", "[flaky] try 2"]
    assert re.match(r"JOB\s+STATUS", lines[blank + 1])


def test_verbose_echoes_an_unterminated_last_line(tmp_path: Path, marker: str) -> None:
    write(tmp_path, config(marker, job("t", "import sys; print('first'); sys.stdout.write('done, no newline')")))
    r = cli(tmp_path, "run", "--verbose")
    assert r.returncode == 0
    assert "done, no newline" in (run_dir(tmp_path) / "jobs" / "t.jsonl").read_text()  # it was logged
    assert "[t] first\n[t] done, no newline\n" in r.stdout


def test_verbose_echo_has_no_empty_lines_for_progress_bars(tmp_path: Path, marker: str) -> None:
    code = (
        "import sys, time\nfor p in (0, 50, 100):\n    sys.stderr.write(f'\\rbar {p}%'); sys.stderr.flush(); time.sleep(0.2)\n"
        "sys.stderr.write('\\n')\n"
    )
    write(tmp_path, config(marker, job("bar", code)))
    r = cli(tmp_path, "run", "--verbose")
    assert r.returncode == 0
    logged = [x["line"] for x in read_jsonl(run_dir(tmp_path) / "jobs" / "bar.jsonl") if x["event"] == "job.output"]
    assert logged == ["bar 0%", "bar 50%", "bar 100%"]
    assert [x for x in r.stdout.splitlines() if x.startswith("[bar")] == [f"[bar:err] {x}" for x in logged]


# ------------------------------------------------------------------------------ init


def a_training_script(folder: Path) -> None:
    """What `init` is run beside: `validate` refuses a config that makes no job, as `run` does."""
    (folder / "train_demo.py").write_text("import argparse\nargparse.ArgumentParser().parse_args()\n")


def test_init_writes_a_commented_valid_starter(tmp_path: Path) -> None:
    a_training_script(tmp_path)
    r = cli(tmp_path, "init")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and "aimedres.toml" in r.stdout
    path = tmp_path / "aimedres.toml"
    text = path.read_text()
    data = tomllib.loads(text)
    assert {"supervisor", "discovery", "defaults", "logging"} <= set(data)
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    trailing = [line for line in text.splitlines() if not line.lstrip().startswith("#") and " # " in line]
    assert len(comments) >= 5 and len(trailing) >= 5
    v = cli(tmp_path, "validate")
    assert v.returncode == 0, v.stderr
    assert "ok" in v.stdout
    # the commented-out examples are valid too once uncommented
    uncommented = re.sub(r"(?m)^# ?((?:epochs|folds|script|args|optional|timeout) =|\[jobs\.)", r"\1", text)
    assert uncommented != text
    (tmp_path / "full.toml").write_text(uncommented)
    assert tomllib.loads(uncommented)["jobs"]["als"]["epochs"] == 80
    v = cli(tmp_path, "--config", "full.toml", "validate")
    assert v.returncode == 0, v.stderr
    assert "als" in v.stdout


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    assert cli(tmp_path, "init").returncode == 0
    path = tmp_path / "aimedres.toml"
    path.write_text(path.read_text() + "# my own edits\n")
    before = path.read_bytes()
    line = usage_error(cli(tmp_path, "init"))
    assert "aimedres.toml" in line and "exist" in line
    assert path.read_bytes() == before


def test_init_to_another_path(tmp_path: Path) -> None:
    a_training_script(tmp_path)
    r = cli(tmp_path, "init", "other.toml")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "other.toml").exists() and not (tmp_path / "aimedres.toml").exists()
    assert cli(tmp_path, "--config", "other.toml", "validate").returncode == 0
    (tmp_path / "sub").mkdir()
    assert cli(tmp_path, "init", "sub/aimedres.toml").returncode == 0
    assert tomllib.loads((tmp_path / "sub" / "aimedres.toml").read_text())["supervisor"]["max_workers"] == "auto"


@pytest.mark.parametrize("target", ["missing/aimedres.toml", "missing/deeper/x.toml", "."])
def test_init_into_a_missing_folder_or_a_folder_exits_2(tmp_path: Path, target: str) -> None:
    line = usage_error(cli(tmp_path, "init", target))
    assert target in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ logs

LOGS_JOB = (
    "import json, os, sys\na = os.environ['AIMEDRES_ATTEMPT']\nprint('hello', a)\n"
    "print('oops', a, file=sys.stderr)\nprint(json.dumps({'acc': 0.5, 'tag': 'x', 'n': [1, 2]}))\n"
    "sys.exit(0 if a == '2' else 3)\n"
)


def test_logs_renders_attempts_stderr_and_data(tmp_path: Path, marker: str) -> None:
    write(tmp_path, config(marker, job("fl", LOGS_JOB), retries=1))
    assert cli(tmp_path, "run").returncode == 0
    r = cli(tmp_path, "logs", "fl")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    separators = [i for i, line in enumerate(lines) if re.fullmatch(r"-+ attempt (\d) -+", line)]
    assert [lines[i].split()[2] for i in separators] == ["1", "2"]
    ts = r"\d\d:\d\d:\d\d\.\d{3}"
    for n in (1, 2):
        assert any(re.fullmatch(rf"{ts} #{n} \| hello {n}", line) for line in lines), lines
        assert any(re.fullmatch(rf"{ts} #{n}!\| oops {n}", line) for line in lines), lines  # stderr marked
        assert any(re.fullmatch(rf"{ts} #{n} \| acc=0.5 tag=x n=\[1,2\]", line) for line in lines), lines
    # attempt 1's records sit between the two separators, attempt 2's after the second
    assert any("hello 1" in line for line in lines[separators[0] : separators[1]])
    assert any("job.retrying" in line for line in lines[separators[0] : separators[1]])
    assert any("hello 2" in line for line in lines[separators[1] :])
    assert "job.finished" in lines[-1] and "status=succeeded" in lines[-1]
    assert "{" not in r.stdout.replace("metrics=", "")[: r.stdout.find("job.finished")]  # data shown as key=value


def test_logs_of_an_older_run(tmp_path: Path, marker: str) -> None:
    write(tmp_path, config(marker, job("r", "import os; print('run', os.environ['AIMEDRES_RUN_ID'])")))
    assert cli(tmp_path, "run").returncode == 0
    first = run_dir(tmp_path).name
    assert cli(tmp_path, "run").returncode == 0
    second = run_dir(tmp_path).name
    assert first != second
    latest = cli(tmp_path, "logs", "r")
    assert latest.returncode == 0 and f"run {second}" in latest.stdout and first not in latest.stdout
    older = cli(tmp_path, "logs", "r", "--run", first)
    assert older.returncode == 0 and f"run {first}" in older.stdout and second not in older.stdout


@pytest.mark.parametrize(
    "args",
    [["nosuch"], ["../etc"], ["/etc/passwd"], ["r", "--run", "../../etc"], ["r", "--run", "20000101T000000Z-ffff"]],
    ids=["unknown-job", "dotdot", "absolute", "bad-run", "unknown-run"],
)
def test_logs_bad_target_exits_2_with_one_line(tmp_path: Path, marker: str, args: list[str]) -> None:
    write(tmp_path, config(marker, job("r", "print('x')")))
    assert cli(tmp_path, "run").returncode == 0
    usage_error(cli(tmp_path, "logs", *args))


def test_logs_follow_streams_a_running_job_until_it_finishes(tmp_path: Path, marker: str) -> None:
    code = (
        "import os, sys, time\na = os.environ['AIMEDRES_ATTEMPT']\nprint('line one', a, flush=True)\n"
        "end = time.time() + 60\nwhile not os.path.exists('go') and time.time() < end: time.sleep(0.05)\n"
        "print('line two', a, flush=True)\nsys.exit(0 if a == '2' else 1)\n"
    )
    write(tmp_path, config(marker, job("f", code), retries=1))
    env = clean_env()
    run = subprocess.Popen(
        [PY, "-m", "aimedres_async", "run"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    follow = None
    try:
        wait_for(lambda: (tmp_path / "logs" / "latest" / "jobs" / "f.jsonl").exists(), 30, "the job's log")
        follow = subprocess.Popen(
            [PY, "-m", "aimedres_async", "logs", "--follow", "f"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert follow.stdout is not None
        seen = b""
        deadline = time.monotonic() + 60
        while b"line one 1" not in seen:  # printed while the job is still blocked: it streams
            assert time.monotonic() < deadline, seen
            ready, _, _ = select.select([follow.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(follow.stdout.fileno(), 1 << 16)
                assert chunk, (seen, follow.stderr.read() if follow.stderr else "")
                seen += chunk
        assert follow.poll() is None  # still following: the job has not finished
        (tmp_path / "go").touch()
        rest, err = follow.communicate(timeout=60)
        assert follow.returncode == 0, err
        text = (seen + rest).decode()
        for expected in ("line one 1", "line two 1", "job.retrying", "attempt 2", "line one 2", "line two 2"):
            assert expected in text, text
        assert text.rstrip().splitlines()[-1].split()[2] == "job.finished"
        _, run_err = run.communicate(timeout=60)
        assert run.returncode == 0, run_err
    finally:
        for p in (follow, run):
            if p is not None:
                if p.poll() is None:
                    p.kill()
                p.communicate()  # reaps it and closes its pipes


# ------------------------------------------------------------------------------ validate


def test_validate_prints_every_problem(tmp_path: Path) -> None:
    write(
        tmp_path,
        '[supervisor]\nmax_wokers = 2\n[defaults]\ntimeout = "soon"\n[logging]\nredact = ["("]\n'
        '[jobs.x]\ncommand = ["true"]\nepochs = "ten"\n',
    )
    r = cli(tmp_path, "validate")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "ok" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert all(line.startswith("aimedres-async: error: aimedres.toml:") for line in lines), lines
    found = {line.split(": ")[2].split(":")[1]: line.split(": ")[3] for line in lines}
    assert found == {"2": "supervisor.max_wokers", "4": "defaults.timeout", "6": "logging.redact", "9": "jobs.x.epochs"}
    assert "max_workers" in next(x for x in lines if "max_wokers" in x)  # the suggestion
    assert not (tmp_path / "logs").exists()
