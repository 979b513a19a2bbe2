"""The DuckDB leaderboard on real database files: schema, round trips, views against plain Python, concurrency."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sn_store import leaderboard as lb
from sn_store.errors import SnError

ROOT = Path(__file__).resolve().parents[1]
METRICS = [c for c in lb.NEURON_COLUMNS if c not in ("site", "layer", "neuron", "class", "polarity", "threshold")]
TYPES = {"site": pa.string(), "layer": pa.int32(), "neuron": pa.int32(), "class": pa.string(), "polarity": pa.int8()}


def neuron_table(rows: list[dict]) -> pa.Table:
    """A table shaped like the search's output (float32 metrics) from a list of row dicts."""
    return pa.table({c: pa.array([r[c] for r in rows], TYPES.get(c, pa.float32())) for c in lb.NEURON_COLUMNS})


def make_rows(n: int, seed: int, sites=("resid", "mlp"), layers=3, cls="yes") -> list[dict]:
    """Random rows with metrics on a 1/8 grid (exact in float32, many ties)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row = {"site": sites[i % len(sites)], "layer": (i // len(sites)) % layers, "neuron": i, "class": cls,
               "polarity": rng.choice([1, -1]), "threshold": rng.uniform(-3, 3)}  # fmt: skip
        row.update({m: rng.randrange(9) / 8 for m in METRICS})
        rows.append(row)
    return rows


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


RUN = {"store": "s.zarr", "model": "m", "dataset": "A", "mode": "exact", "n_probe": 10, "n_eval": 6,
       "classes": ["no", "yes"], "dataset_hash": "dh", "model_config_hash": "mh"}  # fmt: skip


def test_schema_is_idempotent_and_complete(tmp_path):
    db = tmp_path / "sn.duckdb"
    lb.connect(db).close()
    run_id = lb.write_run(db, RUN, neuron_table(make_rows(4, 0)), [])
    for _ in range(2):  # applying schema and views again keeps the data
        lb.connect(db).close()
    con = lb.connect(db, read_only=True)
    rows = con.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall()
    tables = dict(rows)
    assert con.execute("SELECT count(*) FROM neurons WHERE run_id = ?", [run_id]).fetchone()[0] == 4
    con.close()
    assert tables == {"runs": "BASE TABLE", "neurons": "BASE TABLE", "evaluations": "BASE TABLE",
                      "datasets": "BASE TABLE", "artifacts": "BASE TABLE", "probes": "BASE TABLE",
                      "top_neurons": "VIEW", "layer_summary": "VIEW", "cross_dataset_neurons": "VIEW",
                      "probe_summary": "VIEW",
                      "sav_heads": "BASE TABLE", "threshold_curves": "BASE TABLE", "probe_size_curves": "BASE TABLE",
                      "prompt_robustness": "BASE TABLE", "transfers": "BASE TABLE", "neurons_beating_model": "VIEW",
                      "neuron_agreement": "VIEW"}  # fmt: skip


def test_default_path_is_in_sn_home(sn_home):
    assert lb.default_db_path() == sn_home / "sn.duckdb"


def test_write_run_round_trip(tmp_path):
    db = tmp_path / "sn.duckdb"
    rows = make_rows(50, 1)
    rows[3].update(threshold=math.inf, probe_acc=math.nan, eval_auroc=math.nan)
    rows[4].update(threshold=-math.inf, agreement=math.nan)
    evaluations = [{"method": "model", "split": "eval", "acc": 0.625, "bal_acc": 0.5, "f1": 0.25, "mcc": 0.0, "n": 6},
                   {"method": "sn", "split": "eval", "acc": 0.75, "n": 6, "detail": {"neurons": [["mlp", 1, 3]]}}]
    run_id = lb.write_run(db, {**RUN, "run_id": "r1"}, neuron_table(rows), evaluations)
    assert run_id == "r1"

    con = lb.connect(db, read_only=True)
    cols = ", ".join(f'"{c}"' for c in lb.NEURON_COLUMNS)
    stored = con.sql(f"SELECT {cols} FROM neurons WHERE run_id = 'r1' ORDER BY neuron").to_arrow_table()
    run = con.sql("SELECT * FROM runs").to_arrow_table().to_pylist()
    evs = con.sql("SELECT * FROM evaluations ORDER BY method").to_arrow_table().to_pylist()
    con.close()

    assert stored.schema.field("threshold").type == pa.float32() and stored.schema.field("polarity").type == pa.int8()
    assert stored.num_rows == 50
    expected = neuron_table(rows).to_pylist()  # the float32 values, as the search hands them over
    for got, want in zip(stored.to_pylist(), expected, strict=True):
        assert all(same(got[c], want[c]) for c in lb.NEURON_COLUMNS), (got, want)
    assert stored.column("threshold")[3].as_py() == math.inf and stored.column("threshold")[4].as_py() == -math.inf
    assert len(run) == 1 and run[0]["classes"] == ["no", "yes"] and run[0]["model"] == "m"
    assert run[0]["sn_store_version"] and run[0]["created_at"] is not None
    assert [e["method"] for e in evs] == ["model", "sn"] and evs[0]["acc"] == 0.625 and evs[1]["f1"] is None
    assert json.loads(evs[1]["detail"]) == {"neurons": [["mlp", 1, 3]]}


def test_write_run_generates_ids_and_rejects_bad_input(tmp_path):
    db = tmp_path / "sn.duckdb"
    table = neuron_table(make_rows(3, 2))
    a, b = lb.write_run(db, RUN, table, []), lb.write_run(db, RUN, table, [])
    assert a != b and len(a) == 12
    with pytest.raises(SnError, match="already in the database"):
        lb.write_run(db, {**RUN, "run_id": a}, table, [])
    with pytest.raises(SnError, match="lacks column"):
        lb.write_run(db, RUN, table.drop_columns(["agreement"]), [])
    with pytest.raises(SnError, match="not one of"):
        lb.write_run(db, RUN, table, [{"method": "magic", "split": "eval"}])
    with pytest.raises(SnError, match="unknown run field"):
        lb.write_run(db, {**RUN, "colour": "red"}, table, [])
    # the failed duplicate rolled back: exactly two runs of three rows
    assert lb.query(db, "SELECT count(*) AS n FROM neurons").to_pylist() == [{"n": 6}]


def python_ranks(rows):
    """Rank per (run, class): probe_acc desc, probe_bal_acc desc (NaN last), then site, layer, neuron."""

    def key(r):
        def desc(x):
            return (1, 0.0) if math.isnan(x) else (0, -x)

        return (*desc(r["probe_acc"]), *desc(r["probe_bal_acc"]), r["site"], r["layer"], r["neuron"])

    ranks, groups = {}, {}
    for r in rows:
        groups.setdefault((r["run_id"], r["class"]), []).append(r)
    for group in groups.values():
        for i, r in enumerate(sorted(group, key=key), start=1):
            ranks[(r["run_id"], r["site"], r["layer"], r["neuron"], r["class"])] = i
    return ranks


def test_views_match_plain_python(tmp_path):
    db = tmp_path / "sn.duckdb"
    runs = {"ra": ("m", "A", 0.5), "rb": ("m", "B", 0.625), "rb2": ("m", "B", None), "rc": ("m2", "C", 0.5)}
    all_rows = []
    for i, (run_id, (model, dataset, base_acc)) in enumerate(runs.items()):
        rows = make_rows(160, seed=10 + min(i, 1))  # rb, rb2 and rc share values: many common neurons
        rows[7]["probe_acc"] = math.nan  # NaN ranks last, not first
        rows[8]["eval_acc"] = math.nan
        evaluations = [{"method": "sn", "split": "eval", "acc": 0.9, "n": 6},
                       {"method": "model", "split": "probe", "acc": 0.0, "n": 10}]  # fmt: skip
        if base_acc is not None:
            evaluations.append({"method": "model", "split": "eval", "acc": base_acc, "n": 6})
        lb.write_run(db, {**RUN, "run_id": run_id, "model": model, "dataset": dataset}, neuron_table(rows), evaluations)
        all_rows += [{**r, "run_id": run_id} for r in neuron_table(rows).to_pylist()]

    # top_neurons
    ranks = python_ranks(all_rows)
    got = {(r["run_id"], r["site"], r["layer"], r["neuron"], r["class"]): r["rank"]
           for r in lb.query(db, "SELECT * FROM top_neurons").to_pylist()}  # fmt: skip
    assert got == ranks
    assert ranks[("ra", "mlp", 0, 7, "yes")] == 160

    # layer_summary (Figure 3b)
    expected = {}
    for r in all_rows:
        base = runs[r["run_id"]][2]
        n, beat = expected.get((r["run_id"], r["site"], r["layer"]), (0, 0))
        expected[(r["run_id"], r["site"], r["layer"])] = (n + 1, beat + (base is not None and r["eval_acc"] > base))
    for key in [k for k in expected if runs[k[0]][2] is None]:
        expected[key] = (expected[key][0], None)
    got = {(r["run_id"], r["site"], r["layer"]): (r["n_neurons"], r["n_beat_model"])
           for r in lb.query(db, "SELECT * FROM layer_summary").to_pylist()}  # fmt: skip
    assert got == expected
    assert 0 < sum(v[1] or 0 for v in got.values()) < len(all_rows)

    # cross_dataset_neurons
    hits = {}  # (model, site, layer, neuron) -> list of (dataset, eval_acc) over top-100 rows
    for r in all_rows:
        if ranks[(r["run_id"], r["site"], r["layer"], r["neuron"], r["class"])] <= 100:
            model, dataset, _ = runs[r["run_id"]]
            hits.setdefault((model, r["site"], r["layer"], r["neuron"]), []).append((dataset, r["eval_acc"]))
    expected = {}
    for key, found in hits.items():
        datasets = {d for d, _ in found}
        accs = [a for _, a in found if not math.isnan(a)]
        if len(datasets) >= 2:
            expected[key] = (len(datasets), sorted(datasets), sum(accs) / len(accs) if accs else None)
    got = {(r["model"], r["site"], r["layer"], r["neuron"]): (r["n_datasets"], r["datasets"], r["mean_eval_acc"])
           for r in lb.query(db, "SELECT * FROM cross_dataset_neurons").to_pylist()}  # fmt: skip
    assert got.keys() == expected.keys() and 10 < len(got) < 100
    for key, (n, datasets, mean) in expected.items():
        assert got[key][:2] == (n, datasets) and got[key][2] == pytest.approx(mean)
    assert all(key[0] == "m" for key in got)  # m2 has one dataset only


def test_top_latest_and_errors(tmp_path):
    db = tmp_path / "sn.duckdb"
    with pytest.raises(SnError, match="no database"):
        lb.top(db)
    lb.connect(db).close()
    with pytest.raises(SnError, match="no runs"):
        lb.latest_run(db)
    rows = make_rows(30, 3)
    lb.write_run(db, {**RUN, "run_id": "old", "created_at": "2024-01-01 00:00:00"}, neuron_table(rows), [])
    lb.write_run(db, {**RUN, "run_id": "new"}, neuron_table(rows), [])
    assert lb.latest_run(db) == "new"
    best = lb.top(db, k=5)
    assert best.num_rows == 5 and set(best.column("run_id").to_pylist()) == {"new"}
    assert best.column("rank").to_pylist() == [1, 2, 3, 4, 5]
    assert best.column("probe_acc").to_pylist()[0] == max(r["probe_acc"] for r in rows)
    assert lb.top(db, run_id="old", k=100).num_rows == 30
    with pytest.raises(SnError, match="unknown run id 'nope'"):
        lb.top(db, run_id="nope")
    with pytest.raises(SnError, match="unknown run id"):
        lb.export_run_parquet(db, "nope", tmp_path / "x.parquet")


def test_query_is_read_only(tmp_path):
    db = tmp_path / "sn.duckdb"
    lb.write_run(db, {**RUN, "run_id": "r"}, neuron_table(make_rows(5, 4)), [])
    for sql in ["DELETE FROM neurons", "INSERT INTO runs (run_id) VALUES ('x')", "DROP TABLE neurons",
                "UPDATE neurons SET probe_acc = 1", "CREATE TABLE t (x INT)"]:  # fmt: skip
        with pytest.raises(SnError, match="read-only"):
            lb.query(db, sql)
    with pytest.raises(SnError, match="ATTACH"):
        lb.query(db, f"ATTACH '{tmp_path / 'other.duckdb'}' AS other")
    with pytest.raises(SnError, match="invalid SQL|query failed"):
        lb.query(db, "SELEC 1")
    assert lb.query(db, "SELECT count(*) AS n FROM neurons").to_pylist() == [{"n": 5}]
    assert lb.query(db, "SELECT run_id FROM runs").column("run_id").to_pylist() == ["r"]


def test_parquet_export_round_trip(tmp_path):
    db = tmp_path / "sn.duckdb"
    rows = make_rows(40, 5)
    rows[0].update(threshold=math.inf, eval_mcc=math.nan)
    lb.write_run(db, {**RUN, "run_id": "r"}, neuron_table(rows), [])
    lb.write_run(db, {**RUN, "run_id": "other"}, neuron_table(make_rows(7, 6)), [])
    out = lb.export_run_parquet(db, "r", tmp_path / "out" / "r.parquet")
    table = pq.read_table(out)
    assert table.num_rows == 40 and set(table.column("run_id").to_pylist()) == {"r"}
    by_neuron = {r["neuron"]: r for r in table.to_pylist()}
    for want in neuron_table(rows).to_pylist():
        assert all(same(by_neuron[want["neuron"]][c], want[c]) for c in lb.NEURON_COLUMNS)
    run = json.loads(table.schema.metadata[b"sn_store.run"])
    assert run["run_id"] == "r" and run["classes"] == ["no", "yes"]


def test_lock_is_waited_for_then_times_out(tmp_path):
    db = tmp_path / "sn.duckdb"
    lb.connect(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('locked', flush=True); "
                               "time.sleep(1.5); c.close()"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SnError, match="locked by another process"):
            lb.connect(db, timeout_s=0.2)
        start = time.monotonic()
        lb.write_run(db, {**RUN, "run_id": "waited"}, neuron_table(make_rows(3, 7)), [])  # waits for the holder
        assert time.monotonic() - start > 0.5
    finally:
        holder.wait(timeout=30)
    assert lb.latest_run(db) == "waited"


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np, pyarrow as pa
    from sn_store import leaderboard as lb

    db, i, go, n = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(i)
    cols = {"site": pa.array(["resid"] * n), "layer": pa.array(np.arange(n, dtype=np.int32) // 4096),
            "neuron": pa.array(np.arange(n, dtype=np.int32) % 4096), "class": pa.array(["yes"] * n),
            "polarity": pa.array(np.ones(n, dtype=np.int8)), "threshold": pa.array(rng.random(n, dtype=np.float32))}
    for c in lb.NEURON_COLUMNS[6:]:
        cols[c] = pa.array(rng.random(n, dtype=np.float32))
    table = pa.table(cols)
    Path(f"{go}.ready{i}").touch()
    while not go.exists():
        time.sleep(0.002)
    lb.write_run(db, {"run_id": f"w{i}", "model": "m", "dataset": f"d{i}"}, table, [])
    print("ok", i)
    """
)


