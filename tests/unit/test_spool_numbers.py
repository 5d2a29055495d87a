"""The daemon's pueue-like bookkeeping as pure logic (SPEC §15): ticket numbers (allocation rules,
never reused), what a user types for a ticket (number, id, unique prefix), group accounting, the
new ticket keys and `[groups.<name>]`, and how `restart` makes a new ticket from a filed one.
"""

from __future__ import annotations

import os
import threading
import tomllib
from pathlib import Path

import pytest

from aimedres_async.daemon import groups, numbers
from aimedres_async.daemon.ops import OpsError, restart_draft
from aimedres_async.daemon.spool import Queued, Spool
from aimedres_async.daemon.tickets import Order
from aimedres_async.plan.config import Config, GroupConfig
from aimedres_async.plan.config_errors import ConfigError
from aimedres_async.plan.config_load import parse, parse_ticket

A = "20261207-015544-89d97f-train"
B = "20261207-015545-1c2d3e-train"
C = "20261207-020000-aaaaaa-eval"

# ---------------------------------------------------------------- naming a ticket


def test_a_number_wins_then_the_exact_id_then_a_unique_prefix() -> None:
    assert numbers.choose("3", A, False, [A, B]) == A
    assert numbers.choose(C, None, True, [A, B, C]) == C
    assert numbers.choose("20261207-02", None, False, [A, B, C]) == C
    assert numbers.choose("20261207-015544", None, False, [A, B, C]) == A


def test_an_ambiguous_prefix_lists_every_match_and_no_match_says_so() -> None:
    with pytest.raises(numbers.TicketNameError) as e:
        numbers.choose("20261207-0155", None, False, [A, B, C])
    assert str(e.value) == f"ticket '20261207-0155' is ambiguous: it starts 2 ticket ids: {A}, {B}"
    with pytest.raises(numbers.TicketNameError, match="no such ticket: zzz"):
        numbers.choose("zzz", None, False, [A, B, C])
    with pytest.raises(numbers.TicketNameError, match="no such ticket"):
        numbers.choose("", None, False, [A])  # an empty prefix names no ticket, not all of them
    with pytest.raises(numbers.TicketNameError, match="no ticket has that number"):
        numbers.choose("2026", None, False, [A, B, C])
    many = [f"20261207-0000{i:02d}-aaaaaa-x" for i in range(15)]
    with pytest.raises(numbers.TicketNameError, match=r"and 5 more$"):
        numbers.choose("20261207-", None, False, many)


def test_resolve_in_a_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.ensure()
    for state, ticket in (("done", A), ("incoming", B), ("failed", C)):
        (spool.dir(state) / f"{ticket}.toml").write_text('job = "x"\n')
    assert numbers.allocate(spool.root, A) == 1
    assert numbers.allocate(spool.root, "20990101-000000-000000-gone") == 2  # a submit that died after it
    assert numbers.resolve(spool.root, "1") == A
    assert numbers.resolve(spool.root, B) == B
    assert numbers.resolve(spool.root, "20261207-02") == C
    with pytest.raises(numbers.TicketNameError, match="no such ticket: 2 "):
        numbers.resolve(spool.root, "2")  # its number names no ticket, and digits are never a prefix
    with pytest.raises(numbers.TicketNameError, match="ambiguous"):
        numbers.resolve(spool.root, "20261207-0155")
    ids, problems = numbers.resolve_all(spool.root, ["1", "nosuch"])
    assert ids == [A] and problems == ["no such ticket: nosuch"]


# ---------------------------------------------------------------- numbers: allocation rules


def test_next_number_follows_the_record_else_the_links() -> None:
    assert numbers.next_number(7, [1, 2, 3]) == 7
    assert numbers.next_number(None, [1, 9, 4]) == 10
    assert numbers.next_number(None, []) == 1
    assert numbers.next_number(0, [5]) == 6  # a record that cannot be right is not trusted


