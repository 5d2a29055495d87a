"""Sweeps (SPEC §18): a job's `matrix`, `matrix_include`/`matrix_exclude` and seed axis expanded
into one combination per job, each combination's id, command-line options and file-name form.

Pure functions of the settings: no file, no process, no config object.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aimedres_async.plan.accepts import accepts

Value = bool | int | float | str
Params = dict[str, Value]

SEED = "seed"
KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
RESERVED = ("output_dir", "output-dir")  # the supervisor gives each combination its own folder
MAX_REPEAT = 1_000_000
HARD_LIMIT = 1_000_000  # no run expands beyond this, --yes or not: the plan itself would not fit
DEFAULT_MAX_JOBS = 1000
_SAFE = "._+-"  # besides letters and digits: what a file name keeps as it is
_MAX_STEM = 200  # bytes of a file-name stem (a file name is at most 255), ".jsonl" and a hash included


@dataclass(frozen=True)
class Sweep:
    """A job's sweep settings as written: matrix keys in order, include/exclude entries, seeds
    (None: not set here, inherit from [defaults]; (): no seed axis)."""

    matrix: tuple[tuple[str, tuple[Value, ...]], ...] = ()
    include: tuple[tuple[tuple[str, Value], ...], ...] = ()
    exclude: tuple[tuple[tuple[str, Value], ...], ...] = ()
    seeds: tuple[int, ...] | None = None

    @property
    def empty(self) -> bool:
        return not self.matrix and not self.include and not self.seeds


class SweepError(ValueError):
    """A sweep that cannot expand (empty, too large, two combinations with one id)."""


# ---------------------------------------------------------------- values as written and shown


def format_value(v: Value) -> str:
    """A value as it appears in a job id and on a command line: TOML's spelling for booleans,
    Python's shortest round-trip spelling for numbers (0.1, 1e-05), a string as it is."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def want_value(v: object) -> Value:
    """One matrix value: a number, a string or a boolean (no table, list or date)."""
    if isinstance(v, bool | int):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("a value must be a finite number")
        return v
    if isinstance(v, str):
        if not v or re.search(r"[\x00-\x1f\x7f,=\[\]]", v):
            raise ValueError(f"{v!r}: a string value is non-empty, without , = [ ] or a control character")
        return v
    raise ValueError(f"{v!r}: a value must be a number, a string or true/false")


def want_key(key: str) -> str:
    if key == SEED:
        raise ValueError("seed: the seed axis is `seeds = [0, 1, 2]` or `repeat = 3`, not a matrix key")
    if key in RESERVED:
        raise ValueError(f"{key}: the supervisor gives each combination its own output folder")
    if not KEY_RE.fullmatch(key):
        raise ValueError(f"{key!r}: a key is an option name (letters, digits, '_', '-'; starting with a letter)")
    return key


@accepts('a table of lists: { lr = [0.1, 0.01], model = ["mlp"] }')
def want_matrix(v: object) -> tuple[tuple[str, tuple[Value, ...]], ...]:
    """`matrix = { lr = [0.1, 0.01], model = ["mlp"] }`: keys in the order written."""
    if not isinstance(v, dict):
        raise ValueError("expected a table like { lr = [0.1, 0.01] }")
    out = []
    for key, values in v.items():
        want_key(key)
        if not isinstance(values, list) or not values:
            raise ValueError(f"{key}: expected a non-empty list of values")
        try:
            parsed = tuple(want_value(x) for x in values)
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from None
        shown = [format_value(x) for x in parsed]
        twice = next((s for i, s in enumerate(shown) if s in shown[:i]), None)
        if twice is not None:
            raise ValueError(f"{key}: {twice} is listed twice")
        out.append((key, parsed))
    if not out:
        raise ValueError("expected at least one key (or leave `matrix` out)")
    return tuple(out)


