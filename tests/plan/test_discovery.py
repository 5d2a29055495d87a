"""plan/discovery.py and plan/jobs.py: flags read with `ast`, discovery of training scripts, and how
each job's argv is built (SPEC §4, §5). Real files in tmp_path; nothing here runs a script."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aimedres_async.plan.config import Backoff, Config, Resources
from aimedres_async.plan.config_load import load, parse_ticket
from aimedres_async.plan.discovery import discover, glob_regex, read_script, scan_flags
from aimedres_async.plan.jobs import (
    AmbiguousJobs,
    JobSpec,
    Overrides,
    Plan,
    SelectionError,
    Status,
    TicketJobError,
    known_jobs,
    plan,
    ticket_spec,
)

PY = sys.executable

ALL_FLAGS = """\
import argparse
p = argparse.ArgumentParser()
p.add_argument("--output-dir")
p.add_argument("--epochs", type=int)
p.add_argument("--folds", type=int)
p.add_argument("--sample", type=int)
p.add_argument("--batch-size", type=int)
"""


def script(root: Path, rel: str, *flags: str) -> Path:
    """A training script declaring `flags` via add_argument (never run)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["import argparse", "p = argparse.ArgumentParser()"]
    lines += [f"p.add_argument({f!r})" for f in flags]
    path.write_text("\n".join(lines) + "\n")
    return path


def config(tmp_path: Path, body: str) -> Config:
    path = tmp_path / "aimedres.toml"
    path.write_text(body)
    return load(path)


def ids(p: Plan) -> list[str]:
    return [s.id for s in p.jobs]


def by_id(p: Plan, job_id: str) -> JobSpec:
    return next(s for s in p.jobs if s.id == job_id)


# ---------------------------------------------------------------- scan_flags


def test_scan_flags_only_counts_add_argument_calls() -> None:
    source = '''\
"""Usage: train.py --epochs N --folds K   (the docstring mentions flags)"""
import argparse

# --output-dir is where results would go, if we declared it
FLAGS = ["--folds", "--sample"]
HELP = "pass --batch-size to change the batch"
print("--output-dir", f"--folds={3}")
parser = argparse.ArgumentParser(description="--sample is not a flag here")
parser.add_argument("--epochs", type=int, help="like --folds, --sample or --batch-size")
parser.add_argument("--lr", default="--output-dir", dest="--folds")
parser.set_defaults(**{"--sample": 1})
opts = {"--batch-size": 3}
'''
    assert scan_flags(source) == {"epochs": "--epochs"}


@pytest.mark.parametrize(
    ("declaration", "expected"),
    [
        ('p.add_argument("--batch-size", type=int)', {"batch": "--batch-size"}),
        ('p.add_argument("--batch_size", type=int)', {"batch": "--batch_size"}),
        ('p.add_argument("--batch", type=int)', {"batch": "--batch"}),
        ('p.add_argument("--output_dir")', {"output_dir": "--output_dir"}),
        ('p.add_argument("--output-dir")', {"output_dir": "--output-dir"}),
        ('p.add_argument("-e", "--epochs", type=int)', {"epochs": "--epochs"}),
        ('p.add_argument_group("training").add_argument("--folds")', {"folds": "--folds"}),
        ("p.add_argument('--sample')", {"sample": "--sample"}),
        ('p.add_argument("--learning-rate")', {}),
        ('p.add_argument("--epochs-per-fold")', {}),
        ('p.add_argument("epochs")', {}),  # a positional argument is not a flag we can pass
    ],
)
def test_scan_flags_spellings(declaration: str, expected: dict[str, str]) -> None:
    assert scan_flags(f"import argparse\np = argparse.ArgumentParser()\n{declaration}\n") == expected


def test_scan_flags_prefers_the_dashed_spelling_when_both_are_declared() -> None:
    source = 'p.add_argument("--output_dir")\np.add_argument("--output-dir")\np.add_argument("--batch_size", "--batch-size")\n'
    assert scan_flags(source) == {"output_dir": "--output-dir", "batch": "--batch-size"}