def test_numbers_are_never_reused_even_after_clean_removes_them(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    (root / "tmp").mkdir(parents=True)
    got = [numbers.allocate(root, f"t{i}") for i in range(3)]
    assert got == [1, 2, 3]
    numbers.forget(root, 3, "t2")
    numbers.forget(root, 2, "not-its-ticket")  # names another ticket: left alone
    assert numbers.ticket_of(root, 3) is None and numbers.ticket_of(root, 2) == "t1"
    assert numbers.allocate(root, "t3") == 4


def test_a_lagging_or_lost_counter_never_hands_out_a_taken_number(tmp_path: Path) -> None:
    """A crash between taking a number (its link) and moving .next past it leaves .next behind:
    the next allocation passes over the taken number. A lost .next falls back to the links."""
    root = tmp_path / "spool"
    (root / "tmp").mkdir(parents=True)
    assert numbers.allocate(root, "a") == 1
    os.symlink("crashed", root / "numbers" / "2")  # taken, .next still says 2
    assert numbers.allocate(root, "b") == 3
    (root / "numbers" / ".next").unlink()
    assert numbers.allocate(root, "c") == 4
    (root / "numbers" / ".next").write_text("garbage\n")
    assert numbers.allocate(root, "d") == 5


def test_concurrent_allocations_get_distinct_numbers(tmp_path: Path) -> None:
    """Threads each open the lock file themselves, so the flock serialises them as it does
    processes (tests/daemon/test_daemon_pueue.py races real `submit` processes)."""
    root = tmp_path / "spool"
    (root / "tmp").mkdir(parents=True)
    got: list[int] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        for i in range(10):
            n = numbers.allocate(root, f"w{k}-{i}")
            with lock:
                got.append(n)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 41))
    assert {numbers.ticket_of(root, n) for n in got} == {f"w{k}-{i}" for k in range(4) for i in range(10)}


# ---------------------------------------------------------------- groups


def _q(ticket: str, group: str = "default", not_before: float | None = None) -> Queued:
    return Queued(ticket, 0, (), 0, Order(group=group, not_before=not_before))


def test_group_limits_come_from_config_and_parallel_wins() -> None:
    cfg = Config(path=None, base_dir=Path("."), groups={"gpu": GroupConfig(max_workers=1)})
    assert groups.limits(cfg, 4, {}) == {"default": 4, "gpu": 1}
    assert groups.limits(cfg, 4, {"gpu": 3, "gone": 9}) == {"default": 4, "gpu": 3}
    cfg = Config(path=None, base_dir=Path("."), groups={"default": GroupConfig(max_workers=2)})
    assert groups.limits(cfg, 4, {}) == {"default": 2}


def test_free_workers_per_group_never_go_below_zero() -> None:
    busy = groups.busy(["gpu", "gpu", "default"])
    assert busy == {"gpu": 2, "default": 1}
    assert groups.free({"default": 3, "gpu": 1}, busy) == {"default": 2, "gpu": 0}  # lowered below busy


def test_may_claim_respects_group_pause_and_delay() -> None:
    free = {"default": 1, "gpu": 0}
    assert groups.may_claim(_q("a"), free, set(), 100.0)
    assert not groups.may_claim(_q("b", "gpu"), free, set(), 100.0)
    assert not groups.may_claim(_q("c"), free, {"default"}, 100.0)
    assert groups.may_claim(_q("d", "nosuch"), free, set(), 100.0)  # claim() rejects it, saying why
    assert not groups.may_claim(_q("e", not_before=150.0), free, set(), 100.0)
    assert groups.may_claim(_q("e", not_before=150.0), free, set(), 150.0)
    assert groups.next_due([_q("a"), _q("e", not_before=150.0), _q("f", not_before=120.0)], 100.0) == 20.0
    assert groups.next_due([_q("a")], 100.0) is None


# ---------------------------------------------------------------- ticket keys and [groups]


