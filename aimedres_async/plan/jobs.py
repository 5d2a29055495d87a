"""Jobs: what to run and how its command is built (from the config, discovery or a ticket),
which jobs a command line selects, and how attempts and jobs end.

A configured job, a discovered script and a ticket are built into a command by the same merging
rules, kept side by side here, which makes this module a little longer than 500 lines (the
expansion of sweeps is plan/sweep_plan.py).
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import shlex
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aimedres_async.plan.config import (
    DEFAULT_GROUP,
    Backoff,
    Config,
    JobConfig,
    JobSettings,
    Resources,
    Ticket,
    groups_of,
)
from aimedres_async.plan.config_errors import ConfigError, InputError
from aimedres_async.plan.discovery import FLAG_SPELLINGS, ScriptInfo, ambiguity, config_relative, discover, read_script
from aimedres_async.plan.sweep_plan import Picks, Swept, check_size, expand_all
from aimedres_async.plan.sweeps import (
    NO_SWEEP_OVERRIDES,
    SweepOverrides,
    Value,
    base_of,
    effective,
    file_stem,
    option_args,
    split_ids,
)


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


INJECTED = tuple(FLAG_SPELLINGS)
NO_FLAGS: frozenset[str] = frozenset()  # shared by every job that accepts none (a command)
NO_BACKOFF, NO_RESOURCES = (
    Backoff(),
    Resources(),
)  # frozen: every job without its own shares them  # the flags a job's command may be given, by logical name


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A fully resolved job: the exact argv and everything an executor needs."""

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
    metrics_file: str | tuple[str, ...] | None = None  # path(s) or glob(s) under the output folder, read after success
    metrics_keys: tuple[str, ...] = ()  # globs over metric names: kept whatever their type, shown first
    fail_on: tuple[str, ...] = ()  # regexes ([defaults] then the job's): an output line matching one fails it
    params: Mapping[str, Value] | None = None  # a sweep's combination (seed last); None: not swept

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


class SelectionError(InputError):
    """--only/--exclude named ids that match no job."""


class AmbiguousJobs(ConfigError):
    """Discovery found two or more scripts for one job id and nothing says which one to run."""


# ---------------------------------------------------------------- building commands


def _pick(name: str, job: JobSettings, defaults: JobSettings) -> object:
    value = getattr(job, name)
    return getattr(defaults, name) if value is None else value


