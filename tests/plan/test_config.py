"""config.py: durations, sizes, every table parsed into frozen dataclasses, and every kind of error
reported as one line naming the file, the key path and the line (SPEC §3)."""

from __future__ import annotations

import dataclasses
import re
import signal
from pathlib import Path

import pytest

from aimedres_async.plan.config import (
    Backoff,
    Config,
    DiscoveryConfig,
    JobConfig,
    JobSettings,
    Resources,
    SupervisorConfig,
    builtin,
)
from aimedres_async.plan.config_errors import ConfigError
from aimedres_async.plan.config_load import load
from aimedres_async.plan.units import parse_duration, parse_size

MiB = 1024**2
GiB = 1024**3


def write(tmp_path: Path, body: str | bytes, name: str = "aimedres.toml") -> Path:
    path = tmp_path / name
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(body, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(path)
    problems = info.value.problems
    assert problems, "a ConfigError must carry at least one problem"
    for p in problems:
        assert "\n" not in p, f"a problem must be one line: {p!r}"
        assert p.startswith(str(path)), f"a problem must name the file first: {p!r}"
    return problems


def only_problem(path: Path) -> str:
    problems = problems_of(path)
    assert len(problems) == 1, problems
    return problems[0]


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1.5h", 5400.0),
        ("2m30s500ms", 150.5),
        (" 10s ", 10.0),
        ("90", 90.0),
        ("0", 0.0),
        (0, 0.0),
        (7, 7.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration_accepts(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "10x",
        "abc",
        "s",
        "10s garbage",
        "garbage 10s",
        "1h30",
        "-5s",
        "-1",
        -1,
        -0.5,
        "5 minutes",
        "10sec",
        "nan",
        "inf",
        float("inf"),
        float("nan"),
        True,
        None,
        [10],
        {"s": 1},
    ],
)
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MiB", 512 * MiB),
        ("8GiB", 8 * GiB),
        ("8 GiB", 8 * GiB),
        ("1.5G", int(1.5 * GiB)),
        ("1KiB", 1024),
        ("1KB", 1000),
        ("1k", 1024),
        ("2TiB", 2 * 1024**4),
        ("100", 100),
        ("100B", 100),
        (1048576, 1048576),
        (0, 0),
    ],
)
def test_parse_size_accepts(text: object, size: int) -> None:
    assert parse_size(text) == size
    assert isinstance(parse_size(text), int)


@pytest.mark.parametrize(
    "text", ["", "lots", "-1", -1, "5XB", "5ib", "5i", "1.5.5G", "G", "8 GiB extra", 1.5, True, None, ["1G"]]
)
def test_parse_size_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


# ---------------------------------------------------------------- a complete config

FULL = """\
[supervisor]
parallel = true
max_workers = 6
logs_dir = "my-logs"
output_dir = "out"
python = "/opt/py/bin/python3"
stop_signal = "SIGTERM"
grace_period = "30s"
spool_dir = "queue"
executor = "local"
max_line_bytes = "2MiB"

[discovery]
enabled = false
roots = ["a", "b/c"]
include = ["train_*.py", "fit_*.py"]
exclude = ["**/legacy/**"]

[defaults]
epochs = 10
folds = 5
sample = 1000
batch = 64
retries = 2
backoff = { initial = "1s", factor = 3.0, max = "5m", jitter = 0.25 }
timeout = "6h"
env = { PYTHONUNBUFFERED = "1", SEED = 7 }
optional = false
resources = { gpus = 1, memory = "512MiB", cpus = 2 }

[jobs.als]
script = "src/train_als.py"
args = ["--dataset-choice", "als-progression"]
epochs = 80
folds = 3
sample = 50
batch = 16
retries = 4
backoff = { initial = "500ms", factor = 1.5, max = "1m", jitter = 0 }
timeout = "1h30m"
env = { CUDA_LAUNCH_BLOCKING = "1" }
optional = true
resources = { gpus = 0.5, memory = "8GiB", cpus = 4 }

[jobs."tool.v2-x"]
command = ["/bin/echo", "hi"]
args = ["there"]
"""


