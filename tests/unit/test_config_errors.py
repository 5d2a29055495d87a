"""Every kind of config problem, read in-process: each is one line naming the file, the key path and
the line (for syntax, line and column) (SPEC §3); durations, sizes and defaults parse as documented."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aimedres_async.plan.config import Backoff, Config, builtin
from aimedres_async.plan.config_errors import ConfigError, suggest
from aimedres_async.plan.config_load import find_config, load, parse, parse_ticket, read_regular_file
from aimedres_async.plan.units import MAX_INT, format_duration, format_size, parse_duration, parse_size

NAME = Path("proj/aimedres.toml")
MiB = 1024**2
GiB = 1024**3


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, NAME, Path("/base"))
    found = info.value.problems
    assert found, "a ConfigError carries at least one problem"
    for p in found:
        assert "\n" not in p, f"one line per problem: {p!r}"
        assert p.startswith(f"{NAME}"), f"the file comes first: {p!r}"
    assert str(info.value) == "\n".join(found)
    return found


def problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def ok(text: str) -> Config:
    return parse(text, NAME, Path("/base"))


# ---------------------------------------------------------------- TOML syntax


def test_syntax_error_names_line_and_column() -> None:
    p = problem("[supervisor]\nparallel = true\n[jobs.a\nscript = 'x'\n")
    assert p.startswith(f"{NAME}:3:8: TOML syntax error: ")
    assert "(at line" not in p  # the position is said once, up front


def test_syntax_error_at_end_of_file_points_past_the_last_character() -> None:
    p = problem("[supervisor]\nparallel = ")
    assert p == f"{NAME}:2:12: TOML syntax error: Invalid value (at end of file)"


def test_duplicate_job_table_is_a_syntax_error_at_the_second() -> None:
    p = problem("[jobs.a]\nscript = 'x'\n[jobs.a]\nscript = 'y'\n")
    assert p.startswith(f"{NAME}:3:")
    assert "Cannot declare ('jobs', 'a') twice" in p


def test_duplicate_key_is_a_syntax_error() -> None:
    p = problem("[supervisor]\nparallel = true\nparallel = false\n")
    assert p.startswith(f"{NAME}:3:")
    assert "TOML syntax error" in p


def test_ticket_syntax_error_names_the_ticket() -> None:
    with pytest.raises(ConfigError) as info:
        parse_ticket("job = ", "t1", name="incoming/t1.toml")
    assert info.value.problems[0].startswith("incoming/t1.toml: TOML syntax error: ")


# ---------------------------------------------------------------- unknown keys and tables


def test_unknown_key_suggests_the_close_one() -> None:
    assert problem("[supervisor]\nmax_worker = 2\n") == (
        f"{NAME}:2: supervisor.max_worker: unknown key (did you mean 'max_workers'?)"
    )


def test_unknown_key_without_a_close_one_lists_what_is_allowed() -> None:
    p = problem("[discovery]\nzzz = 1\n")
    assert p == f"{NAME}:2: discovery.zzz: unknown key (allowed: enabled, exclude, include, roots)"


def test_unknown_key_in_a_job_and_in_an_inline_table() -> None:
    found = problems("[jobs.a]\nscript = 'x'\nepoch = 3\nbackoff = { inital = '1s' }\n")
    assert found == [
        f"{NAME}:3: jobs.a.epoch: unknown key (did you mean 'epochs'?)",
        f"{NAME}:4: jobs.a.backoff.inital: unknown key (did you mean 'initial'?)",
    ]


def test_unknown_table_suggests_the_close_one() -> None:
    assert (
        problem("[supervisr]\nparallel = true\n") == f"{NAME}:1: supervisr: unknown table (did you mean 'supervisor'?)"
    )


def test_a_stray_top_level_setting_is_told_its_table() -> None:
    assert problem("roots = ['src']\n") == (
        f"{NAME}:1: roots: unknown top-level key; settings go in tables like [supervisor]"
        " (it belongs under [discovery])"
    )


def test_suggest_alone() -> None:
    assert suggest("paralel", {"parallel": None, "python": None}) == " (did you mean 'parallel'?)"
    assert suggest("x", {"b": None, "a": None}) == " (allowed: a, b)"


def test_ticket_unknown_key_has_no_table_prefix() -> None:
    with pytest.raises(ConfigError) as info:
        parse_ticket('job = "a"\nepoch = 3\n', "t1", name="t1.toml")
    assert info.value.problems == ["t1.toml:2: epoch: unknown key (did you mean 'epochs'?)"]


# ---------------------------------------------------------------- wrong types


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[supervisor]\nparallel = 'yes'\n", "supervisor.parallel: expected true or false"),
        ("[supervisor]\nlogs_dir = 3\n", "supervisor.logs_dir: expected a string"),
        ("[discovery]\nroots = 'src'\n", "discovery.roots: expected a list of strings"),
        ("[defaults]\nepochs = 'ten'\n", "defaults.epochs: expected an integer"),
        ("[defaults]\nepochs = true\n", "defaults.epochs: expected an integer"),
        ("[defaults]\nbackoff = 3\n", "defaults.backoff: expected a table"),
        ("[defaults]\nenv = { A = true }\n", "defaults.env: A: expected a string value"),
        ("[ray]\nruntime_env = 'x'\n", "ray.runtime_env: expected a table"),
        ("[supervisor]\nstop_signal = 'SIGFOO'\n", "supervisor.stop_signal: expected one of 'SIGINT'"),
        ("[supervisor]\nexecutor = 'k8s'\n", "supervisor.executor: expected one of 'local', 'ray', 'slurm'"),
    ],
)
def test_wrong_type_names_the_key_and_what_it_expected(body: str, expected: str) -> None:
    p = problem(body)
    assert p.startswith(f"{NAME}:2: {expected}"), p


def test_jobs_must_be_tables() -> None:
    assert problem("jobs = 3\n") == f"{NAME}:1: jobs: expected tables like [jobs.<id>]"


def test_a_nul_character_is_refused_in_a_string() -> None:
    assert problem('[supervisor]\nlogs_dir = "a\\u0000b"\n').endswith(
        "supervisor.logs_dir: must not contain a NUL character"
    )


def test_bad_environment_variable_name() -> None:
    p = problem('[defaults]\nenv = { "1A" = "x" }\n')
    assert p.endswith("defaults.env: '1A' is not a valid environment variable name")


# ---------------------------------------------------------------- out of range


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[supervisor]\nmax_workers = 0\n", 'supervisor.max_workers: expected an integer from 1 to 100000, or "auto"'),
        ("[supervisor]\nmax_workers = 100001\n", "supervisor.max_workers: expected an integer from 1 to 100000"),
        ("[defaults]\nepochs = 0\n", "defaults.epochs: must be >= 1"),
        ("[defaults]\nretries = -1\n", "defaults.retries: must be >= 0"),
        (f"[defaults]\nfolds = {MAX_INT + 1}\n", f"defaults.folds: must be <= {MAX_INT}"),
        ("[defaults]\nbackoff = { factor = 0.5 }\n", "defaults.backoff.factor: must be a finite number >= 1"),
        ("[defaults]\nbackoff = { jitter = 2 }\n", "defaults.backoff.jitter: must be between 0 and 1"),
        ("[defaults]\nresources = { gpus = 1.5 }\n", "defaults.resources.gpus: a fraction of a GPU must be below 1"),
        ("[defaults]\nresources = { cpus = inf }\n", "defaults.resources.cpus: must be a finite number >= 0"),
        ("[supervisor]\nmax_line_bytes = 10\n", "supervisor.max_line_bytes: must be at least 1.0KiB"),
        ("[supervisor]\ngpus = 2000\n", "supervisor.gpus: 2000 GPUs? at most 1024 (did you mean a list of ids?)"),
        ("[supervisor]\ngpus = [0, '0']\n", "supervisor.gpus: a GPU is listed twice"),
        ("[supervisor]\ncpus = 0\n", 'supervisor.cpus: must be > 0, or "auto"'),
        ("[slurm]\npoll_interval = '50ms'\n", "slurm.poll_interval: must be at least 100ms"),
    ],
)
def test_out_of_range_names_the_bound(body: str, expected: str) -> None:
    p = problem(body)
    assert p.startswith(f"{NAME}:2: {expected}"), p


def test_a_redaction_pattern_that_matches_nothing_is_refused() -> None:
    p = problem("[logging]\nredact = ['a*']\n")
    assert p.endswith("logging.redact: 'a*' matches the empty string: it would redact between every character")


def test_a_metrics_file_outside_the_output_folder_is_refused() -> None:
    p = problem("[defaults]\nmetrics_file = '../m.json'\n")
    assert "defaults.metrics_file: must be a path or glob inside the job's output folder" in p


# ---------------------------------------------------------------- durations and sizes in a config


def test_bad_duration_string_in_a_config() -> None:
    assert problem("[defaults]\ntimeout = '6 hours'\n") == (
        f'{NAME}:2: defaults.timeout: \'6 hours\' is not a duration (use e.g. "500ms", "10s", "5m", "2h")'
    )


def test_bad_size_string_in_a_config() -> None:
    assert problem("[defaults]\nresources = { memory = 'lots' }\n") == (
        f'{NAME}:2: defaults.resources.memory: \'lots\' is not a size (use e.g. "512MiB", "8GiB")'
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("10s", 10.0), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0), ("1h30m", 5400.0), ("1.5h", 5400.0),
     (" 2m 30s ", 150.0), ("90", 90.0), (7, 7.0), (2.5, 2.5), ("10S", 10.0)],
)  # fmt: skip
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "10x", "5m garbage", "-5s", "1" * 65, True, None, [1], float("nan"), -1])
def test_bad_durations_raise(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "n"),
    [("512MiB", 512 * MiB), ("8GiB", 8 * GiB), ("1.5G", int(1.5 * GiB)), ("1kb", 1000), ("2 K", 2048), (4096, 4096),
     ("100", 100), ("1TiB", 1024**4), ("7b", 7)],
)  # fmt: skip
def test_sizes_parse(text: object, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["lots", "8 GB?", "-1", -1, True, 1.5, "9" * 400 + "G", f"{MAX_INT + 1}"])
def test_bad_sizes_raise(text: object) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_formatting_sizes_and_durations() -> None:
    assert [format_size(n) for n in (512, 2048, 3 * MiB, 8 * GiB, 2 * 1024**4)] == [
        "512B",
        "2.0KiB",
        "3.0MiB",
        "8.0GiB",
        "2.0TiB",
    ]
    assert [format_duration(s) for s in (1.25, 61, 3600 + 120)] == ["1.2s", "1m01s", "1h02m"]


# ---------------------------------------------------------------- job ids and commands


@pytest.mark.parametrize("job_id", ["ALS", "-a", "_a", "a b", "a" * 65, "é"])
def test_bad_job_id(job_id: str) -> None:
    p = problem(f'[jobs."{job_id}"]\nscript = "x.py"\n')
    assert p.endswith("invalid job id (use lowercase letters, digits, '_', '.', '-'; at most 64)")
    assert f"jobs.{job_id}:" in p


def test_a_key_with_control_characters_is_shown_quoted() -> None:
    p = problem('[jobs."a\\nb"]\nscript = "x.py"\n')
    assert p.startswith(f'{NAME}: jobs."a\\nb": invalid job id')


def test_good_job_ids() -> None:
    cfg = ok('[jobs.a]\nscript = "x.py"\n[jobs."b.c-d_9"]\ncommand = ["true"]\n')
    assert [j.id for j in cfg.jobs] == ["a", "b.c-d_9"]


def test_command_and_script_together() -> None:
    assert (
        problem("[jobs.a]\nscript = 'x'\ncommand = ['y']\n")
        == f"{NAME}:1: jobs.a: give either `script` or `command`, not both"
    )


def test_neither_command_nor_script() -> None:
    p = problem("[jobs.a]\nepochs = 3\n")
    assert p == f'{NAME}:1: jobs.a: needs `script = "path/to/train.py"` or `command = [...]`'


def test_empty_command_and_empty_script() -> None:
    assert problem("[jobs.a]\ncommand = []\n") == f"{NAME}:2: jobs.a.command: must not be empty"
    assert problem("[jobs.a]\nscript = ' '\n") == f"{NAME}:2: jobs.a.script: must not be empty"


def test_a_command_job_has_no_interpreter() -> None:
    p = problem("[jobs.a]\ncommand = ['x']\npython = 'p'\n")
    assert p == f"{NAME}:3: jobs.a.python: only a `script` job has an interpreter; a `command` names its own"


def test_ticket_names_a_job_or_gives_a_command_not_both() -> None:
    with pytest.raises(ConfigError) as info:
        parse_ticket('job = "a"\nscript = "x.py"\nafter = ["t1"]\n', "t1", name="t1.toml")
    assert info.value.problems == [
        "t1.toml:3: after: a ticket cannot wait for itself",
        "t1.toml:1: job: a ticket names a configured job or gives `script`/`command`, not both",
        "t1.toml:2: script: unknown key (allowed: args, backoff, batch, env, epochs, fail_on, folds, metrics_file,"
        " metrics_keys, optional, resources, retries, sample, stall_timeout, timeout)",
    ]


# ---------------------------------------------------------------- every problem at once


def test_every_problem_is_reported_at_once_in_file_order_of_tables() -> None:
    found = problems("[supervisor]\nparallel = 1\nmax_workers = 0\n[jobs.a]\nepochs = 'x'\nscript = 'a.py'\n")
    assert found == [
        f"{NAME}:2: supervisor.parallel: expected true or false",
        f'{NAME}:3: supervisor.max_workers: expected an integer from 1 to 100000, or "auto"',
        f"{NAME}:5: jobs.a.epochs: expected an integer",
    ]


def test_a_key_inside_an_inline_table_points_at_its_line() -> None:
    p = problem("[defaults]\nepochs = 3\nbackoff = { initial = '1s', max = 'x' }\n")
    assert p.startswith(f"{NAME}:3: defaults.backoff.max: ")


def test_a_built_in_config_has_no_file_name() -> None:
    with pytest.raises(ConfigError) as info:
        parse("[supervisor]\nparallel = 1\n", None, Path("/base"))
    assert info.value.problems == ["<built-in>:2: supervisor.parallel: expected true or false"]


# ---------------------------------------------------------------- defaults


def test_built_in_defaults() -> None:
    cfg = builtin(Path("/base"))
    assert cfg.path is None
    assert cfg.supervisor.max_workers is None
    assert cfg.supervisor.stop_signal == "SIGINT"
    assert cfg.supervisor.grace_period == 10.0
    assert cfg.defaults.retries == 0
    assert cfg.defaults.backoff == Backoff(initial=1.0, factor=2.0, max=300.0, jitter=0.1)
    assert cfg.defaults.optional is False
    assert cfg.discovery.include == ("train_*.py",)
    assert cfg.resolve("logs") == Path("/base/logs")


def test_an_empty_file_is_the_built_in_defaults_with_a_path() -> None:
    cfg = ok("")
    assert cfg.path == NAME
    assert cfg.supervisor == builtin(Path("/base")).supervisor
    assert cfg.defaults == builtin(Path("/base")).defaults


def test_a_defaults_table_keeps_the_built_ins_it_does_not_set() -> None:
    cfg = ok("[defaults]\nretries = 3\ntimeout = '6h'\n")
    assert cfg.defaults.retries == 3
    assert cfg.defaults.timeout == 6 * 3600
    assert cfg.defaults.backoff == Backoff()
    assert cfg.defaults.optional is False


def test_a_job_sets_only_what_it_names() -> None:
    cfg = ok("[jobs.a]\nscript = 'a.py'\nepochs = 80\nresources = { memory = '8GiB', gpus = 0.5 }\n")
    (job,) = cfg.jobs
    assert job.settings.epochs == 80
    assert job.settings.retries is None  # inherits [defaults]
    assert job.settings.resources is not None
    assert (job.settings.resources.memory, job.settings.resources.gpus) == (8 * GiB, 0.5)


def test_auto_capacity_is_none() -> None:
    sup = ok("[supervisor]\nmax_workers = 'auto'\ngpus = 'auto'\nmemory = 'auto'\ncpus = 'auto'\n").supervisor
    assert (sup.max_workers, sup.gpus, sup.memory, sup.cpus) == (None, None, None, None)
    assert ok("[supervisor]\ngpus = 2\n").supervisor.gpus == ("0", "1")


# ---------------------------------------------------------------- reading the file


def test_load_names_the_path_of_an_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load(missing)
    assert info.value.problems == [f"{missing}: cannot read config: No such file or directory"]


def test_load_refuses_a_fifo_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "aimedres.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as info:
        load(fifo)
    assert info.value.problems == [f"{fifo}: cannot read config: not a regular file"]


def test_load_refuses_text_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "aimedres.toml"
    path.write_bytes(b"[supervisor]\nlogs_dir = '\xff'\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.problems == [f"{path}: config is not UTF-8 text (byte 25)"]


def test_load_accepts_a_byte_order_mark_and_bases_paths_on_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "aimedres.toml"
    path.write_bytes(b"\xef\xbb\xbf[supervisor]\nparallel = true\n")
    cfg = load(path)
    assert cfg.supervisor.parallel is True
    assert cfg.base_dir == tmp_path.resolve()


def test_a_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"x" * 2049)
    assert read_regular_file(path, 2049) == b"x" * 2049
    with pytest.raises(ValueError, match=r"larger than 2\.0KiB"):
        read_regular_file(path, 2048)


def test_find_config_stops_at_the_repository_root(tmp_path: Path) -> None:
    (tmp_path / "aimedres.toml").write_text("")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    deep = repo / "a" / "b"
    deep.mkdir(parents=True)
    assert find_config(deep) == (None, repo)
    (repo / "a" / "aimedres.toml").write_text("")
    assert find_config(deep) == (repo / "a" / "aimedres.toml", repo / "a")
