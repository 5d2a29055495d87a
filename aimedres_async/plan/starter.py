"""`init`: a commented starter aimedres.toml, its values written by tomli-w so they always parse
(or, with --from-yaml, an old YAML job list converted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

# (table, key, value, comment, active): inactive keys are written commented out, as examples.
_ENTRIES: list[tuple[str, str, Any, str, bool]] = [
    ("supervisor", "parallel", True, "run jobs at the same time (false: one after another)", True),
    ("supervisor", "max_workers", "auto", 'at most this many at once: an integer, or "auto" = one per CPU', True),
    ("supervisor", "logs_dir", "logs", "logs/<run_id>/{events.jsonl, jobs/<id>.jsonl, summary.json}", True),
    ("supervisor", "output_dir", "results", "each script gets --output-dir results/<id>", True),
    ("supervisor", "summary_dir", "summaries", "also write training_summary_<UTC time>.json here each run", False),
    ("supervisor", "python", "", 'interpreter for .py scripts; "" = the one running aimedres-async', True),
    ("supervisor", "stop_signal", "SIGINT", "what a job's process group gets on Ctrl+C or a timeout...", True),
    ("supervisor", "grace_period", "10s", "...and how long it has before SIGKILL", True),
    ("supervisor", "spool_dir", "spool", "where `serve` looks for tickets", True),
    ("discovery", "enabled", True, "find train_*.py scripts by themselves", True),
    ("discovery", "roots", ["."], "folders to walk (relative to this file)", True),
    ("discovery", "include", ["train_*.py"], "file-name globs; job id = name without train_ and .py", True),
    ("discovery", "exclude", ["**/legacy/**"], "path globs to skip", True),
    ("defaults", "epochs", 10, "passed as --epochs to scripts that declare it", False),
    ("defaults", "folds", 5, "passed as --folds to scripts that declare it", False),
    ("defaults", "retries", 2, "a failed or timed-out attempt is retried this many times", True),
    (
        "defaults",
        "backoff",
        {"initial": "1s", "factor": 2.0, "max": "5m", "jitter": 0.1},
        "delay before retry n: min(max, initial * factor**(n-1)), +/- jitter",
        True,
    ),
    ("defaults", "timeout", "6h", "per attempt; 0 = no limit", True),
    ("defaults", "env", {"PYTHONUNBUFFERED": "1"}, "added to every job's environment", True),
    ("logging", "redact", [], 'regexes removed from job output before it is written, e.g. ["MRN\\\\d{6,}"]', True),
]

_EXAMPLE_JOB = """\
# A job of your own (a discovered script with the same id gets these settings instead):
# [jobs.als]
# script = "src/aimedres/training/train_als.py"
# args = ["--dataset-choice", "als-progression"]
# epochs = 80                 # this job's own value beats --epochs
# optional = true             # its failure does not fail the run
# timeout = "2h"
# python = ".venv-train/bin/python"   # this job's interpreter (all jobs: [supervisor] python or --python)
# output_dir = "als_results"  # its --output-dir under [supervisor] output_dir (default: the job id)
# metrics_file = "metrics/training_report.json"  # JSON report it writes there: read as final metrics
# matrix = { lr = [0.1, 0.01] }   # a sweep: one job per value (als[lr=0.1,seed=0], ...), passed as --lr
# seeds = [0, 1, 2]           # and per seed, passed as --seed (or repeat = 3)
"""


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):  # tomli-w writes arrays one item per line; keep them on the key's line
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def starter_text(folder: Path | None = None) -> str:
    """The starter config; with the `folder` it is written to, discovered copies of one script
    are excluded (the canonical one kept) and the JSON report files scripts write are suggested."""
    from aimedres_async.plan.orchestrator import duplicate_excludes, exclude_lines, report_suggestions

    excludes = []
    if folder is not None:
        discovery = _discovery_defaults()
        excludes = duplicate_excludes(folder, discovery, {})
    out = ["# aimedres-async configuration. Reference: docs/reference/config.md.", ""]
    table = None
    for section, key, value, comment, active in _ENTRIES:
        if section != table:
            if table is not None:
                out.append("")
            out.append(f"[{section}]")
            table = section
        if (section, key) == ("discovery", "exclude") and excludes:
            out.append("# copies of one script (legacy folders): the canonical one runs, the others are skipped")
            out += exclude_lines(excludes, value)
            continue
        line = f"{key} = {_value(value)}"
        out.append(f"{'' if active else '# '}{line:<40} # {comment}")
    out += ["", _EXAMPLE_JOB]
    if folder is not None:
        out += report_suggestions(folder, _discovery_defaults(), {path for path, _why in excludes})
    return "\n".join(out)


def _discovery_defaults() -> Any:
    from aimedres_async.plan.config import DiscoveryConfig

    values = {key: value for section, key, value, _c, _a in _ENTRIES if section == "discovery"}
    return DiscoveryConfig(
        roots=tuple(values["roots"]), include=tuple(values["include"]), exclude=tuple(values["exclude"])
    )


def init_text(path: Path, from_yaml: str | None, from_orchestrator: str | None = None) -> str:
    """What `init` writes to `path`: the starter, or an old YAML job list or orchestrator's built-in
    job list converted (LegacyError when what it converts to would not load)."""
    from aimedres_async.plan import legacy
    from aimedres_async.plan.config_errors import ConfigError
    from aimedres_async.plan.config_load import parse

    folder = path.absolute().parent
    if from_orchestrator:
        from aimedres_async.plan.orchestrator import convert_orchestrator

        source = from_orchestrator
        text = convert_orchestrator(Path(from_orchestrator), folder)
    elif from_yaml:
        source = from_yaml
        text = legacy.convert_yaml(Path(from_yaml))
    else:
        return starter_text(folder)
    try:
        parse(text, path, folder)  # what is written must load
    except ConfigError as e:
        raise legacy.LegacyError(f"{source}: converts to an invalid config: {e.problems[0]}") from None
    return text
