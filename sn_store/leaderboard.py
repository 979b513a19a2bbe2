"""The DuckDB neuron leaderboard: runs, every neuron of a run, evaluations; ranked views; read-only SQL.

The schema and views are the plain files `sql/schema.sql` and `sql/views.sql` (package `sn_store.sql`). Writers open
the database file only for the short time of one write: DuckDB lets a single process hold it read-write, so a
writer that finds it locked by another process waits (jittered exponential backoff, bounded) and tries again.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sn_store.errors import SnError
from sn_store.locking import writer_lock
from sn_store.workspace import home

NEURON_COLUMNS = (
    "site", "layer", "neuron", "class", "polarity", "threshold",
    "probe_acc", "probe_bal_acc", "probe_f1", "probe_mcc", "probe_auroc",
    "eval_acc", "eval_bal_acc", "eval_f1", "eval_mcc", "eval_auroc", "agreement",
)  # fmt: skip
RUN_FIELDS = (
    "run_id", "store", "model", "dataset", "mode", "created_at", "n_probe", "n_eval", "classes",
    "dataset_hash", "model_config_hash", "sn_store_version", "store_fingerprint", "ensemble_k", "n_grid",
)  # fmt: skip
EVALUATION_FIELDS = ("method", "split", "acc", "bal_acc", "f1", "mcc", "n", "detail")
METHODS = ("model", "sn", "sn_ensemble", "sav", "early_exit")

LOCK_TIMEOUT_S = 120.0  # how long a connect waits for another process's lock before giving up
_FIRST_WAIT_S, _MAX_WAIT_S = 0.02, 1.0


def default_db_path() -> Path:
    return home() / "sn.duckdb"


def sql_text(name: str) -> str:
    """The text of one of the shipped .sql files (`schema.sql`, `views.sql`)."""
    return resources.files("sn_store.sql").joinpath(name).read_text(encoding="utf-8")


_HEADER_BYTES = 3 * 4096  # DuckDB's file header: a smaller file is one another process is creating right now


def _is_lock_error(exc: Exception, path: Path) -> bool:
    """Another process holds the file, or is creating it (its header not written yet)."""
    if not isinstance(exc, duckdb.IOException):
        return False
    if "not a valid DuckDB database file" in str(exc):
        try:
            return path.stat().st_size < _HEADER_BYTES
        except OSError:
            return True
    return "Could not set lock" in str(exc)


def _open(path: Path, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
    """Open `path`, retrying while another process holds its lock: sleeps grow x2 from 20 ms to 1 s, jittered."""
    deadline = time.monotonic() + timeout_s
    wait = _FIRST_WAIT_S
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if not _is_lock_error(exc, path):
                raise SnError(f"cannot open the database {path}: {exc}") from exc
            left = deadline - time.monotonic()
            if left <= 0:
                raise SnError(f"the database {path} stayed locked by another process for {timeout_s:.0f} s") from exc
            time.sleep(min(left, random.uniform(0.5, 1.0) * wait))
            wait = min(2 * wait, _MAX_WAIT_S)


def connect(db_path=None, read_only: bool = False, timeout_s: float = LOCK_TIMEOUT_S) -> duckdb.DuckDBPyConnection:
    """A connection to the leaderboard (default `$SN_HOME/sn.duckdb`); read-write connects apply schema and views."""
    path = Path(db_path) if db_path is not None else default_db_path()
    if read_only:
        if not path.exists():
            raise SnError(f"no database at {path}: run `sn search` first")
        return _open(path, read_only=True, timeout_s=timeout_s)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, read_only=False, timeout_s=timeout_s)
    try:
        con.execute(sql_text("schema.sql"))
        con.execute(sql_text("views.sql"))
    except BaseException:
        con.close()
        raise
    return con


def _run_row(run: dict) -> dict:
    unknown = set(run) - set(RUN_FIELDS)
    if unknown:
        raise SnError(f"unknown run field(s) {sorted(unknown)}; known: {', '.join(RUN_FIELDS)}")
    row = {name: run.get(name) for name in RUN_FIELDS}
    row["run_id"] = str(row["run_id"] or uuid.uuid4().hex[:12])
    row["created_at"] = row["created_at"] or datetime.now(UTC).replace(tzinfo=None)
    if row["classes"] is not None:
        row["classes"] = [str(c) for c in row["classes"]]
    if row["sn_store_version"] is None:
        import sn_store

        row["sn_store_version"] = getattr(sn_store, "__version__", None)
    return row


def _evaluation_rows(run_id: str, evaluations: list[dict], artifact_id: str | None = None) -> list[list]:
    rows = []
    for ev in evaluations:
        unknown = set(ev) - set(EVALUATION_FIELDS)
        if unknown:
            raise SnError(f"unknown evaluation field(s) {sorted(unknown)}; known: {', '.join(EVALUATION_FIELDS)}")
        if ev.get("method") not in METHODS:
            raise SnError(f"evaluation method {ev.get('method')!r} is not one of {', '.join(METHODS)}")
        detail = ev.get("detail")
        if detail is not None and not isinstance(detail, str):
            detail = json.dumps(detail)
        rows.append([run_id, *(ev.get(name) for name in EVALUATION_FIELDS[:-1]), detail, artifact_id])
    return rows


@contextmanager
def _transaction(db_path):
    """A read-write connection inside one transaction: committed and checkpointed into the file on success, rolled
    back on any error. One sn_store writer at a time holds the database's writer lock for the whole open, write,
    checkpoint and close (DuckDB's own lock is taken per connect; a run that four processes wrote at once was once
    missing its rows)."""
    path = Path(db_path) if db_path is not None else default_db_path()
    with writer_lock(str(path), LOCK_TIMEOUT_S, what="the database", hint="or stop that process"):
        con = connect(path)
        try:
            con.begin()
            try:
                yield con
                con.commit()
            except BaseException:
                con.rollback()
                raise
            con.execute("CHECKPOINT")  # into the database file before the next writer opens it
        finally:
            con.close()


def _insert_evaluations(con, rows: list[list]) -> None:
    if rows:
        columns = ("run_id", *EVALUATION_FIELDS, "artifact_id")
        con.executemany(f"INSERT INTO evaluations ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                        rows)


def write_run(db_path, run: dict, neurons: pa.Table, evaluations: list[dict] = (),
              sav_heads: pa.Table | None = None, check: Callable[[], None] | None = None) -> str:
    """Store one run, all its neuron rows, its evaluations and its SAV heads in one transaction; returns the run
    id. `check` runs last inside the transaction: if it raises, nothing is written (e.g. the store changed)."""
    missing = [c for c in NEURON_COLUMNS if c not in neurons.column_names]
    if missing:
        raise SnError(f"neuron table lacks column(s) {missing}")
    row = _run_row(run)
    eval_rows = _evaluation_rows(row["run_id"], list(evaluations))
    neuron_table = neurons.select(list(NEURON_COLUMNS))
    columns = ", ".join(f'"{c}"' for c in NEURON_COLUMNS)

    try:
        with _transaction(db_path) as con:
            con.execute(
                f"INSERT INTO runs ({', '.join(RUN_FIELDS)}) VALUES ({', '.join('?' * len(RUN_FIELDS))})",
                [row[name] for name in RUN_FIELDS],
            )
            con.register("_sn_new_neurons", neuron_table)
            con.execute(f"INSERT INTO neurons (run_id, {columns}) SELECT ?, {columns} FROM _sn_new_neurons",
                        [row["run_id"]])  # fmt: skip
            con.unregister("_sn_new_neurons")
            _insert_evaluations(con, eval_rows)
            if sav_heads is not None:
                con.register("_sn_new_heads", sav_heads)
                con.execute("INSERT INTO sav_heads SELECT ?, rank, layer, head, probe_acc, eval_acc FROM _sn_new_heads",
                            [row["run_id"]])
                con.unregister("_sn_new_heads")
            if check is not None:
                check()
    except duckdb.ConstraintException as exc:
        raise SnError(f"run id {row['run_id']!r} is already in the database") from exc
    except duckdb.Error as exc:
        raise SnError(f"could not store run {row['run_id']!r}: {exc}") from exc
    _check_written(db_path, row["run_id"], neuron_table.num_rows)
    return row["run_id"]


def _check_written(db_path, run_id: str, n_neurons: int) -> None:
    """Read the committed run back through a new connection: a run is reported only once its rows are there."""
    con = connect(db_path, read_only=True)
    try:
        (found,) = con.execute("SELECT count(*) FROM neurons WHERE run_id = ?", [run_id]).fetchone()
    finally:
        con.close()
    if found != n_neurons:
        raise SnError(f"run {run_id!r} was committed but {found} of its {n_neurons} neuron rows are in the database "
                      f"{db_path}; search again")


def _latest(con) -> str:
    found = con.execute("SELECT run_id FROM runs ORDER BY created_at DESC, run_id DESC LIMIT 1").fetchall()
    if not found:
        raise SnError("the database has no runs yet: run `sn search` first")
    return found[0][0]


def _require_run(con, run_id: str) -> None:
    if not con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchall():
        raise SnError(f"unknown run id {run_id!r} (see `sn sql \"SELECT run_id, model, dataset FROM runs\"`)")


def latest_run(db_path=None) -> str:
    """The id of the most recently created run."""
    con = connect(db_path, read_only=True)
    try:
        return _latest(con)
    finally:
        con.close()


# `top --by`: the metric a listing of neurons is sorted by, then the one that breaks its ties (both descending).
TOP_ORDER = {
    "probe": ("probe_acc", "probe_bal_acc"),  # how the search chose them: the leaderboard's own rank
    "eval": ("eval_acc", "eval_bal_acc"),  # held out: for reading, not for choosing (that would tune on eval)
    "auroc": ("eval_auroc", "eval_acc"),
}


def top(db_path=None, run_id: str | None = None, k: int = 20, by: str = "probe", sites: list[str] | None = None,
        layers: list[int] | None = None) -> pa.Table:
    """The k best neurons (per class) of a run (default: the latest) by `by` (see TOP_ORDER), among the given sites
    and layers only if given. `rank` stays the run-wide leaderboard rank (top_neurons: by probe accuracy)."""
    if by not in TOP_ORDER:
        raise SnError(f"unknown order {by!r}: use one of {', '.join(TOP_ORDER)}")
    if layers and min(layers) < 0:  # counting from the end needs the model's depth, which a run does not record
        raise SnError(f"--layers: {min(layers)}: give layer numbers (0, 1, ...), not counts from the end")
    first, second = TOP_ORDER[by]
    con = connect(db_path, read_only=True)
    try:
        run_id = run_id or _latest(con)
        _require_run(con, run_id)
        where, params = _matching({"run_id": run_id, "site": sites, "layer": layers})
        return con.sql(
            f"SELECT * EXCLUDE (_pos) FROM (SELECT *, row_number() OVER (PARTITION BY class ORDER BY "
            f"nullif({first}, 'nan'::REAL) DESC NULLS LAST, nullif({second}, 'nan'::REAL) DESC NULLS LAST, rank) "
            f"AS _pos FROM top_neurons WHERE {where}) WHERE _pos <= ? ORDER BY class, _pos",
            params=[*params, int(k)],
        ).to_arrow_table()
    finally:
        con.close()


def _matching(filters: dict) -> tuple[str, list]:
    """A WHERE clause and its parameters: column = value, or column IN list; None matches everything."""
    clauses, params = ["TRUE"], []
    for column, value in filters.items():
        if value is not None:
            clauses.append(f"list_contains(?, {column})" if isinstance(value, list) else f"{column} = ?")
            params.append(value)
    return " AND ".join(clauses), params


_MINUTE = "strftime({}, '%Y-%m-%d %H:%M')"  # listings show UTC times to the minute


def runs_summary(db_path=None, model: str | None = None, dataset: str | None = None) -> pa.Table:
    """One row per run, newest first: what was searched and its best held-out figures (the `probe_summary` view)."""
    where, params = _matching({"p.model": model, "p.task": dataset})
    con = connect(db_path, read_only=True)
    try:
        return con.sql(
            f"SELECT p.run_id, {_MINUTE.format('p.created_at')} AS created, p.model, p.task AS dataset, r.mode, "
            "p.n_probe, p.n_eval, p.base_model_acc AS base, p.best_sn_acc AS best_sn, p.ensemble_acc AS ensemble, "
            "p.early_exit_acc AS early_exit, p.exit_layer, p.speedup, p.speedup_q1, p.speedup_q3 "
            f"FROM probe_summary AS p JOIN runs AS r USING (run_id) WHERE {where} "
            "ORDER BY p.created_at DESC, p.run_id", params=params,
        ).to_arrow_table()
    finally:
        con.close()


def artifacts_summary(db_path=None, run_id: str | None = None, model: str | None = None,
                      dataset: str | None = None) -> pa.Table:
    """One row per exported artifact, newest first: its run, model and dataset, exit layer, neurons, its early-exit
    accuracy on the eval split (its own evaluation: same run and neurons) and measured speed-up."""
    where, params = _matching({"a.run_id": run_id, "r.model": model, "r.dataset": dataset})
    con = connect(db_path, read_only=True)
    try:
        return con.sql(
            "WITH ee AS (SELECT run_id, detail, arg_max(acc, rowid) AS early_exit_acc FROM evaluations "
            "            WHERE method = 'early_exit' AND split = 'eval' GROUP BY run_id, detail) "
            f"SELECT a.run_id, {_MINUTE.format('a.created_at')} AS created, r.model, r.dataset, a.exit_layer, "
            "json_array_length(a.neurons) AS n_neurons, ee.early_exit_acc AS early_exit, a.speedup, a.speedup_q1, "
            "a.speedup_q3, a.path AS artifact "
            "FROM artifacts AS a LEFT JOIN runs AS r USING (run_id) "
            f"LEFT JOIN ee ON ee.run_id = a.run_id AND ee.detail = a.neurons WHERE {where} "
            "ORDER BY a.created_at DESC, a.path", params=params,
        ).to_arrow_table()
    finally:
        con.close()


# `sn sql` runs only statements that read: a SELECT (with WITH, FROM-first, VALUES, DESCRIBE, SHOW, SUMMARIZE, which
# DuckDB parses as SELECT), or EXPLAIN [ANALYZE] of one. COPY ... TO, EXPORT DATABASE, ATTACH, INSTALL/LOAD, SET,
# PRAGMA, CALL and every DDL/DML statement are refused before anything runs: a read-only connection still writes files.
_EXPLAIN = re.compile(r"\s*EXPLAIN(\s+ANALY[SZ]E)?\s", re.IGNORECASE)


def _reads(statement) -> bool:
    if statement.type == duckdb.StatementType.EXPLAIN:  # EXPLAIN ANALYZE runs its statement: look inside
        inner = _EXPLAIN.sub("", statement.query, count=1)
        try:
            kinds = [s.type for s in duckdb.extract_statements(inner)] if inner != statement.query else []
        except duckdb.Error:
            return False
        return kinds == [duckdb.StatementType.SELECT]
    return statement.type == duckdb.StatementType.SELECT


def _check_reading(sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise SnError(f"invalid SQL: {exc}") from exc
    for statement in statements:
        if not _reads(statement):
            raise SnError(f"{statement.type.name} statements are refused: `sn sql` is read-only (SELECT, WITH, "
                          f"DESCRIBE, SHOW, EXPLAIN SELECT); refused: {statement.query.strip()[:80]!r}")


def query(db_path, sql: str) -> pa.Table:
    """Run reading SQL on a read-only connection; the result of the last statement as an Arrow table."""
    _check_reading(sql)
    con = connect(db_path, read_only=True)
    try:
        con.execute("SET autoinstall_known_extensions = false")  # installing an extension writes to ~/.duckdb
        result = con.sql(sql)
        return result.to_arrow_table() if result is not None else pa.table({})
    except duckdb.Error as exc:
        if "read-only" in str(exc):
            raise SnError("the leaderboard is opened read-only: queries cannot modify it") from exc
        raise SnError(f"query failed: {exc}") from exc
    finally:
        con.close()


def export_run_parquet(db_path, run_id: str, out_path) -> Path:
    """Write every neuron row of a run to a Parquet file (the run's row as JSON in the file's metadata)."""
    con = connect(db_path, read_only=True)
    try:
        _require_run(con, run_id)
        run = con.sql("SELECT * FROM runs WHERE run_id = ?", params=[run_id]).to_arrow_table().to_pylist()[0]
        table = con.sql(
            "SELECT * FROM neurons WHERE run_id = ? ORDER BY site, layer, neuron, class", params=[run_id]
        ).to_arrow_table()
    finally:
        con.close()
    meta = {**(table.schema.metadata or {}), b"sn_store.run": json.dumps(run, default=str).encode()}
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), out)
    return out


def run_row(db_path, run_id: str | None = None) -> dict:
    """One run's row (default: the latest run)."""
    con = connect(db_path, read_only=True)
    try:
        run_id = run_id or _latest(con)
        _require_run(con, run_id)
        return con.sql("SELECT * FROM runs WHERE run_id = ?", params=[run_id]).to_arrow_table().to_pylist()[0]
    finally:
        con.close()


