"""The old `run_all_training.py` / `train.py` orchestrator's command lines, artifacts and YAML job
list, kept working here: its flags, `training_summary_<timestamp>.json`, and `init --from-yaml`."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aimedres_async.plan.config import JOB_ID_RE
from aimedres_async.plan.config_errors import InputError

YAML_SUFFIXES = (".yaml", ".yml")


class LegacyError(InputError):
    """A one-line problem with an old command line or YAML job list (exit 2)."""


def add_discovery_flags(group: Any, positive: Callable[[str], int]) -> None:
    """The old orchestrator's discovery flags, with their old meaning (an argparse group)."""
    group.add_argument(
        "--include-pattern",
        action="append",
        default=[],
        metavar="GLOB",
        help="also discover files whose name matches GLOB (repeatable)",
    )
    group.add_argument(
        "--exclude-regex",
        metavar="REGEX",
        help="skip discovered scripts whose path (relative to the config folder) REGEX finds",
    )
    group.add_argument("--discovery-limit", type=positive, metavar="N", help="discover at most N scripts")
    group.add_argument(
        "--allow-discovery-overrides",
        action="store_true",
        help="a discovered script replaces the script of a [jobs.<id>] with the same id",
    )
    group.add_argument(
        "--mark-discovered-optional",
        action="store_true",
        help="discovered jobs are optional: their failure does not fail the run",
    )
    group.add_argument(
        "--no-default-jobs", action="store_true", help="accepted for old command lines; there are no built-in jobs here"
    )
    group.add_argument(
        "--strict-discovery", action="store_true", help="exit 3 if discovery finds nothing or reports a problem"
    )


def add_summary_flag(group: Any) -> None:
    """`--summary-dir`: the old orchestrator's summaries folder (a `run` option)."""
    group.add_argument(
        "--summary-dir",
        metavar="DIR",
        help="also write this run's summary as DIR/training_summary_<UTC time>.json in the old orchestrator's "
        "format ([supervisor] summary_dir)",
    )


def check_config_path(path: str) -> None:
    """The old `--config jobs.yaml` names a YAML job list: say how to convert it."""
    if path.lower().endswith(YAML_SUFFIXES):
        raise LegacyError(
            f"{path} looks like a run_all_training.py YAML job list; this tool reads aimedres.toml. "
            f"Convert it once with `aimedres-async init --from-yaml {path}`, then drop --config"
        )


def write_training_summary(folder: Path, data: bytes) -> Path:
    """`data` (the old format: report.legacy_summary) as `folder/training_summary_<YYYYmmdd_HHMMSS
    UTC>.json`, the old name; two runs in one second keep both."""
    from aimedres_async.system import atomic

    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime())
    path = folder / f"training_summary_{stamp}.json"
    n = 1
    while path.exists():
        path = folder / f"training_summary_{stamp}_{n}.json"
        n += 1
    atomic.write(path, data)
    return path


# ---------------------------------------------------------------- init --from-yaml

_FLAG_KEYS = {"epochs": "epochs", "folds": "folds", "sample": "sample", "batch": "batch", "batch_size": "batch"}
_KNOWN = {
    "name",
    "script",
    "output",
    "id",
    "args",
    "optional",
    "use_output_dir",
    "supports_epochs",
    "supports_folds",
    "supports_sample",
    "supports_batch",
}


def job_id_for(given: object, name: str, script: str, n: int, seen: dict[str, int], notes: list[str]) -> str:
    """The id of the n-th old job: its own id, else its name, else its script's stem, as the old
    orchestrator made them; a second job with an id already used gets `-2`, `-3`, ... (said in
    `notes`). `seen` counts the ids used so far."""
    stem = Path(script).stem.removeprefix("train_")
    job_id = _old_id(str(given or name or stem))
    if not JOB_ID_RE.fullmatch(job_id):
        job_id = _old_id(stem) or f"job{n}"
    if job_id in seen:
        seen[job_id] += 1
        notes.append(f"id {job_id!r} was used by an earlier job; renamed")
        job_id = f"{job_id}-{seen[job_id]}"
    seen.setdefault(job_id, 1)
    return job_id


def _old_id(name: str) -> str:
    """The old orchestrator's id for a job name, made a valid id here."""
    text = (
        name.lower()
        .replace("'", "")
        .replace("(", "")
        .replace(")", "")
        .replace("/", "_")
        .replace("&", "and")
        .replace(" ", "_")
    )
    text = re.sub(r"[^a-z0-9_.-]", "_", text).lstrip("_.-")[:64]
    return text


