"""`[logging] redact`: the redactor that every byte of job output passes before it is written
(LoggingConfig.redactor), in-process on bytes."""

from __future__ import annotations

import re
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from aimedres_async.plan.config import LoggingConfig


def redactor(*patterns: str, replacement: str = "[REDACTED]") -> Callable[[bytes], bytes]:
    redact = LoggingConfig(redact=patterns, replacement=replacement).redactor()
    assert redact is not None
    return redact


def test_no_patterns_means_no_redactor() -> None:
    assert LoggingConfig().redactor() is None


def test_a_match_is_replaced() -> None:
    assert redactor(r"MRN\d{6,}")(b"patient MRN1234567 ok\n") == b"patient [REDACTED] ok\n"


def test_every_pattern_and_every_match_is_replaced() -> None:
    redact = redactor(r"MRN\d{6,}", r"[\w.]+@example\.org", replacement="***")
    out = redact(b"MRN123456 a.b@example.org MRN654321\nMRN12 stays\n")
    assert out == b"*** *** ***\nMRN12 stays\n"


def test_every_alternative_of_every_pattern_is_replaced() -> None:
    redact = redactor("x|y", "z")
    assert redact(b"x y z w") == b"[REDACTED] [REDACTED] [REDACTED] w"
    assert redactor("ab", "^c")(b"cab\n") == b"[REDACTED][REDACTED]\n"


def test_a_backreference_in_a_later_pattern_still_redacts() -> None:
    assert redactor(r"(a)\1", r"(b)\1")(b"aa bb") == b"[REDACTED] [REDACTED]"


def test_two_patterns_may_use_the_same_group_name() -> None:
    assert redactor("(?P<id>a)", "(?P<id>b)")(b"a b") == b"[REDACTED] [REDACTED]"


def test_an_empty_match_inserts_nothing() -> None:
    redact = redactor(r"\b", r"(?=secret)secret\d*")
    assert redact(b"a secret42 b") == b"a [REDACTED] b"


def test_bytes_that_are_not_utf8_pass_untouched() -> None:
    assert redactor("token=[a-z]+")(b"\xff\xfe token=abc \x80\n") == b"\xff\xfe [REDACTED] \x80\n"


def test_non_ascii_patterns_match_their_utf8_bytes() -> None:
    assert redactor("Müller")("Herr Müller kam".encode()) == b"Herr [REDACTED] kam"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.lists(st.sampled_from([b"MRN1234567", b"MRN999999"]), max_size=4))
def test_no_match_survives_whatever_surrounds_it(noise: bytes, secrets: list[bytes]) -> None:
    data = noise + b"".join(s + noise[:3] for s in secrets)
    out = redactor(r"MRN\d{6,}")(data)
    assert not re.search(rb"MRN\d{6,}", out)
    if not re.search(rb"MRN\d{6,}", data):
        assert out == data  # nothing to hide: the bytes are kept as they are
