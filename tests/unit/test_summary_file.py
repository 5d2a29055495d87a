"""summary.json assembled from its entries' bytes (report.summary.entry_bytes / summary_pieces) is the
same file as serializing the whole summary at once, whatever the entries hold; and it is written
from those pieces without a joined copy of the file in memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from aimedres_async.engine.recorder import Recorder
from aimedres_async.records.console import Console
from aimedres_async.report.summary import entry_bytes, summary_pieces

scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
)
entries = st.dictionaries(st.text(), values, max_size=6)


def summary_bytes(meta: dict[str, Any], entries: list[bytes]) -> bytes:
    return b"".join(summary_pieces(meta, entries))


def whole(meta: dict[str, Any], jobs: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({**meta, "jobs": jobs}, option=orjson.OPT_INDENT_2)


@settings(max_examples=200, deadline=None)
@given(
    meta=st.dictionaries(st.text().filter(lambda k: k != "jobs"), values, min_size=1, max_size=4),
    jobs=st.lists(entries, max_size=5),
)
def test_assembled_summary_is_the_whole_summary(meta: dict[str, Any], jobs: list[dict[str, Any]]) -> None:
    assert summary_bytes(meta, [entry_bytes(j) for j in jobs]) == whole(meta, jobs)


def test_a_real_entry_with_newlines_in_strings_round_trips() -> None:
    meta = {"schema": 2, "run": "20260101T000000Z-abcd", "counts": {"succeeded": 1}}
    job = {"id": "a", "error_tail": ["line 1\nline 2", "\r"], "metrics": {"acc": 0.5}, "command": ["x"]}
    data = summary_bytes(meta, [entry_bytes(job), entry_bytes({**job, "id": "b"})])
    assert orjson.loads(data) == {**meta, "jobs": [job, {**job, "id": "b"}]}
    assert data == whole(meta, [job, {**job, "id": "b"}])


def test_the_run_writes_summary_json_without_a_copy_of_it_in_memory(tmp_path: Path) -> None:
    """At 100,000 jobs the file is ~60 MB: joining the entries (and adding the head to them) held
    two more copies of it beside the entries while it was written."""
    meta = {"schema": 2, "run": "r", "counts": {"queued": 4000}}
    jobs = [{"id": f"j{i}", "command_line": "x" * 1000} for i in range(4000)]
    slots = [entry_bytes(j) for j in jobs]
    size = sum(map(len, slots))
    recorder = Recorder(SimpleNamespace(dir=tmp_path), Console("console"), list, serve=False)  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        assert recorder._write(meta, slots, final=True) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "summary.json").read_bytes() == whole(meta, jobs)
    assert peak < size / 2, f"{peak} bytes held while writing a {size}-byte summary"
