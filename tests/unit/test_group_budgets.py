"""A group's own budget of what its running tickets declare (`[groups.<name>] gpus, memory, cpus`),
as pure logic: the config keys and their mistakes, what a waiting ticket declares, which tickets a
pass over the queue may claim (never-fitting ones to be rejected, the bypass limit), what `status`
shows of it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from aimedres_async.cli.queue import _print_groups
from aimedres_async.daemon import budgets
from aimedres_async.daemon.tickets import order_of
from aimedres_async.engine.scheduler import MAX_BYPASS, NOTHING, Need
from aimedres_async.plan.config import GroupConfig, Resources
from aimedres_async.plan.config_errors import ConfigError
from aimedres_async.plan.config_load import parse, parse_ticket
from aimedres_async.plan.jobs import known_jobs, ticket_spec

MIB = 1 << 20
GIB = 1 << 30


# ---------------------------------------------------------------- the config


def test_group_budget_keys_are_read_and_unset_means_no_cap() -> None:
    cfg = parse(
        '[groups.gpu]\nmax_workers = 4\ngpus = 2\nmemory = "16GiB"\ncpus = 8\n[groups.cpu]\ncpus = 0.5\n[groups.any]\n',
        None,
        Path("."),
    )
    assert cfg.groups["gpu"] == GroupConfig(max_workers=4, gpus=2, memory=16 * GIB, cpus=8.0)
    assert cfg.groups["cpu"] == GroupConfig(cpus=0.5) and cfg.groups["cpu"].budgeted
    assert cfg.groups["any"] == GroupConfig() and not cfg.groups["any"].budgeted


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('memory = "lots"', "groups.gpu.memory: 'lots' is not a size"),
        ("memory = 0", "groups.gpu.memory: must be at least"),
        ('memory = "auto"', "groups.gpu.memory: 'auto' is not a size"),
        ("cpus = 0", "groups.gpu.cpus: must be > 0"),
        ('cpus = "4"', "groups.gpu.cpus: expected a number"),
        ("gpus = 1.5", "groups.gpu.gpus: expected a whole number of GPUs"),
        ("gpus = -1", "groups.gpu.gpus: must be from 0 to"),
        ("gpus = true", "groups.gpu.gpus: expected a whole number of GPUs"),
        ("gpu = 1", "groups.gpu.gpu: unknown key (did you mean 'gpus'?)"),
    ],
)
def test_a_bad_group_budget_is_one_line_naming_the_key(line: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(f"[groups.gpu]\n{line}\n", Path("aimedres.toml"), Path("."))
    assert len(e.value.problems) == 1 and problem in e.value.problems[0], e.value.problems
    assert "\n" not in e.value.problems[0]


# ---------------------------------------------------------------- what a waiting ticket declares

CONFIG = """
[discovery]
enabled = false
[defaults]
resources = { cpus = 1 }
[jobs.big]
command = ["true"]
resources = { memory = "1GiB", gpus = 1 }
[jobs.plain]
command = ["true"]
[jobs.swept]
command = ["true"]
resources = { memory = "1GiB" }
matrix = { lr = [0.1, 0.2] }
"""


@pytest.mark.parametrize(
    ("ticket", "need"),
    [
        ('job = "big"\n', Need(gpus=1.0, memory=GIB)),
        ('job = "big"\nresources = { memory = "2GiB" }\n', Need(memory=2 * GIB)),  # the whole table: own
        ('job = "plain"\n', Need(cpus=1.0)),  # [defaults]
        ('job = "swept[lr=0.2]"\n', Need(memory=GIB)),  # one combination of a sweep: its job's
        ('command = ["true"]\nresources = { cpus = 3, memory = "600MiB" }\n', Need(memory=600 * MIB, cpus=3.0)),
        ('command = ["true"]\nresources = {}\n', NOTHING),
    ],
)
def test_a_waiting_tickets_need_is_what_its_job_will_declare(tmp_path: Path, ticket: str, need: Need) -> None:
    cfg = parse(CONFIG, None, tmp_path)
    known = known_jobs(cfg)
    got = budgets.declared(order_of(tomllib.loads(ticket)), cfg, known)
    assert got == need
    assert got == Need.of(ticket_spec(cfg, parse_ticket(ticket, "t1"), known).resources)  # as the daemon admits it


def test_a_bad_resources_table_declares_nothing_before_the_claim() -> None:
    assert order_of({"resources": {"memory": "lots"}}).resources == Resources()
    assert order_of({"resources": {"disk": 1}}).resources == Resources()
    assert order_of({"resources": "8GiB"}).resources == Resources()
    assert order_of({}).resources is None
    assert order_of({"job": "als"}).job == "als"


# ---------------------------------------------------------------- claiming


def test_a_group_budget_admits_what_fits_and_lets_no_declared_resource_wait() -> None:
    cap = {"big": GroupConfig(max_workers=4, memory=GIB)}
    gate = budgets.Gate(cap, {}, {})
    half = Need(memory=600 * MIB)
    assert gate.may_claim("b1", "big", half)
    gate.claimed("big", half)
    assert not gate.may_claim("b2", "big", half)  # 1.2GiB > 1GiB
    assert gate.may_claim("z", "big", NOTHING)  # declares nothing: max_workers alone limits it
    assert gate.may_claim("g", "big", Need(gpus=1.0, cpus=4.0))  # nothing the group caps
    assert gate.may_claim("s", "big", Need(memory=400 * MIB))  # fits beside b1
    assert gate.may_claim("d", "default", Need(memory=8 * GIB))  # no budget: the daemon's alone
    assert gate.may_claim("huge", "big", Need(memory=8 * GIB))  # never fits: claimed to be rejected


def test_never_fits_names_the_group_and_the_resource() -> None:
    budget = GroupConfig(gpus=1, memory=4 * GIB, cpus=2.0)
    assert budgets.never_fits("big", budget, Need(memory=8 * GIB)) == (
        "needs 8.0GiB of memory, group big may use 4.0GiB ([groups.big] memory)"
    )
    assert (
        budgets.never_fits("big", budget, Need(gpus=2.0)) == "needs 2 GPU(s), group big may use 1 ([groups.big] gpus)"
    )
    assert (
        budgets.never_fits("big", budget, Need(cpus=2.5)) == "needs 2.5 CPUs, group big may use 2 ([groups.big] cpus)"
    )
    assert budgets.never_fits("big", budget, Need(gpus=1.0, memory=4 * GIB, cpus=2.0)) is None
    assert budgets.never_fits("big", GroupConfig(), Need(memory=8 * GIB)) is None
    assert budgets.never_fits("cpu", GroupConfig(gpus=0), Need(gpus=0.5)) is not None


def test_a_lowered_budget_holds_new_tickets_back_and_passes_what_declares_none() -> None:
    budget = GroupConfig(memory=GIB, gpus=1)
    used = Need(memory=2 * GIB)  # claimed under a larger budget, before a reload lowered it
    assert not budgets.fits(budget, used, Need(memory=1))
    assert budgets.fits(budget, used, Need(gpus=1.0))
    assert budgets.fits(budget, used, NOTHING)
    assert budgets.fits(GroupConfig(gpus=1), Need(gpus=0.5), Need(gpus=0.5))  # fractions add up
    assert not budgets.fits(GroupConfig(gpus=1), Need(gpus=0.5), Need(gpus=1.0))


def test_a_ticket_that_waits_for_its_group_budget_is_passed_over_at_most_max_bypass_times() -> None:
    cap = {"big": GroupConfig(max_workers=9, memory=GIB)}
    running = {"big": Need(memory=600 * MIB)}
    bypassed: dict[str, int] = {}
    for n in range(MAX_BYPASS):
        gate = budgets.Gate(cap, running, bypassed)
        assert not gate.may_claim("large", "big", Need(memory=GIB))
        assert gate.may_claim(f"small{n}", "big", Need(memory=100 * MIB))
        gate.claimed("big", Need(memory=100 * MIB))
        assert gate.may_claim("free", "big", NOTHING)
        gate.claimed("big", NOTHING)  # declares nothing: passes no one
        gate.forget(["large", "later"])
    assert bypassed == {"large": MAX_BYPASS}
    gate = budgets.Gate(cap, running, bypassed)
    assert not gate.may_claim("large", "big", Need(memory=GIB))
    assert not gate.may_claim("later", "big", Need(memory=100 * MIB))  # it has waited long enough
    assert gate.may_claim("free", "big", NOTHING)  # takes nothing from the budget
    assert budgets.Gate(cap, running, bypassed).may_claim("other", "default", Need(memory=GIB))
    budgets.Gate(cap, {}, bypassed).forget([])
    assert bypassed == {}


def test_in_use_sums_each_groups_claimed_tickets() -> None:
    used = budgets.in_use([("big", Need(memory=MIB, gpus=0.5)), ("big", Need(memory=MIB, gpus=0.5)), ("x", NOTHING)])
    assert used == {"big": Need(gpus=1.0, memory=2 * MIB), "x": NOTHING}


# ---------------------------------------------------------------- status


def test_status_shows_a_budgeted_groups_budget_and_use_only() -> None:
    caps = {"big": GroupConfig(memory=GIB, gpus=2), "cpu": GroupConfig(max_workers=3), "c": GroupConfig(cpus=4.0)}
    view = budgets.view(caps, {"big": Need(gpus=0.5, memory=600 * MIB, cpus=3.0)})
    assert view == {
        "big": {"budget": {"gpus": 2, "memory": GIB}, "in_use": {"gpus": 0.5, "memory": 600 * MIB}},
        "c": {"budget": {"cpus": 4.0}, "in_use": {"cpus": 0}},
    }


def test_the_status_line_of_a_budgeted_group(capsys: pytest.CaptureFixture[str]) -> None:
    group = {"workers": 4, "busy": 1, "paused": False, "parallel": False}
    state = {
        "daemon": {
            "groups": {
                "default": {**group, "budget": {"cpus": 4.0}, "in_use": {"cpus": 1.5}},
                "big": {**group, "budget": {"gpus": 2, "memory": GIB}, "in_use": {"gpus": 1, "memory": 600 * MIB}},
            }
        },
        "queued": [{"group": "big"}],
    }
    _print_groups(state, ["default", "big"])
    out = capsys.readouterr().out
    assert "  group default: workers 1/4 busy, cpus 1.5/4 in use, 0 queued\n" in out
    assert "  group big: workers 1/4 busy, gpus 1/2, memory 600.0MiB/1.0GiB in use, 1 queued\n" in out
    alone = {"default": {**group, "budget": {"memory": GIB}, "in_use": {"memory": 0}}}
    _print_groups({"daemon": {"groups": alone}, "queued": []}, ["default"])  # one group, with a budget
    assert "group default: workers 1/4 busy, memory 0B/1.0GiB in use, 0 queued" in capsys.readouterr().out