def _check_script_kind(job_id: str, path: Path) -> None:
    """A script that exists must be a regular file: a FIFO would hang whoever reads it (the flag
    scan, the interpreter), a device would be read without end. A missing one is the run's to report."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else "a device or socket"
        raise InputError(f"jobs.{job_id}: script {path}: is {kind}, not a script file")


def build_spec(
    cfg: Config,
    job: JobConfig,
    info: ScriptInfo | None,
    overrides: Overrides,
    origin: str,
    swept: Swept | None = None,
) -> JobSpec:
    """Resolve one job: its argv (flags only where the script accepts them) and its settings;
    `swept`: one combination of its sweep, whose id and options it takes."""
    d, s = cfg.defaults, job.settings
    base_out = overrides.output_dir or cfg.resolve(cfg.supervisor.output_dir)
    python: str | None = None
    accepts = NO_FLAGS
    script_path: Path | None = None
    output_dir: Path | None = None  # a command is given no output folder
    swept_args = swept.args if swept is not None else ()
    if job.command is not None:
        argv = [*job.command, *job.args, *swept_args]
    else:
        assert job.script is not None
        folder = job.output_dir or job.id
        if swept is not None:  # each combination its own folder: the id's file-name form, `@` and on
            folder += file_stem(swept.id)[len(job.id) :]
        output_dir = base_out / folder  # an absolute per-job output_dir stays as it is
        script_path = cfg.resolve(job.script)
        _check_script_kind(job.id, script_path)
        info = info or read_script(script_path)
        accepts = frozenset(info.flags)
        if job.pass_flags is not None:  # the old orchestrator's supports_*: flags it never passed
            accepts &= frozenset(job.pass_flags)
        if script_path.suffix == ".py":
            python = resolve_python(job.python or cfg.supervisor.python, cfg.base_dir)
            argv = [python, job.script]
        else:
            argv = [job.script if "/" in job.script else f"./{job.script}"]
        argv += _injected(cfg, job, info, accepts, output_dir, set(swept_args))
        argv += [*job.args, *swept_args, *overrides.extra_args]
    retries = overrides.retries if overrides.retries is not None else _pick("retries", s, d)
    timeout = overrides.timeout if overrides.timeout is not None else _pick("timeout", s, d)
    return JobSpec(
        id=swept.id if swept else job.id,
        argv=tuple(argv),
        cwd=cfg.base_dir,
        env={**d.env, **s.env} if s.env else d.env,  # shared, never changed: one dict for 100,000 jobs
        output_dir=output_dir if output_dir is not None and "output_dir" in accepts else None,
        script=script_path,
        accepts=accepts,
        retries=int(retries or 0),  # type: ignore[call-overload]
        backoff=s.backoff or d.backoff or NO_BACKOFF,
        timeout=timeout or None,  # type: ignore[arg-type]
        optional=bool(_pick("optional", s, d)),
        resources=s.resources or d.resources or NO_RESOURCES,
        origin=origin,
        stall_timeout=_pick("stall_timeout", s, d) or None,  # type: ignore[arg-type]
        python=python,
        output_base=base_out,
        metrics_file=_pick("metrics_file", s, d),  # type: ignore[arg-type]
        params=swept.params if swept else None,
        metrics_keys=tuple(_pick("metrics_keys", s, d) or ()),  # type: ignore[arg-type]
        fail_on=tuple(dict.fromkeys((*(d.fail_on or ()), *(s.fail_on or ())))),
    )


def _injected(
    cfg: Config, job: JobConfig, info: ScriptInfo, accepts: frozenset[str], output_dir: Path, swept: set[str]
) -> list[str]:
    """The flags a script gets from the config (output folder, epochs, folds, sample, batch), where
    it accepts them, a value is known and its sweep does not set them itself."""
    values: dict[str, object] = {"output_dir": output_dir}
    for name in ("epochs", "folds", "sample", "batch"):
        values[name] = _pick(name, job.settings, cfg.defaults)
    out: list[str] = []
    for name in INJECTED:
        if name in accepts and values[name] is not None and info.flags[name] not in swept:
            out += [info.flags[name], str(values[name])]
    return out


def resolve_python(value: str | None, base_dir: Path) -> str:
    """The interpreter to run .py scripts with: a path (relative to `base_dir`), a name looked up
    in PATH, or (empty) the one running the supervisor. A venv's python is a symlink that must
    not be resolved: run through the link, it is the venv's interpreter."""
    if not value:
        return sys.executable
    if "/" in value:
        path = Path(value).expanduser()
        return os.path.normpath(path if path.is_absolute() else base_dir / path)
    import shutil  # bz2, lzma, fnmatch: only for an interpreter named without a folder

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
    sweeps: SweepOverrides = NO_SWEEP_OVERRIDES,
) -> Plan:
    """Every job to run, in config order then discovery order, each sweep expanded in place,
    after --only/--exclude (a plain id: the job and all its combinations; a full id: one).

    Raises AmbiguousJobs when a selected id has two or more discovered scripts and the config
    does not name one, SelectionError when --only/--exclude name no job (NoSuchCombination: no
    combination), TooManyJobs beyond max_jobs, ConfigError for a sweep its script cannot take
    (those two: plan.sweep_plan).
    """
    found = _Found(jobs={j.id: j for j in cfg.jobs})
    found.origin.update(dict.fromkeys(found.jobs, "config"))
    enabled = cfg.discovery.enabled if discover_enabled is None else discover_enabled
    if enabled:
        _add_discovered(cfg, found, roots, discovery)

    (only_plain, only_full), (exclude_plain, exclude_full) = split_ids(only), split_ids(exclude)
    whole, excluded, notes = match_ids(only_plain, exclude_plain, list(found.jobs))
    unknown = [i for i in (*only_full, *exclude_full) if base_of(i) not in found.jobs]
    if unknown:
        raise SelectionError(f"unknown job id{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    selected = {*whole, *map(base_of, only_full)}
    chosen = [j for j in found.jobs.values() if (not only or j.id in selected) and j.id not in set(excluded)]
    problems = [ambiguity(cfg, j.id, found.ambiguous[j.id]) for j in chosen if j.id in found.ambiguous]
    if problems:
        raise AmbiguousJobs(problems)
    picks = Picks.of(whole, only_full, exclude_full)
    specs = _build_all(cfg, chosen, found, overrides, sweeps, picks)
    return Plan(tuple(specs), tuple(found.skipped), tuple(found.warnings), tuple(notes))


def _build_all(
    cfg: Config,
    chosen: Sequence[JobConfig],
    found: _Found,
    overrides: Overrides,
    sweeps: SweepOverrides,
    picks: Picks,
) -> list[JobSpec]:
    """The specs of the chosen jobs: a job without a sweep as it is, a swept one as its combinations."""
    where = str(cfg.path or "built-in defaults")
    expanded = expand_all([(j.id, effective(j.sweep, cfg.seeds, sweeps)) for j in chosen], picks, where)
    check_size(expanded, cfg.supervisor.max_jobs, sweeps)
    specs: list[JobSpec] = []
    problems: dict[str, None] = {}
    for job, named in zip(chosen, expanded, strict=True):
        info = found.infos.get(job.id)
        if named is None:
            specs.append(build_spec(cfg, job, info, overrides, found.origin[job.id]))
            continue
        if info is None and job.script is not None:
            info = read_script(cfg.resolve(job.script))  # once per job, not once per combination
        options = info.options if info is not None and job.command is None else None
        for name, params in named:
            args, wrong = option_args(params, options)
            problems.update((f"{where}: job {job.id}: {w}", None) for w in wrong)
            swept = Swept(name, params, tuple(args))
            specs.append(build_spec(cfg, job, info, overrides, found.origin[job.id], swept))
    if problems:
        raise ConfigError(list(problems))
    return specs


@dataclass
class _Found:
    """The jobs a plan is gathering, and what discovery said about them."""

    jobs: dict[str, JobConfig]
    origin: dict[str, str] = field(default_factory=dict)
    infos: dict[str, ScriptInfo] = field(default_factory=dict)
    skipped: list[ScriptInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ambiguous: dict[str, list[Path]] = field(default_factory=dict)


def _add_discovered(
    cfg: Config, found: _Found, roots: Sequence[str | Path] | None, discovery: DiscoveryOverrides
) -> None:
    """Discovered scripts join the plan; a configured id keeps its own definition unless told not to."""
    try:
        regex = re.compile(discovery.exclude_regex) if discovery.exclude_regex is not None else None
    except re.error as e:
        raise SelectionError(f"--exclude-regex {discovery.exclude_regex!r}: {e}") from None
    scripts, found.warnings = discover(
        cfg.base_dir,
        roots if roots is not None else cfg.discovery.roots,
        (*cfg.discovery.include, *discovery.include),
        cfg.discovery.exclude,
        regex,
        discovery.limit,
    )
    by_id: dict[str, list[ScriptInfo]] = {}
    for job_id, info in scripts:
        by_id.setdefault(job_id, []).append(info)
    for job_id, found_infos in by_id.items():
        if found.origin.get(job_id) == "config" and not discovery.allow_overrides:
            # the config's own definition wins (and says which script, if several); a script it
            # names that discovery has just read is not read again
            own = found.jobs[job_id]
            for info in found_infos:
                if own.command is None and own.script is not None and _same_file(cfg.resolve(own.script), info.path):
                    found.infos[job_id] = info
            continue
        if len(found_infos) > 1:
            found.ambiguous[job_id] = [i.path for i in found_infos]
        info = found_infos[0]
        if info.error and job_id not in found.ambiguous:  # (an unreadable copy must not hide the choice)
            found.warnings.append(f"{info.path}: {info.error}; skipped")
            found.skipped.append(info)
            continue
        base = found.jobs.get(job_id, JobConfig(id=job_id))
        settings = base.settings
        if discovery.optional:
            settings = dataclasses.replace(settings, optional=True)
        script = str(config_relative(cfg, info.path))
        found.jobs[job_id] = dataclasses.replace(base, script=script, command=None, settings=settings)
        found.origin[job_id] = "discovered"
        found.infos[job_id] = info


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a == b or os.path.samefile(a, b)
    except OSError:
        return False


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


def ticket_combinations(cfg: Config, job: JobConfig) -> list[str] | None:
    """The full ids of a configured job's sweep (what `submit --job` makes a ticket of, each), or
    None when the job is not swept."""
    sweep = effective(job.sweep, cfg.seeds, NO_SWEEP_OVERRIDES)
    if sweep is None:
        return None
    [named] = expand_all([(job.id, sweep)], Picks.of([job.id], [], []), str(cfg.path or "built-in defaults"))
    return [name for name, _params in (named or [])]


@dataclass
class TicketMemo:
    """What the tickets of one `submit` share (a sweep's hundreds of tickets name one job): each
    swept job's combinations and each script's options, worked out once."""

    combinations: dict[str, dict[str, Mapping[str, Value]]] = field(default_factory=dict)
    scripts: dict[Path, ScriptInfo] = field(default_factory=dict)

    def script(self, path: Path) -> ScriptInfo:
        if path not in self.scripts:
            self.scripts[path] = read_script(path)
        return self.scripts[path]


def _ticket_combination(cfg: Config, base: JobConfig, name: str, memo: TicketMemo) -> Swept | None:
    """The combination of a swept job a ticket names (`train[lr=0.1,seed=0]`); None for a job that is
    not swept. A ticket runs one job: naming a swept job whole, or a combination it does not have,
    is refused, never run without its parameters."""
    sweep = effective(base.sweep, cfg.seeds, NO_SWEEP_OVERRIDES)
    if sweep is None:
        if name != base.id:
            raise TicketJobError(f"job {base.id!r} is not swept: name it without parameters")
        return None
    combos = memo.combinations.get(base.id)
    if combos is None:
        try:
            where = str(cfg.path or "built-in defaults")
            [named] = expand_all([(base.id, sweep)], Picks.of([base.id], [], []), where)
        except ConfigError as e:
            raise TicketJobError("; ".join(e.problems)) from None
        combos = memo.combinations[base.id] = dict(named or [])
    params = combos.get(name)
    if params is None:
        ids = list(combos)
        shown = ", ".join(ids[:3]) + (f", … ({len(ids)} in all)" if len(ids) > 3 else "")
        if name == base.id:
            raise TicketJobError(
                f"job {base.id!r} is a sweep: a ticket runs one of its combinations ({shown}); "
                f"`submit --job {base.id}` makes a ticket for each"
            )
        raise TicketJobError(f"job {base.id!r} has no combination {name!r} (it has {shown})")
    options = None
    if base.command is None and base.script is not None:
        options = memo.script(cfg.resolve(base.script)).options
    args, wrong = option_args(params, options)
    if wrong:
        raise TicketJobError(f"job {base.id}: {wrong[0]}")
    return Swept(name, params, tuple(args))


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
                known[job_id] = JobConfig(id=job_id, script=str(config_relative(cfg, info.path)))
    return known


def _merge(base: JobSettings, over: JobSettings) -> JobSettings:
    values = {}
    for name in JobSettings.__dataclass_fields__:
        mine = getattr(over, name)
        values[name] = getattr(base, name) if mine is None else mine
    values["env"] = {**base.env, **over.env}
    return JobSettings(**values)


def ticket_spec(cfg: Config, ticket: Ticket, known: Mapping[str, JobConfig], memo: TicketMemo | None = None) -> JobSpec:
    """A ticket as a job: a configured job with the ticket's overrides, or the ticket's own job.
    `memo`: what the tickets of one batch share (TicketMemo)."""
    memo = memo or TicketMemo()
    own = ticket.config
    reserved = sorted(k for k in own.settings.env if k.startswith("AIMEDRES_"))
    if reserved:  # AIMEDRES_SPOOL, _JOB_ID, ... are how the daemon finds its jobs after a crash
        raise TicketJobError(
            f"env: {', '.join(reserved)}: AIMEDRES_* variables are set by the daemon; a ticket cannot override them"
        )
    if ticket.job is not None:
        base = known.get(base_of(ticket.job))
        if base is None and cfg.discovery.enabled:  # known_jobs leaves out an id with two scripts: say so
            found, _warnings = discover(cfg.base_dir, cfg.discovery.roots, cfg.discovery.include, cfg.discovery.exclude)
            paths = [info.path for job_id, info in found if job_id == base_of(ticket.job)]
            if len(paths) > 1:
                raise TicketJobError(ambiguity(cfg, base_of(ticket.job), paths))
        if base is None:
            raise TicketJobError(f"unknown job {ticket.job!r} (known: {', '.join(sorted(known)) or 'none'})")
        swept = _ticket_combination(cfg, base, ticket.job, memo)
        job = JobConfig(
            id=own.id,
            script=base.script,
            command=base.command,
            args=(*base.args, *own.args),
            settings=_merge(base.settings, own.settings),
            python=base.python,
            output_dir=base.output_dir,
            pass_flags=base.pass_flags,
        )
    else:
        job, swept = own, None
    if ticket.job is None and job.script is not None:  # a configured job's script is the admin's choice
        root = cfg.base_dir.resolve()
        if not cfg.resolve(job.script).resolve().is_relative_to(root):
            raise TicketJobError(f"script {job.script!r} is outside the config's folder {root}")
    info = memo.scripts.get(cfg.resolve(job.script)) if job.script is not None and job.command is None else None
    spec = build_spec(cfg, job, info, Overrides(), "ticket", swept)
    if swept is not None:  # the ticket's id names it: its log, its record in the spool
        spec = dataclasses.replace(spec, id=job.id)
    if ticket.group != DEFAULT_GROUP and ticket.group not in cfg.groups:
        raise TicketJobError(f"group: no group {ticket.group!r} in the config ({', '.join(groups_of(cfg))})")
    # an inline command runs where `submit` ran; a configured job where the config is
    return spec if ticket.cwd is None else dataclasses.replace(spec, cwd=Path(ticket.cwd))
