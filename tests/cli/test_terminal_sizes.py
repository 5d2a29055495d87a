"""The live display at 60x15 and 120x30 on a real pty, read back with the pyte terminal emulator
(SPEC §16): a one-line header, a running job's last line keeps at least 20 columns (other columns
go first), colours by meaning (done green, failed red), the finished-job line says `+N more`.
"""

from __future__ import annotations

import os
import re
import select
import time
from pathlib import Path
from typing import Any

import pytest
from test_terminal import PtyRun, config, job, plain, write

pyte = pytest.importorskip("pyte", reason="pyte is not installed (pip install -e '.[test]')")

LONG = "a_rather_long_model_name_for_a_narrow_tty"  # 41 characters: at 60 columns the row must give way
WAITING = (
    "import os, time\ni = 0\n"
    "while not os.path.exists('go'):\n"
    "    print(f'epoch {i} loss={1 / (i + 1):.6f} val_accuracy=0.987654 more words here', flush=True)\n"
    "    time.sleep(0.1); i += 1\n    assert i < 900\n"
)
MANY_METRICS = "import json\nprint(json.dumps({f'm{i}': i for i in range(7)}))\n"


def snapshot(folder: Path, cols: int, rows: int, ready: str) -> tuple[Any, PtyRun]:
    """Run until the terminal's text matches `ready`; the pyte screen at that moment."""
    run = PtyRun(folder, "run", cols=cols, rows=rows)
    scr = pyte.Screen(cols, rows)
    stream = pyte.ByteStream(scr)
    eof = run.read_until(lambda out: re.search(ready, plain(out), re.S) is not None)
    assert not eof, plain(bytes(run.out))
    # let the display draw the state that was just reached (it refreshes 4 times a second)
    deadline = time.monotonic() + 0.6
    while (left := deadline - time.monotonic()) > 0:
        if select.select([run.master], [], [], left)[0]:
            try:
                run.out += os.read(run.master, 1 << 16)
            except OSError:
                break
    stream.feed(bytes(run.out))
    return scr, run


def finish(folder: Path, run: PtyRun) -> tuple[int, bytes]:
    (folder / "go").touch()
    return run.finish()


def line_of(scr: Any, pattern: str) -> int:
    for y, text in enumerate(scr.display):
        if re.search(pattern, text):
            return y
    raise AssertionError(f"no line matches {pattern!r}:\n" + "\n".join(scr.display))


def colour_of(scr: Any, y: int, word: str) -> str:
    x = scr.display[y].index(word)
    return str(scr.buffer[y][x].fg)


@pytest.mark.parametrize(("cols", "rows"), [(60, 15), (120, 30)])
def test_live_display_fits_and_colours_by_meaning(tmp_path: Path, marker: str, cols: int, rows: int) -> None:
    jobs = job("quick", MANY_METRICS) + job(LONG, WAITING) + job("b", WAITING)
    write(tmp_path, config(marker, jobs, workers=3))
    ready = rf"succeeded quick.*{LONG[:10]}.*epoch \d+.*\bb\s+.*epoch \d+"
    scr, run = snapshot(tmp_path, cols, rows, ready)
    try:
        text = "\n".join(scr.display)
        # the header is one line: bar (if any), counts and elapsed together
        y = line_of(scr, r"1/3 done · 2 running · 0 failed · \d")
        assert not scr.display[y + 1].startswith(("·", " ·")), text
        # the finished line says that metrics were left out
        assert re.search(r"succeeded quick \(attempts 1\) m0=0 m1=1 m2=2 m3=3 \+3 more", text), text
        # each running job's row keeps >= 20 columns of its last line
        for name in (LONG, "b"):
            prefix = name if len(name) < 10 else name[:8]
            row = line_of(scr, rf"^{re.escape(prefix)}.*epoch \d+")
            line = scr.display[row].rstrip()
            assert len(line) - line.index("epoch") >= 20, (cols, line)
            assert len(line) <= cols
        if cols == 120:  # room for every column: the name whole, the attempt and the elapsed time
            assert re.search(rf"^{LONG}\s+#1\s+\d+\.\ds\s+epoch \d+ loss=", text, re.M), text
        else:  # at 60 the elapsed and attempt columns go first, then the name is cut with …
            row = scr.display[line_of(scr, rf"^{LONG[:8]}")]
            assert "#1" not in row and not re.search(r"\d+\.\ds", row), text
            assert re.match(rf"{LONG[:30]}\S*… +epoch", row), text
        # colours by meaning: the done count and the bar are green while nothing failed
        assert colour_of(scr, y, "1/3 done") == "green"
        if "━" in scr.display[y]:
            assert colour_of(scr, y, "━") == "green"
        assert colour_of(scr, line_of(scr, r"^succeeded quick"), "succeeded") == "green"
    finally:
        code, out = finish(tmp_path, run)
    assert code == 0, plain(out)


@pytest.mark.parametrize(("cols", "rows"), [(60, 15), (120, 30)])
def test_a_failure_turns_the_count_and_the_bar_red(tmp_path: Path, marker: str, cols: int, rows: int) -> None:
    jobs = job("bad", "import sys; sys.exit(3)", extra="optional = true") + job("b", WAITING)
    write(tmp_path, config(marker, jobs, workers=2))
    scr, run = snapshot(tmp_path, cols, rows, r"failed\s+bad.*\bb\s+.*epoch \d+")
    try:
        y = line_of(scr, r"1/2 done · 1 running · 1 failed")
        assert colour_of(scr, y, "1 failed") == "red"
        if "━" in scr.display[y]:
            assert colour_of(scr, y, "━") == "red"
        assert colour_of(scr, line_of(scr, r"^failed\s+bad"), "failed") == "red"
    finally:
        code, out = finish(tmp_path, run)
    assert code == 0, plain(out)