def test_scan_flags_finds_every_injected_flag() -> None:
    assert scan_flags(ALL_FLAGS) == {
        "output_dir": "--output-dir",
        "epochs": "--epochs",
        "folds": "--folds",
        "sample": "--sample",
        "batch": "--batch-size",
    }


def test_scan_flags_accepts_bytes_and_raises_on_syntax_error() -> None:
    assert scan_flags(b'p.add_argument("--epochs")\n') == {"epochs": "--epochs"}
    with pytest.raises(SyntaxError):
        scan_flags("def broken(:\n")


def test_scan_flags_never_runs_the_script(tmp_path: Path) -> None:
    victim = tmp_path / "ran"
    source = f'open({str(victim)!r}, "w").close()\nimport argparse\nargparse.ArgumentParser().add_argument("--folds")\n'
    path = tmp_path / "train_x.py"
    path.write_text(source)
    assert read_script(path).flags == {"folds": "--folds"}
    assert not victim.exists()


def test_read_script_reports_unparsable_and_unreadable_scripts(tmp_path: Path) -> None:
    bad = tmp_path / "train_bad.py"
    bad.write_text("import argparse\nif True\n    pass\n")
    info = read_script(bad)
    assert info.error is not None and "does not parse" in info.error and "line 2" in info.error
    assert info.flags == {}
    nul = tmp_path / "train_nul.py"
    nul.write_bytes(b"x = 1\x00\n")
    assert "does not parse" in (read_script(nul).error or "")
    missing = read_script(tmp_path / "train_missing.py")
    assert missing.error is not None and "cannot read" in missing.error


# ---------------------------------------------------------------- globs and walking


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("**/legacy/**", "legacy/train_a.py", True),
        ("**/legacy/**", "a/b/legacy/c/train_a.py", True),
        ("**/legacy/**", "legacyx/train_a.py", False),
        ("**/legacy/**", "a/legacy.py", False),
        ("train_*.py", "train_als.py", True),
        ("train_*.py", "sub/train_als.py", False),  # * does not cross folders
        ("train_*.py", "train_als.pyc", False),
        ("train_?.py", "train_a.py", True),
        ("train_?.py", "train_ab.py", False),
        ("a/**/b.py", "a/b.py", True),
        ("a/**/b.py", "a/x/y/b.py", True),
        ("a.b", "axb", False),  # regex characters are literal
    ],
)
def test_glob_regex(pattern: str, path: str, matches: bool) -> None:
    assert bool(glob_regex(pattern).fullmatch(path)) is matches


def make_tree(tmp_path: Path) -> None:
    script(tmp_path, "scripts/train_a.py")
    script(tmp_path, "scripts/sub/train_b.py")
    script(tmp_path, "scripts/sub/deep/train_c.py")
    script(tmp_path, "scripts/legacy/train_old.py")
    script(tmp_path, "scripts/sub/legacy/train_older.py")
    script(tmp_path, "scripts/__pycache__/train_cached.py")
    script(tmp_path, "scripts/.hidden/train_hidden.py")
    script(tmp_path, "scripts/.train_dotfile.py")
    script(tmp_path, "scripts/myenv/lib/train_in_venv.py")
    (tmp_path / "scripts/myenv/pyvenv.cfg").write_text("home = /usr/bin\n")
    script(tmp_path, "scripts/helper.py")
    script(tmp_path, "scripts/train_a_notes.txt")
    script(tmp_path, "elsewhere/train_z.py")


def test_discover_walks_roots_and_skips_what_it_must(tmp_path: Path) -> None:
    make_tree(tmp_path)
    found, warnings = discover(tmp_path, ["scripts"], ["train_*.py"], ["**/legacy/**"])
    assert sorted((i, info.path) for i, info in found) == [
        ("a", tmp_path / "scripts/train_a.py"),
        ("b", tmp_path / "scripts/sub/train_b.py"),
        ("c", tmp_path / "scripts/sub/deep/train_c.py"),
    ]
    # a stable order: the walk visits entries sorted by name, depth first
    assert [info.path for _, info in found] == sorted((info.path for _, info in found), key=lambda p: p.parts)
    assert warnings == []