def run_store(run: dict) -> str:
    """The store of a `runs` row. Searches record its absolute path; a relative one (recorded by sn_store 0.1.0)
    only means something from the folder that search ran in, so one that is not there from here is named as such."""
    store = run["store"]
    if store and "://" not in store and not Path(store).is_absolute() and not Path(store).exists():
        raise SnError(f"run {run['run_id']}: its store was recorded as the relative path {store!r} (by an older "
                      f"sn_store), which is not there from {Path.cwd()}: run this from the folder that search ran "
                      "in, or search the store again")
    return store


def run_neurons(db_path, run_id: str) -> pa.Table:
    """Every neuron row of a run, as the search wrote it."""
    con = connect(db_path, read_only=True)
    try:
        _require_run(con, run_id)
        return con.sql("SELECT * FROM neurons WHERE run_id = ?", params=[run_id]).to_arrow_table()
    finally:
        con.close()


def read_table(db_path, sql: str, params: list = ()) -> pa.Table:
    """A parameterised read as an Arrow table. A database older than a table or view it names gets the current
    schema first (a read-write connect applies it), then the read is retried."""
    for attempt in range(2):
        con = connect(db_path, read_only=True)
        try:
            return con.sql(sql, params=list(params)).to_arrow_table()
        except duckdb.CatalogException:
            if attempt:
                raise
        finally:
            con.close()
        connect(db_path).close()


