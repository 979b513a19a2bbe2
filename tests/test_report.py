"""Run reports: the probe flow ends with one (a link and the results table as Prefect artifacts); its figures equal
DuckDB's; the page opens in headless Chromium with no broken image, no console error and no request off the disk;
a report never replaces a folder that is not one; the suite page links every run's page."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from sn_store import leaderboard
from sn_store.errors import SnError
from sn_store.pipeline import ProbeConfig
from sn_store.report import MARKER, write_report, write_suite_report

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def probed(prefect_server, tmp_path_factory):
    """The embedded default model probed through the flow, report stage included (small splits, two layers)."""
    from sn_store.flows.probe import probe

    tmp = tmp_path_factory.mktemp("report")
    cfg = ProbeConfig(dataset="shapes-exist", layers="0-1", probe_size=32, eval_size=32, batch_size=16,
                      ensemble_k=3, db=str(tmp / "sn.duckdb"))
    state = probe(cfg, return_state=True)
    assert state.is_completed(), state
    return {**state.result(), "db": cfg.db, "tmp": tmp, "flow_run_id": state.state_details.flow_run_id}


class Page(HTMLParser):
    """The page's tables (rows of cell texts, by section id), its definition list and its image sources."""

    def __init__(self, text: str):
        super().__init__()
        self.tables, self.dl, self.images, self.links = {}, {}, [], []
        self._section, self._row, self._cell, self._dt = None, None, None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = attrs.get("id")
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th", "dt", "dd"):
            self._cell = []
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a":
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append("".join(self._cell).strip())
        elif tag == "tr":
            self.tables.setdefault(self._section, []).append(self._row)
        elif tag == "dt":
            self._dt = "".join(self._cell).strip()
        elif tag == "dd":
            self.dl[self._dt] = "".join(self._cell).strip()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def read_page(path) -> Page:
    return Page(Path(path).read_text(encoding="utf-8"))