def test_every_key_of_every_table_is_parsed(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    cfg = load(path)

    assert cfg.path == path
    assert cfg.base_dir == tmp_path.resolve()
    assert cfg.supervisor == SupervisorConfig(
        parallel=True,
        max_workers=6,
        logs_dir="my-logs",
        output_dir="out",
        python="/opt/py/bin/python3",
        stop_signal="SIGTERM",
        grace_period=30.0,
        spool_dir="queue",
        executor="local",
        max_line_bytes=2 * MiB,
    )
    assert cfg.discovery == DiscoveryConfig(
        enabled=False, roots=("a", "b/c"), include=("train_*.py", "fit_*.py"), exclude=("**/legacy/**",)
    )
    assert cfg.defaults == JobSettings(
        epochs=10,
        folds=5,
        sample=1000,
        batch=64,
        retries=2,
        backoff=Backoff(initial=1.0, factor=3.0, max=300.0, jitter=0.25),
        timeout=21600.0,
        env={"PYTHONUNBUFFERED": "1", "SEED": "7"},
        optional=False,
        resources=Resources(gpus=1.0, memory=512 * MiB, cpus=2.0),
    )
    als_settings = JobSettings(
        epochs=80,
        folds=3,
        sample=50,
        batch=16,
        retries=4,
        backoff=Backoff(initial=0.5, factor=1.5, max=60.0, jitter=0.0),
        timeout=5400.0,
        env={"CUDA_LAUNCH_BLOCKING": "1"},
        optional=True,
        resources=Resources(gpus=0.5, memory=8 * GiB, cpus=4.0),
    )
    assert cfg.jobs == (
        JobConfig(
            id="als",
            script="src/train_als.py",
            command=None,
            args=("--dataset-choice", "als-progression"),
            settings=als_settings,
        ),
        JobConfig(id="tool.v2-x", script=None, command=("/bin/echo", "hi"), args=("there",)),
    )
    assert cfg.stop_signum is signal.SIGTERM
    assert cfg.resolve("out") == tmp_path.resolve() / "out"


def test_parsed_config_is_frozen(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, FULL))
    for obj, attr in [
        (cfg, "jobs"),
        (cfg.supervisor, "max_workers"),
        (cfg.discovery, "roots"),
        (cfg.defaults, "epochs"),
        (cfg.jobs[0], "script"),
        (cfg.jobs[0].settings, "epochs"),
        (cfg.defaults.backoff, "jitter"),
        (cfg.defaults.resources, "gpus"),
    ]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, attr, None)


def test_max_workers_auto_means_none(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, '[supervisor]\nmax_workers = "auto"\n'))
    assert cfg.supervisor.max_workers is None


def test_empty_file_gives_builtin_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "# nothing here\n"))
    assert cfg.path == tmp_path / "aimedres.toml"
    assert cfg.supervisor == SupervisorConfig()
    assert cfg.discovery == DiscoveryConfig()
    assert cfg.defaults == builtin(tmp_path).defaults
    assert cfg.jobs == ()


def test_builtin_defaults() -> None:
    cfg = builtin(Path("/some/where"))
    assert cfg.path is None
    assert cfg.base_dir == Path("/some/where")
    assert cfg.discovery.enabled is True
    assert cfg.discovery.roots == (".",)
    assert cfg.discovery.include == ("train_*.py",)
    assert cfg.defaults.retries == 0
    assert cfg.defaults.optional is False
    assert cfg.defaults.backoff == Backoff()
    assert cfg.jobs == ()


def test_defaults_table_is_merged_over_builtin_defaults(tmp_path: Path) -> None:
    """Keys absent from [defaults] keep their built-in values; jobs keep only what they set."""
    cfg = load(write(tmp_path, '[defaults]\nepochs = 12\ntimeout = "2h"\n\n[jobs.a]\nscript = "a.py"\nfolds = 2\n'))
    builtin_defaults = Config(path=None, base_dir=tmp_path).defaults
    assert cfg.defaults == dataclasses.replace(builtin_defaults, epochs=12, timeout=7200.0)
    assert cfg.defaults.retries == 0 and cfg.defaults.optional is False and cfg.defaults.backoff == Backoff()
    # the job records only its own value; inheritance is resolved when its command is built
    assert cfg.jobs[0].settings == JobSettings(folds=2)