def run_evaluations(db_path, run_id: str, artifacts: bool = True) -> list[dict]:
    """The evaluations of a run; with `artifacts=False` only the run's own (no artifact's early_exit rows)."""
    own = "" if artifacts else " AND artifact_id IS NULL AND method <> 'early_exit'"
    con = connect(db_path, read_only=True)
    try:
        return con.sql(f"SELECT * FROM evaluations WHERE run_id = ?{own} ORDER BY method, split",
                       params=[run_id]).to_arrow_table().to_pylist()
    finally:
        con.close()


def artifact_id(run_id: str, path) -> str:
    """The id of an exported artifact: its run and resolved path."""
    return f"{run_id}:{Path(path).resolve()}"


def add_artifact(db_path, artifact: dict, evaluations: list[dict] = ()) -> None:
    """Record an exported artifact and its evaluations (method `early_exit`) in one transaction."""
    eval_rows = _evaluation_rows(artifact["run_id"], list(evaluations), artifact["artifact_id"])
    fields = ("artifact_id", "run_id", "path", "neurons", "exit_layer", "created_at", "sha256", "manifest_digest")
    row = {"manifest_digest": None, **artifact,
           "created_at": artifact.get("created_at") or datetime.now(UTC).replace(tzinfo=None)}
    with _transaction(db_path) as con:
        con.execute("DELETE FROM artifacts WHERE artifact_id = ?", [row["artifact_id"]])
        con.execute("DELETE FROM evaluations WHERE artifact_id = ?", [row["artifact_id"]])  # a replaced one's
        con.execute(f"INSERT INTO artifacts ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})",
                    [row[f] for f in fields])
        _insert_evaluations(con, eval_rows)


