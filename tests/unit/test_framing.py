"""records framing (`Framer`), in-process: a job's raw output chunks become `job.output` records.
Lines end at \\n, \\r\\n or a lone \\r, wherever the chunks split them; an over-long line is cut into
`partial` parts; bytes that are not UTF-8 are kept (backslashreplace); a JSON-object line is kept
as `data`; the fast path (one bytes.replace) and the orjson path write the same records."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aimedres_async.records.framing import ATTEMPT_MARK, Framer, Records, with_run_job
from aimedres_async.records.sinks import last_lines

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
Redact = Callable[[bytes], bytes]


def framer(max_line: int = 1 << 20, redact: Redact | None = None, stream: str = "stdout") -> Framer:
    return Framer(2, stream, max_line, deque(maxlen=64), redact)


def raw_records(f: Framer, chunks: Sequence[bytes], flush: bool = True) -> list[dict[str, Any]]:
    """Every record the framer writes for these chunks (and the end of the stream), parsed."""
    out = b""
    for chunk in chunks:
        pieces, _lines = f.feed(chunk)
        out += b"".join(bytes(p) for p in pieces)
    if flush:
        out += f.flush()
    assert out == b"" or out.endswith(b"\n")
    return [orjson.loads(line) for line in out.splitlines()]


def content(recs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a record says, without its time: ("line", text, partial) or ("data", object)."""
    return [("data", r["data"]) if "data" in r else ("line", r["line"], r.get("partial", False)) for r in recs]


def lines(chunks: Sequence[bytes], **kw: Any) -> list[str]:
    recs = raw_records(framer(**kw), chunks)
    assert all("line" in r and not r.get("partial") for r in recs), recs
    return [r["line"] for r in recs]


# ---------------------------------------------------------------- the record


def test_a_record_carries_the_attempt_stream_and_time_and_leaves_run_and_job_to_its_path() -> None:
    (rec,) = raw_records(framer(stream="stderr"), [b"hello\n"])
    assert list(rec) == ["ts", "t", "event", "attempt", "stream", "line"]  # log schema 2
    assert rec["event"] == "job.output"
    assert (rec["attempt"], rec["stream"], rec["line"]) == (2, "stderr", "hello")
    assert TS.fullmatch(rec["ts"]) and isinstance(rec["t"], float)


def test_the_records_of_one_chunk_share_their_time() -> None:
    recs = raw_records(framer(), [b"a\nb\nc\n"])
    assert len({(r["ts"], r["t"]) for r in recs}) == 1


# ---------------------------------------------------------------- line ends


def test_newline_ends_lines_and_empty_lines_are_kept() -> None:
    assert lines([b"a\n\nb\n"]) == ["a", "", "b"]


def test_crlf_is_one_line_end() -> None:
    assert lines([b"a\r\nb\r\n\r\n"]) == ["a", "b", ""]


def test_a_lone_cr_ends_a_line_like_a_progress_bar_redraw() -> None:
    assert lines([b"10%\r50%\r100%\n"]) == ["10%", "50%", "100%"]
    assert lines([b"a\r\rb\n"]) == ["a", "b"]  # a bare \r is no line of its own


def test_a_cr_at_the_end_of_a_chunk_waits_to_see_if_a_newline_follows() -> None:
    assert lines([b"a\r", b"\nb\n"]) == ["a", "b"]
    assert lines([b"a\r", b"b\n"]) == ["a", "b"]
    assert lines([b"a\r", b"\r\n", b"b\r"]) == lines([b"a\r\r\nb\r"]) == ["a", "", "b"]  # a blank CRLF line


def test_a_line_ended_by_a_cr_is_written_as_soon_as_the_next_chunk_shows_it_is_no_crlf() -> None:
    """A progress bar's redraws appear as they come, not when the bar finally prints a newline."""
    f = framer()
    assert raw_records(f, [b"10%\r"], flush=False) == []  # a \r\n may still be on its way
    assert content(raw_records(f, [b"20%"], flush=False)) == [("line", "10%", False)]
    assert content(raw_records(f, [b"\r30%\r"], flush=False)) == [("line", "20%", False)]


def test_a_line_split_across_chunks_is_one_record() -> None:
    assert lines([b"hel", b"lo wor", b"ld\nnext", b"\n"]) == ["hello world", "next"]


def test_a_chunk_without_a_line_end_writes_nothing_yet() -> None:
    f = framer()
    assert f.feed(b"no end yet") == ([], b"")
    assert f.feed(b"") == ([], b"")


