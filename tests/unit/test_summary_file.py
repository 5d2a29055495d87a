"""summary.json assembled from its entries' bytes (report.summary.entry_bytes / summary_bytes) is the
same file as serializing the whole summary at once, whatever the entries hold."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from aimedres_async.report.summary import entry_bytes, summary_bytes

scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
)
entries = st.dictionaries(st.text(), values, max_size=6)


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
