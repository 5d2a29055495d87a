"""The output hot path: `Framer` turns one stream's raw chunks into `job.output` JSON-lines records.

SPEC §6 (Output), §7 (record shape) and §11 (fast path: one `bytes.replace` per plain chunk). Every
test parses what the framer returns with orjson, line by line, as a log reader would.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aimedres_async.records import framing
from aimedres_async.records.framing import Framer
from aimedres_async.records.sinks import last_lines

TS_RE = re.compile(rb"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
TS_FIELD = re.compile(rb'^\{"ts":"[^"]*","t":[0-9.]+,')
BASE_KEYS = {"ts", "t", "event", "attempt", "stream"}  # log schema 2: the file's path names run and job
PROPERTY = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------- helpers


def make_framer(max_line: int = 1 << 20, tail: collections.deque[tuple[str, bytes]] | None = None) -> Framer:
    return Framer(1, "stdout", max_line, tail if tail is not None else collections.deque(maxlen=8))


def check_records(raw: bytes) -> list[dict[str, Any]]:
    """Parse a framer's output; every line must be one well-formed `job.output` record."""
    if not raw:
        return []
    assert raw.endswith(b"\n"), "records end with a newline"
    recs = []
    for line in raw.split(b"\n")[:-1]:
        line.decode("utf-8")  # strict: records are UTF-8 whatever the child printed
        rec = orjson.loads(line)
        assert isinstance(rec, dict)
        ts = rec["ts"].encode()
        assert TS_RE.match(ts), rec["ts"]
        when = datetime.strptime(rec["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")  # a real date, not just the right shape
        # t is the same moment in Unix seconds (a number jq and pandas take as it is)
        assert isinstance(rec["t"], float) and abs(when.replace(tzinfo=UTC).timestamp() - rec["t"]) < 1e-5
        assert rec["event"] == "job.output"
        assert (rec["attempt"], rec["stream"]) == (1, "stdout")
        extra = set(rec) - BASE_KEYS
        assert extra in ({"line"}, {"data"}, {"line", "partial"}), rec
        if "line" in rec:
            assert isinstance(rec["line"], str)
        else:
            assert isinstance(rec["data"], dict)
        if "partial" in rec:
            assert rec["partial"] is True
        recs.append(rec)
    return recs


def as_bytes(records: Any) -> bytes:
    """What a sink writes: feed/flush return bytes or a list of buffers to write in order."""
    if isinstance(records, bytes | bytearray | memoryview):
        return bytes(records)
    return b"".join(bytes(p) for p in records)


def feed(f: Framer, chunk: bytes) -> tuple[bytes, bytes]:
    records, complete = f.feed(chunk)
    assert isinstance(complete, bytes | bytearray | memoryview)
    return as_bytes(records), bytes(complete)


def frame_raw(chunks: Iterable[bytes], max_line: int = 1 << 20, framer: Framer | None = None) -> bytes:
    f = framer or make_framer(max_line)
    out = [feed(f, c)[0] for c in chunks]
    out.append(as_bytes(f.flush()))
    return b"".join(out)


def frame(chunks: Iterable[bytes], max_line: int = 1 << 20, framer: Framer | None = None) -> list[dict[str, Any]]:
    return check_records(frame_raw(chunks, max_line, framer))


def lines_of(recs: list[dict[str, Any]]) -> list[str]:
    return [r["line"] for r in recs]


def simple(recs: list[dict[str, Any]]) -> list[tuple[str, Any, bool]]:
    """A record as (kind, value, partial), for comparing sequences of records."""
    return [("data", r["data"], False) if "data" in r else ("line", r["line"], r.get("partial", False)) for r in recs]


def br(b: bytes) -> str:
    return b.decode("utf-8", "backslashreplace")


# ------------------------------------------------------------------------------------ record shape


def test_record_is_one_json_object_per_line_with_all_fields() -> None:
    raw = frame_raw([b"hello\n", b'say "hi"\n', b"caf\xc3\xa9\n", b'{"loss": 0.5}\n', b"tail"])
    recs = check_records(raw)
    assert len(recs) == len(raw.splitlines()) == 5
    assert lines_of(recs[:3]) == ["hello", 'say "hi"', "café"]
    assert recs[3]["data"] == {"loss": 0.5}
    assert recs[4]["line"] == "tail"
    assert all("partial" not in r for r in recs)


def test_attempt_and_stream_come_from_the_framer_and_run_and_job_are_left_to_the_path() -> None:
    f = Framer(3, "stderr", 1 << 20, collections.deque(maxlen=8))
    rec = orjson.loads(feed(f, b"x\n")[0])
    assert (rec["attempt"], rec["stream"]) == (3, "stderr")
    assert rec["attempt"] == 3 and isinstance(rec["attempt"], int)
    assert "run" not in rec and "job" not in rec


def test_timestamp_is_rfc3339_utc_with_microseconds() -> None:
    for _ in range(200):
        assert TS_RE.match(framing.timestamp())
    assert framing.timestamp_str().endswith("Z") and len(framing.timestamp_str()) == len("2026-11-23T11:33:47.123456Z")


# --------------------------------------------------------------------------------------- splitting


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\nb\n"], ["a", "b"]),
        ([b"a\r\nb\r\n"], ["a", "b"]),
        ([b"a\rb\r"], ["a", "b"]),
        ([b"a\rb\nc\r\nd"], ["a", "b", "c", "d"]),
        ([b"a\r", b"\nb\n"], ["a", "b"]),  # \r\n split across two reads: one terminator
        ([b"a", b"\r", b"\nb\n"], ["a", "b"]),
        ([b"a\r", b"\n"], ["a"]),
        ([b"a\r", b"\r\n"], ["a", ""]),  # as "a\r\r\n" in one read: "a" (lone \r), then "" (\r\n)
        ([b"\r[###] 10%\r[####] 20%\n"], ["[###] 10%", "[####] 20%"]),  # progress bar redraws
        ([b"\r[###] 10%", b"\r[####] 20%", b"\n"], ["[###] 10%", "[####] 20%"]),
        ([b"\r\r\rx\n"], ["x"]),  # bare \r only: no empty records
        ([b"a\n\nb\n"], ["a", "", "b"]),  # a blank line is an empty record
        ([b"a\n", b"\n", b"b\n"], ["a", "", "b"]),
        ([b"a\r\n\r\nb\r\n"], ["a", "", "b"]),  # a blank CRLF line too
        ([b"\n"], [""]),
        ([b"no newline at all"], ["no newline at all"]),  # flushed at end of stream
        ([b"par", b"tial ", b"line\n"], ["partial line"]),
        ([b"x\n", b"y"], ["x", "y"]),
    ],
)
def test_records_split_at_lf_crlf_and_lone_cr(chunks: list[bytes], expected: list[str]) -> None:
    assert lines_of(frame(chunks)) == expected