def test_discover_several_roots_and_missing_root(tmp_path: Path) -> None:
    make_tree(tmp_path)
    found, warnings = discover(tmp_path, ["elsewhere", "nope", "scripts/sub"], ["train_*.py"], ["**/legacy/**"])
    assert [i for i, _ in found] == ["z", "c", "b"]  # roots in the given order; each walked in sorted order
    assert len(warnings) == 1 and "nope" in warnings[0]


def test_discover_exclude_by_name_and_by_path(tmp_path: Path) -> None:
    make_tree(tmp_path)
    found, _ = discover(tmp_path, ["scripts"], ["train_*.py"], ["train_b.py", "scripts/sub/deep/**", "**/legacy/**"])
    assert [i for i, _ in found] == ["a"]


def test_discover_without_excludes_finds_legacy_but_still_skips_cache_hidden_and_venv(tmp_path: Path) -> None:
    make_tree(tmp_path)
    found, _ = discover(tmp_path, ["scripts"], ["train_*.py"], [])
    assert sorted(i for i, _ in found) == ["a", "b", "c", "old", "older"]


def test_discover_include_with_double_star(tmp_path: Path) -> None:
    make_tree(tmp_path)
    found, _ = discover(tmp_path, ["scripts"], ["**/train_*.py"], ["**/legacy/**"])
    assert sorted(i for i, _ in found) == ["a", "b", "c"]


def test_discover_include_glob_with_a_folder_part(tmp_path: Path) -> None:
    script(tmp_path, "keep/a/train_x.py")
    script(tmp_path, "other/train_y.py")
    found, _ = discover(tmp_path, ["."], ["keep/**/train_*.py"], [])
    assert [i for i, _ in found] == ["x"]


def test_job_id_is_stem_without_train_prefix(tmp_path: Path) -> None:
    script(tmp_path, "s/train_als.py")
    script(tmp_path, "s/train_my-model.v2.py")
    script(tmp_path, "s/fit_thing.py")
    found, warnings = discover(tmp_path, ["s"], ["train_*.py", "fit_*.py"], [])
    assert sorted(i for i, _ in found) == ["als", "fit_thing", "my-model.v2"]
    assert warnings == []


def test_invalid_stems_are_skipped_with_a_warning(tmp_path: Path) -> None:
    script(tmp_path, "s/train_good.py")
    script(tmp_path, "s/train_bad name.py")
    script(tmp_path, "s/train_-lead.py")
    script(tmp_path, f"s/train_{'x' * 65}.py")
    found, warnings = discover(tmp_path, ["s"], ["train_*.py"], [])
    assert [i for i, _ in found] == ["good"]
    assert len(warnings) == 3, warnings
    for name in ("train_bad name.py", "train_-lead.py", f"train_{'x' * 65}.py"):
        assert any(name in w and "not a valid job id" in w for w in warnings), (name, warnings)


def test_duplicate_ids_are_all_returned_and_plan_refuses_to_guess(tmp_path: Path) -> None:
    """Regression (issue #13): discovery kept the first script per id, so a legacy copy could run
    instead of the canonical one with only a warning. Now every path is returned and plan refuses."""
    first = script(tmp_path, "one/train_a.py")
    second = script(tmp_path, "two/train_a.py")
    found, warnings = discover(tmp_path, ["one", "two"], ["train_*.py"], [])
    assert [(i, info.path) for i, info in found] == [("a", first), ("a", second)]
    assert warnings == []
    cfg = config(tmp_path, '[discovery]\nroots = ["one", "two"]\n')
    with pytest.raises(AmbiguousJobs) as e:
        plan(cfg)
    assert len(e.value.problems) == 1
    line = e.value.problems[0]
    assert "'a'" in line and "one/train_a.py" in line and "two/train_a.py" in line
    assert "[jobs.a] script" in line and "exclude" in line
    assert ids(plan(cfg, exclude=["a"])) == []  # not selected: nothing to choose


def test_a_duplicate_whose_first_copy_does_not_parse_is_still_refused(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "one/train_a.py").write_text("def f(:\n")
    script(tmp_path, "two/train_a.py")
    cfg = config(tmp_path, '[discovery]\nroots = ["one", "two"]\n')
    with pytest.raises(AmbiguousJobs, match=r"one/train_a\.py, two/train_a\.py"):
        plan(cfg)