def test_defaults_timeout_zero_means_no_limit(tmp_path: Path) -> None:
    from aimedres_async.plan.jobs import plan

    cfg = load(write(tmp_path, '[defaults]\ntimeout = 0\n[discovery]\nenabled = false\n[jobs.a]\ncommand = ["true"]\n'))
    assert cfg.defaults.timeout == 0  # kept as "set to no limit", so it can beat an inherited value
    assert plan(cfg).jobs[0].timeout is None


# ---------------------------------------------------------------- TOML syntax


def test_toml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "[supervisor]\nparallel = tru\n")
    problem = only_problem(path)
    assert problem.startswith(f"{path}:2:12: TOML syntax error")
    assert "Traceback" not in problem


def test_toml_syntax_error_duplicate_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[supervisor]\nparallel = true\nparallel = false\n")
    assert re.match(rf"{re.escape(str(path))}:3:\d+: TOML syntax error", only_problem(path))


def test_toml_syntax_error_at_end_of_document_still_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[discovery]\nroots = ["a",\n')
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: TOML syntax error", only_problem(path))


# ---------------------------------------------------------------- unknown keys


def test_typo_key_names_file_keypath_line_and_suggests_the_right_key(tmp_path: Path) -> None:
    path = write(tmp_path, "# my config\n[supervisor]\nparallel = true\nmax_wokers = 4\n")
    problem = only_problem(path)
    assert problem.startswith(f"{path}:4: ")
    assert "supervisor.max_wokers" in problem
    assert "unknown key" in problem
    assert "'max_workers'" in problem


@pytest.mark.parametrize(
    ("body", "keypath", "line", "suggestion"),
    [
        ('[jobs.als]\nscript = "a.py"\nepocs = 3\n', "jobs.als.epocs", 3, "epochs"),
        ("[discovery]\nexlude = []\n", "discovery.exlude", 2, "exclude"),
        ('\n[defaults]\nbackoff = { initial = "1s", jiter = 0.1 }\n', "defaults.backoff.jiter", 3, "jitter"),
        ('[jobs.a]\nscript = "a.py"\nresources = { gpu = 1 }\n', "jobs.a.resources.gpu", 3, "gpus"),
        ("[supervisr]\nparallel = true\n", "supervisr", 1, "supervisor"),
    ],
)
def test_unknown_keys_everywhere(tmp_path: Path, body: str, keypath: str, line: int, suggestion: str) -> None:
    path = write(tmp_path, body)
    problem = only_problem(path)
    assert problem.startswith(f"{path}:{line}: {keypath}: "), problem
    assert f"'{suggestion}'" in problem


def test_unknown_key_with_no_close_match_lists_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "[discovery]\nzzzzz = 1\n")
    problem = only_problem(path)
    assert "discovery.zzzzz" in problem
    for key in ("enabled", "roots", "include", "exclude"):
        assert key in problem


def test_problem_in_job_with_dotted_id_has_line_number(tmp_path: Path) -> None:
    path = write(tmp_path, '[jobs."bert.v2"]\nscript = "a.py"\nepocs = 3\n')
    assert only_problem(path).startswith(f"{path}:3: jobs.bert.v2.epocs: ")


# ---------------------------------------------------------------- wrong types and ranges


