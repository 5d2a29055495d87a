"""A sweep's parameters in the HTML report: in the page's data for each swept job (none for a
plain one) and in the job's detail panel, in a real headless Chromium."""

from __future__ import annotations

from pathlib import Path

from conftest import write_config
from helpers_cli import cli
from test_report import Browser, assert_clean, browser, page_data

__all__ = ["browser"]  # the module's Chromium, shared with test_report.py

SCRIPT = """\
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float)
p.add_argument("--seed", type=int)
a = p.parse_args()
for epoch in (1, 2):
    print(json.dumps({"epoch": epoch, "loss": a.lr / epoch}))
print(json.dumps({"accuracy": 1 - a.lr, "seed": a.seed}))
"""


def test_the_report_shows_each_jobs_parameters(tmp_path: Path, browser: Browser) -> None:
    (tmp_path / "train.py").write_text(SCRIPT)
    (tmp_path / "plain.py").write_text("print('{\"accuracy\": 0.5}')\n")
    write_config(
        tmp_path,
        '[discovery]\nenabled = false\n[jobs.t]\nscript = "train.py"\nmatrix = { lr = [0.1, 0.25] }\nseeds = [7]\n'
        '[jobs.plain]\nscript = "plain.py"\n',
    )
    r = cli(tmp_path, "run", "--report", "r.html")
    assert r.returncode == 0, r.stderr
    html = tmp_path / "r.html"
    data = page_data(html)
    params = {j["id"]: j.get("params") for j in data["jobs"]}
    assert params == {
        "t[lr=0.1,seed=7]": {"lr": 0.1, "seed": 7},
        "t[lr=0.25,seed=7]": {"lr": 0.25, "seed": 7},
        "plain": None,
    }
    page = browser.open(html)
    page.locator("svg.timeline g.lane[data-job='t[lr=0.25,seed=7]'] rect.att").first.click()
    detail = page.inner_text("#detail")
    assert "parameters" in detail and "lr=0.25" in detail and "seed=7" in detail
    page.locator("svg.timeline g.lane[data-job='plain'] rect.att").first.click()
    assert "parameters" not in page.inner_text("#detail")
    assert_clean(page, html)
