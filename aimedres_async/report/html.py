"""`report`: one self-contained HTML file that draws a run from its files.

The page is hand-written SVG and vanilla JS from `assets/`, inlined together with the run's
data as JSON (chart_data.py): no library, no network request, opens from disk or as a CI artifact.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from aimedres_async.records.sinks import atomic_write
from aimedres_async.report.chart_data import page_data
from aimedres_async.report.run_model import ReportError, iso_time, load

_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def _asset(name: str) -> str:
    return resources.files("aimedres_async.report").joinpath("assets", name).read_text(encoding="utf-8")


def render_html(data: dict[str, Any]) -> bytes:
    """The page: inline CSS, the data as JSON, inline JS. `<` in the JSON is escaped, so no text a
    job printed can close the script element."""
    payload = orjson.dumps(data).replace(b"<", b"\\u003c")
    title = data["title"].replace("&", "&amp;").replace("<", "&lt;")
    head = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title} · aimedres-async report</title><style>{_asset('report.css')}</style></head>"
        '<body><div id="app"><p class="loading">Drawing the report…</p></div>'
        '<script id="data" type="application/json">'
    )
    tail = f"</script><script>{_asset('report.js')}</script></body></html>\n"
    return head.encode() + payload + tail.encode()


def build(run_dirs: list[Path], since: float | None = None) -> bytes:
    """The report of these run folders (one run, or a daemon's runs with `since`)."""
    m = load(run_dirs, since)
    title = f"since {iso_time(since)}" if since is not None else str(m.runs[0]["run"])
    return render_html(page_data(m, title, since))


def write_report(run_dirs: list[Path], out: Path, since: float | None = None) -> Path:
    """Write the report atomically (temp + rename); ReportError on a problem with the input."""
    html = build(run_dirs, since)
    try:
        atomic_write(out, html)
    except OSError as e:
        raise ReportError(f"cannot write {out}: {e.strerror or e}") from None
    return out