@pytest.mark.parametrize(
    ("body", "keypath", "line", "fragment"),
    [
        ('[supervisor]\nparallel = "yes"\n', "supervisor.parallel", 2, "true or false"),
        ('[supervisor]\nmax_workers = "many"\n', "supervisor.max_workers", 2, "auto"),
        ("[supervisor]\nmax_workers = 2.5\n", "supervisor.max_workers", 2, "integer"),
        ("[supervisor]\nmax_workers = true\n", "supervisor.max_workers", 2, "integer"),
        ("[supervisor]\nlogs_dir = 3\n", "supervisor.logs_dir", 2, "string"),
        ('[supervisor]\nstop_signal = "SIGFOO"\n', "supervisor.stop_signal", 2, "SIGTERM"),
        ('[supervisor]\ngrace_period = "soon"\n', "supervisor.grace_period", 2, "duration"),
        ('[supervisor]\nmax_line_bytes = "lots"\n', "supervisor.max_line_bytes", 2, "size"),
        ('[discovery]\nroots = "examples"\n', "discovery.roots", 2, "list of strings"),
        ("[discovery]\ninclude = [1, 2]\n", "discovery.include", 2, "list of strings"),
        ('[discovery]\nenabled = "no"\n', "discovery.enabled", 2, "true or false"),
        ("[defaults]\nepochs = 2.5\n", "defaults.epochs", 2, "integer"),
        ('[defaults]\nfolds = "5"\n', "defaults.folds", 2, "integer"),
        ("[defaults]\nenv = { A = true }\n", "defaults.env", 2, "A"),
        ('[defaults]\nenv = { "1BAD" = "x" }\n', "defaults.env", 2, "1BAD"),
        ('[defaults]\nenv = "A=1"\n', "defaults.env", 2, "table"),
        ('[defaults]\ntimeout = "soon"\n', "defaults.timeout", 2, "duration"),
        ("[defaults]\nbackoff = 3\n", "defaults.backoff", 2, "table"),
        ('[defaults]\nresources = { memory = "lots" }\n', "defaults.resources.memory", 2, "size"),
        ('[jobs.a]\nscript = "a.py"\nargs = "--x"\n', "jobs.a.args", 3, "list of strings"),
        ("[jobs.a]\nscript = 3\n", "jobs.a.script", 2, "string"),
        ('[jobs.a]\nscript = "a.py"\noptional = 1\n', "jobs.a.optional", 3, "true or false"),
        ("[jobs.a]\ncommand = []\n", "jobs.a.command", 2, "empty"),
        ("supervisor = 3\n", "supervisor", 1, "table"),
        ("jobs = 3\n", "jobs", 1, "[jobs.<id>]"),
    ],
)
def test_wrong_types_name_keypath_and_line(tmp_path: Path, body: str, keypath: str, line: int, fragment: str) -> None:
    path = write(tmp_path, body)
    problem = only_problem(path)
    assert problem.startswith(f"{path}:{line}: {keypath}: "), problem
    assert fragment in problem


@pytest.mark.parametrize(
    ("body", "keypath", "line", "fragment"),
    [
        ("[supervisor]\nmax_workers = 0\n", "supervisor.max_workers", 2, "from 1 to 100000"),
        ("[supervisor]\nmax_workers = -3\n", "supervisor.max_workers", 2, "from 1 to 100000"),
        ("[supervisor]\nmax_workers = 100001\n", "supervisor.max_workers", 2, "from 1 to 100000"),
        ("[defaults]\nretries = 99999999999999999999\n", "defaults.retries", 2, "<= 9223372036854775807"),
        ("[supervisor]\ngrace_period = -1\n", "supervisor.grace_period", 2, ">= 0"),
        ("[supervisor]\nmax_line_bytes = 10\n", "supervisor.max_line_bytes", 2, "at least"),
        ("[defaults]\nretries = -1\n", "defaults.retries", 2, ">= 0"),
        ("[defaults]\nepochs = 0\n", "defaults.epochs", 2, ">= 1"),
        ("[defaults]\nbackoff = { jitter = 2 }\n", "defaults.backoff.jitter", 2, "between 0 and 1"),
        ("[defaults]\nbackoff = { jitter = -0.1 }\n", "defaults.backoff.jitter", 2, ">= 0"),
        ("[defaults]\nbackoff = { factor = 0.5 }\n", "defaults.backoff.factor", 2, ">= 1"),
        ("[defaults]\nbackoff = { factor = inf }\n", "defaults.backoff.factor", 2, "finite"),
        ("[defaults]\nresources = { gpus = -1 }\n", "defaults.resources.gpus", 2, ">= 0"),
        ('[jobs.a]\nscript = "a.py"\n\nretries = -1\n', "jobs.a.retries", 4, ">= 0"),
        ('[jobs.a]\nscript = "a.py"\nbatch = 0\n', "jobs.a.batch", 3, ">= 1"),
    ],
)
def test_out_of_range_values(tmp_path: Path, body: str, keypath: str, line: int, fragment: str) -> None:
    path = write(tmp_path, body)
    problem = only_problem(path)
    assert problem.startswith(f"{path}:{line}: {keypath}: "), problem
    assert fragment in problem


