"""The leaderboard commands through the real CLI: search prints the run id, top/sql read it, sql stays read-only."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from sn_store.datasets import load_dataset
from sn_store.extract import extract
from tests.conftest import adapter, small_spec


def sn(*args):
    return subprocess.run([sys.executable, "-m", "sn_store", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    store = extract(adapter("tiny-llava"), load_dataset(small_spec(n=32)), store=str(tmp / "s.zarr"), progress=False)
    db = str(tmp / "sn.duckdb")
    res = sn("search", "--store", store, "--db", db, "--mode", "grid", "--ensemble-k", "3")
    assert res.returncode == 0, res.stderr
    return res.stdout.strip(), db, tmp, res.stderr


def test_search_prints_only_the_run_id_on_stdout(run):
    run_id, _db, _, stderr = run
    assert len(run_id) == 12 and "\n" not in run_id
    assert "sn_ensemble" in stderr  # the evaluation summary goes to stderr


def test_top_sql_and_parquet(run):
    run_id, db, tmp, _ = run
    res = sn("top", "--db", db, "--k", "2")
    assert res.returncode == 0 and run_id in res.stdout and "eval_acc" in res.stdout
    res = sn("sql", f"SELECT count(*) AS n FROM neurons WHERE run_id = '{run_id}'", "--db", db, "--csv")
    assert res.returncode == 0 and res.stdout.split() == ['"n"', str(4 * 256)]
    res = sn("export-neurons", "--db", db, "--out", str(tmp / "run.parquet"))
    assert res.returncode == 0
    assert pq.read_table(tmp / "run.parquet").num_rows == 4 * 256


def test_sql_is_read_only_and_errors_are_one_line(run):
    _, db, _, _ = run
    res = sn("sql", "DELETE FROM neurons", "--db", db)
    assert res.returncode == 1 and "read-only" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = sn("top", "--db", db, "--run", "nope")
    assert res.returncode == 1 and "nope" in res.stderr
    res = sn("search", "--store", str(db) + ".missing", "--db", db)
    assert res.returncode == 1 and "no activation store" in res.stderr


def test_four_searches_into_one_database_at_once(run):
    """Four `sn search` processes on the same DuckDB file at the same time: none fails, no row is lost."""
    _, _, tmp, _ = run
    store, db = str(tmp / "s.zarr"), str(tmp / "four.duckdb")
    procs = [subprocess.Popen([sys.executable, "-m", "sn_store", "search", "--store", store, "--db", db, "--again"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e for _, e in outs]
    run_ids = {o.strip() for o, _ in outs}
    assert len(run_ids) == 4
    res = sn("sql", "SELECT run_id, count(*) AS n FROM neurons GROUP BY run_id", "--db", db, "--csv")
    counts = dict(line.replace('"', "").split(",") for line in res.stdout.split()[1:])
    assert counts == {r: str(4 * 256) for r in run_ids}
    res = sn("sql", "SELECT count(*) AS n FROM evaluations", "--db", db, "--csv")
    assert res.stdout.split()[1] == str(4 * 8)  # model, sn, sn_ensemble, sav on probe and eval

    # Without --again, the same store and settings give the latest of those runs back, and say so: no fifth run.
    res = sn("search", "--store", store, "--db", db)
    assert res.returncode == 0 and res.stdout.strip() in run_ids and "--again" in res.stderr, res.stderr
    res = sn("sql", "SELECT count(*) AS n FROM runs", "--db", db, "--csv")
    assert res.stdout.split()[1] == "4"


HEAVY = ("torch", "transformers", "xarray", "dask", "prefect")


def heavy_imports(*argv: str) -> list[str]:
    """The heavy packages a fresh interpreter has imported after running the CLI with `argv` (or only importing it)."""
    code = "import sys\nfrom sn_store.cli import app\n"
    if argv:
        code += f"try:\n    app({list(argv)!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
    code += f"print([m for m in {HEAVY!r} if m in sys.modules])"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return eval(res.stdout.strip().splitlines()[-1])


def test_quick_commands_import_nothing_heavy(run):
    """`import sn_store.cli`, `sn --help`, `sn sql`, `sn top`, `sn datasets list` answer without torch & co."""
    _, db, _, _ = run
    assert heavy_imports() == []
    for argv in (["--help"], ["sql", "SELECT 1", "--db", db], ["top", "--db", db], ["datasets", "list"]):
        assert heavy_imports(*argv) == [], argv


def test_the_python_api_still_loads_on_first_use():
    code = ("import sys, sn_store\nassert 'torch' not in sys.modules\n"
            "import sn_store.extract, sn_store.search\n"  # the submodules do not hide the functions of the same name
            "print(callable(sn_store.extract), callable(sn_store.search), sn_store.open_store.__module__)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "True", "sn_store.store"]