def test_probe_ends_with_the_report_and_publishes_link_and_results(probed):
    from tests.flows.test_probe import artifacts_of

    page = Path(probed["report"])
    assert page.is_file() and page.parent.name == probed["run_id"]
    assert json.loads((page.parent / MARKER).read_text())["files"] == sorted(
        p.name for p in page.parent.iterdir() if p.name != MARKER)
    published = {a.key: a for a in asyncio.run(artifacts_of(probed["flow_run_id"])) if a.key}
    link = published["report-sn-tiny-llava-shapes-exist"]  # keyed by model and dataset, as the probe's others
    assert link.type == "markdown" and page.as_uri() in link.data  # a link artifact is markdown, `[text](link)`
    table = published["results-sn-tiny-llava-shapes-exist"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert {r["method"] for r in rows} >= {"model", "sn", "sn_ensemble", "early_exit"}


def latest_evaluations(db, run_id):
    con = duckdb.connect(db, read_only=True)
    try:
        rows = con.execute("SELECT method, split, acc, bal_acc, f1, mcc FROM evaluations WHERE run_id = ? "
                           "ORDER BY rowid", [run_id]).fetchall()
        top = con.execute("SELECT site, layer, neuron, probe_acc, eval_acc FROM top_neurons WHERE run_id = ? "
                          "AND rank <= 10 ORDER BY class, rank", [run_id]).fetchall()
        run = con.execute("SELECT dataset_hash, store, sn_store_version, model FROM runs WHERE run_id = ?",
                          [run_id]).fetchall()[0]
        speedup = con.execute("SELECT speedup, speedup_q1, speedup_q3 FROM artifacts WHERE run_id = ?",
                              [run_id]).fetchall()[0]
    finally:
        con.close()
    return {(m, s): vals for m, s, *vals in rows}, top, run, speedup  # the dict keeps the latest of each


def test_report_figures_equal_duckdb(probed):
    evals, top, (dataset_hash, store, version, model), speedup = latest_evaluations(probed["db"], probed["run_id"])
    page = read_page(probed["report"])
    labels = {"model": "base model", "sn": "best SN", "sn_ensemble": "SN ensemble", "early_exit": "early exit",
              "sav": "SAV"}
    shown = {r[0]: r for r in page.tables["results"][2:]}
    assert set(shown) == {labels[m] for m, _ in evals}
    for (method, split), values in evals.items():
        cells = shown[labels[method]][2:6] if split == "probe" else shown[labels[method]][6:10]
        assert cells == [f"{v:.3f}" for v in values], (method, split)
    assert shown["early exit"][-1] == "{:.1f}x ({:.1f}-{:.1f})".format(*speedup)  # median (interquartile range)
    neurons = [(r[2], int(r[3]), int(r[4]), r[7], r[8]) for r in page.tables["neurons"][1:]]
    assert neurons == [(s, ly, n, f"{p:.3f}", f"{e:.3f}") for s, ly, n, p, e in top]
    assert page.dl["dataset content hash"] == dataset_hash and page.dl["store"] == store
    assert page.dl["sn_store version (search)"] == version and page.dl["model"] == model
    assert page.dl["early-exit artifact"] == probed["artifact"]
    pngs = sorted(p.name for p in Path(probed["report"]).parent.glob("*.png"))
    assert sorted(page.images) == pngs and {"threshold_curve.png", "layer_counts.png", "agreement.png"} <= set(pngs)


def test_data_is_escaped(tmp_path):
    """Names come from specs and users: markup in them shows as text."""
    hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    neurons = pa.table({**{c: [0.5] for c in leaderboard.NEURON_COLUMNS},
                        "site": ["mlp"], "class": [hostile], "layer": [0], "neuron": [1], "polarity": [1]})
    db = str(tmp_path / "sn.duckdb")
    run_id = leaderboard.write_run(db, {"model": hostile, "dataset": hostile, "classes": ["a", hostile],
                                        "store": str(tmp_path / "gone.zarr")}, neurons,
                                   [{"method": "sn", "split": "eval", "acc": 0.5, "detail": hostile}])
    text = write_report(run_id, tmp_path / "r", db=db).read_text()
    assert "<script>" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert read_page(tmp_path / "r" / "index.html").dl["store"].endswith("(not readable now)")


def test_a_report_replaces_only_a_report(probed, tmp_path):
    run_id, db = probed["run_id"], probed["db"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(SnError, match="not an sn_store report"):
        write_report(run_id, other, db=db)
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    out = tmp_path / "r"
    shutil.copytree(Path(probed["report"]).parent, out)  # an earlier report
    (out / "index.html").write_text("old")
    write_report(run_id, out, db=db)  # a report folder is replaced, in one rename
    assert "Super Neurons" in (out / "index.html").read_text()
    (out / "extra.txt").write_text("not listed")
    with pytest.raises(SnError, match="not an sn_store report"):
        write_report(run_id, out, db=db)
    assert (out / "extra.txt").read_text() == "not listed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "r"]  # no staging folder left


def test_cli_report_and_an_unknown_run(probed, tmp_path):
    res = subprocess.run([sys.executable, "-m", "sn_store", "report", probed["run_id"], "--out", str(tmp_path / "cli"),
                          "--db", probed["db"]], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(tmp_path / "cli" / "index.html")
    assert read_page(tmp_path / "cli" / "index.html").dl["model"] == "sn-tiny-llava"
    with pytest.raises(SnError, match="unknown run id 'nope'"):
        write_report("nope", tmp_path / "nope", db=probed["db"])
    assert not (tmp_path / "nope").exists()


def test_report_flow_and_suite_page(probed, tmp_path):
    from sn_store.flows.report import report_flow

    reports = tmp_path / "reports"
    page = Path(report_flow(probed["run_id"], str(reports / probed["run_id"]), probed["db"]))
    assert page == (reports / probed["run_id"] / "index.html").resolve()
    suite = write_suite_report([probed["run_id"]], reports / "suite", db=probed["db"])
    parsed = read_page(suite)
    assert parsed.links == [f"../{probed['run_id']}/index.html"]
    assert (suite.parent / parsed.links[0]).resolve() == page
    row = parsed.tables["tasks"][1]
    evals, *_ = latest_evaluations(probed["db"], probed["run_id"])
    assert row[0] == "shapes-exist" and row[2] == f"{evals[('model', 'eval')][0]:.3f}"


# ------------------------------------------------------------------------------------------ in a real browser


def browse(page_path: Path, profile: Path, screenshot: Path | None = None) -> dict:
    """Open a page in Debian's headless Chromium: console errors, broken images, requests that left the disk."""
    sync_api = pytest.importorskip("playwright.sync_api")
    seen = {"errors": [], "requests": []}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, viewport={"width": 1200, "height": 900},
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: m.type == "error" and seen["errors"].append(m.text))
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.goto(page_path.as_uri(), wait_until="load")
            seen["images"] = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), "
                                           "i.complete && i.naturalWidth > 0])")
            if screenshot:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen


needs_chromium = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"no {CHROMIUM}: `apt-get install -y "
                                    "chromium` (make test does it when run as root)")


@needs_chromium
def test_report_in_headless_chromium(probed, tmp_path):
    from PIL import Image

    page = Path(probed["report"])
    shot = tmp_path / "report.png"
    seen = browse(page, tmp_path / "profile", screenshot=shot)
    assert seen["errors"] == []
    assert seen["images"] and [src for src, ok in seen["images"] if not ok] == []
    assert sorted(src for src, _ in seen["images"]) == sorted(read_page(page).images)
    assert all(u.startswith(("file:", "data:")) for u in seen["requests"]), seen["requests"]
    with Image.open(shot) as im:
        assert im.width == 1200 and im.height > 900  # the whole page: results, neurons and provenance
        assert len(set(im.convert("L").resize((60, 60)).getdata())) > 10  # not a blank page
    # The checks catch what they look for: a missing image and a script error in a copy of the page.
    broken = tmp_path / "broken"
    shutil.copytree(page.parent, broken)
    text = (broken / "index.html").read_text().replace("</main>", '<img src="gone.png"><script>'
                                                                   'console.error("boom")</script></main>')
    (broken / "index.html").write_text(text)
    seen = browse(broken / "index.html", tmp_path / "profile2")
    assert seen["errors"] == ["boom"] or "boom" in seen["errors"]
    assert ["gone.png", False] in seen["images"]