def test_lone_lf_chunk_after_cr_does_not_swallow_the_next_blank_line() -> None:
    # "a\r\n\nb\n" is "a", "", "b" however the reads fall
    assert lines_of(frame([b"a\r\n\nb\n"])) == ["a", "", "b"]
    assert lines_of(frame([b"a\r", b"\n", b"\nb\n"])) == ["a", "", "b"]


def test_blank_crlf_line_split_across_reads_is_kept() -> None:
    assert lines_of(frame([b"a\r\n\r\nb\n"])) == ["a", "", "b"]
    assert lines_of(frame([b"a\r\n\r", b"\nb\n"])) == ["a", "", "b"]


def test_empty_chunk_changes_nothing() -> None:
    f = make_framer()
    first = feed(f, b"a\r")
    assert first[1] == b""  # a trailing \r waits: it may be half of \r\n
    assert feed(f, b"") == (b"", b"")
    recs = check_records(first[0] + feed(f, b"\nb\n")[0] + as_bytes(f.flush()))
    assert lines_of(recs) == ["a", "b"]  # the \n still pairs with the \r before the empty read


def test_flush_without_pending_returns_nothing() -> None:
    f = make_framer()
    assert f.flush() == b""
    f.feed(b"done\n")
    assert f.flush() == b""