def test_the_unterminated_last_line_is_written_at_the_end_of_the_stream() -> None:
    f = framer()
    assert content(raw_records(f, [b"done\nlast words"])) == [("line", "done", False), ("line", "last words", False)]
    assert f.flushed == b"last words"
    assert f.flush() == b""  # nothing twice


def test_feed_returns_the_complete_lines_it_framed() -> None:
    f = framer()
    _pieces, complete = f.feed(b"a\nb\npart")
    assert complete == b"a\nb\n"
    assert f.feed(b"ial\n")[1] == b"partial\n"


# ---------------------------------------------------------------- max_line_bytes


def test_a_long_line_is_cut_into_partial_parts() -> None:
    recs = content(raw_records(framer(max_line=10), [b"0123456789" * 2 + b"abc\n", b"short\n"]))
    assert recs == [
        ("line", "0123456789", True),
        ("line", "0123456789", True),
        ("line", "abc", True),
        ("line", "short", False),
    ]


def test_a_line_of_exactly_max_line_is_not_cut() -> None:
    assert content(raw_records(framer(max_line=5), [b"12345\n"])) == [("line", "12345", False)]


def test_an_endless_line_is_written_in_parts_as_it_grows() -> None:
    """Memory stays bounded: the framer writes an over-long line's parts before its end comes."""
    f = framer(max_line=8)
    written = raw_records(f, [b"x" * 5] * 10, flush=False)  # 50 bytes, no line end yet
    assert content(written) == [("line", "x" * 8, True)] * 6
    assert content(raw_records(f, [b"\n"])) == [("line", "xx", True)]


def test_parts_join_back_to_the_line() -> None:
    line = bytes(range(32, 127)) * 3
    recs = raw_records(framer(max_line=7), [line[:50], line[50:] + b"\n"])
    assert "".join(r["line"] for r in recs) == line.decode()
    assert all(len(r["line"].encode()) <= 7 for r in recs) and all(r["partial"] for r in recs)


def test_an_unterminated_cut_line_ends_with_a_partial_part() -> None:
    assert content(raw_records(framer(max_line=4), [b"abcdefghij"])) == [
        ("line", "abcd", True),
        ("line", "efgh", True),
        ("line", "ij", True),
    ]


# ---------------------------------------------------------------- bytes and JSON


def test_bytes_that_are_not_utf8_are_kept_visible() -> None:
    assert lines([b"bad \xff\xfe byte\n"]) == ["bad \\xff\\xfe byte"]


def test_a_utf8_character_split_across_chunks_is_whole() -> None:
    assert lines([b"caf" + b"\xc3", b"\xa9 ok\n"]) == ["café ok"]


def test_control_characters_and_quotes_are_escaped_not_lost() -> None:
    assert lines([b'say "hi" \\ \x1b[31mred\t\x00\n']) == ['say "hi" \\ \x1b[31mred\t\x00']


def test_a_json_object_line_is_kept_as_data() -> None:
    f = framer()
    recs = raw_records(f, [b'{"epoch": 3, "acc": 0.91, "tags": ["a"]}\n', b"plain\n"])
    assert content(recs) == [("data", {"epoch": 3, "acc": 0.91, "tags": ["a"]}), ("line", "plain", False)]
    assert "line" not in recs[0]
    assert f.last_data == {"epoch": 3, "acc": 0.91, "tags": ["a"]}


def test_lines_that_only_look_like_json_objects_stay_lines() -> None:
    f = framer()
    recs = raw_records(f, [b"{not json\n", b"[1, 2]\n", b' {"a": 1}\n', b'{"a": 1} trailing\n'])
    assert [r["line"] for r in recs] == ["{not json", "[1, 2]", ' {"a": 1}', '{"a": 1} trailing']
    assert f.last_data is None


def test_a_part_of_a_cut_line_is_never_data_even_when_it_parses() -> None:
    recs = raw_records(framer(max_line=7), [b'{"a":1}{"b":2}\n'])  # each 7-byte part is a JSON object
    assert content(recs) == [("line", '{"a":1}', True), ("line", '{"b":2}', True)]


def test_the_last_data_is_the_latest_object() -> None:
    f = framer()
    raw_records(f, [b'{"epoch": 1}\n{"epoch": 2}\n'])
    assert f.last_data == {"epoch": 2}


