"""Discovery: training scripts found under the configured roots, and the flags each one declares,
read from its `add_argument(...)` calls with `ast` (a script is never run).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aimedres_async.plan.config import JOB_ID_RE, Config
from aimedres_async.plan.limits import read_regular_file

MAX_SCRIPT_BYTES = 16 << 20  # a training script's source; its flags are read with `ast`

# Which flags a script may accept, by what we inject; the first spelling the script declares is used.
FLAG_SPELLINGS: dict[str, tuple[str, ...]] = {
    "output_dir": ("--output-dir", "--output_dir"),
    "epochs": ("--epochs",),
    "folds": ("--folds",),
    "sample": ("--sample",),
    "batch": ("--batch-size", "--batch_size", "--batch"),
}


@dataclass(frozen=True)
class ScriptInfo:
    """What discovery learned from a script's source without running it."""

    path: Path
    flags: Mapping[str, str] = field(default_factory=dict)  # logical name -> declared spelling
    options: Mapping[str, str] | None = None  # every declared option -> its kind (scan_options); None: unknown
    error: str | None = None  # why the script could not be read or parsed


def scan_flags(source: str | bytes, filename: str = "<script>") -> dict[str, str]:
    """Flags a script declares through `add_argument("--flag", ...)` calls, found with `ast`.

    A flag mentioned only in a comment, a help string or any other expression does not count.
    """
    return _injectable(_declared(ast.parse(source, filename=filename))[0])


def _injectable(declared: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, spellings in FLAG_SPELLINGS.items():
        for spelling in spellings:
            if spelling in declared:
                found[name] = spelling
                break
    return found


_SWITCHES = {"store_true": "switch", "store_const": "switch", "count": "switch", "store_false": "negated"}


def scan_options(source: str | bytes, filename: str = "<script>") -> dict[str, str] | None:
    """Every option a script's `add_argument` calls declare, with how it takes a value ("value",
    "switch", "negated" for store_false, "boolean_optional"); None when its options cannot be
    read: no `add_argument` call at all (click, sys.argv, ...) or one whose names are not written
    out (`add_argument(*names)`)."""
    options, readable = _declared(ast.parse(source, filename=filename))
    return options if readable else None


def _declared(tree: ast.AST) -> tuple[dict[str, str], bool]:
    """The options of every `add_argument` call, and whether every call could be read."""
    options: dict[str, str] = {}
    calls, readable = 0, True
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr != "add_argument":
            continue
        calls += 1
        names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        readable = readable and bool(node.args) and len(names) == len(node.args)
        kind = next((_kind(kw.value) for kw in node.keywords if kw.arg == "action"), "value")
        options.update((name, kind) for name in names if name.startswith("-"))
    return options, readable and calls > 0


def _kind(action: ast.expr) -> str:
    if isinstance(action, ast.Constant) and isinstance(action.value, str):
        return _SWITCHES.get(action.value, "value")
    if isinstance(action, ast.Attribute | ast.Name) and ast.unparse(action).endswith("BooleanOptionalAction"):
        return "boolean_optional"
    return "value"


def read_script(path: Path) -> ScriptInfo:
    if path.suffix != ".py":
        return ScriptInfo(path)
    try:  # a FIFO named train.py is refused, never waited on
        source = read_regular_file(path, MAX_SCRIPT_BYTES)
    except OSError as e:
        return ScriptInfo(path, error=f"cannot read: {e.strerror or e}")
    except ValueError as e:
        return ScriptInfo(path, error=f"cannot read: {e}")
    try:
        options, readable = _declared(ast.parse(source, filename=str(path)))
        return ScriptInfo(path, flags=_injectable(options), options=options if readable else None)
    except SyntaxError as e:
        return ScriptInfo(path, error=f"does not parse: {e.msg} (line {e.lineno})")
    except ValueError as e:  # e.g. NUL bytes
        return ScriptInfo(path, error=f"does not parse: {e}")
    except (RecursionError, MemoryError):  # the compiler's own limits on nesting
        return ScriptInfo(path, error="does not parse: nested too deeply")


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


def config_relative(cfg: Config, path: Path) -> Path:
    """A path relative to the config's folder when it lies inside it, else as it is."""
    return path.relative_to(cfg.base_dir) if path.is_relative_to(cfg.base_dir) else path


_OLD_COPY_PARTS = {"legacy", "old", "files", "backup", "backups", "archive", "deprecated", "copy", "tmp"}


def canonical(rels: Sequence[str]) -> str:
    """Of several copies of one script (paths relative to the config's folder), the one that looks
    canonical: not in a legacy-looking folder, under src/, the deepest (a package's own)."""

    def rank(rel: str) -> tuple[bool, bool, int, str]:
        parts = rel.lower().split("/")[:-1]
        return (any(p in _OLD_COPY_PARTS for p in parts), "src" not in parts, -len(parts), rel)

    return min(rels, key=rank)


def ambiguity(cfg: Config, job_id: str, paths: Sequence[Path]) -> str:
    """One line: every script found for `job_id`, and the two ways to choose one. The example
    picks the copy that looks canonical (under src/, not in a legacy-looking folder); the user decides."""
    rels = [config_relative(cfg, p).as_posix() for p in paths]
    keep = canonical(rels)
    others = sorted({str(Path(r).parent.as_posix()) for r in rels if r != keep} - {"."})
    glob = f'"{others[0]}/**"' if others else f'"{next(r for r in rels if r != keep)}"'
    where = f"in {cfg.path.name}" if cfg.path else "in a config (`aimedres-async init` writes one)"
    return (
        f"job id {job_id!r} matches {len(rels)} discovered scripts: {', '.join(rels)}; say which one runs "
        f'with [jobs.{job_id}] script = "{keep}" {where}, or skip the others with a [discovery] '
        f"exclude glob such as {glob}"
    )