def test_crlf_split_after_a_nonempty_line_keeps_later_blank_lines() -> None:
    # The \n that completes a split \r\n is swallowed, but only that one.
    assert lines_of(frame([b"a\r", b"\n\nb\n"])) == ["a", "", "b"]
    assert lines_of(frame([b"a\r", b"\n", b"b\n", b"\n"])) == ["a", "b", ""]


# ---------------------------------------------------------------------- fast path vs careful path


class _Spy:
    """Wraps framing._LINE to see whether the careful (line-by-line) path ran."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self.pattern = pattern
        self.calls = 0

    def finditer(self, data: bytes) -> Any:
        self.calls += 1
        return self.pattern.finditer(data)


def _strip_ts(raw: bytes) -> list[bytes]:
    return [TS_FIELD.sub(b'{"ts":"","t":0,', line) for line in raw.splitlines()]


def _fast_and_careful(monkeypatch: pytest.MonkeyPatch, text: bytes) -> tuple[bytes, bytes]:
    """Frame the same complete lines once on the fast path and once on the careful one."""
    spy = _Spy(framing._LINE)
    monkeypatch.setattr(framing, "_LINE", spy)
    fast = feed(make_framer(1 << 20), text)[0]
    assert spy.calls == 0, "plain ASCII lines in one chunk take the bytes.replace path"
    # the same chunk, with the framer told that every byte needs care
    monkeypatch.setattr(framing, "_PLAIN", b"")
    careful = feed(make_framer(1 << 20), text)[0]
    assert spy.calls == 1, "the careful path ran"
    return fast, careful


@pytest.mark.parametrize(
    "text",
    [b"a\n", b"epoch 1 loss 0.5\nepoch 2 loss 0.25\n", b"\n\n\n", b"x\n\ny\n", b"tab-free/ascii [~] ok\n" * 20],
)
def test_fast_and_careful_paths_give_identical_records(monkeypatch: pytest.MonkeyPatch, text: bytes) -> None:
    fast, careful = _fast_and_careful(monkeypatch, text)
    assert _strip_ts(fast) == _strip_ts(careful)
    assert lines_of(check_records(fast)) == text.decode().split("\n")[:-1]


def test_every_byte_value_frames_to_a_valid_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of the 256 byte values inside a line: the fast path takes only bytes that need no
    escaping (printable ASCII but `"`, `\\` and `{`), and every record is valid JSON that keeps it."""
    spy = _Spy(framing._LINE)
    monkeypatch.setattr(framing, "_LINE", spy)
    plain = set(range(0x20, 0x7F)) - set(b'"\\{')
    for b in range(256):
        if b in b"\r\n":
            continue
        line = b"a" + bytes([b]) + b"z"
        before = spy.calls
        raw = feed(make_framer(), line + b"\n")[0]
        assert (spy.calls == before) == (b in plain), f"byte {b:#04x}"
        [rec] = check_records(raw)
        assert rec["line"] == line.decode("utf-8", "backslashreplace"), f"byte {b:#04x}"


