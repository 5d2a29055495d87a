"""A swept job through the daemon (SPEC §15, §18): `submit --job ID` of a swept job makes one ticket
per combination, each run with its parameters; a ticket names one combination by its full id; a
ticket naming a sweep whole, or a combination it does not have, is refused with the reason, never
run without its parameters. Real `serve` and `submit` processes."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import PY, wait_for, write_config
from helpers_cli import cli
from helpers_daemon import Daemons, daemon_config, drop, names, wait_final

from aimedres_async.daemon.spool import Spool

# writes its own arguments to args/<ticket id>.json
ARGS = (
    "import json, os, pathlib, sys; d = pathlib.Path('args'); d.mkdir(exist_ok=True); "
    "(d / (os.environ['AIMEDRES_JOB_ID'] + '.json')).write_text(json.dumps(sys.argv[1:]))"
)


def _setup(folder: Path, marker: str, extra: str = "") -> Path:
    jobs = (
        f"[jobs.sw]\ncommand = {json.dumps([PY, '-c', ARGS])}\nmatrix = {{ lr = [0.1, 0.2] }}\nseeds = [0, 1]\n"
        f"[jobs.plain]\ncommand = {json.dumps([PY, '-c', ARGS])}\n"
    )
    write_config(folder, daemon_config(marker, jobs, 2, extra))
    spool = folder / "spool"
    Spool(spool).ensure()
    return spool


def _submitted(folder: Path, *args: str) -> list[str]:
    r = cli(folder, "submit", *args)
    assert r.returncode == 0, (r.stdout, r.stderr)
    return [line.split()[1] for line in r.stdout.splitlines()]


def test_submitting_a_swept_job_makes_a_ticket_per_combination_each_with_its_parameters(
    tmp_path: Path, marker: str, daemons: Daemons
) -> None:
    spool = _setup(tmp_path, marker)
    daemons.start(tmp_path)
    tickets = _submitted(tmp_path, "--job", "sw")
    assert len(tickets) == 4, tickets
    one = _submitted(tmp_path, "--job", "sw[lr=0.2,seed=1]")
    wait_final(spool, tickets + one)
    assert sorted(names(spool, "done")) == sorted(tickets + one)
    ran = {t: json.loads((tmp_path / "args" / f"{t}.json").read_text()) for t in tickets + one}
    assert sorted(map(tuple, (ran[t] for t in tickets))) == sorted(
        ("--lr", lr, "--seed", seed) for lr in ("0.1", "0.2") for seed in ("0", "1")
    )
    assert ran[one[0]] == ["--lr", "0.2", "--seed", "1"]
    # each ticket says which combination it ran: its label, and params in job.started
    state = json.loads(cli(tmp_path, "status", "--json").stdout)
    labels = {f["ticket"]: f.get("label") for f in state["finished"]}
    assert sorted(labels[t] for t in tickets) == sorted(
        f"sw[lr={lr},seed={seed}]" for lr in ("0.1", "0.2") for seed in (0, 1)
    )
    log = cli(tmp_path, "logs", one[0])
    assert log.returncode == 0, log.stderr
    assert 'params={"lr":0.2,"seed":1}' in log.stdout, log.stdout


def test_a_ticket_naming_a_sweep_whole_is_rejected_and_the_daemon_goes_on(
    tmp_path: Path, marker: str, daemons: Daemons
) -> None:
    spool = _setup(tmp_path, marker)
    daemons.start(tmp_path)
    wait_for(lambda: (spool / "incoming").is_dir(), timeout=30, what="the spool")
    drop(spool, "whole.toml", 'job = "sw"\n')
    drop(spool, "missing.toml", 'job = "sw[lr=0.5,seed=0]"\n')
    drop(spool, "fine.toml", 'job = "plain"\n')
    wait_final(spool, ["whole", "missing", "fine"])
    assert names(spool, "rejected") == ["missing", "whole"]
    wait_for(lambda: len(names(spool, "rejected", ".error")) == 2, what="both reasons")
    why = (spool / "rejected" / "whole.error").read_text()
    assert "is a sweep" in why and "sw[lr=0.1,seed=0]" in why, why
    assert "no combination 'sw[lr=0.5,seed=0]'" in (spool / "rejected" / "missing.error").read_text()
    assert names(spool, "done") == ["fine"]
    assert json.loads((tmp_path / "args" / "fine.json").read_text()) == []


def test_submit_refuses_what_the_daemon_would_refuse_and_writes_nothing(tmp_path: Path, marker: str) -> None:
    spool = _setup(tmp_path, marker, extra="max_jobs = 3")
    for job, says in (
        ("sw", "sweep of 4 combinations, more than [supervisor] max_jobs = 3"),
        ("sw[lr=0.3,seed=0]", "has no combination"),
        ("sw[lr=0.1]", "has no combination"),  # the seed is part of the id
        ("plain[lr=0.1]", "is not swept"),
        ("sw[", "expected the id of a configured job"),
    ):
        r = cli(tmp_path, "submit", "--job", job)
        assert r.returncode == 2, (job, r.stdout, r.stderr)
        assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1, (job, r.stderr)
    assert names(spool, "incoming") == []