def artifact_rows(db_path) -> list[dict]:
    """Every recorded artifact (a database older than the `manifest_digest` column gives rows without it)."""
    con = connect(db_path, read_only=True)
    try:
        return con.sql("SELECT * FROM artifacts").to_arrow_table().to_pylist()
    finally:
        con.close()


def find_run(db_path, store_fingerprint: str, mode: str, ensemble_k: int, n_grid: int | None = None) -> str | None:
    """A finished search of the same store contents with the same settings (`n_grid` for grid mode), if any."""
    path = Path(db_path) if db_path is not None else default_db_path()
    if not path.exists():
        return None
    con = connect(db_path, read_only=True)
    try:
        rows = con.execute("SELECT run_id FROM runs WHERE store_fingerprint = ? AND mode = ? AND ensemble_k = ? "
                           "AND n_grid IS NOT DISTINCT FROM ? ORDER BY created_at DESC LIMIT 1",
                           [store_fingerprint, mode, ensemble_k, n_grid if mode == "grid" else None]).fetchall()
    finally:
        con.close()
    return rows[0][0] if rows else None


def set_speedup(db_path, artifact_path: str, speed: dict) -> None:
    """Record an artifact's measured speed-up over the full model's `generate`: the median of repeated timings and
    its spread (quartiles), as `predict.measure_speedup` returns them."""
    con = connect(db_path)
    try:
        con.execute("UPDATE artifacts SET speedup = ?, speedup_q1 = ?, speedup_q3 = ?, speedup_repeats = ? "
                    "WHERE path = ?", [speed["speedup"], speed["speedup_q1"], speed["speedup_q3"], speed["repeats"],
                                       artifact_path])
    finally:
        con.close()