@accepts('a list of tables: [{ lr = 0.1, model = "mlp" }]')
def want_entries(v: object) -> tuple[tuple[tuple[str, Value], ...], ...]:
    """`matrix_include`/`matrix_exclude = [{ lr = 0.1, model = "mlp" }, ...]`."""
    if not isinstance(v, list) or not all(isinstance(e, dict) for e in v):
        raise ValueError("expected a list of tables like [{ lr = 0.1 }]")
    out = []
    for i, entry in enumerate(v):
        if not entry:
            raise ValueError(f"entry {i + 1} is empty")
        try:
            out.append(tuple((want_key(k), want_value(x)) for k, x in entry.items()))
        except ValueError as e:
            raise ValueError(f"entry {i + 1}: {e}") from None
    return tuple(out)


@accepts("a list of whole numbers ≥ 0: [0, 1, 2]")
def want_seeds(v: object) -> tuple[int, ...]:
    """`seeds = [0, 1, 2]` (whole numbers >= 0, each once; [] = no seed axis)."""
    if not isinstance(v, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in v):
        raise ValueError("expected a list of whole numbers like [0, 1, 2]")
    return _checked_seeds(v)


@accepts(f"a whole number from 1 to {MAX_REPEAT:,} (the seeds 0 … N-1)")
def want_repeat(v: object) -> tuple[int, ...]:
    """`repeat = 3`: the seeds 0, 1, 2."""
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_REPEAT:
        raise ValueError(f"expected a whole number from 1 to {MAX_REPEAT:,}")
    return tuple(range(v))


def _checked_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    bad = next((s for s in seeds if not 0 <= s < 1 << 63), None)
    if bad is not None:
        raise ValueError(f"{bad}: a seed is a whole number >= 0 (64-bit)")
    twice = next((s for i, s in enumerate(seeds) if s in seeds[:i]), None)
    if twice is not None:
        raise ValueError(f"seed {twice} is listed twice")
    return tuple(seeds)


# ---------------------------------------------------------------- the command line's values


def parse_cli_value(text: str) -> Value:
    """A value from `--matrix`: an integer, a float, true/false, else the string itself."""
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            number = kind(text)
        except ValueError:
            continue
        if isinstance(number, float) and not math.isfinite(number):
            break  # "inf", "nan": words, kept as strings
        return number
    return want_value(text)


def parse_matrix_option(text: str) -> tuple[str, tuple[Value, ...]]:
    """`--matrix lr=0.1,0.01` -> ("lr", (0.1, 0.01)); ValueError with the reason."""
    key, eq, values = text.partition("=")
    if not eq or not values:
        raise ValueError(f"{text!r}: expected KEY=V1,V2 (e.g. lr=0.1,0.01)")
    want_key(key)
    parsed = [parse_cli_value(v) for v in values.split(",")]
    return want_matrix({key: parsed})[0]


def parse_seeds_option(text: str) -> tuple[int, ...]:
    """`--seeds 0-4` (0 to 4), `--seeds 0,3`, or both mixed (`0-2,7`)."""
    seeds: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if m is None:
            raise ValueError(f"{text!r}: expected seeds like 0-4 or 0,3")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo or hi - lo >= MAX_REPEAT:
            raise ValueError(f"{part.strip()!r}: a range goes up (at most {MAX_REPEAT:,} seeds)")
        seeds.extend(range(lo, hi + 1))
    return _checked_seeds(seeds)


# ---------------------------------------------------------------- what a run sweeps


@dataclass(frozen=True)
class SweepOverrides:
    """`run --matrix KEY=V1,V2` (each replaces or adds a key) and `--seeds` (replaces the seed axis),
    for every selected job; `yes`: no `max_jobs` limit (`--yes`); `limit`: whether to apply one."""

    matrix: tuple[tuple[str, tuple[Value, ...]], ...] = ()
    seeds: tuple[int, ...] | None = None
    yes: bool = False
    limit: bool = False


NO_SWEEP_OVERRIDES = SweepOverrides()


