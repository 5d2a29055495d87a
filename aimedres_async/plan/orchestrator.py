"""`init --from-orchestrator`: the old `train.py` orchestrator's built-in job list (the literal
`TrainingJob(...)` calls in its `default_jobs()`), read with `ast` (never imported, never run).

Also what `init` finds in a repository's sources: a file holding such a list, the JSON files a
training script writes (`json.dump` targets: its `metrics_file`), discovered duplicate ids.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimedres_async.plan.config import DiscoveryConfig
from aimedres_async.plan.config_errors import InputError
from aimedres_async.plan.discovery import canonical, discover

JOB_CALL = "TrainingJob"
JOB_LIST = "default_jobs"
ORCHESTRATOR_NAMES = ("train.py", "run_all_training.py", "orchestrator.py")
_POSITIONAL = ("name", "script", "output")  # TrainingJob(name, script, output, ...)
SUPPORTS = {
    "use_output_dir": "output_dir",
    "supports_epochs": "epochs",
    "supports_folds": "folds",
    "supports_sample": "sample",
    "supports_batch": "batch",
}
_KNOWN = {"name", "script", "output", "id", "args", "optional", *SUPPORTS}
MAX_SOURCE = 4 << 20


class OrchestratorError(InputError):
    """A one-line reason the old orchestrator's job list cannot be read (exit 2)."""


@dataclass
class OldJob:
    """One `TrainingJob(...)` of the built-in list, as literal values."""

    line: int
    values: dict[str, Any] = field(default_factory=dict)
    not_literal: list[str] = field(default_factory=list)  # keys whose value is computed at run time
    unknown: list[str] = field(default_factory=list)  # keys this tool has no use for


def _parse(path: Path) -> ast.Module:
    try:
        source = path.read_bytes()[:MAX_SOURCE]
    except OSError as e:
        raise OrchestratorError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError) as e:
        line = getattr(e, "lineno", None)
        raise OrchestratorError(f"{path}{f':{line}' if line else ''}: does not parse: {e}") from None


def _job_list(tree: ast.AST) -> ast.FunctionDef | None:
    return next(
        (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == JOB_LIST),
        None,
    )  # type: ignore[return-value]


def _calls(func: ast.AST) -> Iterator[ast.Call]:
    """The `TrainingJob(...)` calls inside `func`, in source order."""
    calls = [
        n
        for n in ast.walk(func)
        if isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Name) and n.func.id == JOB_CALL)
            or (isinstance(n.func, ast.Attribute) and n.func.attr == JOB_CALL)
        )
    ]
    yield from sorted(calls, key=lambda n: (n.lineno, n.col_offset))


def _old_job(call: ast.Call) -> OldJob:
    job = OldJob(line=call.lineno)
    pairs: list[tuple[str, ast.expr]] = list(zip(_POSITIONAL, call.args, strict=False))
    pairs += [(k.arg, k.value) for k in call.keywords if k.arg is not None]
    if len(call.args) > len(_POSITIONAL) or any(k.arg is None for k in call.keywords):
        job.not_literal.append("positional or ** arguments")
    for key, node in pairs:
        try:
            value = ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            job.not_literal.append(key)
            continue
        if key in _KNOWN:
            job.values[key] = value
        else:
            job.unknown.append(key)
    return job


def read_default_jobs(path: Path) -> list[OldJob]:
    """The literal `TrainingJob(...)` calls of `default_jobs()` in the orchestrator at `path`."""
    tree = _parse(path)
    func = _job_list(tree)
    if func is None:
        raise OrchestratorError(f"{path}: no {JOB_LIST}() function (the old orchestrator's built-in job list)")
    jobs = [_old_job(c) for c in _calls(func)]
    if not jobs:
        raise OrchestratorError(f"{path}: {JOB_LIST}() holds no {JOB_CALL}(...) call")
    return jobs


def find_orchestrator(folder: Path) -> Path | None:
    """An old orchestrator with a built-in job list in `folder`, for `init` to mention."""
    for name in ORCHESTRATOR_NAMES:
        path = folder / name
        try:
            if path.is_file() and path.stat().st_size <= MAX_SOURCE:
                text = path.read_text(encoding="utf-8", errors="replace")
            else:
                continue
        except OSError:
            continue
        if f"def {JOB_LIST}" in text and f"{JOB_CALL}(" in text:
            try:
                read_default_jobs(path)
            except OrchestratorError:
                continue
            return path
    return None


# ---------------------------------------------------------------- what a script writes