@given(
    st.lists(
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\{'), max_size=30),
        min_size=1,
        max_size=20,
    )
)
@PROPERTY
def test_property_fast_and_careful_paths_agree(lines: list[str]) -> None:
    text = "".join(x + "\n" for x in lines).encode()
    with pytest.MonkeyPatch.context() as mp:
        fast, careful = _fast_and_careful(mp, text)
    assert _strip_ts(fast) == _strip_ts(careful)
    assert lines_of(check_records(fast)) == lines


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        (b'he said "hi"\n', 'he said "hi"'),
        (b"back\\slash\n", "back\\slash"),
        (b"tab\there\n", "tab\there"),
        (b"nul\x00bell\x07esc\x1b[0m\n", "nul\x00bell\x07esc\x1b[0m"),
        (b"del\x7f\n", "del\x7f"),
        ("non-ascii: café – 日本語 🙂\n".encode(), "non-ascii: café – 日本語 🙂"),
        (b"{not json\n", "{not json"),
        (b"}{\n", "}{"),
    ],
)
def test_careful_path_escapes_and_round_trips(chunk: bytes, expected: str) -> None:
    assert lines_of(frame([chunk])) == [expected]
    # the same line arriving with plain lines around it gives the same record, and they stay intact
    assert lines_of(frame([b"before\n" + chunk + b"after\n"])) == ["before", expected, "after"]


# ------------------------------------------------------------------------- the property (hypothesis)

_PIECES = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    b"\xff",
    b"\xfe",
    b'"',
    b"\\",
    b"{",
    b"}",
    b"a",
    b"bc",
    b" ",
    b"\xc3\xa9",
    b"\xe2\x82",
    b"\xac",
    b'{"a": 1}',
    b"{}",
    b"[1]",
    b"\x1b",
    b"\t",
]
_chunk = st.one_of(
    st.binary(min_size=1, max_size=24),
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=16).map(b"".join),
)
_chunks = st.lists(_chunk, max_size=24)
_max_line = st.sampled_from([1, 2, 3, 5, 8, 13, 64, 4096])


def _spec_lines(data: bytes) -> list[bytes]:
    """The whole stream split by the spec's rules: \\n, \\r\\n, lone \\r; a bare \\r ends no record."""
    out = []
    end = 0
    for m in re.finditer(rb"([^\r\n]*)(\r\n|\r|\n)", data):
        end = m.end()
        if m.group(1) == b"" and m.group(2) == b"\r":
            continue
        out.append(m.group(1))
    if data[end:]:
        out.append(data[end:])
    return out


def _expected_alternatives(line: bytes, n: int) -> list[list[tuple[str, Any, bool]]]:
    """Acceptable record sequences for one line, longest first.

    A line that fits is one record (`data` when it is a JSON object); a longer one is cut at every
    `n` bytes into parts marked partial, each decoded on its own. A line of exactly k*n bytes may in
    addition end with an empty partial part when its terminator arrived in a later read
    (see test_line_of_exactly_max_line_is_framed_the_same_however_it_is_read).
    """
    parts = [("line", br(line[i : i + n]), True) for i in range(0, len(line), n)]
    if len(line) < n:
        return [[_whole(line)]]
    alts = [parts] if len(line) > n else [[_whole(line)], parts]
    if len(line) % n == 0:
        alts.insert(0, [*parts, ("line", "", True)])
    return alts


def _whole(line: bytes) -> tuple[str, Any, bool]:
    if line[:1] == b"{":
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            return ("data", obj, False)
    return ("line", br(line), False)


def _assert_matches_spec(chunks: list[bytes], n: int) -> None:
    """Record by record, the framer's output is the spec's lines of the whole stream, in order.

    Exact matching implies the rest: joining a line's partial parts gives the line back (each part
    decoded with backslashreplace), no part is longer than max_line, nothing is lost or invented.
    """
    recs = simple(frame(chunks, n))
    lines = _spec_lines(b"".join(chunks))
    i = 0
    for k, line in enumerate(lines):
        for alt in _expected_alternatives(line, n):
            if recs[i : i + len(alt)] == alt:
                i += len(alt)
                break
        else:
            raise AssertionError(
                f"line {k} {line!r} (max_line={n}): expected one of {_expected_alternatives(line, n)}, "
                f"got {recs[i : i + 3]}; all lines {lines!r}, all records {recs!r}"
            )
    assert i == len(recs), f"extra records {recs[i:]!r} for lines {lines!r}"


