"""What a job's output says beyond its records: warning-level lines counted (the first kept) and
the job's `fail_on` patterns, looked for in each chunk of complete lines as the framer cuts it.

One compiled bytes regex is searched over the whole chunk; the line around a hit is found only
then, so a chunk costs one `re.search` and no Python loop over its lines. A job without `fail_on`
first asks `bytes.__contains__` (CPython's fast substring search) for the parts every warning holds
(`ARN`, `arning:`): a chunk with neither, most of them, is never given to the regex engine, whose
scan for a set of first bytes costs about what the character-class search the framer dropped did.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

# A warning-level line: logging's `WARNING:root:` / `[WARNING]`, `WARN`, Python's warnings
# (`UserWarning:`, `DeprecationWarning:`, `RuntimeWarning:` ...), `Warning:` and `warning:`.
WARNING_PATTERN = rb"WARN(?:ING)?\b|[Ww]arning:"
WARNING_PARTS = (b"ARN", b"arning:")  # every match of WARNING_PATTERN holds one of these
LINE_CHARS = 500  # a kept line (the first warning, the matched line) is cut to this many characters
_FAIL = "f"
_WARN = "w"


def _line_at(block: bytes, at: int) -> tuple[int, int]:
    """The bounds of the line holding offset `at` (lines end at \\n or \\r)."""
    start = max(block.rfind(b"\n", 0, at), block.rfind(b"\r", 0, at)) + 1
    ends = [i for i in (block.find(b"\n", at), block.find(b"\r", at)) if i >= 0]
    return start, min(ends) if ends else len(block)


def _text(line: bytes) -> str:
    text = line.decode("utf-8", "backslashreplace").strip()
    return text if len(text) <= LINE_CHARS else text[: LINE_CHARS - 1] + "…"


@functools.lru_cache(maxsize=256)  # jobs alike share their regexes
def compile_scan(fail_on: tuple[str, ...]) -> tuple[re.Pattern[bytes], tuple[re.Pattern[bytes], ...]]:
    """The regex searched over every chunk (the `fail_on` patterns without groups, joined, then the
    warning pattern, told apart by group name), and the `fail_on` patterns with groups, each its
    own regex (joined, their backreferences would name another pattern's group). `^` and `$`
    match at line ends."""
    compiled = [re.compile(p.encode(), re.MULTILINE) for p in fail_on]
    plain = [c.pattern for c in compiled if not c.groups]
    warn = b"(?P<" + _WARN.encode() + b">" + WARNING_PATTERN + b")"
    if plain:
        joined = b"(?P<" + _FAIL.encode() + b">" + b"|".join(b"(?:" + p + b")" for p in plain) + b")|" + warn
    else:
        joined = warn
    return re.compile(joined, re.MULTILINE), tuple(c for c in compiled if c.groups)


class OutputScan:
    """One job's scan over all its attempts: warning lines (count, first) and, per attempt, the
    first line a `fail_on` pattern matched (`matched`; `on_match` is called with it once)."""

    __slots__ = ("_extra", "_prefilter", "_regex", "first_warning", "matched", "on_match", "warnings")

    def __init__(self, fail_on: Sequence[str] = ()) -> None:
        self._regex, self._extra = compile_scan(tuple(fail_on))
        self._prefilter = not fail_on  # only warnings to look for: their fixed parts say where
        self.warnings = 0
        self.first_warning: str | None = None
        self.matched: str | None = None
        self.on_match: Callable[[str], None] | None = None

    def new_attempt(self) -> None:
        self.matched = None
        self.on_match = None

    def __call__(self, block: bytes) -> None:
        """Scan a chunk of complete lines (or one cut part of an over-long line)."""
        if self._prefilter and WARNING_PARTS[0] not in block and WARNING_PARTS[1] not in block:
            return
        m = self._regex.search(block)
        fail_at = self._hits(block, m) if m is not None else None
        if self._extra and self.matched is None:
            for extra in self._extra:
                found = extra.search(block)
                if found is not None and (fail_at is None or found.start() < fail_at):
                    fail_at = found.start()
        if fail_at is not None:
            self._fail(block, fail_at)

    def _hits(self, block: bytes, first: re.Match[bytes]) -> int | None:
        """Count the chunk's warning lines from the first hit (a line counts once however many
        warnings it holds); returns where the first `fail_on` hit is, if any."""
        counted_to = -1  # the end of the last warning line counted
        fail_at = None
        m: re.Match[bytes] | None = first
        while m is not None:
            if m.lastgroup == _FAIL:
                if fail_at is None:
                    fail_at = m.start()
            elif m.start() >= counted_to:
                start, end = _line_at(block, m.start())
                self.warnings += 1
                if self.first_warning is None:
                    self.first_warning = _text(block[start:end])
                counted_to = end
            m = self._regex.search(block, max(m.end(), m.start() + 1))
        return fail_at

    def _fail(self, block: bytes, at: int) -> None:
        if self.matched is not None:
            return
        start, end = _line_at(block, at)
        self.matched = _text(block[start:end])
        if self.on_match is not None:
            self.on_match(self.matched)