def test_a_ticket_naming_a_duplicate_id_is_refused_naming_both_scripts(tmp_path: Path) -> None:
    script(tmp_path, "one/train_a.py")
    script(tmp_path, "two/train_a.py")
    cfg = config(tmp_path, '[discovery]\nroots = ["one", "two"]\n')
    known = known_jobs(cfg)
    assert "a" not in known
    with pytest.raises(TicketJobError, match=r"'a' matches 2 discovered scripts: one/train_a.py, two/train_a.py"):
        ticket_spec(cfg, parse_ticket('job = "a"\n', "t1"), known)


def test_a_configured_script_resolves_a_duplicate_id(tmp_path: Path) -> None:
    script(tmp_path, "one/train_a.py")
    second = script(tmp_path, "two/train_a.py", "--epochs")
    cfg = config(tmp_path, '[discovery]\nroots = ["one", "two"]\n[jobs.a]\nscript = "two/train_a.py"\n')
    p = plan(cfg)
    assert [(s.id, s.script) for s in p.jobs] == [("a", second)]


def test_a_configured_script_that_discovery_found_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aimedres_async.plan import discovery, jobs

    one = script(tmp_path, "one/train_a.py", "--folds")
    two = script(tmp_path, "two/train_a.py", "--epochs")
    reads: list[Path] = []

    def counted(path: Path) -> discovery.ScriptInfo:
        reads.append(path)
        return read_script(path)

    monkeypatch.setattr(discovery, "read_script", counted)
    monkeypatch.setattr(jobs, "read_script", counted)
    cfg = config(tmp_path, '[discovery]\nroots = ["one", "two"]\n[jobs.a]\nscript = "two/train_a.py"\n')
    (spec,) = plan(cfg).jobs
    assert spec.script == two and spec.accepts == frozenset({"epochs"})  # the configured copy's flags
    assert sorted(reads) == sorted([tmp_path / one, tmp_path / two])


def test_unparsable_script_is_listed_as_skipped_with_a_warning(tmp_path: Path) -> None:
    script(tmp_path, "s/train_good.py", "--epochs")
    bad = tmp_path / "s/train_broken.py"
    bad.write_text("def f(:\n    pass\n")
    cfg = config(tmp_path, '[discovery]\nroots = ["s"]\n')
    p = plan(cfg)
    assert ids(p) == ["good"]
    assert [info.path for info in p.skipped] == [bad]
    assert p.skipped[0].error is not None and "does not parse" in p.skipped[0].error
    assert any(str(bad) in w and "skipped" in w for w in p.warnings), p.warnings


# ---------------------------------------------------------------- plan: config and discovery together


def test_config_job_beats_discovered_one_with_same_id(tmp_path: Path) -> None:
    script(tmp_path, "s/train_a.py", "--epochs")
    script(tmp_path, "s/train_b.py", "--epochs")
    cfg = config(tmp_path, f'[discovery]\nroots = ["s"]\n[jobs.a]\ncommand = ["{PY}", "-c", "pass"]\n')
    p = plan(cfg)
    assert ids(p) == ["a", "b"]
    a, b = by_id(p, "a"), by_id(p, "b")
    assert a.origin == "config" and a.argv == (PY, "-c", "pass")
    assert b.origin == "discovered" and b.argv[:2] == (PY, "s/train_b.py")