@given(chunks=_chunks, n=_max_line)
@PROPERTY
@example(chunks=[b"x" * 8, b"\n"], n=8)
@example(chunks=[b'{"a": 1}\n', b'{"a":', b" 2}", b"\r\r\n"], n=8)
@example(chunks=[b"\xc3", b"\xa9\xff\n"], n=1)
@example(chunks=[b"{}\n{ }\r"], n=64)
@example(chunks=[b"a\r", b"\n", b"\nb\n"], n=64)  # regression: \r then a lone \n read lost a blank line
@example(chunks=[b"a\r\n\r", b"\nb\n"], n=64)  # regression: a blank CRLF line split between reads
def test_property_framing_matches_the_spec(chunks: list[bytes], n: int) -> None:
    """Any reads of any bytes: the records are the spec's lines, cut at max_line, never an exception."""
    _assert_matches_spec(chunks, n)


@given(
    chunks=st.lists(st.lists(st.sampled_from(list(b'ab \r\n{}"')), min_size=1, max_size=40).map(bytes), max_size=30),
    n=st.integers(1, 50),
)
@PROPERTY
def test_property_parts_never_exceed_max_line(chunks: list[bytes], n: int) -> None:
    f = make_framer(n)
    for c in chunks:
        recs = check_records(feed(f, c)[0])
        assert all(len(r["line"].encode()) <= n for r in recs if "line" in r)
        assert len(f._pending) - (f._pending[-1:] == b"\r") <= n  # a held-back \r is no byte of the line
    assert all(len(r["line"].encode()) <= n for r in check_records(as_bytes(f.flush())) if "line" in r)


# -------------------------------------------------------------------------------- long lines


def test_long_line_is_cut_into_partial_parts_that_join_back() -> None:
    line = bytes(range(0x41, 0x5B)) * 40  # 1040 ASCII bytes
    for chunks in (
        [line + b"\n"],
        [line[:7], line[7:500], line[500:] + b"\n"],
        [line[i : i + 3] for i in range(0, len(line), 3)] + [b"\n"],
    ):
        recs = frame(chunks, 100)
        assert all(r.get("partial") is True for r in recs)
        assert all(0 < len(r["line"]) <= 100 for r in recs)
        assert "".join(lines_of(recs)) == line.decode()
        assert [len(x) for x in lines_of(recs)] == [100] * 10 + [40]


def test_long_line_between_short_lines() -> None:
    recs = frame([b"short\n" + b"y" * 25 + b"\nafter\n"], 10)
    assert simple(recs) == [
        ("line", "short", False),
        ("line", "y" * 10, True),
        ("line", "y" * 10, True),
        ("line", "y" * 5, True),
        ("line", "after", False),
    ]


def test_line_of_exactly_max_line_is_framed_the_same_however_it_is_read() -> None:
    line = b"x" * 16
    one_read = simple(frame([line + b"\n"], 16))
    assert one_read == [("line", "x" * 16, False)]
    assert simple(frame([line, b"\n"], 16)) == one_read
    assert simple(frame([line[:8], line[8:], b"\nnext\n"], 16)) == [*one_read, ("line", "next", False)]


def test_five_megabyte_line_keeps_memory_bounded() -> None:
    max_line = 1 << 20
    size = 5 * (1 << 20) + 12345
    line = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    f = make_framer(max_line)
    out = []
    for i in range(0, size, 64 * 1024):
        records, complete = feed(f, line[i : i + 64 * 1024])
        assert len(f._pending) <= max_line
        assert complete == b""  # no line was completed
        out.append(records)
    tail = as_bytes(f.flush())
    assert tail, "flush returns the unterminated remainder"
    tail_rec = check_records(tail)
    assert len(tail_rec) == 1 and tail_rec[0]["partial"] is True and len(tail_rec[0]["line"]) == 12345
    recs = check_records(b"".join(out) + tail)
    assert len(recs) == 6
    assert all(r["partial"] is True and len(r["line"]) <= max_line for r in recs)
    assert "".join(lines_of(recs)).encode() == line


