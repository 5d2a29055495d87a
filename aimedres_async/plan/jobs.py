"""Jobs: what to run and how its command is built, discovery of training scripts, outcomes.

No I/O here except reading scripts, which discovery parses with `ast` (never runs them).
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import os
import re
import shlex
import shutil
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aimedres_async.plan.config import JOB_ID_RE, Backoff, Config, JobConfig, JobSettings, Resources, Ticket
from aimedres_async.plan.config_errors import ConfigError


class Outcome(enum.StrEnum):
    """How one attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    STALLED = "stalled"  # printed nothing for stall_timeout
    CANCELLED = "cancelled"
    SPAWN_FAILED = "spawn_failed"


class Status(enum.StrEnum):
    """How a job ended, after all its attempts."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    STALLED = "stalled"
    CANCELLED = "cancelled"
    SPAWN_FAILED = "spawn_failed"
    SKIPPED = "skipped"  # --resume: it succeeded in the earlier run with the same command
    INTERRUPTED = "interrupted"  # its supervisor died (kill -9, crash): found by the next run

    @property
    def ok(self) -> bool:
        return self in (Status.SUCCEEDED, Status.SKIPPED)


class State(enum.StrEnum):
    """Where a job is in a run. Only `transition` says which moves are allowed:

    queued -> running (a slot and its resources were free) | finished (cancelled before it ran,
    or skipped by --resume); running -> backoff (failed, will be retried) | finished;
    backoff -> queued (its delay is over) | finished (the run stopped). finished is final.
    """

    QUEUED = "queued"  # waiting for a slot and its resources
    RUNNING = "running"  # an attempt is under way
    BACKOFF = "backoff"  # a failed attempt will be retried after its delay; holds no slot
    FINISHED = "finished"  # final: its Status says how it ended


_MOVES: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.RUNNING, State.FINISHED}),
    State.RUNNING: frozenset({State.BACKOFF, State.FINISHED}),
    State.BACKOFF: frozenset({State.QUEUED, State.FINISHED}),
    State.FINISHED: frozenset(),
}


class TransitionError(RuntimeError):
    """A move the state diagram does not allow: a supervisor bug, never a user's mistake."""


def transition(current: State, new: State) -> State:
    """The one check of a job's state change; returns the new state or raises TransitionError."""
    if new not in _MOVES[current]:
        raise TransitionError(f"a job cannot go from {current.value} to {new.value}")
    return new


# Which flags a script may accept, by what we inject; the first spelling the script declares is used.
FLAG_SPELLINGS: dict[str, tuple[str, ...]] = {
    "output_dir": ("--output-dir", "--output_dir"),
    "epochs": ("--epochs",),
    "folds": ("--folds",),
    "sample": ("--sample",),
    "batch": ("--batch-size", "--batch_size", "--batch"),
}
INJECTED = tuple(FLAG_SPELLINGS)


@dataclass(frozen=True)
class ScriptInfo:
    """What discovery learned from a script's source without running it."""

    path: Path
    flags: Mapping[str, str] = field(default_factory=dict)  # logical name -> declared spelling
    error: str | None = None  # why the script could not be read or parsed