def _load_yaml(path: Path) -> Any:
    try:
        import yaml
    except ImportError:
        raise LegacyError(
            "reading a YAML job list needs PyYAML: pip install 'aimedres-async[yaml]' (or pip install pyyaml)"
        ) from None
    from aimedres_async.plan.limits import (
        MAX_YAML_BYTES,
        LimitError,
        check_structure,
        check_yaml_events,
        read_regular_file,
    )

    try:  # a regular file, read without waiting on a FIFO, at most MAX_YAML_BYTES
        text = read_regular_file(path, MAX_YAML_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise LegacyError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    try:
        # Depth and size (aliases expanded) are checked on the event stream, before PyYAML's
        # composer recurses or anything walks the aliases: a "billion laughs" file stops here.
        check_yaml_events(text)
        data = yaml.safe_load(text)
        check_structure(data)
        return data
    except LimitError as e:
        raise LegacyError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise LegacyError(f"{where}: not valid YAML: {problem}") from None


def _args(raw: object, where: str, job: dict[str, Any], notes: list[str]) -> list[str]:
    """The old `args` mapping as an argv list, as the old tool built it (`--key value`, `--flag`)."""
    if raw is None:
        return []
    if isinstance(raw, list):
        return [str(x) for x in raw]
    if not isinstance(raw, dict):
        raise LegacyError(f"{where}: args: expected a mapping like {{dataset-choice: als}} or a list")
    argv: list[str] = []
    for key, value in raw.items():
        name = str(key)
        target = _FLAG_KEYS.get(name.replace("-", "_"))
        if target and isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            job[target] = value  # injected only where the script declares the flag, as --epochs is
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            if value:
                argv.append(flag)
        elif value is None:
            notes.append(f"args: {name} had no value and was left out")
        else:
            argv += [flag, str(value)]
    return argv


def convert_yaml(path: Path) -> str:
    """The old YAML job list as the text of an equivalent, commented aimedres.toml."""
    raw = _load_yaml(path)
    items = raw.get("jobs") if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not items:
        raise LegacyError(f"{path}: expected `jobs:` holding a list of jobs (name, script, output, args, ...)")
    out = _header(path)
    seen: dict[str, int] = {}
    for n, item in enumerate(items, 1):
        out += _job_block(path, n, item, seen)
    return "\n".join(out) + "\n"


def _header(path: Path) -> list[str]:
    """The converted config's [supervisor] and [discovery], as run_all_training.py behaved."""
    import tomli_w

    out = [
        f"# aimedres-async configuration, converted from {path.name} (a run_all_training.py job list)",
        "# by `aimedres-async init --from-yaml`. Check it with `aimedres-async validate`; see",
        "# docs/how-to/migrating.md for what changed.",
        "",
    ]
    out.append("# As run_all_training.py: one job at a time (parallel = true or --parallel to change), each")
    out.append("# job's --output-dir under results/ (--base-output-dir), run logs under logs/ (--logs-dir).")
    out.append("# summary_dir: each run also writes summaries/training_summary_<UTC time>.json, as before.")
    supervisor = {"parallel": False, "output_dir": "results", "logs_dir": "logs", "summary_dir": "summaries"}
    out.append(tomli_w.dumps({"supervisor": supervisor}).rstrip())
    out.append("")
    out.append("# run_all_training.py also discovered train_*.py scripts; the jobs below win over a discovered")
    out.append("# script with the same id. Add legacy folders to `exclude` if they hold old copies.")
    out.append(
        tomli_w.dumps(
            {"discovery": {"enabled": True, "roots": ["."], "include": ["train_*.py"], "exclude": []}}
        ).rstrip()
    )
    return out


def _job_block(path: Path, n: int, item: object, seen: dict[str, int]) -> list[str]:
    """One old job (the n-th) as a commented [jobs.<id>] table; `seen` counts the ids used so far."""
    import tomli_w

    where = f"{path}: jobs[{n}]"
    if not isinstance(item, dict):
        raise LegacyError(f"{where}: expected a mapping with name, script, output, ...")
    script = item.get("script")
    if not isinstance(script, str) or not script.strip():
        raise LegacyError(f"{where}: needs `script: path/to/train_x.py`")
    name = str(item.get("name") or "")
    notes: list[str] = []
    job_id = job_id_for(item.get("id"), name, script, n, seen, notes)
    job: dict[str, Any] = {"script": script}
    if isinstance(item.get("output"), str) and item["output"].strip():
        job["output_dir"] = item["output"]
    argv = _args(item.get("args"), where, job, notes)
    if argv:
        job["args"] = argv
    if item.get("optional") is True:
        job["optional"] = True
    for key in ("use_output_dir", "supports_epochs", "supports_folds", "supports_sample", "supports_batch"):
        if item.get(key) is False:
            flag = {"use_output_dir": "--output-dir"}.get(key, "--" + key.removeprefix("supports_"))
            notes.append(f"{key}: false: {flag} is passed only to scripts that declare it with add_argument")
    notes += [f"{key}: not used here" for key in item if key not in _KNOWN]
    out = [""]
    if name:
        out.append(f"# {name}")
    out += [f"# {note}" for note in notes]
    out.append(tomli_w.dumps({"jobs": {job_id: job}}).rstrip())
    return out


def add_init_flags(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--from-yaml", metavar="FILE", help="convert a run_all_training.py YAML job list into this config"
    )
    source.add_argument(
        "--from-orchestrator",
        metavar="PATH",
        help="convert the built-in job list of the old train.py orchestrator (its default_jobs(), read with "
        "ast, never run) into this config, keeping the old defaults (one job at a time, no retries, "
        "no timeout, Ctrl+C lets running jobs finish)",
    )