def test_config_job_wins_even_over_an_unparsable_discovered_script(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s/train_a.py").write_text("def f(:\n")
    cfg = config(tmp_path, '[discovery]\nroots = ["s"]\n[jobs.a]\ncommand = ["true"]\n')
    p = plan(cfg)
    assert ids(p) == ["a"] and p.skipped == ()


def test_discovery_can_be_disabled_or_redirected(tmp_path: Path) -> None:
    script(tmp_path, "s/train_a.py")
    script(tmp_path, "t/train_b.py")
    cfg = config(tmp_path, '[discovery]\nroots = ["s"]\n[jobs.c]\ncommand = ["true"]\n')
    assert ids(plan(cfg)) == ["c", "a"]
    assert ids(plan(cfg, discover_enabled=False)) == ["c"]
    assert ids(plan(cfg, roots=[str(tmp_path / "t")])) == ["c", "b"]
    off = config(tmp_path, "[discovery]\nenabled = false\n")
    assert ids(plan(off)) == []
    script(tmp_path, "train_top.py")
    assert ids(plan(off, discover_enabled=True)) == ["a", "b", "top"]  # default root is the config's folder


# ---------------------------------------------------------------- building commands


def test_command_has_every_flag_the_script_declares_in_order(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s/train_full.py").write_text(ALL_FLAGS)
    cfg = config(
        tmp_path,
        """\
[discovery]
enabled = false
[defaults]
epochs = 10
folds = 5
sample = 100
batch = 32
[jobs.full]
script = "s/train_full.py"
args = ["--dataset", "x y"]
""",
    )
    spec = plan(cfg, Overrides(extra_args=("--seed", "7"))).jobs[0]
    out = tmp_path.resolve() / "results" / "full"
    assert spec.argv == (
        PY,
        "s/train_full.py",
        "--output-dir",
        str(out),
        "--epochs",
        "10",
        "--folds",
        "5",
        "--sample",
        "100",
        "--batch-size",
        "32",
        "--dataset",
        "x y",
        "--seed",
        "7",
    )
    assert spec.cwd == tmp_path.resolve()
    assert spec.output_dir == out
    assert spec.script == tmp_path.resolve() / "s/train_full.py"
    assert spec.accepts == {"output_dir", "epochs", "folds", "sample", "batch"}
    assert spec.shell_command().endswith("--dataset 'x y' --seed 7")


def test_flags_only_where_declared_and_a_value_is_known(tmp_path: Path) -> None:
    script(tmp_path, "s/train_some.py", "--epochs", "--sample", "--batch_size", "--output_dir")
    script(tmp_path, "s/train_none.py")
    cfg = config(tmp_path, '[discovery]\nroots = ["s"]\n[defaults]\nepochs = 4\nfolds = 3\nbatch = 8\n')
    p = plan(cfg, Overrides(extra_args=("--verbose",)))
    out = tmp_path.resolve() / "results"
    # --sample is declared but no value is known; --folds has a value but is not declared
    assert by_id(p, "some").argv == (
        PY,
        "s/train_some.py",
        "--output_dir",
        str(out / "some"),
        "--epochs",
        "4",
        "--batch_size",
        "8",
        "--verbose",
    )
    none = by_id(p, "none")
    assert none.argv == (PY, "s/train_none.py", "--verbose")
    assert none.output_dir is None and none.accepts == frozenset()


def test_per_job_values_beat_defaults(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s/train_full.py").write_text(ALL_FLAGS)
    cfg = config(
        tmp_path,
        """\
[discovery]
enabled = false
[defaults]
epochs = 80
folds = 5
[jobs.a]
script = "s/train_full.py"
epochs = 3
[jobs.b]
script = "s/train_full.py"
folds = 2
""",
    )
    p = plan(cfg)
    a, b = by_id(p, "a").argv, by_id(p, "b").argv
    assert a[a.index("--epochs") + 1] == "3" and a[a.index("--folds") + 1] == "5"
    assert b[b.index("--epochs") + 1] == "80" and b[b.index("--folds") + 1] == "2"


def test_python_setting_and_base_output_dir_override(tmp_path: Path) -> None:
    script(tmp_path, "s/train_a.py", "--output-dir")
    cfg = config(tmp_path, '[supervisor]\npython = "/opt/py3"\noutput_dir = "res"\n[discovery]\nroots = ["s"]\n')
    assert plan(cfg).jobs[0].argv == ("/opt/py3", "s/train_a.py", "--output-dir", str(tmp_path.resolve() / "res/a"))
    other = tmp_path / "elsewhere"
    spec = plan(cfg, Overrides(output_dir=other)).jobs[0]
    assert spec.argv[2:] == ("--output-dir", str(other / "a"))
    assert spec.output_dir == other / "a"


def test_non_python_script_is_executed_directly(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/go").write_text("#!/bin/sh\n")
    cfg = config(
        tmp_path,
        "[discovery]\nenabled = false\n[defaults]\nepochs = 3\n"
        '[jobs.sh]\nscript = "run.sh"\nargs = ["x"]\n[jobs.go]\nscript = "bin/go"\n',
    )
    p = plan(cfg)
    assert by_id(p, "sh").argv == ("./run.sh", "x")
    assert by_id(p, "go").argv == ("bin/go",)


def test_command_jobs_get_no_flag_injection(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        f"""\
[discovery]
enabled = false
[defaults]
epochs = 10
folds = 5
batch = 3
[jobs.cmd]
command = ["{PY}", "-c", "import sys; print(sys.argv)", "--epochs"]
args = ["--x"]
epochs = 2
""",
    )
    spec = plan(cfg, Overrides(extra_args=("--extra",))).jobs[0]
    assert spec.argv == (PY, "-c", "import sys; print(sys.argv)", "--epochs", "--x")
    assert spec.script is None and spec.output_dir is None and spec.accepts == frozenset()


def test_settings_inherit_from_defaults_and_overrides_win(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        """\
[discovery]
enabled = false
[defaults]
retries = 2
timeout = "1h"
backoff = { initial = "2s", factor = 3.0, max = "1m", jitter = 0.5 }
env = { A = "1", B = "2" }
optional = true
resources = { gpus = 1, memory = "1GiB" }
[jobs.plain]
command = ["true"]
[jobs.own]
command = ["true"]
retries = 5
timeout = "10s"
backoff = { initial = "1s" }
env = { B = "job", C = "3" }
optional = false
resources = { cpus = 2 }
""",
    )
    p = plan(cfg)
    plain, own = by_id(p, "plain"), by_id(p, "own")
    assert (plain.retries, plain.timeout, plain.optional) == (2, 3600.0, True)
    assert plain.backoff == Backoff(initial=2.0, factor=3.0, max=60.0, jitter=0.5)
    assert plain.env == {"A": "1", "B": "2"}
    assert plain.resources == Resources(gpus=1.0, memory=1024**3)
    assert (own.retries, own.timeout, own.optional) == (5, 10.0, False)
    assert own.backoff == Backoff(initial=1.0)
    assert own.env == {"A": "1", "B": "job", "C": "3"}
    assert own.resources == Resources(cpus=2.0)

    p = plan(cfg, Overrides(retries=0, timeout=99.0))
    assert [(s.retries, s.timeout) for s in p.jobs] == [(0, 99.0), (0, 99.0)]
    p = plan(cfg, Overrides(timeout=0.0))  # --timeout 0: no limit, for every job
    assert [s.timeout for s in p.jobs] == [None, None]


def test_per_job_timeout_zero_means_no_limit_even_with_a_default(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        '[discovery]\nenabled = false\n[defaults]\ntimeout = "6h"\n[jobs.long]\ncommand = ["true"]\ntimeout = 0\n',
    )
    assert plan(cfg).jobs[0].timeout is None


# ---------------------------------------------------------------- --only / --exclude


def selection_config(tmp_path: Path) -> Config:
    body = "[discovery]\nenabled = false\n" + "".join(f'[jobs.{i}]\ncommand = ["true"]\n' for i in "abcd")
    return config(tmp_path, body)


def test_only_and_exclude_keep_config_order(tmp_path: Path) -> None:
    cfg = selection_config(tmp_path)
    assert ids(plan(cfg, only=["c", "a"])) == ["a", "c"]
    assert ids(plan(cfg, exclude=["b"])) == ["a", "c", "d"]
    assert ids(plan(cfg, only=["a", "b"], exclude=["b"])) == ["a"]


def test_unknown_ids_in_only_and_exclude_raise_selection_error_naming_them(tmp_path: Path) -> None:
    cfg = selection_config(tmp_path)
    with pytest.raises(SelectionError) as info:
        plan(cfg, only=["a", "nosuch"], exclude=["ghost"])
    message = str(info.value)
    assert "nosuch" in message and "ghost" in message
    assert "\n" not in message
    with pytest.raises(SelectionError, match="nosuch"):
        plan(cfg, exclude=["nosuch"])
    assert isinstance(info.value, ValueError)


def test_status_ok() -> None:
    assert {s for s in Status if s.ok} == {Status.SUCCEEDED, Status.SKIPPED}