def effective(own: Sweep | None, default_seeds: tuple[int, ...] | None, over: SweepOverrides) -> Sweep | None:
    """A job's sweep: its own settings, [defaults] seeds unless it sets its own, then the command
    line's; None when nothing is swept (the job runs once, under its plain id)."""
    own = own or Sweep()
    matrix = dict(own.matrix)
    matrix.update(over.matrix)  # a replaced key keeps its place; a new one goes last
    seeds = over.seeds if over.seeds is not None else own.seeds if own.seeds is not None else default_seeds
    sweep = Sweep(tuple(matrix.items()), own.include, own.exclude, seeds)
    return None if sweep.empty else sweep


def split_ids(ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """--only/--exclude values: plain ids (a job, all its combinations) and full ids of one combination."""
    return [i for i in ids if "[" not in i], [i for i in ids if "[" in i]


def base_of(job: str) -> str:
    return job.partition("[")[0]


# ---------------------------------------------------------------- expansion


def combinations(sweep: Sweep) -> list[Params]:
    """The matrix's combinations in order, without the seed axis, with GitHub Actions' meaning of
    include/exclude: an exclude entry removes the matrix combinations that match all its pairs; an
    include entry extends every matrix combination whose own values it does not change, or else
    becomes a combination of its own. SweepError when the matrix is beyond HARD_LIMIT."""
    product = math.prod(len(v) for _k, v in sweep.matrix) if sweep.matrix else 0
    if product * max(1, len(sweep.seeds or ())) > HARD_LIMIT:
        raise SweepError(
            f"the sweep has {product * max(1, len(sweep.seeds or ())):,} combinations; at most {HARD_LIMIT:,} can run"
        )
    keys = [k for k, _values in sweep.matrix]
    combos: list[Params] = []
    if sweep.matrix:
        for values in itertools.product(*(v for _k, v in sweep.matrix)):
            combo = dict(zip(keys, values, strict=True))
            if not any(_matches(combo, entry) for entry in sweep.exclude):
                combos.append(combo)
    originals = len(combos)
    for entry in sweep.include:
        fits = [c for c in combos[:originals] if all(_same(c[k], v) for k, v in entry if k in keys)]
        for combo in fits:
            combo.update(entry)
        if not fits:
            combos.append(dict(entry))
    order = _key_order(sweep)
    return [{k: c[k] for k in order if k in c} for c in combos]


def expand(sweep: Sweep) -> list[Params]:
    """Every combination with its seed: the seed axis varies fastest and `seed` comes last."""
    combos = combinations(sweep)
    if sweep.seeds:
        if not combos:
            return [{SEED: s} for s in sweep.seeds]
        return [{**c, SEED: s} for c in combos for s in sweep.seeds]
    return combos


def _same(a: Value, b: Value) -> bool:
    """One value as the id shows it (so true is not 1, and 1 is not 1.0)."""
    return type(a) is type(b) and format_value(a) == format_value(b)


def _matches(combo: Mapping[str, Value], entry: Sequence[tuple[str, Value]]) -> bool:
    return all(k in combo and _same(combo[k], v) for k, v in entry)


def _key_order(sweep: Sweep) -> list[str]:
    order = [k for k, _v in sweep.matrix]
    for entry in sweep.include:
        order += [k for k, _v in entry if k not in order]
    return order


def swept_id(base: str, params: Mapping[str, Value]) -> str:
    """`base[k1=v1,k2=v2,seed=S]`: the id of one combination (keys in the order given)."""
    return f"{base}[{','.join(f'{k}={format_value(v)}' for k, v in params.items())}]"


def check_unique(base: str, combos: Sequence[Params]) -> None:
    """Two combinations with one id (the string "1" and the number 1) would share their logs."""
    seen: set[str] = set()
    for params in combos:
        name = swept_id(base, params)
        if name in seen:
            raise SweepError(f"two combinations are both {name} (a value written once as a string, once as a number?)")
        seen.add(name)


# ---------------------------------------------------------------- file names


def file_stem(job: str) -> str:
    """The file-name form of a job id: a plain id stays as it is; `train[lr=0.1,model=a/b,seed=0]`
    becomes `train@lr=0.1,model=a%2Fb,seed=0`: `@` for the brackets, and in keys and values every
    character but letters, digits and `._+-` as %XX (UTF-8), so `=`, `,`, `@` and `%` inside a
    value cannot be confused with the separators and `parse_file_stem` gives the id back. A form
    longer than 200 bytes is cut and ends in `~` and 12 hex digits of the id's SHA-256."""
    base, bracket, rest = job.partition("[")
    if not bracket:
        return job
    import hashlib  # here: every command imports this module, few name a swept job's file

    pairs = []
    for pair in rest.removesuffix("]").split(","):
        key, _eq, value = pair.partition("=")
        pairs.append(f"{_quote(key)}={_quote(value)}")
    stem = f"{base}@{','.join(pairs)}"
    if len(stem) > _MAX_STEM:
        digest = hashlib.sha256(job.encode()).hexdigest()[:12]
        cut = stem.encode()[: _MAX_STEM - 13].decode("ascii", "ignore")
        stem = f"{cut}~{digest}"
    return stem


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe=_SAFE).replace("~", "%7E")  # quote keeps "~", the cut form's mark