def _path_text(node: ast.expr) -> str | None:
    """A path expression as a glob relative to the job's output folder: its string pieces after
    the last computed one (`os.path.join(out, "metrics", f"{name}.json")` -> `metrics/*.json`)."""
    pieces: list[str] = []

    def visit(n: ast.expr) -> None:
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            pieces.append(n.value)
        elif isinstance(n, ast.JoinedStr):
            text = "".join(str(v.value) if isinstance(v, ast.Constant) else "*" for v in n.values)
            if text.startswith("*/"):  # f"{output_dir}/report.json": relative to what it computed
                pieces.clear()
            pieces.append(text.removeprefix("*/"))
        elif isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div):
            visit(n.left)
            visit(n.right)
        elif isinstance(n, ast.Call) and (
            (isinstance(n.func, ast.Attribute) and n.func.attr in ("join", "joinpath"))
            or (isinstance(n.func, ast.Name) and n.func.id in ("Path", "PurePath"))
        ):
            if isinstance(n.func, ast.Attribute) and n.func.attr == "joinpath":
                visit(n.func.value)
            for a in n.args:
                visit(a)
        else:
            pieces.clear()  # a computed part (the output folder): what follows is relative to it

    visit(node)
    text = "/".join(p.strip("/") for p in pieces if p.strip("/"))
    if not text.endswith(".json") or ".." in text.split("/"):
        return None
    return text


def json_targets(script: Path) -> list[str]:
    """The files a script writes JSON to, as globs under its output folder: `json.dump(obj, f)`
    with `f` from `open(PATH, "w")`, and `PATH.write_text(json.dumps(...))`, read with `ast`."""
    try:
        tree = _parse(script)
    except OrchestratorError:
        return []
    opened: dict[str, list[tuple[int, ast.expr]]] = {}  # a file variable -> where it was opened to write
    for n in ast.walk(tree):
        if isinstance(n, ast.With | ast.AsyncWith):
            for item in n.items:
                call, var = item.context_expr, item.optional_vars
                if isinstance(call, ast.Call) and isinstance(var, ast.Name) and call.args and _opens_to_write(call):
                    opened.setdefault(var.id, []).append((n.lineno, call.args[0]))
    found: list[str] = []
    for n in sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)), key=lambda n: n.lineno):
        if not isinstance(n.func, ast.Attribute):
            continue
        target: ast.expr | None = None
        if n.func.attr == "dump" and len(n.args) >= 2 and isinstance(n.args[1], ast.Name):
            before = [expr for line, expr in opened.get(n.args[1].id, []) if line <= n.lineno]
            target = max(before, key=lambda e: e.lineno) if before else None
        elif n.func.attr == "write_text" and n.args and _is_dumps(n.args[0]):
            target = n.func.value
        text = _path_text(target) if target is not None else None
        if text and text not in found:
            found.append(text)
    return found


def _opens_to_write(call: ast.Call) -> bool:
    """`open(path, "w")` (or "a", "x", with mode=): a file a script writes."""
    f = call.func
    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
    if name != "open":
        return False
    mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and any(c in mode.value for c in "wax")