def test_partial_part_never_becomes_data() -> None:
    obj_line = b'{"loss": ' + b"1" * 30 + b"}"  # a JSON object longer than max_line
    f = make_framer(16)
    recs = frame([obj_line + b"\n"], framer=f)
    assert all("line" in r and r["partial"] is True for r in recs)
    assert "".join(lines_of(recs)).encode() == obj_line
    assert f.last_data is None
    # a part that happens to be a JSON object on its own stays a line too
    f = make_framer(8)
    recs = frame([b"x" * 8 + b'{"a": 1}\n'], framer=f)
    assert simple(recs) == [("line", "x" * 8, True), ("line", '{"a": 1}', True)]
    assert f.last_data is None


# ------------------------------------------------------------------------------ encodings and data


def test_invalid_utf8_is_kept_with_backslashreplace() -> None:
    assert lines_of(frame([b"ok \xff\xfe bad\n"])) == ["ok \\xff\\xfe bad"]
    # a multibyte character split between reads is still decoded whole
    assert lines_of(frame([b"caf\xc3", b"\xa9\n"])) == ["café"]
    # a truncated sequence at end of stream is escaped, not dropped
    assert lines_of(frame([b"end \xe2\x82"])) == ["end \\xe2\\x82"]


def test_json_object_line_becomes_data_and_last_data_tracks_it() -> None:
    f = make_framer()
    recs = frame([b'{"loss": 0.5}\n', b"plain\n", b'{"epoch": 2, "acc": 0.9, "tags": ["a"]}\n', b"after\n"], framer=f)
    assert simple(recs) == [
        ("data", {"loss": 0.5}, False),
        ("line", "plain", False),
        ("data", {"epoch": 2, "acc": 0.9, "tags": ["a"]}, False),
        ("line", "after", False),
    ]
    assert f.last_data == {"epoch": 2, "acc": 0.9, "tags": ["a"]}


@pytest.mark.parametrize(
    ("line", "obj"),
    [(b"{}", {}), (b"{ }", {}), (b"{ } ", {}), (b'{"a": {"b": [1, null]}}', {"a": {"b": [1, None]}})],
)
def test_quote_free_or_nested_objects_are_data_too(line: bytes, obj: dict[str, Any]) -> None:
    f = make_framer()
    recs = frame([b"plain\n" + line + b"\nplain\n"], framer=f)  # '{' sends the chunk down the careful path
    assert simple(recs) == [("line", "plain", False), ("data", obj, False), ("line", "plain", False)]
    assert f.last_data == obj


@pytest.mark.parametrize(
    "line",
    [b"[1, 2, 3]", b'{"loss": 0.5', b'{"loss": nan}', b"{}}", b'{"a": 1} trailing', b"{\xff}", b'"{}"'],
)
def test_non_object_or_broken_json_stays_a_line(line: bytes) -> None:
    f = make_framer()
    recs = frame([line + b"\n"], framer=f)
    assert simple(recs) == [("line", br(line), False)]
    assert f.last_data is None


def test_data_in_the_unterminated_last_record() -> None:
    f = make_framer()
    recs = frame([b"x\n", b'{"final": true}'], framer=f)
    assert simple(recs) == [("line", "x", False), ("data", {"final": True}, False)]
    assert f.last_data == {"final": True}


def test_data_record_embeds_the_object() -> None:
    raw = feed(make_framer(), b'{"loss": 0.5, "name": "caf\xc3\xa9", "n": null}\n')[0]
    assert raw.endswith(b'"data":{"loss":0.5,"name":"caf\xc3\xa9","n":null}}\n')