def test_ticket_keys_number_label_group_delay_cwd() -> None:
    text = (
        'number = 7\nlabel = "lr sweep: 0.1"\ngroup = "gpu"\nnot_before = 2026-12-07T06:00:00Z\n'
        'cwd = "/srv/work"\nrestarted_from = "20261207-015544-89d97f-train"\ncommand = ["python3", "t.py"]\n'
    )
    t = parse_ticket(text, "t1")
    assert (t.number, t.label, t.group, t.cwd, t.restarted_from) == (
        7,
        "lr sweep: 0.1",
        "gpu",
        "/srv/work",
        "20261207-015544-89d97f-train",
    )
    assert t.not_before == 1796623200.0
    plain = parse_ticket('job = "als"\n', "t2")
    assert (plain.number, plain.label, plain.group, plain.not_before, plain.cwd) == (None, "als", "default", None, None)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("number = 0", "number: must be >= 1"),
        ('group = "GPU!"', "group: expected lowercase"),
        ('label = "two\\nlines"', "label: expected one line"),
        ("not_before = 2026-12-07T06:00:00", "not_before: expected a date and time with its offset"),
        ('cwd = "relative/dir"', "cwd: expected an absolute path"),
    ],
)
def test_bad_ticket_keys_are_one_line_each(line: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_ticket(f'{line}\njob = "als"\n', "t1", "t.toml")
    assert len(e.value.problems) == 1 and problem in e.value.problems[0], e.value.problems


def test_groups_config_and_its_mistakes() -> None:
    cfg = parse("[groups.gpu]\nmax_workers = 2\n[groups.cpu]\n", None, Path("."))
    assert cfg.groups == {"gpu": GroupConfig(2), "cpu": GroupConfig(1)}
    with pytest.raises(ConfigError) as e:
        parse('[groups.gpu]\nmax_workers = 0\nmax_worker = 1\n[groups."Bad Name"]\n', Path("a.toml"), Path("."))
    problems = e.value.problems
    assert len(problems) == 3, problems
    assert any("groups.gpu.max_workers" in p and ">= 1" in p for p in problems)
    assert any("groups.gpu.max_worker" in p and "did you mean 'max_workers'" in p for p in problems)
    assert any("invalid group name" in p for p in problems)


# ---------------------------------------------------------------- restart's copy


def test_restart_draft_drops_what_the_spool_wrote_and_links_the_old_ticket() -> None:
    filed = (
        'number = 4\nlabel = "nightly"\nnot_before = 2026-12-07T06:00:00Z\ncommand = ["true"]\npriority = 3\n\n'
        '[result]\nstatus = "failed"\nexit_code = 1\n'
    )
    label, text = restart_draft(filed, A)
    raw = tomllib.loads(text)
    assert label == "nightly"
    assert raw == {"label": "nightly", "command": ["true"], "priority": 3, "restarted_from": A}
    assert restart_draft('job = "als"\n', A)[0] == "als"
    with pytest.raises(OpsError, match="--edit"):
        restart_draft("this is = = not toml", A)


def test_queues_read_what_parallel_and_pause_left_in_control(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.ensure()
    queues = groups.Queues()
    assert queues.refresh(spool) == ([], [], False)
    groups.set_parallel(spool, "gpu", 3)
    groups.set_group_paused(spool, "gpu", True)
    assert queues.refresh(spool) == (["gpu"], [], True)
    assert queues.refresh(spool) == ([], [], False)  # nothing new
    groups.set_parallel(spool, "gpu", 2)  # replaced, not refused
    groups.set_group_paused(spool, "gpu", False)
    assert queues.refresh(spool) == ([], ["gpu"], True) and queues.parallel == {"gpu": 2}
    assert queues.view({"default": 4, "gpu": 2}, {"gpu": 1}) == {
        "default": {"workers": 4, "busy": 0, "paused": False, "parallel": False},
        "gpu": {"workers": 2, "busy": 1, "paused": False, "parallel": True},
    }
    groups.set_parallel(spool, "gpu", None)
    (spool.dir("control") / "parallel.cpu").write_text("nonsense\n")  # unreadable: ignored
    assert queues.refresh(spool) == ([], [], True) and queues.parallel == {}


# ---------------------------------------------------------------- submit's checks


def test_an_inline_ticket_is_checked_without_discovering_the_project_s_scripts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discovery parses every script under the roots; `submit -- CMD` names no job and never
    waits on it. A ticket naming a job still gets the discovered jobs, once per submit."""
    from aimedres_async.daemon import submit
    from aimedres_async.plan.config import JobConfig

    calls: list[Path] = []

    def known_jobs(cfg: Config) -> dict[str, JobConfig]:
        calls.append(cfg.base_dir)
        return {"train": JobConfig(id="train", command=("/bin/true",))}

    monkeypatch.setattr(submit, "known_jobs", known_jobs)
    cfg = Config(path=None, base_dir=tmp_path)
    spool = Spool(tmp_path / "spool")
    inline = submit.from_command(["/bin/true"], str(tmp_path), {}, {})
    assert len(submit.prepare(cfg, spool, [inline, inline])) == 2
    assert calls == []
    named = submit.from_options("train", {}, [], {})
    assert len(submit.prepare(cfg, spool, [inline, named, named])) == 3
    assert calls == [tmp_path]
