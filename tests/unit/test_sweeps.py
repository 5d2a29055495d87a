"""Sweeps expanded in process (SPEC §18): GitHub Actions' include/exclude, the order of keys and
combinations, ids, seeds and repeat, file names, the options a combination passes, the config's
checks and `max_jobs`."""

from __future__ import annotations

from pathlib import Path

import pytest

from aimedres_async.plan.config_errors import ConfigError
from aimedres_async.plan.config_load import parse
from aimedres_async.plan.jobs import SelectionError, plan
from aimedres_async.plan.sweep_plan import NoSuchCombination, TooManyJobs
from aimedres_async.plan.sweeps import (
    HARD_LIMIT,
    Sweep,
    SweepError,
    SweepOverrides,
    Value,
    check_unique,
    effective,
    expand,
    file_stem,
    option_args,
    parse_cli_value,
    parse_file_stem,
    parse_matrix_option,
    parse_seeds_option,
    swept_id,
    want_entries,
    want_matrix,
)


def sweep(
    matrix: dict[str, list[Value]] | None = None,
    include: list[dict[str, Value]] | None = None,
    exclude: list[dict[str, Value]] | None = None,
    seeds: tuple[int, ...] | None = None,
) -> Sweep:
    return Sweep(
        matrix=want_matrix(matrix) if matrix else (),
        include=want_entries(include or []),
        exclude=want_entries(exclude or []),
        seeds=seeds,
    )


# ---------------------------------------------------------------- expansion


def test_the_product_in_the_order_written_the_last_key_fastest() -> None:
    got = expand(sweep({"lr": [0.1, 0.01], "model": ["mlp", "sgd"]}))
    assert got == [
        {"lr": 0.1, "model": "mlp"},
        {"lr": 0.1, "model": "sgd"},
        {"lr": 0.01, "model": "mlp"},
        {"lr": 0.01, "model": "sgd"},
    ]
    assert [list(c) for c in got] == [["lr", "model"]] * 4


def test_github_actions_include_example() -> None:
    """The example of GitHub's docs ("Expanding or adding matrix configurations"), with its result."""
    s = sweep(
        {"fruit": ["apple", "pear"], "animal": ["cat", "dog"]},
        include=[
            {"color": "green"},
            {"color": "pink", "animal": "cat"},
            {"fruit": "apple", "shape": "circle"},
            {"fruit": "banana"},
            {"fruit": "banana", "animal": "cat"},
        ],
    )
    assert expand(s) == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]


def test_exclude_removes_every_combination_matching_all_its_pairs() -> None:
    s = sweep(
        {"os": ["linux", "mac"], "v": [1, 2, 3]},
        exclude=[{"os": "mac", "v": 1}, {"v": 3}],
    )
    assert expand(s) == [{"os": "linux", "v": 1}, {"os": "linux", "v": 2}, {"os": "mac", "v": 2}]


def test_exclude_first_then_include_may_add_back_a_combination() -> None:
    s = sweep({"a": [1, 2]}, include=[{"a": 2, "b": "x"}, {"a": 3}], exclude=[{"a": 2}])
    assert expand(s) == [{"a": 1}, {"a": 2, "b": "x"}, {"a": 3}]


def test_values_match_by_type_and_spelling_true_is_not_1() -> None:
    s = sweep({"flag": [True, 1]}, exclude=[{"flag": 1}])
    assert expand(s) == [{"flag": True}]
    assert expand(sweep({"x": [1, 1.0]})) == [{"x": 1}, {"x": 1.0}]


def test_the_seed_axis_comes_last_and_varies_fastest() -> None:
    got = expand(sweep({"lr": [0.1, 0.2]}, seeds=(0, 7)))
    assert got == [
        {"lr": 0.1, "seed": 0},
        {"lr": 0.1, "seed": 7},
        {"lr": 0.2, "seed": 0},
        {"lr": 0.2, "seed": 7},
    ]
    assert [list(c)[-1] for c in got] == ["seed"] * 4


def test_seeds_alone_make_one_job_per_seed() -> None:
    assert expand(sweep(seeds=(0, 1, 2))) == [{"seed": 0}, {"seed": 1}, {"seed": 2}]


def test_ids_and_values_as_shown() -> None:
    params: dict[str, Value] = {"lr": 1e-05, "model": "mlp", "aug": False, "n": 3, "seed": 0}
    assert swept_id("train", params) == "train[lr=1e-05,model=mlp,aug=false,n=3,seed=0]"
    assert swept_id("t", {"lr": 0.1}) == "t[lr=0.1]"