def _is_dumps(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "dumps"


# ---------------------------------------------------------------- duplicates found by discovery


def duplicate_excludes(base_dir: Path, discovery: DiscoveryConfig, listed: dict[str, str]) -> list[tuple[str, str]]:
    """Discovered copies of one job id, resolved: (path to exclude, why) for every copy but the
    canonical one (`listed` names the script a converted job runs, which is kept)."""
    found, _warnings = discover(base_dir, discovery.roots, discovery.include, discovery.exclude)
    by_id: dict[str, list[str]] = {}
    for job_id, info in found:
        rel = info.path.relative_to(base_dir).as_posix() if info.path.is_relative_to(base_dir) else str(info.path)
        by_id.setdefault(job_id, []).append(rel)
    by_script = {script: job_id for job_id, script in listed.items()}
    out: list[tuple[str, str]] = []
    for job_id, rels in by_id.items():
        runs_as = next((by_script[r] for r in rels if r in by_script and by_script[r] != job_id), None)
        if runs_as is not None:  # the script of a listed job under another id: it runs as that job
            out += [(r, f"{listed[runs_as]} runs as job {runs_as!r}") for r in rels]
            continue
        if len(rels) < 2 and job_id not in listed:
            continue
        keep = listed.get(job_id) or canonical(rels)
        out += [(r, f"a copy of job {job_id!r}; {keep} runs") for r in rels if r != keep]
    return out


def report_suggestions(folder: Path, discovery: DiscoveryConfig, skip: set[str]) -> list[str]:
    """Commented [jobs.<id>] tables for the discovered scripts (but those in `skip`) that write
    JSON files (`json.dump` targets in their source): each file's path as its `metrics_file`."""
    found, _warnings = discover(folder, discovery.roots, discovery.include, discovery.exclude)
    out: list[str] = []
    for job_id, info in found:
        rel = info.path.relative_to(folder).as_posix() if info.path.is_relative_to(folder) else str(info.path)
        targets = json_targets(info.path) if rel not in skip else []
        if targets:
            shown = targets[0] if len(targets) == 1 else targets
            out += [f"# [jobs.{job_id}]", f"# script = {toml_value(rel)}", f"# metrics_file = {toml_value(shown)}"]
    if out:
        head = "# JSON files discovered scripts write (json.dump, found in their source): to read one as a"
        out = ["", head, "# job's final metrics, uncomment its lines.", *out]
    return out


# ---------------------------------------------------------------- the converted config


def toml_value(value: Any) -> str:
    """One TOML value on one line (tomli-w writes it, so it always parses)."""
    import tomli_w

    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def exclude_lines(excludes: list[tuple[str, str]], also: list[str]) -> list[str]:
    """`exclude = [...]` with a comment on each path that resolves a duplicate id."""
    if not excludes:
        return [f"exclude = {toml_value(also)}"]
    out = ["exclude = ["]
    out += [f"    {toml_value(glob)}," for glob in also]
    out += [f"    {toml_value(path)},  # {why}" for path, why in excludes]
    return [*out, "]"]


def _header(source: Path, excludes: list[tuple[str, str]]) -> list[str]:
    return [
        f"# aimedres-async configuration, converted from {source.name} (the old orchestrator's built-in",
        f"# job list, its {JOB_LIST}()) by `aimedres-async init --from-orchestrator`. Check it with",
        "# `aimedres-async validate`; docs/how-to/migrating.md says what changed.",
        "",
        "# As the old orchestrator: one job at a time (--parallel, or parallel = true, to change), each",
        "# job's --output-dir under results/, a training_summary_<UTC time>.json in summaries/ after each",
        "# run, and Ctrl+C (or SIGTERM) lets running jobs finish (a second one cancels them).",
        "[supervisor]",
        "parallel = false",
        'output_dir = "results"',
        'logs_dir = "logs"',
        'summary_dir = "summaries"',
        'stop = "drain"',
        "",
        "# The old orchestrator also discovered train_*.py scripts; the jobs below win over a discovered",
        "# script with the same id. Copies of one script (legacy folders) are excluded: the canonical",
        "# one runs.",
        "[discovery]",
        "enabled = true",
        'roots = ["."]',
        'include = ["train_*.py"]',
        *exclude_lines(excludes, []),
        "",
        "# As the old orchestrator: a failed job is not retried (--retries N to change) and has no time",
        '# limit (timeout = "6h" to set one). fail_on fails a job whose output matches, e.g. a fallback',
        "# to made-up data: every job's warning lines are counted in the results either way.",
        "[defaults]",
        "retries = 0",
        '# fail_on = ["creating (a )?sample dataset", "synthetic data"]',
    ]


def _job_table(
    n: int, old: OldJob, source: Path, base_dir: Path, seen: dict[str, int]
) -> tuple[str, str | None, list[str]]:
    """(job id, its script, its commented [jobs.<id>] lines) for the n-th TrainingJob."""
    from aimedres_async.plan import legacy

    v = old.values
    where = f"{source.name}:{old.line}"
    script = v.get("script")
    if not isinstance(script, str) or not script.strip():
        raise OrchestratorError(f"{where}: {JOB_CALL}(...) needs a literal script= path")
    name = str(v.get("name") or "")
    notes: list[str] = []
    job_id = legacy.job_id_for(v.get("id"), name, script, n, seen, notes)
    settings: dict[str, Any] = {}
    argv = legacy._args(v.get("args"), where, settings, notes)
    lines = [f"script = {toml_value(script)}"]
    if isinstance(v.get("output"), str) and v["output"].strip():
        lines.append(f"output_dir = {toml_value(v['output'])}")
    if argv:
        lines.append(f"args = {toml_value(argv)}")
    lines += [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    if v.get("optional") is True:
        lines.append("optional = true")
    if any(v.get(key) is False for key in SUPPORTS):
        passed = [flag for key, flag in SUPPORTS.items() if v.get(key) is not False]
        off = ", ".join(f"{key} = False" for key in SUPPORTS if v.get(key) is False)
        lines.append(f"pass_flags = {toml_value(passed)}  # {off}")
    if not (base_dir / script).is_file():
        notes.append(f"{script} does not exist here: check the path (relative to this file)")
    else:
        targets = json_targets(base_dir / script)
        if targets:
            shown = targets[0] if len(targets) == 1 else targets
            lines.append(f"metrics_file = {toml_value(shown)}  # found in the script (json.dump): check it")
    notes += [f"{key}: not a literal; set it here by hand" for key in old.not_literal]
    notes += [f"{key}: not used here" for key in old.unknown]
    head = [f"# {name or job_id} ({JOB_CALL} at {where})", *(f"# {note}" for note in notes)]
    return job_id, script, ["", *head, f"[jobs.{job_id}]", *lines]


def convert_orchestrator(source: Path, base_dir: Path) -> str:
    """The old orchestrator's built-in job list as the text of a commented aimedres.toml whose
    folder is `base_dir`, keeping the old tool's defaults."""
    old_jobs = read_default_jobs(source)
    seen: dict[str, int] = {}
    tables: list[str] = []
    listed: dict[str, str] = {}
    for n, old in enumerate(old_jobs, 1):
        job_id, script, lines = _job_table(n, old, source, base_dir, seen)
        if script is not None:
            listed[job_id] = Path(script).as_posix().removeprefix("./")
        tables += lines
    discovery = DiscoveryConfig(roots=(".",), include=("train_*.py",))
    excludes = duplicate_excludes(base_dir, discovery, listed)
    skip = {path for path, _why in excludes} | set(listed.values())
    suggestions = report_suggestions(base_dir, discovery, skip)
    return "\n".join([*_header(source, excludes), *tables, *suggestions]) + "\n"