def speedup_text(speedup: float | None, q1: float | None = None, q3: float | None = None) -> str:
    """'3.1x (2.9-3.4)': the median and, when measured, its interquartile range."""
    if speedup is None:
        return "-"
    return f"{speedup:.1f}x" + (f" ({q1:.1f}-{q3:.1f})" if q1 is not None and q3 is not None else "")


PROBE_KEY = ("model", "dataset", "content_hash", "settings")


def record_probe(db_path, probe: dict) -> None:
    """Record a finished probe (keys PROBE_KEY, run_id, artifact); a probe of the same key replaces it."""
    fields = (*PROBE_KEY, "run_id", "artifact", "finished_at")
    row = {**probe, "finished_at": datetime.now(UTC).replace(tzinfo=None)}
    with _transaction(db_path) as con:
        con.execute(f"INSERT OR REPLACE INTO probes ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})",
                    [row[f] for f in fields])


def probes_of(db_path, model: str, dataset: str) -> list[dict]:
    """Every finished probe of `model` on dataset `dataset`, the latest first."""
    path = Path(db_path) if db_path is not None else default_db_path()
    if not path.exists():
        return []
    con = connect(db_path)  # read-write: applies the schema, so an older database has the table
    try:
        return con.sql("SELECT * FROM probes WHERE model = ? AND dataset = ? ORDER BY finished_at DESC",
                       params=[model, dataset]).to_arrow_table().to_pylist()
    finally:
        con.close()