def test_two_combinations_with_one_id_are_an_error() -> None:
    with pytest.raises(SweepError, match=r"t\[x=1\]"):
        check_unique("t", expand(sweep({"x": [1]}, include=[{"x": "1"}])))


def test_a_matrix_beyond_the_hard_limit_is_refused_before_it_is_made() -> None:
    big = sweep({f"k{i}": list(range(10)) for i in range(7)})  # 10 million
    with pytest.raises(SweepError, match="10,000,000 combinations"):
        expand(big)
    assert HARD_LIMIT < 10**7


# ---------------------------------------------------------------- what a run sweeps


def test_effective_command_line_replaces_a_key_in_place_and_adds_new_ones_last() -> None:
    own = sweep({"lr": [0.1], "model": ["a"]}, seeds=(0, 1))
    over = SweepOverrides(matrix=(("lr", (0.5, 0.6)), ("wd", (1,))), seeds=(3,))
    got = effective(own, None, over)
    assert got is not None
    assert got.matrix == (("lr", (0.5, 0.6)), ("model", ("a",)), ("wd", (1,)))
    assert got.seeds == (3,)


def test_effective_default_seeds_unless_the_job_sets_its_own() -> None:
    assert effective(None, (0, 1), SweepOverrides()) == Sweep(seeds=(0, 1))
    assert effective(sweep(seeds=()), (0, 1), SweepOverrides()) is None  # seeds = [] turns them off
    assert effective(None, None, SweepOverrides()) is None


# ---------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("0.1", 0.1), ("1e-5", 1e-05), ("true", True), ("false", False), ("mlp", "mlp"), ("inf", "inf")],
)
def test_cli_values(text: str, value: Value) -> None:
    got = parse_cli_value(text)
    assert got == value and type(got) is type(value)


def test_matrix_option() -> None:
    assert parse_matrix_option("lr=0.1,0.01") == ("lr", (0.1, 0.01))
    for bad, why in [("lr", "KEY=V1,V2"), ("lr=", "KEY=V1,V2"), ("lr=1,1", "listed twice"), ("seed=1", "seeds")]:
        with pytest.raises(ValueError, match=why):
            parse_matrix_option(bad)