@dataclass(frozen=True)
class JobSpec:
    """A fully resolved job: the exact argv and everything the runner needs."""

    id: str
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]  # added on top of the supervisor's environment
    output_dir: Path | None
    script: Path | None
    accepts: frozenset[str]
    retries: int
    backoff: Backoff
    timeout: float | None
    optional: bool
    resources: Resources
    origin: str  # "config", "discovered" or "ticket"
    stall_timeout: float | None = None
    python: str | None = None  # the interpreter of a .py script (argv[0]); None for other commands
    output_base: Path | None = None  # the base output folder, made (with parents) before every attempt
    metrics_file: str | None = None  # path or glob under the job's output folder, read after success

    @property
    def workdir(self) -> Path:
        """Where `metrics_file` is looked up: the job's output folder, else its working folder."""
        return self.output_dir or self.cwd

    def shell_command(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class Overrides:
    """Command-line values that win over every job's own setting."""

    retries: int | None = None
    timeout: float | None = None
    extra_args: tuple[str, ...] = ()
    output_dir: Path | None = None  # --base-output-dir


@dataclass(frozen=True)
class DiscoveryOverrides:
    """Command-line changes to discovery (the old run_all_training.py flags)."""

    include: tuple[str, ...] = ()  # --include-pattern: more file-name globs
    exclude_regex: str | None = None  # --exclude-regex: skip paths (relative to the config folder) it finds
    limit: int | None = None  # --discovery-limit: stop after this many scripts
    allow_overrides: bool = False  # --allow-discovery-overrides: a discovered script beats [jobs.<id>]
    optional: bool = False  # --mark-discovered-optional


@dataclass(frozen=True)
class Plan:
    jobs: tuple[JobSpec, ...]
    skipped: tuple[ScriptInfo, ...]  # discovered scripts that do not parse
    warnings: tuple[str, ...]  # discovery problems (a root that is missing, a script that does not parse)
    notes: tuple[str, ...] = ()  # things the user should know that are not problems


class SelectionError(ValueError):
    """--only/--exclude named ids that match no job."""


class AmbiguousJobs(ConfigError):
    """Discovery found two or more scripts for one job id and nothing says which one to run."""


# ---------------------------------------------------------------- reading scripts


def scan_flags(source: str | bytes, filename: str = "<script>") -> dict[str, str]:
    """Flags a script declares through `add_argument("--flag", ...)` calls, found with `ast`.

    A flag mentioned only in a comment, a help string or any other expression does not count.
    """
    tree = ast.parse(source, filename=filename)
    declared: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("-"):
                    declared.add(arg.value)
    found: dict[str, str] = {}
    for name, spellings in FLAG_SPELLINGS.items():
        for spelling in spellings:
            if spelling in declared:
                found[name] = spelling
                break
    return found


def read_script(path: Path) -> ScriptInfo:
    if path.suffix != ".py":
        return ScriptInfo(path)
    try:
        source = path.read_bytes()
    except OSError as e:
        return ScriptInfo(path, error=f"cannot read: {e.strerror or e}")
    try:
        return ScriptInfo(path, flags=scan_flags(source, str(path)))
    except SyntaxError as e:
        return ScriptInfo(path, error=f"does not parse: {e.msg} (line {e.lineno})")
    except ValueError as e:  # e.g. NUL bytes
        return ScriptInfo(path, error=f"does not parse: {e}")


# ---------------------------------------------------------------- discovery

# Never training code of the repository: caches, build output, installed packages, virtual envs.
# Hidden folders (.git, .tox, .nox, .venv, ...) and any folder holding pyvenv.cfg are skipped too.
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", "build", "dist", "venv", "env", "virtualenv"}


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a path glob with `**` (any number of folders), `*` and `?` into a regex."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _walk(root: Path) -> Iterator[Path]:
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink():
            if entry.name in _SKIP_DIRS or (entry / "pyvenv.cfg").exists():
                continue
            yield from _walk(entry)
        elif entry.is_file():
            yield entry


def discover(
    base_dir: Path,
    roots: Iterable[str | Path],
    include: Sequence[str],
    exclude: Sequence[str],
    exclude_regex: re.Pattern[str] | None = None,
    limit: int | None = None,
) -> tuple[list[tuple[str, ScriptInfo]], list[str]]:
    """Find training scripts under `roots`; returns (job id, script) pairs and warnings.

    Every script found is returned, two or more for one id included: which of them runs is
    decided by the caller (see `plan`), never by the order of the walk.
    """
    inc = [(glob_regex(p), "/" in p) for p in include]
    exc = [glob_regex(p) for p in exclude]
    found: list[tuple[str, ScriptInfo]] = []
    seen: set[Path] = set()
    warnings: list[str] = []
    for root_name in roots:
        root = base_dir / root_name
        try:
            usable = root.is_dir()
        except OSError as e:  # e.g. a name too long for the filesystem
            warnings.append(f"discovery root {str(root)[:200]}: {e.strerror or e}; skipped")
            continue
        if not usable:
            warnings.append(f"discovery root {root} is not a folder; skipped")
            continue
        for path in _walk(root):
            rel = path.relative_to(base_dir).as_posix() if path.is_relative_to(base_dir) else path.as_posix()
            if not any(r.fullmatch(rel if has_dir else path.name) for r, has_dir in inc):
                continue
            if any(r.fullmatch(rel) or r.fullmatch(path.name) for r in exc):
                continue
            if exclude_regex is not None and exclude_regex.search(rel):
                continue
            if path in seen:  # overlapping roots
                continue
            seen.add(path)
            stem = path.stem.removeprefix("train_").lower()
            if not JOB_ID_RE.fullmatch(stem):
                warnings.append(f"{rel}: {stem!r} is not a valid job id; skipped")
                continue
            found.append((stem, read_script(path)))
            if limit is not None and len(found) >= limit:
                return found, warnings
    return found, warnings


def _rel(cfg: Config, path: Path) -> Path:
    return path.relative_to(cfg.base_dir) if path.is_relative_to(cfg.base_dir) else path


_OLD_COPY_PARTS = {"legacy", "old", "files", "backup", "backups", "archive", "deprecated", "copy", "tmp"}


def ambiguity(cfg: Config, job_id: str, paths: Sequence[Path]) -> str:
    """One line: every script found for `job_id`, and the two ways to choose one. The example
    picks the copy that looks canonical (under src/, not in a legacy-looking folder); the user decides."""
    rels = [_rel(cfg, p).as_posix() for p in paths]

    def rank(rel: str) -> tuple[bool, bool, int]:
        parts = rel.lower().split("/")[:-1]
        return (any(p in _OLD_COPY_PARTS for p in parts), "src" not in parts, -len(parts))

    keep = min(rels, key=rank)
    others = sorted({str(Path(r).parent.as_posix()) for r in rels if r != keep} - {"."})
    glob = f'"{others[0]}/**"' if others else f'"{next(r for r in rels if r != keep)}"'
    where = cfg.path.name if cfg.path else "aimedres.toml"
    return (
        f"job id {job_id!r} matches {len(rels)} discovered scripts: {', '.join(rels)}; say which one runs "
        f'with [jobs.{job_id}] script = "{keep}" in {where}, or skip the others with a [discovery] '
        f"exclude glob such as {glob}"
    )


# ---------------------------------------------------------------- building commands


def _pick(name: str, job: JobSettings, defaults: JobSettings) -> object:
    value = getattr(job, name)
    return getattr(defaults, name) if value is None else value


def build_spec(cfg: Config, job: JobConfig, info: ScriptInfo | None, overrides: Overrides, origin: str) -> JobSpec:
    """Resolve one job: its argv (flags only where the script accepts them) and its settings."""
    d, s = cfg.defaults, job.settings
    base_out = overrides.output_dir or cfg.resolve(cfg.supervisor.output_dir)
    output_dir = base_out / (job.output_dir or job.id)  # an absolute per-job output_dir stays as it is
    python: str | None = None
    accepts: frozenset[str] = frozenset()
    script_path: Path | None = None
    if job.command is not None:
        argv = [*job.command, *job.args]
    else:
        assert job.script is not None
        script_path = cfg.resolve(job.script)
        if info is None:
            info = read_script(script_path)
        accepts = frozenset(info.flags)
        if script_path.suffix == ".py":
            python = resolve_python(job.python or cfg.supervisor.python, cfg.base_dir)
            argv = [python, job.script]
        else:
            argv = [job.script if "/" in job.script else f"./{job.script}"]
        values: dict[str, object] = {"output_dir": output_dir}
        for name in ("epochs", "folds", "sample", "batch"):
            values[name] = _pick(name, s, d)
        for name in INJECTED:
            if name in info.flags and values[name] is not None:
                argv += [info.flags[name], str(values[name])]
        argv += [*job.args, *overrides.extra_args]
    retries = overrides.retries if overrides.retries is not None else _pick("retries", s, d)
    timeout = overrides.timeout if overrides.timeout is not None else _pick("timeout", s, d)
    return JobSpec(
        id=job.id,
        argv=tuple(argv),
        cwd=cfg.base_dir,
        env={**d.env, **s.env},
        output_dir=output_dir if "output_dir" in accepts else None,
        script=script_path,
        accepts=accepts,
        retries=int(retries or 0),  # type: ignore[call-overload]
        backoff=s.backoff or d.backoff or Backoff(),
        timeout=timeout or None,  # type: ignore[arg-type]
        optional=bool(_pick("optional", s, d)),
        resources=s.resources or d.resources or Resources(),
        origin=origin,
        stall_timeout=_pick("stall_timeout", s, d) or None,  # type: ignore[arg-type]
        python=python,
        output_base=base_out,
        metrics_file=_pick("metrics_file", s, d),  # type: ignore[arg-type]
    )


def resolve_python(value: str | None, base_dir: Path) -> str:
    """The interpreter to run .py scripts with: a path (relative to `base_dir`), a name looked up
    in PATH, or (empty) the one running the supervisor. A venv's python is a symlink that must
    not be resolved: run through the link, it is the venv's interpreter."""
    if not value:
        return sys.executable
    if "/" in value:
        path = Path(value).expanduser()
        return os.path.normpath(path if path.is_absolute() else base_dir / path)
    return shutil.which(value) or value


def plan(
    cfg: Config,
    overrides: Overrides = Overrides(),
    *,
    discover_enabled: bool | None = None,
    roots: Sequence[str | Path] | None = None,
    only: Sequence[str] = (),
    exclude: Sequence[str] = (),
    discovery: DiscoveryOverrides = DiscoveryOverrides(),
) -> Plan:
    """Every job to run, in config order then discovery order, after --only/--exclude.

    Raises AmbiguousJobs when a selected id has two or more discovered scripts and the config
    does not name one, SelectionError when --only/--exclude name no job.
    """
    jobs: dict[str, JobConfig] = {j.id: j for j in cfg.jobs}
    origin = dict.fromkeys(jobs, "config")
    infos: dict[str, ScriptInfo] = {}
    skipped: list[ScriptInfo] = []
    warnings: list[str] = []
    ambiguous: dict[str, list[Path]] = {}
    enabled = cfg.discovery.enabled if discover_enabled is None else discover_enabled
    if enabled:
        try:
            regex = re.compile(discovery.exclude_regex) if discovery.exclude_regex is not None else None
        except re.error as e:
            raise SelectionError(f"--exclude-regex {discovery.exclude_regex!r}: {e}") from None
        found, warnings = discover(
            cfg.base_dir,
            roots if roots is not None else cfg.discovery.roots,
            (*cfg.discovery.include, *discovery.include),
            cfg.discovery.exclude,
            regex,
            discovery.limit,
        )
        by_id: dict[str, list[ScriptInfo]] = {}
        for job_id, info in found:
            by_id.setdefault(job_id, []).append(info)
        for job_id, found_infos in by_id.items():
            if origin.get(job_id) == "config" and not discovery.allow_overrides:
                continue  # the config's own definition wins (and says which script, if several)
            if len(found_infos) > 1:
                ambiguous[job_id] = [i.path for i in found_infos]
            info = found_infos[0]
            if info.error and job_id not in ambiguous:  # (an unreadable copy must not hide the choice)
                warnings.append(f"{info.path}: {info.error}; skipped")
                skipped.append(info)
                continue
            base = jobs.get(job_id, JobConfig(id=job_id))
            settings = base.settings
            if discovery.optional:
                settings = dataclasses.replace(settings, optional=True)
            jobs[job_id] = dataclasses.replace(base, script=str(_rel(cfg, info.path)), command=None, settings=settings)
            origin[job_id] = "discovered"
            infos[job_id] = info

    only, exclude, notes = match_ids(only, exclude, list(jobs))
    chosen = [j for j in jobs.values() if (not only or j.id in set(only)) and j.id not in set(exclude)]
    problems = [ambiguity(cfg, j.id, ambiguous[j.id]) for j in chosen if j.id in ambiguous]
    if problems:
        raise AmbiguousJobs(problems)
    specs = [build_spec(cfg, j, infos.get(j.id), overrides, origin[j.id]) for j in chosen]
    return Plan(tuple(specs), tuple(skipped), tuple(warnings), tuple(notes))


def match_ids(
    only: Sequence[str], exclude: Sequence[str], known: Sequence[str]
) -> tuple[list[str], list[str], list[str]]:
    """--only/--exclude ids as given, or as the old orchestrator wrote them (`train_als`, `ALS`,
    `train_als.py`); returns both lists with job ids and one note naming each id that was mapped."""
    known_set = set(known)
    mapped: list[str] = []
    unknown: list[str] = []

    def one(given: str) -> str:
        if given in known_set:
            return given
        key = given.strip().lower().removesuffix(".py")
        for candidate in (key, key.removeprefix("train_")):
            if candidate in known_set:
                mapped.append(f"{given} -> {candidate}")
                return candidate
        unknown.append(given)
        return given

    only_ids, exclude_ids = [one(i) for i in only], [one(i) for i in exclude]
    if unknown:
        raise SelectionError(
            f"unknown job id{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}"
            f" (known: {', '.join(sorted(known_set)) or 'none'})"
        )
    notes = []
    if mapped:
        notes.append(f"note: --only/--exclude matched {', '.join(mapped)} (a job id is the file name without train_)")
    return only_ids, exclude_ids, notes


# ---------------------------------------------------------------- spool tickets


class TicketJobError(ValueError):
    """A ticket that parses but cannot become a job (unknown job, script outside the folder)."""


def known_jobs(cfg: Config) -> dict[str, JobConfig]:
    """Every job a ticket may name: the config's own, then discovered scripts that parse."""
    known = {j.id: j for j in cfg.jobs}
    if cfg.discovery.enabled:
        found, _warnings = discover(cfg.base_dir, cfg.discovery.roots, cfg.discovery.include, cfg.discovery.exclude)
        counts: dict[str, int] = {}
        for job_id, _info in found:
            counts[job_id] = counts.get(job_id, 0) + 1
        for job_id, info in found:
            # an id with two scripts is no job until the config says which one: never guess
            if job_id not in known and info.error is None and counts[job_id] == 1:
                known[job_id] = JobConfig(id=job_id, script=str(_rel(cfg, info.path)))
    return known


def _merge(base: JobSettings, over: JobSettings) -> JobSettings:
    values = {}
    for name in JobSettings.__dataclass_fields__:
        mine = getattr(over, name)
        values[name] = getattr(base, name) if mine is None else mine
    values["env"] = {**base.env, **over.env}
    return JobSettings(**values)


def ticket_spec(cfg: Config, ticket: Ticket, known: Mapping[str, JobConfig]) -> JobSpec:
    """A ticket as a job: a configured job with the ticket's overrides, or the ticket's own job."""
    own = ticket.config
    reserved = sorted(k for k in own.settings.env if k.startswith("AIMEDRES_"))
    if reserved:  # AIMEDRES_SPOOL, _JOB_ID, ... are how the daemon finds its jobs after a crash
        raise TicketJobError(
            f"env: {', '.join(reserved)}: AIMEDRES_* variables are set by the daemon; a ticket cannot override them"
        )
    if ticket.job is not None:
        base = known.get(ticket.job)
        if base is None and cfg.discovery.enabled:  # known_jobs leaves out an id with two scripts: say so
            found, _warnings = discover(cfg.base_dir, cfg.discovery.roots, cfg.discovery.include, cfg.discovery.exclude)
            paths = [info.path for job_id, info in found if job_id == ticket.job]
            if len(paths) > 1:
                raise TicketJobError(ambiguity(cfg, ticket.job, paths))
        if base is None:
            raise TicketJobError(f"unknown job {ticket.job!r} (known: {', '.join(sorted(known)) or 'none'})")
        job = JobConfig(
            id=own.id,
            script=base.script,
            command=base.command,
            args=(*base.args, *own.args),
            settings=_merge(base.settings, own.settings),
            python=base.python,
            output_dir=base.output_dir,
        )
    else:
        job = own
    if ticket.job is None and job.script is not None:  # a configured job's script is the admin's choice
        root = cfg.base_dir.resolve()
        if not cfg.resolve(job.script).resolve().is_relative_to(root):
            raise TicketJobError(f"script {job.script!r} is outside the config's folder {root}")
    return build_spec(cfg, job, None, Overrides(), origin="ticket")