def test_deeply_nested_json_object_does_not_raise() -> None:
    line = b'{"a":' + b"[" * 300 + b"]" * 300 + b"}"
    f = make_framer()
    recs = frame([line + b"\nnext\n"], framer=f)  # must not raise in the hot path
    assert recs[-1]["line"] == "next"
    assert len(recs) == 2


# ------------------------------------------------------------------------------------- \r flood


def test_cr_flood_gives_one_record_per_update() -> None:
    data = b"".join(b"\r%d" % n for n in range(100_000))
    expected = [str(n) for n in range(100_000)]
    assert lines_of(frame([data])) == expected
    assert lines_of(frame([data[i : i + 65536] for i in range(0, len(data), 65536)])) == expected
    assert lines_of(frame([data + b"\n"], max_line=1024)) == expected


# ------------------------------------------------------------------------- feed's second result


def test_feed_returns_the_complete_lines_of_the_chunk() -> None:
    f = make_framer()
    assert feed(f, b"ab") == (b"", b"")
    records, complete = feed(f, b"c\nde")
    assert complete == b"abc\n"
    assert lines_of(check_records(records)) == ["abc"]
    records, complete = feed(f, b"f\ng\r\nh\r")
    assert complete == b"def\ng\r\n"  # the trailing \r waits for the next read
    assert lines_of(check_records(records)) == ["def", "g"]
    records, complete = feed(f, b"\ni")  # ...which shows it was half of \r\n
    assert complete == b"h\r\n"
    assert lines_of(check_records(records)) == ["h"]
    assert lines_of(check_records(as_bytes(f.flush()))) == ["i"]


def test_feed_complete_lines_on_the_fast_path() -> None:
    f = make_framer()
    records, complete = feed(f, b"one\ntwo\n")
    assert complete == b"one\ntwo\n"
    assert lines_of(check_records(records)) == ["one", "two"]


# ------------------------------------------------------------------------------------ last_lines


def test_last_lines_returns_the_last_50_across_tail_blocks() -> None:
    tail: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=8)
    f = make_framer(tail=tail)
    lines = [f"line {i}" for i in range(200)]
    for i in range(0, 200, 25):  # 8 reads of 25 lines
        f.feed("".join(x + "\n" for x in lines[i : i + 25]).encode())
    assert last_lines(tail, 50) == lines[-50:]
    assert last_lines(tail, 5) == lines[-5:]
    assert last_lines(tail) == lines[-50:]


def test_last_lines_splits_cr_and_crlf_skips_blanks_and_decodes() -> None:
    tail: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=8)
    out = make_framer(tail=tail)
    err = Framer(1, "stderr", 1 << 20, tail)
    out.feed(b"a\r\nb\n\n")
    err.feed(b"E\xff\r")
    out.feed(b"\rp 10%\rp 20%\n")
    out.feed(b"unterminated")
    out.flush()
    err.flush()  # stderr's line ended in a \r: it waited for the end of the stream
    assert last_lines(tail, 50) == ["a", "b", "p 10%", "p 20%", "unterminated", "E\\xff"]
    assert [s for s, _ in tail] == ["stdout", "stderr"]  # consecutive stdout blocks were merged


def test_last_lines_of_nothing() -> None:
    assert last_lines(collections.deque(maxlen=8), 50) == []


def test_last_lines_has_50_lines_when_each_read_holds_one_line() -> None:
    tail: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=8)  # as runner.JobOutput makes it
    f = make_framer(tail=tail)
    for i in range(100):  # e.g. print(f"epoch {i}", flush=True) once per epoch
        f.feed(b"epoch %d\n" % i)
    assert last_lines(tail, 50) == [f"epoch {i}" for i in range(50, 100)]


def test_tail_block_is_bounded() -> None:
    tail: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=8)
    f = make_framer(tail=tail)
    f.feed(b"z" * 100_000 + b"\nlast\n")
    assert all(len(block) <= framing.TAIL_BYTES for _s, block in tail)
    assert last_lines(tail, 1) == ["last"]