def test_four_processes_write_at_once(tmp_path):
    db, go, n = tmp_path / "sn.duckdb", tmp_path / "go", 20_000
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(i), str(go), str(n)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.ready{i}").exists() for i in range(4)) and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs if p.poll()]
        time.sleep(0.01)
    go.touch()  # all four open the same file for writing at the same moment
    results = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and out.startswith("ok"), err[-2000:]
    counts = lb.query(db, "SELECT run_id, count(*) AS n FROM neurons GROUP BY run_id ORDER BY run_id").to_pylist()
    assert counts == [{"run_id": f"w{i}", "n": n} for i in range(4)]
    assert lb.query(db, "SELECT count(*) AS runs, (SELECT count(*) FROM neurons) AS neurons FROM runs").to_pylist() == [
        {"runs": 4, "neurons": 4 * n}
    ]


def test_sql_files_ship_as_package_sn_store_sql():
    import sn_store.sql  # noqa: F401  (the repo-root sql/ folder, mapped in pyproject.toml)

    assert "CREATE TABLE IF NOT EXISTS neurons" in lb.sql_text("schema.sql")
    assert "CREATE OR REPLACE VIEW top_neurons" in lb.sql_text("views.sql")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"]["sn_store.sql"] == "sql" and "*.sql" in config["package-data"]["sn_store.sql"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "sn_store").rglob("__init__.py")}
    missing = on_disk - set(config["packages"])
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"