# ---------------------------------------------------------------- fast path and orjson path


PLAIN = b"epoch 1/10 loss=0.25 acc=0.875\nstep 200 lr=3e-4 [#####     ] 50%\n\nsaved to runs/a-b_c.ckpt\n"


def untimed(recs: list[dict[str, Any]]) -> list[list[tuple[str, Any]]]:
    """Records without their time, fields in the order written."""
    return [[(k, v) for k, v in r.items() if k not in ("ts", "t")] for r in recs]


def test_the_fast_path_and_the_orjson_path_write_the_same_records() -> None:
    fast = raw_records(framer(), [PLAIN])
    careful = raw_records(framer(), [PLAIN + b'"quoted"\n'])  # a byte JSON must escape: line by line
    assert untimed(fast) == untimed(careful)[:-1]
    assert [list(r)[:2] for r in fast] == [["ts", "t"]] * 4


def test_the_fast_path_output_is_valid_json_lines() -> None:
    f = framer()
    pieces, _ = f.feed(PLAIN * 50)
    data = b"".join(bytes(p) for p in pieces)
    recs = [orjson.loads(x) for x in data.split(b"\n")[:-1]]
    assert len(recs) == 200 and data.endswith(b"}\n")


_ALPHABET = st.sampled_from([b"a", b"b", b" ", b"\n", b"\r", b"{", b"}", b'"', b":", b"1", b"\xff", b"\xc3\xa9", b"\\"])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_ALPHABET, max_size=120).map(b"".join),
    st.lists(st.integers(0, 120), max_size=8),
    st.integers(1, 40),
)
@example(b"\na\ra", [3], 1)  # a read ending in "a\r" with max_line 1: the held \r made "a" look too long
def test_framed_whole_or_in_pieces_the_records_are_the_same(data: bytes, cuts: list[int], max_line: int) -> None:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    whole = content(raw_records(framer(max_line=max_line), [data]))
    split = content(raw_records(framer(max_line=max_line), pieces))
    # A line of exactly k*max_line bytes may end with an empty partial part when its line end came
    # in a later read (documented in tests/records/test_framing.py): it adds nothing to the joined line.
    empty_part = ("line", "", True)
    assert [r for r in split if r != empty_part] == [r for r in whole if r != empty_part]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from([b"ab", b"c d", b"", b"x" * 30, b"1.5", b"e=1", b"[##  ] 50%"]), min_size=1, max_size=20)
)
def test_plain_lines_give_the_same_records_on_either_path(plain: list[bytes]) -> None:
    """A chunk longer than max_line goes line by line even when its lines are plain; with max_line
    at the longest line nothing is cut, so the two paths must agree record for record."""
    data = b"\n".join(plain) + b"\n"
    longest = max(1, *(len(x) for x in plain))
    fast = untimed(raw_records(framer(), [data]))
    careful = untimed(raw_records(framer(max_line=longest), [data]))
    assert fast == careful
    assert [dict(r)["line"] for r in fast] == [x.decode() for x in plain]


# ---------------------------------------------------------------- redaction and the tail


def _redact(data: bytes) -> bytes:
    return re.sub(rb"MRN\d{6,}", b"[REDACTED]", data)


def test_a_secret_split_across_chunks_is_redacted() -> None:
    assert lines([b"patient MRN12", b"34567 admitted\n"], redact=_redact) == ["patient [REDACTED] admitted"]


def test_a_secret_hidden_by_a_json_escape_is_redacted_in_data() -> None:
    recs = raw_records(framer(redact=_redact), [b'{"id": "MRN\\u00312345678", "acc": 1}\n'])
    assert content(recs) == [("data", {"id": "[REDACTED]", "acc": 1})]


def test_the_tail_holds_redacted_lines_for_reports() -> None:
    f = framer(redact=_redact)
    raw_records(f, [b"start\n", b"id MRN1234567\n", b"end"])
    assert last_lines(f.tail) == ["start", "id [REDACTED]", "end"]
    assert b"MRN1234567" not in b"".join(block for _, block in f.tail)


def test_last_lines_names_each_attempt_when_they_span_several() -> None:
    tail: deque[tuple[str, bytes]] = deque(maxlen=64)
    tail.append((ATTEMPT_MARK, b"1"))
    raw_records(Framer(1, "stderr", 100, tail), [b"boom 1\n"])
    tail.append((ATTEMPT_MARK, b"2"))
    raw_records(Framer(2, "stdout", 100, tail), [b"a\nb\n"])
    assert last_lines(tail) == ["--- attempt 1 ---", "boom 1", "--- attempt 2 ---", "a", "b"]
    assert last_lines(tail, n=1) == ["--- attempt 2 ---", "b"]


