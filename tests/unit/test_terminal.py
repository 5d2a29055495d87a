"""records.terminal.visible, in-process: a job's control characters are shown, never obeyed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aimedres_async.records.terminal import visible


def test_escape_sequences_are_shown_not_sent() -> None:
    assert visible("\x1b]0;owned\x07\x1b[2Jhi") == "\\x1b]0;owned\\x07\\x1b[2Jhi"


def test_tab_is_kept_and_line_ends_are_shown() -> None:
    assert visible("a\tb\r\nc") == "a\tb\\x0d\\x0ac"


def test_del_and_c1_controls_are_shown() -> None:
    assert visible("\x7f\x9b31m\x85") == "\\x7f\\x9b31m\\x85"


def test_printable_text_is_unchanged() -> None:
    text = "epoch 3/10 loss=0.25 – Größe ✓ 训练 \\x1b"
    assert visible(text) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_nothing_a_terminal_obeys_is_left(text: str) -> None:
    shown = visible(text)
    assert all(ch == "\t" or not (ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0) for ch in shown)
    assert visible(shown) == shown  # showing twice changes nothing more