def test_an_older_database_gains_the_new_columns_and_its_early_exit_rows_their_artifact(tmp_path):
    """A database written before `evaluations.artifact_id`, the speed-up spread and `runs.n_grid` existed."""
    import duckdb

    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, store VARCHAR, model VARCHAR, dataset VARCHAR, "
                "mode VARCHAR, created_at TIMESTAMP, n_probe INTEGER, n_eval INTEGER, classes VARCHAR[], "
                "dataset_hash VARCHAR, model_config_hash VARCHAR, sn_store_version VARCHAR, "
                "store_fingerprint VARCHAR, ensemble_k INTEGER)")
    con.execute("CREATE TABLE evaluations (run_id VARCHAR, method VARCHAR, split VARCHAR, acc REAL, bal_acc REAL, "
                "f1 REAL, mcc REAL, n INTEGER, detail VARCHAR)")
    con.execute("CREATE TABLE artifacts (artifact_id VARCHAR PRIMARY KEY, run_id VARCHAR, path VARCHAR, "
                "neurons VARCHAR, exit_layer INTEGER, created_at TIMESTAMP, sha256 VARCHAR, speedup REAL)")
    con.execute("INSERT INTO runs (run_id, dataset, classes, created_at) VALUES ('r', 'd', ['a', 'b'], now())")
    for i, neurons in enumerate(['[{"layer": 0}]', '[{"layer": 1}]']):
        con.execute("INSERT INTO artifacts VALUES (?, 'r', ?, ?, ?, now(), 'x', 2.0)",
                    [f"r:/a{i}", f"/a{i}", neurons, i])
        con.execute("INSERT INTO evaluations VALUES ('r', 'early_exit', 'eval', ?, 0, 0, 0, 8, ?)",
                    [0.5 + i / 10, neurons])
    con.close()
    lb.connect(db).close()
    got = lb.query(db, "SELECT artifact_id, acc FROM evaluations ORDER BY acc").to_pylist()
    assert [r["artifact_id"] for r in got] == ["r:/a0", "r:/a1"]
    assert lb.run_evaluations(db, "r", artifacts=False) == []
    lb.write_run(db, {**RUN, "run_id": "r2"}, neuron_table(make_rows(2, 0)), [])  # new columns, old file
    assert lb.query(db, "SELECT count(*) AS n FROM probe_summary").to_pylist()[0]["n"] == 2