# ---------------------------------------------------------------- the --log-file stream's form

RUN, JOB = "20261123T113347Z-b31a", "als"


def streamed(pieces: list[Any]) -> list[dict[str, Any]]:
    """What the --log-file stream gets for these record pieces, parsed; checks the key order."""
    data = b"".join(bytes(p) for p in with_run_job(pieces, RUN, JOB))
    assert data == b"" or data.endswith(b"\n")
    recs = [orjson.loads(line) for line in data.split(b"\n")[:-1]]
    for rec in recs:
        assert list(rec)[:7] == ["ts", "t", "event", "run", "job", "attempt", "stream"], rec
        assert (rec["run"], rec["job"]) == (RUN, JOB)
    return recs


def as_streamed(pieces: list[Any]) -> list[dict[str, Any]]:
    """The job file's records with run and job put back after event, as schema 1 wrote them."""
    recs = [orjson.loads(x) for x in b"".join(bytes(p) for p in pieces).splitlines()]
    out = []
    for rec in recs:
        items = list(rec.items())
        out.append(dict([*items[:3], ("run", RUN), ("job", JOB), *items[3:]]))
    return out


def test_the_stream_form_of_plain_lines_is_one_more_replace_with_run_and_job_after_event() -> None:
    pieces, _ = framer().feed(PLAIN * 3)
    assert isinstance(pieces, Records)  # the fast path says what it framed
    assert streamed(pieces) == as_streamed(pieces)
    assert [r["line"] for r in streamed(pieces)][:2] == [
        "epoch 1/10 loss=0.25 acc=0.875",
        "step 200 lr=3e-4 [#####     ] 50%",
    ]


def test_the_stream_form_of_careful_records_keeps_what_the_job_printed() -> None:
    # a data object and a line that spell the head of a record must not get ids of their own
    chunk = b'{"event":"job.output","attempt":1,"x":1}\nsay ,"event":"job.output", "q"\n\xff\n'
    pieces, _ = framer().feed(chunk)
    assert not isinstance(pieces, Records)
    recs = streamed(pieces)
    assert recs == as_streamed(pieces)
    assert recs[0]["data"] == {"event": "job.output", "attempt": 1, "x": 1}
    assert recs[1]["line"] == 'say ,"event":"job.output", "q"'


def test_the_stream_form_of_a_chunk_and_the_parts_of_a_line_cut_meanwhile() -> None:
    f = framer(max_line=8)
    pieces, _ = f.feed(b'"a"\n' + b"x" * 20)  # a line, then an unterminated one cut in parts
    assert streamed(pieces) == as_streamed(pieces)
    tail = f.flush()
    assert streamed([tail]) == as_streamed([tail])  # the end of the stream: one record on its own
    assert [(r.get("line"), r.get("partial", False)) for r in streamed([*pieces, tail])] == [
        ('"a"', False),
        ("xxxxxxxx", True),
        ("xxxxxxxx", True),
        ("xxxx", True),
    ]


def test_records_appended_to_plain_lines_get_run_and_job_too() -> None:
    pieces, _ = framer().feed(b"a\nb\n")
    assert isinstance(pieces, Records)
    more, _ = framer().feed(b'"c"\n')
    pieces += more  # as feed appends what it cut from a long line
    assert isinstance(pieces, Records) and streamed(pieces) == as_streamed(pieces)


def test_records_of_different_times_each_get_run_and_job() -> None:
    one, _ = framer().feed(b'"q1"\n')
    two, _ = framer().feed(b'"q2"\n"q3"\n')
    pieces = [*one, *two]
    assert streamed(pieces) == as_streamed(pieces)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_ALPHABET, max_size=120).map(b"".join),
    st.lists(st.integers(0, 120), max_size=8),
    st.integers(1, 40),
)
def test_the_stream_form_is_the_job_files_records_with_run_and_job(data: bytes, cuts: list[int], max_line: int) -> None:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    f = framer(max_line=max_line)
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        pieces, _ = f.feed(data[a:b])
        if pieces:
            assert streamed(pieces) == as_streamed(pieces)
    tail = f.flush()
    if tail:
        assert streamed([tail]) == as_streamed([tail])
