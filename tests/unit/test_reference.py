"""The references that cannot go stale: docs/reference/cli.md's generated part is what the parser
says today, and docs/reference/config.md names every key the config loader accepts."""

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


@pytest.mark.parametrize("table", sorted(config_load._TOP_SCHEMA))
def test_the_config_reference_names_every_key(table: str) -> None:
    text = (DOCS / "config.md").read_text(encoding="utf-8")
    assert f"[{table}]" in text or f"[{table}." in text, f"docs/reference/config.md lacks the table [{table}]"
    missing = [
        key
        for key in sorted(_table_keys()[table])
        if not re.search(rf"(?m)^\s*#?\s*{re.escape(key)}\s*=", text) and f"`{key}`" not in text
    ]
    assert not missing, f"docs/reference/config.md does not explain [{table}] {', '.join(missing)}"
