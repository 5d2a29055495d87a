"""argparse as the command line uses it: no abbreviations, one-line errors with "did you mean".

Every mistake becomes a `UsageError` (exit 2) whose one line names the problem, suggests the
nearest command or option (difflib) and points at the `--help` of the command that was meant.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any, NoReturn

# Options whose value is often itself a flag (`--arg --seed`): argparse refuses those without `=`.
VALUE_MAY_START_WITH_DASH = ("--arg", "--extra-arg")


class UsageError(Exception):
    """A one-line usage or input problem: exit 2."""


def closest(word: str, candidates: Sequence[str]) -> str | None:
    """The candidate `word` was most likely meant to be, if any is close enough."""
    import difflib  # only for a mistyped word: every command loads this module

    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(word: str, candidates: Sequence[str]) -> str:
    best = closest(word, candidates)
    return f" (did you mean {best!r}?)" if best else ""


class HelpFormatter(argparse.HelpFormatter):
    """A little wider than argparse's default, so option names and their help share a line."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap

        # never split an option name such as --extra-arg=--flag at its hyphens
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        return textwrap.fill(
            " ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
        )


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that never accepts `--max-worker` for `--max-workers`, and whose errors are
    one line: what is wrong, the nearest valid spelling, and where to read more."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.argv: list[str] = []  # the arguments being parsed, for hints that quote them

    def options(self) -> list[str]:
        """Every option string this parser accepts (hidden ones too)."""
        return [s for action in self._actions for s in action.option_strings]

    def subcommands(self) -> dict[str, Parser]:
        """Each command's parser (an `Unbuilt` for one that was not built)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self.argv = list(args or [])
        for sub in self.subcommands().values():
            sub.argv = self.argv
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(ns, "command", None)
            target = self.subcommands().get(command) if command else None
            (target or self).unrecognized(extras)
        return ns

    def unrecognized(self, extras: list[str]) -> NoReturn:
        first = extras[0]
        if first.startswith("-"):
            name = first.split("=", 1)[0]
            hint = did_you_mean(name, self.options())
            raise UsageError(f"unknown option {name!r}{hint}; see `{self.prog} --help`")
        raise UsageError(f"unexpected argument {first!r}; see `{self.prog} --help`")

    def error(self, message: str) -> NoReturn:
        m = re.match(r"argument (\S+): invalid choice: '([^']*)'", message)
        if m and m.group(1) in ("COMMAND", "command"):
            choices = [c for c in self.subcommands() if not c.startswith("_")]  # `_tickets` is hidden
            hint = did_you_mean(m.group(2), choices) or f" (commands: {', '.join(choices)})"
            raise UsageError(f"unknown command {m.group(2)!r}{hint}; see `{self.prog} --help`")
        m = re.match(r"argument ([^:]+): expected one argument", message)
        if m:
            hint = self._dash_value_hint(m.group(1))
            if hint:
                raise UsageError(f"{message}; {hint}; see `{self.prog} --help`")
        raise UsageError(f"{message}; see `{self.prog} --help`")

    def _dash_value_hint(self, names: str) -> str:
        """`--arg --seed`: argparse reads --seed as an option; `--arg=--seed` is the way to say it."""
        for name in names.split("/"):
            if name not in VALUE_MAY_START_WITH_DASH:
                continue
            for i, token in enumerate(self.argv[:-1]):
                if token == name and self.argv[i + 1].startswith("-"):
                    return f"to pass a value that starts with '-', write {name}={self.argv[i + 1]}"
            return f"to pass a value that starts with '-', write {name}=VALUE"
        return ""


class UnbuiltCommand(Exception):
    """A command whose parser was not built was chosen: build them all and parse again."""


class Unbuilt:
    """Stands for a command's parser that was not built: what builds one is accepted and dropped;
    parsing with it raises UnbuiltCommand."""

    def __init__(self) -> None:
        self.argv: list[str] = []

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        return self

    add_argument_group = add_mutually_exclusive_group = add_argument

    def set_defaults(self, **kwargs: Any) -> None:
        return None

    def options(self) -> list[str]:
        raise UnbuiltCommand

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        raise UnbuiltCommand


class Commands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """The subcommands. With `only` set to one of them, the others get a name and a help line but
    no parser (an `Unbuilt`)."""

    only: str | None = None

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if self.only is None or name == self.only:
            return super().add_parser(name, **kwargs)
        if "help" in kwargs:
            self._choices_actions.append(self._ChoicesPseudoAction(name, (), kwargs["help"]))
        unbuilt = Unbuilt()
        self._name_parser_map[name] = unbuilt
        return unbuilt


def one_run(a: Any) -> str | None:
    """The run a command names, positionally or with --run (`report` and `logs` take both); the
    two at once must agree."""
    positional, option = getattr(a, "run_positional", None), getattr(a, "run", None)
    if positional is not None and option is not None and positional != option:
        raise UsageError(f"two runs given: {positional} and --run {option}; give one")
    return option if option is not None else positional