def test_seeds_option() -> None:
    assert parse_seeds_option("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds_option("0,3") == (0, 3)
    assert parse_seeds_option("0-2,7") == (0, 1, 2, 7)
    for bad in ("", "a", "3-1", "1,1", "-1", "0-99999999"):
        with pytest.raises(ValueError):
            parse_seeds_option(bad)


# ---------------------------------------------------------------- file names


@pytest.mark.parametrize(
    "job",
    [
        "train",
        "train[lr=0.1,model=mlp,seed=0]",
        "t[path=a/b,name=x y,weird=%~@.]",
        "t[word=héllo]",
        "t[a-b=1,c_d=2]",
    ],
)
def test_file_stem_is_a_safe_file_name_and_gives_the_id_back(job: str) -> None:
    stem = file_stem(job)
    assert "/" not in stem and "[" not in stem and "]" not in stem and " " not in stem
    assert stem.isascii() and len(stem) <= 200
    assert parse_file_stem(stem) == job


def test_file_stem_examples() -> None:
    assert file_stem("train[lr=0.1,model=mlp,seed=0]") == "train@lr=0.1,model=mlp,seed=0"
    assert file_stem("t[m=a/b]") == "t@m=a%2Fb"
    assert file_stem("t[m=a@b%c~d]") == "t@m=a%40b%25c%7Ed"


def test_a_long_id_is_cut_with_a_hash_and_two_stay_apart() -> None:
    one = swept_id("t", {"name": "x" * 300, "seed": 0})
    two = swept_id("t", {"name": "x" * 300, "seed": 1})
    assert len(file_stem(one)) <= 200 and len(file_stem(two)) <= 200
    assert file_stem(one) != file_stem(two)
    assert parse_file_stem(file_stem(one)) is None  # its id is in summary.json


# ---------------------------------------------------------------- options of a combination


def test_options_as_declared_dashes_or_underscores() -> None:
    options = {"--lr": "value", "--batch-size": "value", "--model_name": "value"}
    args, problems = option_args({"lr": 0.1, "batch_size": 16, "model-name": "x"}, options)
    assert args == ["--lr", "0.1", "--batch-size", "16", "--model_name", "x"]
    assert problems == []


def test_an_undeclared_option_is_named() -> None:
    _args, problems = option_args({"lr": 0.1, "wd": 1}, {"--lr": "value", "--seed": "value"})
    assert problems == ["--wd (sweep key wd) is not declared by its script, which declares --lr, --seed"]


def test_booleans_go_to_switches_as_argparse_takes_them() -> None:
    options = {"--fast": "switch", "--no-aug": "negated", "--bn": "boolean_optional", "--flag": "value"}
    on, _ = option_args({"fast": True, "no-aug": True, "bn": True, "flag": True}, options)
    off, _ = option_args({"fast": False, "no-aug": False, "bn": False, "flag": False}, options)
    assert on == ["--fast", "--bn", "--flag", "true"]
    assert off == ["--no-aug", "--no-bn", "--flag", "false"]
    _args, problems = option_args({"fast": 1}, options)
    assert problems and "--fast is a switch" in problems[0]


def test_options_of_a_script_that_cannot_be_read_go_as_written() -> None:
    args, problems = option_args({"batch_size": 8, "aug": True}, None)
    assert (args, problems) == (["--batch_size", "8", "--aug", "true"], [])


# ---------------------------------------------------------------- the config


def config(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse(text, tmp_path / "aimedres.toml", tmp_path)
    return str(e.value)


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ("matrix = { lr = [] }", "jobs.t.matrix: lr: expected a non-empty list of values"),
        ("matrix = { lr = 0.1 }", "jobs.t.matrix: lr: expected a non-empty list of values"),
        ("matrix = { lr = [[1]] }", "a value must be a number, a string or true/false"),
        ('matrix = { lr = ["a,b"] }', "without , = [ ]"),
        ("matrix = { seed = [1] }", "`seeds = [0, 1, 2]` or `repeat = 3`"),
        ('matrix = { output_dir = ["x"] }', "its own output folder"),
        ('matrix = { "a b" = [1] }', "a key is an option name"),
        ("matrix = { lr = [1] }\nmatrix_exclude = [{ lrr = 1 }]", "lrr: not a matrix key (did you mean 'lr'?)"),
        ("matrix_exclude = [{ lr = 1 }]", "there is no `matrix` to exclude from"),
        ("matrix_include = [{}]", "entry 1 is empty"),
        ("seeds = [0, 1]\nrepeat = 2", "give `seeds` or `repeat`, not both"),
        ("seeds = [0, 0]", "seed 0 is listed twice"),
        ("seeds = [-1]", "a seed is a whole number >= 0"),
        ("repeat = 0", "expected a whole number from 1"),
        ("matrixx = { lr = [1] }", "unknown key (did you mean 'matrix'?)"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, job: str, message: str) -> None:
    text = f'[jobs.t]\nscript = "t.py"\n{job}\n'
    got = config(tmp_path, text)
    assert message in got, got
    assert got.startswith(f"{tmp_path / 'aimedres.toml'}:")


def test_defaults_take_seeds_or_repeat_but_no_matrix(tmp_path: Path) -> None:
    cfg = parse("[defaults]\nrepeat = 3\n", None, tmp_path)
    assert cfg.seeds == (0, 1, 2)
    assert "defaults.matrix: unknown key" in config(tmp_path, "[defaults]\nmatrix = { lr = [1] }\n")


def test_a_ticket_is_one_job(tmp_path: Path) -> None:
    from aimedres_async.plan.config_load import parse_ticket

    with pytest.raises(ConfigError, match="a ticket is one job"):
        parse_ticket('script = "t.py"\nmatrix = { lr = [1] }\n', "tk")


# ---------------------------------------------------------------- a plan (scripts read, not run)


def make(tmp_path: Path, job: str, *flags: str, supervisor: str = "") -> Path:
    lines = ["import argparse", "p = argparse.ArgumentParser()"]
    lines += [f"p.add_argument({f!r})" for f in flags]
    (tmp_path / "t.py").write_text("\n".join(lines) + "\n")
    (tmp_path / "aimedres.toml").write_text(
        f'[supervisor]\n{supervisor}\n[discovery]\nenabled = false\n[jobs.t]\nscript = "t.py"\n{job}\n'
    )
    return tmp_path / "aimedres.toml"


def test_plan_ids_argv_params_and_folders(tmp_path: Path) -> None:
    from aimedres_async.plan.config_load import load

    cfg = load(
        make(
            tmp_path,
            "matrix = { lr = [0.1, 0.2] }\nseeds = [0]\nepochs = 3",
            "--lr",
            "--seed",
            "--epochs",
            "--output-dir",
        )
    )
    specs = plan(cfg).jobs
    assert [s.id for s in specs] == ["t[lr=0.1,seed=0]", "t[lr=0.2,seed=0]"]
    assert specs[0].params == {"lr": 0.1, "seed": 0}
    assert specs[0].argv[2:] == (
        "--output-dir",
        str(tmp_path / "results" / "t@lr=0.1,seed=0"),
        "--epochs",
        "3",
        "--lr",
        "0.1",
        "--seed",
        "0",
    )


def test_a_swept_injected_flag_replaces_the_injected_value(tmp_path: Path) -> None:
    from aimedres_async.plan.config_load import load

    cfg = load(make(tmp_path, "matrix = { epochs = [1, 2] }\nepochs = 9", "--epochs"))
    assert [s.argv[2:] for s in plan(cfg).jobs] == [("--epochs", "1"), ("--epochs", "2")]


def test_plan_selection_by_base_and_full_id(tmp_path: Path) -> None:
    from aimedres_async.plan.config_load import load

    cfg = load(make(tmp_path, "matrix = { lr = [1, 2, 3] }", "--lr"))
    assert [s.id for s in plan(cfg, only=["t"]).jobs] == ["t[lr=1]", "t[lr=2]", "t[lr=3]"]
    assert [s.id for s in plan(cfg, only=["t[lr=2]"]).jobs] == ["t[lr=2]"]
    assert [s.id for s in plan(cfg, exclude=["t[lr=2]"]).jobs] == ["t[lr=1]", "t[lr=3]"]
    with pytest.raises(NoSuchCombination, match=r"no such combination: t\[lr=4\]"):
        plan(cfg, only=["t[lr=4]"])
    with pytest.raises(SelectionError, match=r"unknown job id: u\[lr=1\]"):
        plan(cfg, only=["u[lr=1]"])


def test_plan_max_jobs(tmp_path: Path) -> None:
    from aimedres_async.plan.config_load import load

    cfg = load(make(tmp_path, "matrix = { lr = [1, 2, 3] }", "--lr", supervisor="max_jobs = 2"))
    with pytest.raises(TooManyJobs, match="expand to 3 jobs, more than max_jobs = 2"):
        plan(cfg, sweeps=SweepOverrides(limit=True))
    assert len(plan(cfg, sweeps=SweepOverrides(limit=True, yes=True)).jobs) == 3
    assert len(plan(cfg).jobs) == 3  # `list` and `validate` show any expansion


def test_plan_undeclared_option_names_job_and_option(tmp_path: Path) -> None:
    from aimedres_async.plan.config_load import load

    cfg = load(make(tmp_path, "matrix = { lr = [1, 2] }\nrepeat = 2", "--lr"))
    with pytest.raises(ConfigError) as e:
        plan(cfg)
    assert e.value.problems == [
        f"{tmp_path / 'aimedres.toml'}: job t: --seed (sweep key seed) is not declared by its script, which declares --lr"
    ]


def test_a_command_job_gets_its_parameters_as_written(tmp_path: Path) -> None:
    from aimedres_async.plan.config_load import load

    (tmp_path / "aimedres.toml").write_text(
        '[discovery]\nenabled = false\n[jobs.r]\ncommand = ["Rscript", "fit.R"]\n'
        "matrix = { batch_size = [8], aug = [true] }\nseeds = [1]\n"
    )
    (spec,) = plan(load(tmp_path / "aimedres.toml")).jobs
    assert spec.id == "r[batch_size=8,aug=true,seed=1]"
    assert spec.argv == ("Rscript", "fit.R", "--batch_size", "8", "--aug", "true", "--seed", "1")


def test_the_step_summary_escapes_a_pipe_in_a_swept_id() -> None:
    from aimedres_async.report.summary import markdown_table

    job = {"id": "t[m=a|b]", "status": "succeeded", "attempts": 1, "duration_s": 1.0, "metrics": None}
    row = markdown_table("run", [job]).strip().splitlines()[-1]
    assert row.startswith("| t[m=a\\|b] |") and row.count(" | ") == 4


def test_ray_submission_names_stay_apart_once_lowercased() -> None:
    from aimedres_async.engine.executors.ray import _submission_name

    assert _submission_name("train") == "train"
    escaped = _submission_name("t[m=a/b,seed=0]")  # %2F has capitals: a hash keeps it apart
    assert escaped.startswith("t@m=a%2Fb,seed=0-") and len(escaped) == len("t@m=a%2Fb,seed=0-") + 8
    upper, lower = _submission_name("t[m=A]").lower(), _submission_name("t[m=a]").lower()
    assert upper != lower and lower == "t@m=a"
