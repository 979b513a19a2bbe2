"""`sn demo` as a newcomer runs it: a fresh workspace, the shipped model, the whole suite through Prefect."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from sn_store.datasets import suite_specs

pytestmark = pytest.mark.slow


def run_demo(home):
    home.mkdir(exist_ok=True)  # Prefect creates PREFECT_HOME but not its parents
    env = {**os.environ, "SN_HOME": str(home), "PREFECT_HOME": str(home / "prefect"), "COLUMNS": "200"}
    env.pop("PREFECT_API_URL", None)  # an ephemeral Prefect server, as on a fresh machine
    res = subprocess.run([sys.executable, "-m", "sn_store", "demo"], env=env, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def table_rows(stdout):
    return {m[1]: m[2].split() for m in re.finditer(r"^[│|] (\S+)\s+[│|](.*)$", stdout, re.M) if m[1] != "task"}


def test_demo_prints_the_suite_table_from_duckdb_and_reuses_it(tmp_path):
    home = tmp_path / "ws"
    out = run_demo(home)
    con = duckdb.connect(str(home / "sn.duckdb"), read_only=True)
    summary = con.execute("SELECT task, base_model_acc, best_sn_acc, ensemble_acc, early_exit_acc, exit_layer, "
                          "speedup FROM probe_summary").fetchall()
    n_runs = con.execute("SELECT count(*) FROM runs").fetchall()[0][0]
    con.close()
    assert {row[0] for row in summary} == set(suite_specs())
    printed = table_rows(out)
    for task, base, sn, ens, exit_acc, layer, speedup in summary:
        cells = " ".join(printed[task])
        for value in (base, sn, ens, exit_acc):
            assert f"{value:.3f}" in cells, (task, value, cells)
        assert f"{speedup:.1f}x" in cells and str(layer) in cells
        assert exit_acc == pytest.approx(sn)  # the exported best SN, run through the artifact, scores as in the search
    assert "sn sql" in out and "probe_summary" in out and "Prefect UI" in out
    suite = Path(re.search(r"^Report:\s+(\S+)$", out, re.M)[1])  # the suite page links every task's report
    links = re.findall(r'<a href="([^"]+)"', suite.read_text())
    assert len(links) == len(summary) and all((suite.parent / link).is_file() for link in links)
    # shapes-exist's SNs evaluated on shapes-exist-shift (distribution shift), shown on shapes-exist's page
    con = duckdb.connect(str(home / "sn.duckdb"), read_only=True)
    shifted = con.execute("SELECT DISTINCT r.run_id, t.target_dataset FROM transfers t JOIN runs r USING (run_id) "
                          "WHERE r.dataset = 'shapes-exist'").fetchall()
    con.close()
    assert [t for _, t in shifted] == ["shapes-exist-shift"]
    assert [p.parent.name for p in suite.parent.parent.glob("*/transfer.png")] == [shifted[0][0]]

    stamps = {p: p.stat().st_mtime_ns for p in (home / "stores").glob("*.zarr/zarr.json")}
    run_demo(home)  # a second run reuses the stores and the searches
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    con = duckdb.connect(str(home / "sn.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM runs").fetchall()[0][0] == n_runs
    con.close()
