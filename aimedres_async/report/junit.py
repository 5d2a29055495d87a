"""The JUnit XML report of a run: one testcase per job, which CI systems show as tests."""

from __future__ import annotations

import re
from typing import Any
from xml.etree import ElementTree as ET

import orjson

from aimedres_async.records.framing import timestamp_str
from aimedres_async.records.terminal import neutral


def junit_xml(run_id: str, duration_s: float, jobs: list[dict[str, Any]], started_at: str | None = None) -> bytes:
    """A JUnit report: one testcase per job; a failed job's text is its last 50 output lines, under a
    numbered header per attempt when it had several. The suite's timestamp is the run's start.

    An optional job that failed is reported as skipped (with the reason), since it does not
    fail the run; a job that never ran because the run was stopped is skipped too. A swept job's
    parameters are its testcase's <properties> (which junit-10.xsd, unlike pytest and Surefire,
    does not foresee: a job without parameters has none).
    """
    suite = ET.Element("testsuite", name="aimedres-async", timestamp=started_at or timestamp_str())
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for job in jobs:
        counts["tests"] += 1
        case = ET.SubElement(
            suite,
            "testcase",
            classname="aimedres.training",
            name=job["id"],
            time=f"{job.get('duration_s') or 0:.3f}",
        )
        if job.get("params"):  # a sweep's combination, as pytest's record_property writes them
            props = ET.SubElement(case, "properties")
            for key, value in job["params"].items():
                ET.SubElement(props, "property", name=str(key), value=xml_safe(_shown(value)))
        status = job["status"]
        detail = f"status={status} attempts={job['attempts']} exit_code={job.get('exit_code')}"
        if job.get("failure"):
            detail += f" failure={job['failure']}"
        if status in ("succeeded",):
            pass
        elif status == "skipped":
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message="succeeded in the resumed run")
        elif status == "cancelled":
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=f"cancelled: the run was stopped ({detail})")
        elif job.get("optional"):
            counts["skipped"] += 1
            el = ET.SubElement(case, "skipped", message=f"optional job failed ({detail})")
            el.text = xml_safe("\n".join(job.get("last_lines", [])))
        else:
            counts["failures"] += 1
            el = ET.SubElement(case, "failure", message=detail, type=job.get("failure") or status)
            el.text = xml_safe("\n".join(job.get("last_lines", [])))
        if job.get("metrics"):
            out = ET.SubElement(case, "system-out")
            out.text = xml_safe(orjson.dumps(job["metrics"]).decode())
    for k, v in counts.items():
        suite.set(k, str(v))
    suite.set("time", f"{duration_s:.3f}")
    suites = ET.Element("testsuites", name=f"aimedres-async run {run_id}")
    suites.append(suite)
    for k, v in counts.items():
        if k != "skipped":  # junit-10.xsd (Jenkins) allows no `skipped` on <testsuites>
            suites.set(k, str(v))
    ET.indent(suites)
    return bytes(ET.tostring(suites, encoding="utf-8", xml_declaration=True)) + b"\n"


def _shown(value: Any) -> str:
    """A parameter as the job's id shows it (true, 0.1, mlp)."""
    return "true" if value is True else "false" if value is False else str(value)


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """XML 1.0 forbids most control characters; show them escaped instead, and bidi controls too
    (a CI page would draw the name reversed)."""
    return neutral(_XML_BAD.sub(lambda m: f"\\x{ord(m.group()):02x}", text))
