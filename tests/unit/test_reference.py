"""The references that cannot go stale: docs/reference/cli.md's generated part is what the parser
says today, docs/reference/config.md's generated part is what the config loader's schema says, and
its hand-written part explains every key the loader accepts."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from aimedres_async.cli import reference
from aimedres_async.cli.parser import build_parser
from aimedres_async.plan import config_load
from aimedres_async.plan.config_errors import Problems

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reference"


def test_the_cli_reference_is_what_the_parser_says() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert reference.BEGIN in text and reference.END in text
    assert reference.merged(text, reference.render()) == text, (
        "docs/reference/cli.md differs from the parser: run `python -m aimedres_async.cli.reference`"
    )


def test_the_generated_part_shows_every_shown_option_of_every_command() -> None:
    parser = build_parser()
    generated = reference.render(parser)
    for name, sub in parser.subcommands().items():
        if name.startswith("_"):  # hidden (`_tickets`, the completion scripts' helper)
            assert f"### aimedres-async {name}" not in generated
            continue
        assert f"### aimedres-async {name}" in generated
        for action in sub._actions:
            if action.help != argparse.SUPPRESS:
                for spelling in action.option_strings:
                    assert f"`{spelling}" in generated, (name, spelling)


def test_merged_replaces_only_the_generated_part() -> None:
    old = f"intro\n\n{reference.BEGIN}\nstale\n{reference.END}\n\n## after\n"
    new = reference.merged(old, f"{reference.BEGIN}\nfresh\n{reference.END}\n")
    assert new == f"intro\n\n{reference.BEGIN}\nfresh\n{reference.END}\n\n## after\n"


def _table_keys() -> dict[str, set[str]]:
    """Every table the loader accepts with its keys (`jobs` = a [jobs.<id>] table)."""
    settings = set(config_load._settings_schema(Problems(Path("aimedres.toml"), ""), ()))
    sweep = set(config_load._SWEEP_SCHEMA)
    keys: dict[str, set[str]] = {}
    for table in config_load._TOP_SCHEMA:
        if table == "jobs":
            keys[table] = settings | sweep | set(config_load._JOB_ONLY_SCHEMA)
        elif table == "defaults":
            keys[table] = settings | set(config_load._SEED_SCHEMA)
        else:
            schema = getattr(config_load, f"_{table.upper()}_SCHEMA", None)
            assert isinstance(schema, dict), f"no _{table.upper()}_SCHEMA for [{table}]: name it so this test sees it"
            keys[table] = set(schema)
    return keys


def test_the_config_reference_is_what_the_loader_says() -> None:
    text = (DOCS / "config.md").read_text(encoding="utf-8")
    assert reference.CONFIG_BEGIN in text
    assert reference.merged(text, reference.render_config()) == text, (
        "docs/reference/config.md differs from the config loader: run `python -m aimedres_async.cli.reference`"
    )


def test_the_generated_config_part_lists_every_key_of_every_table() -> None:
    generated = reference.render_config()
    for table, keys in _table_keys().items():
        shown = "[jobs.<id>]" if table == "jobs" else "[groups.<name>]" if table == "groups" else f"[{table}]"
        section = generated.split(f"### `{shown}`", 1)[1].split("\n### ", 1)[0]
        for key in keys:
            assert f"| `{key}` |" in section, (table, key)


def test_a_check_that_does_not_say_what_it_accepts_stops_the_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(config_load._RAY_SCHEMA, "address", lambda v: v)
    with pytest.raises(ValueError, match=r"\[ray\] address"):
        reference.render_config()


def test_the_check_mode_fails_on_a_stale_config_reference(tmp_path: Path) -> None:
    cli_doc, config_doc = tmp_path / "cli.md", tmp_path / "config.md"
    cli_doc.write_text((DOCS / "cli.md").read_text(encoding="utf-8"), encoding="utf-8")
    fresh = (DOCS / "config.md").read_text(encoding="utf-8")
    config_doc.write_text(fresh.replace("| `qos` |", "| `queue` |"), encoding="utf-8")
    args = ["--file", str(cli_doc), "--config-file", str(config_doc)]
    assert reference.main([*args, "--check"]) == 1
    assert reference.main(args) == 0
    assert config_doc.read_text(encoding="utf-8") == fresh
    assert reference.main([*args, "--check"]) == 0


@pytest.mark.parametrize("table", sorted(config_load._TOP_SCHEMA))
def test_the_config_reference_names_every_key(table: str) -> None:
    text = reference.without_generated((DOCS / "config.md").read_text(encoding="utf-8"))
    assert f"[{table}]" in text or f"[{table}." in text, f"docs/reference/config.md lacks the table [{table}]"
    missing = [
        key
        for key in sorted(_table_keys()[table])
        if not re.search(rf"(?m)^\s*#?\s*{re.escape(key)}\s*=", text) and f"`{key}`" not in text
    ]
    assert not missing, f"docs/reference/config.md does not explain [{table}] {', '.join(missing)}"