def parse_file_stem(stem: str) -> str | None:
    """The job id a `file_stem` stands for; None for a cut (hashed) form, whose id is in the
    run's summary.json."""
    base, at, rest = stem.partition("@")
    if not at:
        return stem
    if "~" in rest:
        return None
    from urllib.parse import unquote

    pairs = []
    for pair in rest.split(","):
        key, _eq, value = pair.partition("=")
        pairs.append(f"{unquote(key)}={unquote(value)}")
    return f"{base}[{','.join(pairs)}]"


# ---------------------------------------------------------------- the command line of a combination

# What discovery.scan_options says an option is (how a boolean goes to it)
VALUE, SWITCH, NEGATED, BOOLEAN_OPTIONAL = "value", "switch", "negated", "boolean_optional"


def flag_for(key: str, options: Mapping[str, str]) -> str | None:
    """The option a key names: `--key` as written, else with `_` and `-` swapped (a key
    `batch_size` finds `--batch-size`, a key `batch-size` finds `--batch_size`)."""
    for spelling in (f"--{key}", f"--{key.replace('_', '-')}", f"--{key.replace('-', '_')}"):
        if spelling in options:
            return spelling
    return None


def option_args(params: Mapping[str, Value], options: Mapping[str, str] | None) -> tuple[list[str], list[str]]:
    """A combination's options for the script's command line, and the problems (an option the
    script does not declare, a value a switch cannot take). `options` None: the script's options
    cannot be read (not a Python script, or it declares them in a way `ast` cannot follow), and
    each key goes as written: `--key value`, a boolean as `--key true|false`.

    A boolean goes to a `store_true` switch as the bare flag (false: left out), to a
    `store_false` one the other way round, to a `BooleanOptionalAction` as `--key`/`--no-key`,
    and to an option that takes a value as `true`/`false`."""
    args: list[str] = []
    problems: list[str] = []
    for key, value in params.items():
        if options is None:
            args += [f"--{key}", format_value(value)]
            continue
        flag = flag_for(key, options)
        if flag is None:
            declared = ", ".join(sorted(o for o in options if o.startswith("--"))) or "no --option"
            problems.append(f"--{key} (sweep key {key}) is not declared by its script, which declares {declared}")
            continue
        kind = options[flag]
        if kind == VALUE:
            args += [flag, format_value(value)]
        elif not isinstance(value, bool):
            problems.append(
                f"{flag} is a switch (it takes no value): give {key} true or false, not {format_value(value)}"
            )
        elif kind == BOOLEAN_OPTIONAL:
            args.append(flag if value else "--no-" + flag[2:])
        elif value is (kind == SWITCH):
            args.append(flag)
    return args, problems
