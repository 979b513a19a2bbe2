"""`sn sql` only reads. A read-only DuckDB connection still writes files (COPY ... TO overwrote a store's zarr.json),
installs extensions and changes settings: every statement that is not a SELECT (or EXPLAIN SELECT) is refused before
anything runs. Reading local files stays."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sn_store import leaderboard as lb
from sn_store.errors import SnError


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlguard") / "sn.duckdb"
    lb.connect(path).close()  # the schema and views, no rows
    return path


def test_a_copy_that_would_overwrite_a_file_is_refused(db, tmp_path):
    victim = tmp_path / "zarr.json"
    victim.write_text('{"zarr_format": 3, "node_type": "group"}')
    attack = f"COPY (SELECT 42 AS x) TO '{victim}' (FORMAT csv)"
    # The attack is real: on a plain read-only connection the same statement replaces the file.
    control = tmp_path / "control.json"
    control.write_text(victim.read_text())
    con = duckdb.connect(str(db), read_only=True)
    con.execute(attack.replace(str(victim), str(control)))
    con.close()
    assert control.read_text() != victim.read_text()

    for sql in [attack, f"SELECT 1; {attack}", f"EXPLAIN ANALYZE {attack}", f"explain {attack}",
                f"EXPORT DATABASE '{tmp_path / 'dump'}'"]:
        with pytest.raises(SnError, match="statements are refused: `sn sql` is read-only") as exc:
            lb.query(db, sql)
        assert "\n" not in str(exc.value)
    assert victim.read_text() == '{"zarr_format": 3, "node_type": "group"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["control.json", "zarr.json"]


@pytest.mark.parametrize("sql", [
    "ATTACH ':memory:' AS other", "DETACH other", "INSTALL httpfs", "LOAD httpfs", "SET threads = 1", "RESET threads",
    "USE memory", "PRAGMA enable_profiling", "PRAGMA show_tables", "CALL pragma_version()", "CHECKPOINT",
    "CREATE TEMP TABLE t AS SELECT 1", "CREATE SECRET s (TYPE s3)", "INSERT INTO runs (run_id) VALUES ('x')",
    "UPDATE artifacts SET speedup = 9", "DELETE FROM neurons", "DROP VIEW top_neurons", "ALTER TABLE runs ADD c INT",
    "COPY runs FROM 'x.csv'", "VACUUM", "PREPARE p AS SELECT 1", "BEGIN TRANSACTION",
])
def test_statements_that_write_or_change_settings_are_refused(db, sql):
    with pytest.raises(SnError, match="is read-only"):
        lb.query(db, sql)


def test_reading_queries_and_local_files_still_work(db, tmp_path):
    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "t.parquet")
    (tmp_path / "t.csv").write_text("x\n4\n5\n")
    assert lb.query(db, f"SELECT sum(x) AS s FROM read_parquet('{tmp_path / 't.parquet'}')").to_pylist() == [{"s": 6}]
    assert lb.query(db, f"SELECT sum(x) AS s FROM read_csv('{tmp_path / 't.csv'}')").to_pylist() == [{"s": 9}]
    assert lb.query(db, "WITH a AS (SELECT 2 AS y) SELECT y FROM a").to_pylist() == [{"y": 2}]
    assert "artifacts" in lb.query(db, "SHOW TABLES").column("name").to_pylist()
    assert "manifest_digest" in lb.query(db, "DESCRIBE artifacts").column("column_name").to_pylist()
    assert lb.query(db, "EXPLAIN SELECT count(*) FROM runs").num_rows >= 1
    assert lb.query(db, "FROM runs").num_rows == 0


def test_an_older_database_gains_the_manifest_digest_column(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE artifacts (artifact_id VARCHAR PRIMARY KEY, run_id VARCHAR, path VARCHAR, "
                "neurons VARCHAR, exit_layer INTEGER, created_at TIMESTAMP, sha256 VARCHAR, speedup REAL)")
    con.execute("INSERT INTO artifacts (artifact_id, path) VALUES ('a', '/x')")
    con.close()
    assert "manifest_digest" not in lb.artifact_rows(path)[0]  # a read-only reader copes without it
    for _ in range(2):  # idempotent
        lb.connect(path).close()
    assert lb.artifact_rows(path)[0]["manifest_digest"] is None and lb.artifact_rows(path)[0]["path"] == "/x"
