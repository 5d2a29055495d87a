"""The input bounds of plan/limits.py: nesting depth, value counts (aliases expanded), priorities."""

from __future__ import annotations

import tomllib

import pytest

from aimedres_async.plan.config_values import want_gpu_capacity
from aimedres_async.plan.limits import (
    LimitError,
    check_structure,
    check_toml_depth,
    check_yaml_events,
    load_toml,
    want_priority,
)
from aimedres_async.plan.units import parse_duration


def test_toml_nesting_beyond_the_limit_is_refused_before_tomllib_sees_it() -> None:
    text = "a = 1\nb = " + "[" * 5000 + "]" * 5000  # tomllib itself would raise RecursionError
    with pytest.raises(LimitError, match=r"line 2: nested more than 32 deep"):
        load_toml(text)


def test_brackets_in_strings_comments_and_headers_do_not_count() -> None:
    deep = "[" * 100
    text = f'[[x]]\n[a.b]\ns = "{deep}"\nl = \'{deep}\'\nm = """\n{deep}\n"""\n# {deep}\nv = [[1], [2, [3]]]\n'
    check_toml_depth(text)
    assert tomllib.loads(text) == load_toml(text)


def test_deep_dotted_keys_are_refused_after_parsing() -> None:
    with pytest.raises(LimitError, match="nested more than 32 deep"):
        load_toml("a." * 40 + "b = 1")


def test_a_toml_config_may_hold_more_values_than_a_yaml_document() -> None:
    # TOML has no aliases: a config of 100,000 jobs (300,000 values) is what SPEC §11's scale runs
    text = "".join(f'[jobs.j{i}]\ncommand = ["/bin/true"]\n' for i in range(40_000))
    assert len(load_toml(text)["jobs"]) == 40_000


def test_a_shared_value_counts_once_per_place_and_the_walk_stops_at_the_bound() -> None:
    leaf: list[object] = [1] * 10
    for _ in range(30):  # 10**30 values if walked in full
        leaf = [leaf] * 10
    with pytest.raises(LimitError, match="more than 1000 values"):
        check_structure(leaf, limit=64, max_nodes=1000)


def test_yaml_aliases_are_counted_expanded() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    with pytest.raises(LimitError, match="once its aliases are expanded"):
        check_yaml_events("\n".join(lines))
    check_yaml_events("\n".join(lines[:3]))  # 9 + 81 + 729 values: fine


def test_yaml_nesting_is_refused_from_the_event_stream() -> None:
    with pytest.raises(LimitError, match="line 1: nested more than 32 deep"):
        check_yaml_events("jobs: " + "[" * 5000 + "]" * 5000)


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 99999999999999999999, True, "1", 1.5])
def test_priority_outside_32_bits_or_not_a_whole_number_is_refused(value: object) -> None:
    with pytest.raises(LimitError):
        want_priority(value)
    assert want_priority(2**31 - 1) == 2**31 - 1 and want_priority(-(2**31)) == -(2**31)


@pytest.mark.parametrize("ids", [[-1], [1024], [99999999999999999999], ["0,1"], ["-1"], ["x"], list(range(1025))])
def test_gpu_ids_outside_the_sane_range_are_refused(ids: list[object]) -> None:
    with pytest.raises(ValueError):
        want_gpu_capacity(ids)
    assert want_gpu_capacity([0, "1", "GPU-8f2e4c1a-0b7d"]) == ("0", "1", "GPU-8f2e4c1a-0b7d")


def test_durations_beyond_ten_years_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 10 years"):
        parse_duration(1e300)
    assert parse_duration("3650d") == 3650 * 86400
