"""The CI artifacts end to end (SPEC §7, §12; README "Redaction", "In CI"): redaction across every
sink, the JUnit report's structure, the `--log-file` stream, `--fail-fast` and the step summary.

Real `python -m aimedres_async run` subprocesses with real jobs; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from conftest import read_jsonl, run_dir, summary
from helpers_cli import cli, usage_error

PY = sys.executable

# The planted patient identifier. Job code builds it at run time (`'MRN' + str(4815000 + 162)`), so
# its digits appear in no command line: only what a job prints can carry them.
DIGITS = "4815162"
MAKE_ID = "I = 'MRN' + str(4815000 + 162)"


def config(
    marker: str,
    jobs: str,
    supervisor: str = "",
    defaults: str = "",
    logging: str = "",
    workers: int = 4,
    retries: int = 0,
) -> str:
    return f"""
[supervisor]
parallel = true
max_workers = {workers}
grace_period = "2s"
{supervisor}
[discovery]
enabled = false
[defaults]
retries = {retries}
env = {{ TEST_MARKER = "{marker}" }}
{defaults}
[logging]
{logging}
{jobs}
"""


def job(name: str, code: str, extra: str = "", args: tuple[str, ...] = ()) -> str:
    """A [jobs.<name>] table running `code` with this interpreter (TOML arrays written as JSON)."""
    return f"[jobs.{name}]\ncommand = {json.dumps([PY, '-c', code, *args])}\n{extra}\n"


def write(folder: Path, body: str) -> Path:
    path = folder / "aimedres.toml"
    path.write_text(body)
    return path


def wait_logged(needle: str) -> str:
    """Job code that blocks until `needle` is in the job's own log, i.e. the supervisor has read
    everything printed before it (makes the order of stdout vs. stderr deterministic)."""
    return (
        "import os as _o, time as _t\n"
        "_log = _o.path.join('logs', _o.environ['AIMEDRES_RUN_ID'], 'jobs', _o.environ['AIMEDRES_JOB_ID'] + '.jsonl')\n"
        "_end = _t.time() + 60\n"
        "while _t.time() < _end:\n"
        "    try:\n"
        f"        if {needle!r} in open(_log, encoding='utf-8').read(): break\n"
        "    except OSError: pass\n"
        "    _t.sleep(0.05)\n"
    )


def all_files(folder: Path, skip: Path) -> list[Path]:
    found = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            p = Path(root) / name
            if p != skip and not p.is_symlink():
                found.append(p)
    return found


# ------------------------------------------------------------------------------------- redaction


REDACT_JOBS = {
    # plain stdout and stderr, several per line, at the start and the end of a line, a longer number
    "plain": MAKE_ID + "\nimport sys\n"
    "print(f'patient {I} admitted')\nprint(I)\nprint(f'a{I}b {I}, x={I}0')\n"
    "print(f'warn: {I} has no consent', file=sys.stderr)\n",
    # a metrics line: the identifier as a value and as a key
    "metrics": MAKE_ID + "\nimport json\nprint(json.dumps({'patient': I, 'acc': 0.9, I: 1}))\n",
    # \r progress updates on stderr
    "progress": MAKE_ID + "\nimport sys\n"
    "for p in range(0, 101, 25):\n    sys.stderr.write(f'\\rprogress {I} {p}%'); sys.stderr.flush()\n"
    "sys.stderr.write('\\n')\n",
    # one line written in two halves with a flush and a pause between: completed by the second write
    "split": "import sys, time\nsys.stdout.write('record MRN' + str(40 + 8)); sys.stdout.flush(); time.sleep(0.3)\n"
    "sys.stdout.write(str(15000 + 162) + ' done\\n'); sys.stdout.flush()\n",
    # a line longer than max_line_bytes, cut into partial records
    "long": MAKE_ID + "\nprint('A' * 100 + I + 'B' * 1300 + I + 'C' * 1300)\n",
    # a failing required job: its last lines (and an unterminated last line) go into the JUnit text
    "fails": MAKE_ID + "\nimport sys\n"
    "for n in range(5): print(f'step {n} {I}')\n"
    "print(f'error: bad record {I}', file=sys.stderr); sys.stderr.flush()\n"
    "sys.stdout.write(f'last {I}'); sys.stdout.flush(); sys.exit(3)\n",
}


def test_redaction_reaches_no_file_and_no_console(tmp_path: Path, marker: str) -> None:
    jobs = "".join(job(name, code) for name, code in REDACT_JOBS.items())
    # the identifier as a command argument (its digits are in the config, and nowhere else)
    jobs += job("arg", "import sys; print('args', sys.argv[1:])", args=("--patient", "MRN" + DIGITS))
    cfg_path = write(
        tmp_path, config(marker, jobs, supervisor='max_line_bytes = "1KiB"', logging='redact = ["MRN\\\\d{6,}"]')
    )
    step = tmp_path / "step.md"
    r = cli(
        tmp_path,
        "run",
        "--log-file",
        "stream.jsonl",
        "--junit-xml",
        "junit.xml",
        "--verbose",
        env={"GITHUB_STEP_SUMMARY": str(step)},
        timeout=90,
    )
    assert r.returncode == 1, r.stderr  # `fails` is required
    assert "Traceback" not in r.stderr

    # Every file the run left behind, whatever its format.
    files = all_files(tmp_path, skip=cfg_path)
    rd = run_dir(tmp_path)
    expected = {
        tmp_path / "stream.jsonl",
        tmp_path / "junit.xml",
        step,
        rd / "events.jsonl",
        rd / "summary.json",
        *(rd / "jobs" / f"{name}.jsonl" for name in [*REDACT_JOBS, "arg"]),
    }
    assert expected <= set(files), sorted(map(str, files))
    for path in files:
        data = path.read_bytes()
        assert DIGITS.encode() not in data, f"{path} leaks the identifier"
        assert b"MRN48" not in data, f"{path} leaks part of the identifier"
    # ... and the console (lifecycle lines, --verbose echo, the results table)
    for text in (r.stdout, r.stderr):
        assert DIGITS not in text and "MRN48" not in text

    # The identifier was really there and is replaced, not dropped: check each planted place.
    stream = read_jsonl(tmp_path / "stream.jsonl")
    lines = {(x["job"], x.get("line")) for x in stream if x["event"] == "job.output"}
    assert {
        ("plain", "patient [REDACTED] admitted"),
        ("plain", "[REDACTED]"),
        ("plain", "a[REDACTED]b [REDACTED], x=[REDACTED]"),
        ("plain", "warn: [REDACTED] has no consent"),
        ("progress", "progress [REDACTED] 0%"),
        ("progress", "progress [REDACTED] 100%"),
        ("split", "record [REDACTED] done"),
        ("fails", "error: bad record [REDACTED]"),
        ("fails", "last [REDACTED]"),
    } <= lines
    assert any(j == "arg" and line and "[REDACTED]" in line for j, line in lines)
    metrics = [x["data"] for x in stream if x["event"] == "job.output" and "data" in x]
    assert metrics == [{"patient": "[REDACTED]", "acc": 0.9, "[REDACTED]": 1}]
    long_parts = [x for x in stream if x["event"] == "job.output" and x["job"] == "long"]
    assert len(long_parts) >= 2 and any(x.get("partial") for x in long_parts)
    assert "".join(x["line"] for x in long_parts).count("[REDACTED]") == 2
    started = next(x for x in stream if x["event"] == "job.started" and x["job"] == "arg")
    assert started["argv"][-2:] == ["--patient", "[REDACTED]"]
    jobs_summary = {j["id"]: j for j in summary(tmp_path)["jobs"]}
    assert jobs_summary["arg"]["command"][-1] == "[REDACTED]"
    assert jobs_summary["metrics"]["metrics"] == {"patient": "[REDACTED]", "acc": 0.9, "[REDACTED]": 1}
    failure = ET.parse(tmp_path / "junit.xml").getroot().find(".//testcase[@name='fails']/failure")
    assert failure is not None and "last [REDACTED]" in (failure.text or "")
    assert "[REDACTED]" in step.read_text()
    assert "[plain] patient [REDACTED] admitted" in r.stdout
    assert "[plain:err] warn: [REDACTED] has no consent" in r.stdout


@pytest.mark.parametrize(
    "patterns",
    [['"("'], ['"[a-"'], ['"x|"'], ['"MRN\\\\d{6,}"', '"(?:)"'], ['"a*"']],
    ids=["unbalanced", "bad-class", "empty-alternative", "second-empty", "star"],
)
@pytest.mark.parametrize("command", [["run"], ["validate"]])
def test_bad_redact_pattern_exits_2_with_one_line(tmp_path: Path, patterns: list[str], command: list[str]) -> None:
    write(tmp_path, config("x", '[jobs.a]\ncommand = ["true"]\n', logging=f"redact = [{', '.join(patterns)}]"))
    line = usage_error(cli(tmp_path, *command))
    assert "logging.redact" in line and "aimedres.toml" in line
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("pattern", ['"\\\\b"', '"(?=MRN)"'], ids=["word-boundary", "lookahead"])
def test_zero_width_redact_pattern_is_rejected(tmp_path: Path, marker: str, pattern: str) -> None:
    write(
        tmp_path, config(marker, '[jobs.a]\ncommand = ["echo", "hello MRN world"]\n', logging=f"redact = [{pattern}]")
    )
    r = cli(tmp_path, "run")
    # either refuse the pattern, or at least never insert the replacement where nothing matched
    if r.returncode != 2:
        out = [x for x in read_jsonl(run_dir(tmp_path) / "jobs" / "a.jsonl") if x["event"] == "job.output"]
        assert [x["line"] for x in out] == ["hello MRN world"]
    else:
        assert "logging.redact" in usage_error(r)


def test_redaction_applies_to_parsed_metrics(tmp_path: Path, marker: str) -> None:
    # Python's json.dumps writes non-ASCII as \\u escapes: {"patient": "Zo\\u00eb Dupr\\u00e9"}
    code = "import json; print(json.dumps({'patient': 'Zo\\u00eb Dupr\\u00e9', 'acc': 0.9}))"
    write(tmp_path, config(marker, job("m", code), logging='redact = ["Zoë Dupré"]'))
    r = cli(tmp_path, "run", "--log-file", "stream.jsonl")
    assert r.returncode == 0, r.stderr
    for path in (tmp_path / "stream.jsonl", run_dir(tmp_path) / "summary.json"):
        assert "Dupré" not in path.read_text(encoding="utf-8"), path
    assert "Dupré" not in r.stdout + r.stderr


def test_redaction_applies_to_spawn_errors(tmp_path: Path, marker: str) -> None:
    write(
        tmp_path,
        config(
            marker, f'[jobs.s]\ncommand = ["/nonexistent/MRN{DIGITS}/train"]\n', logging='redact = ["MRN\\\\d{6,}"]'
        ),
    )
    r = cli(tmp_path, "run", "--junit-xml", "junit.xml")
    assert r.returncode == 1
    assert summary(tmp_path)["jobs"][0]["status"] == "spawn_failed"
    for path in all_files(tmp_path, skip=tmp_path / "aimedres.toml"):
        assert DIGITS not in path.read_text(encoding="utf-8", errors="replace"), path
    assert DIGITS not in r.stdout + r.stderr


# ------------------------------------------------------------------------------------------ JUnit


def cases(path: Path) -> tuple[ET.Element, ET.Element, dict[str, ET.Element]]:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    return root, suites[0], {c.get("name") or "": c for c in suites[0].findall("testcase")}


def counts(el: ET.Element) -> dict[str, str | None]:
    return {k: el.get(k) for k in ("tests", "failures", "errors", "skipped")}


JUNIT_JOBS = (
    # required, fails: 60 stdout lines, then (once those are read) a traceback on stderr
    job(
        "req",
        "import sys\nfor i in range(60): print(f'out {i}')\nsys.stdout.flush()\n"
        + wait_logged('"line":"out 59"')
        + "print('Traceback (most recent call last):', file=sys.stderr)\nprint('  File \"train.py\", line 1', file=sys.stderr)\n"
        "print('ValueError: boom', file=sys.stderr)\nsys.exit(3)\n",
    )
    # optional, fails: skipped, with the same kind of message and its lines
    + job("opt", "import sys\nfor i in range(3): print(f'opt line {i}')\nsys.exit(4)", "optional = true")
    # required, times out
    + '[jobs.slow]\ncommand = ["sh", "-c", "echo waiting; sleep 60"]\ntimeout = "1s"\n'
    # succeeded with metrics
    + job("good", "import json; print('training'); print(json.dumps({'acc': 0.97, 'loss': 0.1}))")
    # control characters, escape sequences and invalid UTF-8 in the output
    + job(
        "ctl",
        "import sys; print('bell\\x01 esc\\x1b[31mred\\x1b[0m vt\\x0b nul\\x00 end', flush=True); "
        "sys.stdout.buffer.write(b'raw \\xff\\xfe bytes\\n'); sys.exit(1)",
    )
    + '[jobs.nope]\ncommand = ["/nonexistent/train-tool"]\n'
)


@pytest.fixture
def junit_run(tmp_path: Path, marker: str) -> Path:
    write(tmp_path, config(marker, JUNIT_JOBS, workers=6))
    r = cli(tmp_path, "run", "--junit-xml", "junit.xml", timeout=90)
    assert r.returncode == 1, r.stderr
    return tmp_path


def test_junit_structure_and_counts(junit_run: Path) -> None:
    root, suite, by_name = cases(junit_run / "junit.xml")
    assert list(by_name) == ["req", "opt", "slow", "good", "ctl", "nope"]  # config order
    expected = {"tests": "6", "failures": "4", "errors": "0", "skipped": "1"}
    assert counts(suite) == expected
    for k, v in expected.items():  # the <testsuites> totals agree (skipped: where it is given at all)
        assert root.get(k) == v or (k == "skipped" and k not in root.attrib), (k, root.attrib)
    jobs = {j["id"]: j for j in summary(junit_run)["jobs"]}
    for name, case in by_name.items():
        assert case.get("classname") == "aimedres.training"
        assert float(case.get("time") or "nan") == pytest.approx(jobs[name]["duration_s"], abs=0.001)
    assert float(suite.get("time") or "nan") >= 0


def test_junit_required_failure(junit_run: Path) -> None:
    _, _, by_name = cases(junit_run / "junit.xml")
    failures = by_name["req"].findall("failure")
    assert len(failures) == 1 and by_name["req"].find("skipped") is None
    f = failures[0]
    message = f.get("message") or ""
    assert "status=failed" in message and "attempts=1" in message
    assert "exit_code=3" in message and "failure=exit_code" in message
    assert f.get("type") == "exit_code"
    expected = [f"out {i}" for i in range(60)]
    expected += ["Traceback (most recent call last):", '  File "train.py", line 1', "ValueError: boom"]
    assert (f.text or "").splitlines() == expected[-50:]


def test_junit_optional_failure_is_skipped_with_message_and_lines(junit_run: Path) -> None:
    _, _, by_name = cases(junit_run / "junit.xml")
    case = by_name["opt"]
    assert case.find("failure") is None and case.find("error") is None
    skipped = case.findall("skipped")
    assert len(skipped) == 1
    message = skipped[0].get("message") or ""
    assert "optional" in message and "status=failed" in message
    assert "exit_code=4" in message and "failure=exit_code" in message
    assert (skipped[0].text or "").splitlines() == ["opt line 0", "opt line 1", "opt line 2"]


def test_junit_timeout_and_spawn_failure_kinds(junit_run: Path) -> None:
    _, _, by_name = cases(junit_run / "junit.xml")
    slow = by_name["slow"].find("failure")
    assert slow is not None and slow.get("type") == "timeout"
    assert "status=timed_out" in (slow.get("message") or "") and "failure=timeout" in (slow.get("message") or "")
    assert (slow.text or "").splitlines() == ["waiting"]
    nope = by_name["nope"].find("failure")
    assert nope is not None and nope.get("type") == "spawn_failed"
    assert "failure=spawn_failed" in (nope.get("message") or "")


def test_junit_success_has_metrics_as_system_out(junit_run: Path) -> None:
    _, _, by_name = cases(junit_run / "junit.xml")
    good = by_name["good"]
    assert good.find("failure") is None and good.find("skipped") is None and good.find("error") is None
    out = good.findall("system-out")
    assert len(out) == 1 and json.loads(out[0].text or "") == {"acc": 0.97, "loss": 0.1}
    assert by_name["req"].find("system-out") is None  # no metrics printed: no system-out


def test_junit_survives_control_characters_and_invalid_utf8(junit_run: Path) -> None:
    raw = (junit_run / "junit.xml").read_bytes()
    assert rb"\x1b[31m" in raw  # shown escaped ...
    assert b"\x1b" not in raw and b"\x00" not in raw  # ... never raw
    assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]", raw)
    _, _, by_name = cases(junit_run / "junit.xml")  # parses
    f = by_name["ctl"].find("failure")
    assert f is not None
    assert (f.text or "").splitlines() == [
        "bell\\x01 esc\\x1b[31mred\\x1b[0m vt\\x0b nul\\x00 end",
        "raw \\xff\\xfe bytes",
    ]


def test_junit_lines_of_retried_attempts_are_not_glued(tmp_path: Path, marker: str) -> None:
    code = "import os, sys; a = os.environ['AIMEDRES_ATTEMPT']; print('start', a); sys.stdout.write('no newline ' + a); sys.exit(1)"
    write(
        tmp_path, config(marker, job("glue", code), defaults='backoff = { initial = "50ms", jitter = 0.0 }', retries=1)
    )
    assert cli(tmp_path, "run", "--junit-xml", "junit.xml").returncode == 1
    _, _, by_name = cases(tmp_path / "junit.xml")
    f = by_name["glue"].find("failure")
    assert f is not None and "attempts=2" in (f.get("message") or "")
    lines = (f.text or "").splitlines()
    assert "start 2" in lines and "no newline 2" in lines


def test_fail_fast_junit_cancelled_and_step_summary(tmp_path: Path, marker: str) -> None:
    jobs = (
        '[jobs.boom]\ncommand = ["sh", "-c", "echo about to fail; exit 5"]\n'
        '[jobs.long]\ncommand = ["sleep", "60"]\n[jobs.later]\ncommand = ["true"]\n'
    )
    write(tmp_path, config(marker, jobs, workers=2))
    step = tmp_path / "step.md"
    step.write_text("# earlier step\n")
    r = cli(
        tmp_path, "run", "--fail-fast", "--junit-xml", "junit.xml", env={"GITHUB_STEP_SUMMARY": str(step)}, timeout=60
    )
    assert r.returncode == 1, r.stderr
    assert summary(tmp_path)["stopped_by"] == "fail-fast"
    _, suite, by_name = cases(tmp_path / "junit.xml")
    assert counts(suite) == {"tests": "3", "failures": "1", "errors": "0", "skipped": "2"}
    boom = by_name["boom"].find("failure")
    assert boom is not None and boom.get("type") == "exit_code" and "exit_code=5" in (boom.get("message") or "")
    assert (boom.text or "") == "about to fail"
    for name in ("long", "later"):
        assert by_name[name].find("failure") is None
        skipped = by_name[name].find("skipped")
        assert skipped is not None and "cancelled" in (skipped.get("message") or ""), name
    # the step summary: appended, one row per job, the failed one with its failure kind
    text = step.read_text()
    assert text.startswith("# earlier step\n")
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| job ")
    }
    assert set(rows) == {"boom", "long", "later"}
    assert rows["boom"][0] == "failed (exit_code)" and rows["boom"][1] == "1"
    assert rows["long"][0] == "cancelled" and rows["long"][1] == "1"
    assert rows["later"][0] == "cancelled" and rows["later"][1] == "0"
    assert f"`{summary(tmp_path)['run']}`" in text


def test_junit_resumed_jobs_are_skipped(tmp_path: Path, marker: str) -> None:
    jobs = (
        job("ok", "import json; print(json.dumps({'acc': 0.8}))")
        + '[jobs.flop]\ncommand = ["sh", "-c", "test -e fixed"]\n'
    )
    write(tmp_path, config(marker, jobs))
    assert cli(tmp_path, "run").returncode == 1
    (tmp_path / "fixed").touch()
    assert cli(tmp_path, "run", "--resume", "--junit-xml", "junit.xml").returncode == 0
    _, suite, by_name = cases(tmp_path / "junit.xml")
    assert counts(suite) == {"tests": "2", "failures": "0", "errors": "0", "skipped": "1"}
    skipped = by_name["ok"].find("skipped")
    assert skipped is not None and "resume" in (skipped.get("message") or "")
    assert by_name["flop"].find("skipped") is None and by_name["flop"].find("failure") is None


def test_step_summary_row_stays_one_line_with_multiline_metrics(tmp_path: Path, marker: str) -> None:
    """A metric that is a multi-line string (e.g. sklearn's classification_report)."""
    code = "import json; print(json.dumps({'acc': 0.9, 'report': 'precision recall\\nclass 0  0.9 0.8'}))"
    write(tmp_path, config(marker, job("rep", code)))
    step = tmp_path / "step.md"
    assert cli(tmp_path, "run", env={"GITHUB_STEP_SUMMARY": str(step)}).returncode == 0
    text = step.read_text().split("```mermaid")[0]  # the table; the attempts' gantt chart follows it
    table = [line for line in text.splitlines() if line.strip() and not line.startswith("###")]
    assert len(table) == 3, table  # header, separator, the one job
    assert all(line.startswith("|") and line.endswith("|") for line in table), table


# ------------------------------------------------------------------------------ the JUnit schema

# The structural rules of the JUnit schema most CI tools validate against: the Jenkins xUnit
# plugin's junit-10.xsd (MIT, after Ant's and Surefire's formats), restated here so the test runs
# offline. Left out: the Surefire rerun/flaky elements, which aimedres-async never writes (a report
# using them would fail here, which is the conservative direction).
JUNIT_XSD = r"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:simpleType name="SUREFIRE_TIME">
    <xs:restriction base="xs:string">
      <xs:pattern value="(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]*)?"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:complexType name="result" mixed="true">
    <xs:attribute name="type" type="xs:string"/>
    <xs:attribute name="message" type="xs:string"/>
  </xs:complexType>
  <xs:element name="failure" type="result"/>
  <xs:element name="error" type="result"/>
  <xs:element name="skipped" type="result"/>
  <xs:element name="system-out" type="xs:string"/>
  <xs:element name="system-err" type="xs:string"/>
  <xs:element name="property">
    <xs:complexType>
      <xs:attribute name="name" type="xs:string" use="required"/>
      <xs:attribute name="value" type="xs:string" use="required"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="properties">
    <xs:complexType>
      <xs:sequence><xs:element ref="property" minOccurs="0" maxOccurs="unbounded"/></xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:element name="testcase">
    <xs:complexType>
      <xs:choice minOccurs="0" maxOccurs="unbounded">
        <xs:element ref="skipped"/>
        <xs:element ref="error"/>
        <xs:element ref="failure"/>
        <xs:element ref="system-out"/>
        <xs:element ref="system-err"/>
      </xs:choice>
      <xs:attribute name="name" type="xs:string" use="required"/>
      <xs:attribute name="time" type="xs:string"/>
      <xs:attribute name="classname" type="xs:string"/>
      <xs:attribute name="group" type="xs:string"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="testsuite">
    <xs:complexType>
      <xs:choice minOccurs="0" maxOccurs="unbounded">
        <xs:element ref="testsuite"/>
        <xs:element ref="properties"/>
        <xs:element ref="testcase"/>
        <xs:element ref="system-out"/>
        <xs:element ref="system-err"/>
      </xs:choice>
      <xs:attribute name="name" type="xs:string" use="required"/>
      <xs:attribute name="tests" type="xs:string" use="required"/>
      <xs:attribute name="failures" type="xs:string" use="required"/>
      <xs:attribute name="errors" type="xs:string" use="required"/>
      <xs:attribute name="group" type="xs:string"/>
      <xs:attribute name="time" type="SUREFIRE_TIME"/>
      <xs:attribute name="skipped" type="xs:string"/>
      <xs:attribute name="timestamp" type="xs:string"/>
      <xs:attribute name="hostname" type="xs:string"/>
      <xs:attribute name="id" type="xs:string"/>
      <xs:attribute name="package" type="xs:string"/>
      <xs:attribute name="file" type="xs:string"/>
      <xs:attribute name="log" type="xs:string"/>
      <xs:attribute name="url" type="xs:string"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="testsuites">
    <xs:complexType>
      <xs:sequence><xs:element ref="testsuite" minOccurs="0" maxOccurs="unbounded"/></xs:sequence>
      <xs:attribute name="name" type="xs:string"/>
      <xs:attribute name="time" type="SUREFIRE_TIME"/>
      <xs:attribute name="tests" type="xs:string"/>
      <xs:attribute name="failures" type="xs:string"/>
      <xs:attribute name="errors" type="xs:string"/>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""


@pytest.fixture
def junit_schema() -> Any:
    xmlschema = pytest.importorskip("xmlschema")
    return xmlschema.XMLSchema(JUNIT_XSD)


def test_junit_schema_itself_rejects_what_it_should(junit_schema: Any) -> None:
    """The restated schema is not vacuous: it refuses a testcase without a name and an unknown child."""
    assert junit_schema.is_valid(
        '<testsuite name="s" tests="1" failures="0" errors="0"><testcase name="a"/></testsuite>'
    )
    assert not junit_schema.is_valid('<testsuite name="s" tests="1" failures="0" errors="0"><testcase/></testsuite>')
    assert not junit_schema.is_valid('<testsuite name="s" tests="1" failures="0" errors="0"><bogus/></testsuite>')
    assert not junit_schema.is_valid('<testsuite name="s" tests="1" failures="0" errors="0" time="1.2s"/>')


def test_junit_testsuite_validates_against_the_junit_schema(junit_run: Path, junit_schema: Any) -> None:
    _, suite, _ = cases(junit_run / "junit.xml")
    junit_schema.validate(ET.tostring(suite, encoding="unicode"))


def test_junit_report_validates_against_the_junit_schema(junit_run: Path, junit_schema: Any) -> None:
    junit_schema.validate(str(junit_run / "junit.xml"))


# ------------------------------------------------------------------------------ the --log-file stream

STREAM_CODE = """
import json, os, sys
a = os.environ['AIMEDRES_ATTEMPT']
name = os.environ['AIMEDRES_JOB_ID']
for i in range(400):
    print(f'{name} out {a} {i}')
    if i % 50 == 0:
        print(f'{name} err {a} {i}', file=sys.stderr)
        sys.stdout.flush()
for p in range(0, 101, 20):
    sys.stderr.write(f'\\r{name} progress {a} {p}%')
sys.stderr.write('\\n')
print(json.dumps({'job': name, 'attempt': int(a)}))
sys.exit(1 if name == 'flaky' and a == '1' else 0)
"""


def test_log_file_stream_is_complete_and_ordered_per_job(tmp_path: Path, marker: str) -> None:
    jobs = "".join(job(name, STREAM_CODE) for name in ("one", "two", "flaky"))
    write(tmp_path, config(marker, jobs, defaults='backoff = { initial = "50ms", jitter = 0.0 }', retries=1))
    r = cli(tmp_path, "run", "--log-file", "stream.jsonl", timeout=90)
    assert r.returncode == 0, r.stderr
    raw = (tmp_path / "stream.jsonl").read_bytes()
    assert raw.endswith(b"\n")
    stream = [json.loads(line) for line in raw.split(b"\n")[:-1]]  # every line is one JSON object
    assert all(isinstance(x, dict) and {"ts", "event", "run"} <= set(x) for x in stream)
    assert stream[0]["event"] == "run.started" and stream[-1]["event"] == "run.finished"
    rd = run_dir(tmp_path)
    # lifecycle: exactly events.jsonl, in the same order
    assert [x for x in stream if x["event"] != "job.output"] == read_jsonl(rd / "events.jsonl")
    for name in ("one", "two", "flaky"):
        mine = [x for x in stream if x.get("job") == name]
        # exactly the job's own file (lifecycle and every output record), in the same order; its
        # output records leave run and job to the file's path (log schema 2), the stream names them
        own = read_jsonl(rd / "jobs" / f"{name}.jsonl")
        assert all("run" not in x and "job" not in x for x in own if x["event"] == "job.output")
        assert mine == [{**x, "run": rd.name, "job": name} if x["event"] == "job.output" else x for x in own]
        # in sequence: queued, then per attempt started / output... / exited (/ retrying), then finished
        events = [x["event"] for x in mine]
        attempts = 2 if name == "flaky" else 1
        assert events[0] == "job.queued" and events[-1] == "job.finished"
        assert events.count("job.started") == attempts and events.count("job.exited") == attempts
        for n in range(1, attempts + 1):
            recs = [x for x in mine if x.get("attempt") == n]
            kinds = [x["event"] for x in recs]
            assert kinds[0] == "job.started" and kinds[-1] in ("job.exited", "job.retrying")
            body = kinds[1 : kinds.index("job.exited")]
            assert set(body) - {"job.sample"} == {"job.output"}  # job.sample: its RSS, once a second
            out = [x.get("line") for x in recs if x["event"] == "job.output" and x["stream"] == "stdout"]
            assert out[:-1] == [f"{name} out {n} {i}" for i in range(400)]
            err = [x.get("line") for x in recs if x["event"] == "job.output" and x["stream"] == "stderr"]
            assert err == [f"{name} err {n} {i}" for i in range(0, 400, 50)] + [
                f"{name} progress {n} {p}%" for p in range(0, 101, 20)
            ]
            assert recs[kinds.index("job.exited")]["outcome"] == (
                "failed" if name == "flaky" and n == 1 else "succeeded"
            )
        # the attempts do not overlap in the stream
        first_of_2 = next((i for i, x in enumerate(mine) if x.get("attempt") == 2), len(mine))
        assert all(x.get("attempt") in (None, 1) for x in mine[:first_of_2])
    assert summary(tmp_path)["counts"] == {"succeeded": 3}