def test_minimum_values_are_accepted(tmp_path: Path) -> None:
    body = (
        "[supervisor]\nmax_workers = 1\ngrace_period = 0\nmax_line_bytes = 1024\n"
        "[defaults]\nretries = 0\nepochs = 1\nbackoff = { jitter = 1, factor = 1 }\n"
    )
    cfg = load(write(tmp_path, body))
    assert cfg.supervisor.max_workers == 1
    assert cfg.supervisor.grace_period == 0.0
    assert cfg.supervisor.max_line_bytes == 1024
    assert cfg.defaults.retries == 0 and cfg.defaults.epochs == 1
    assert cfg.defaults.backoff == Backoff(jitter=1.0, factor=1.0)


# ---------------------------------------------------------------- jobs


@pytest.mark.parametrize("job_id", ["Bad Id", "UPPER", "-lead", "_lead", ".lead", "a/b", "a" * 65, "caf\u00e9"])
def test_invalid_job_id_is_rejected(tmp_path: Path, job_id: str) -> None:
    path = write(tmp_path, f'\n[jobs."{job_id}"]\nscript = "a.py"\n')
    problem = only_problem(path)
    assert f"jobs.{job_id}" in problem
    assert "invalid job id" in problem
    if "." not in job_id and "/" not in job_id:
        assert problem.startswith(f"{path}:2: ")


@pytest.mark.parametrize("job_id", ["a", "0", "als", "x.y-z_1", "a" * 64])
def test_valid_job_ids_are_accepted(tmp_path: Path, job_id: str) -> None:
    cfg = load(write(tmp_path, f'[jobs."{job_id}"]\nscript = "a.py"\n'))
    assert [j.id for j in cfg.jobs] == [job_id]


def test_job_needs_script_or_command(tmp_path: Path) -> None:
    path = write(tmp_path, "[jobs.als]\nepochs = 3\n")
    problem = only_problem(path)
    assert problem.startswith(f"{path}:1: jobs.als: ")
    assert "script" in problem and "command" in problem


def test_job_with_both_script_and_command(tmp_path: Path) -> None:
    path = write(tmp_path, '[jobs.als]\nscript = "a.py"\ncommand = ["true"]\n')
    problem = only_problem(path)
    assert problem.startswith(f"{path}:1: jobs.als: ")
    assert "not both" in problem


def test_jobs_keep_config_order(tmp_path: Path) -> None:
    body = "".join(f'[jobs.{i}]\ncommand = ["true"]\n' for i in ("zeta", "alpha", "mid"))
    assert [j.id for j in load(write(tmp_path, body)).jobs] == ["zeta", "alpha", "mid"]


# ---------------------------------------------------------------- several problems, unreadable files


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    body = """\
[supervisor]
max_wokers = 4
max_workers = 0

[defaults]
retries = -1
backoff = { jitter = 2 }

[jobs."Bad Id"]
script = "a.py"

[jobs.neither]
epochs = 3

[jobs.both]
script = "a.py"
command = ["true"]
"""
    path = write(tmp_path, body)
    problems = problems_of(path)
    expected = [
        (2, "supervisor.max_wokers"),
        (3, "supervisor.max_workers"),
        (6, "defaults.retries"),
        (7, "defaults.backoff.jitter"),
        (9, "jobs.Bad Id"),
        (12, "jobs.neither"),
        (15, "jobs.both"),
    ]
    assert len(problems) == len(expected), problems
    for line, keypath in expected:
        assert any(p.startswith(f"{path}:{line}: {keypath}: ") for p in problems), (keypath, problems)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).splitlines() == problems


def test_non_utf8_file(tmp_path: Path) -> None:
    path = write(tmp_path, b'[supervisor]\nlogs_dir = "l\xff\xfeg"\n')
    problem = only_problem(path)
    assert "UTF-8" in problem


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    problem = only_problem(path)
    assert "cannot read" in problem
    assert "No such file" in problem


def test_folder_instead_of_file(tmp_path: Path) -> None:
    path = tmp_path / "dir.toml"
    path.mkdir()
    assert "cannot read" in only_problem(path)
