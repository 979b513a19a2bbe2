-- sn_store leaderboard schema (DuckDB). Idempotent: applied on every read-write connect.
-- Metrics are REAL (float32, as the search computes them); NaN and +/-inf are stored as they are.

CREATE TABLE IF NOT EXISTS runs (
    run_id            VARCHAR PRIMARY KEY,
    store             VARCHAR,      -- path of the Zarr activation store that was searched
    model             VARCHAR,      -- model id (hub id, local path or built-in name)
    dataset           VARCHAR,      -- dataset spec name
    mode              VARCHAR,      -- search mode: exact | grid
    created_at        TIMESTAMP,    -- UTC
    n_probe           INTEGER,
    n_eval            INTEGER,
    classes           VARCHAR[],    -- order matters: classes[2] (1-based) is the positive class
    dataset_hash      VARCHAR,
    model_config_hash VARCHAR,
    sn_store_version  VARCHAR,
    store_fingerprint VARCHAR,      -- the store's extraction fingerprint: a finished search of it is reused
    ensemble_k        INTEGER
);

-- Every neuron of a run, one row per (neuron, class): one class for binary tasks, one-vs-rest rows for K > 2.
CREATE TABLE IF NOT EXISTS neurons (
    run_id        VARCHAR,
    site          VARCHAR,     -- resid | mlp | attn
    layer         INTEGER,
    neuron        INTEGER,     -- index within its site
    class         VARCHAR,
    polarity      TINYINT,     -- +1 / -1: predict class iff polarity * (a - threshold) > 0
    threshold     REAL,
    probe_acc     REAL,
    probe_bal_acc REAL,
    probe_f1      REAL,
    probe_mcc     REAL,
    probe_auroc   REAL,
    eval_acc      REAL,
    eval_bal_acc  REAL,
    eval_f1       REAL,
    eval_mcc      REAL,
    eval_auroc    REAL,
    agreement     REAL         -- agreement rate with the base model's answer (eval split)
);

CREATE TABLE IF NOT EXISTS evaluations (
    run_id  VARCHAR,
    method  VARCHAR,   -- model | sn | sn_ensemble | sav | early_exit
    split   VARCHAR,   -- probe | eval
    acc     REAL,
    bal_acc REAL,
    f1      REAL,
    mcc     REAL,
    n       INTEGER,
    detail  VARCHAR    -- JSON text, e.g. which neurons
);

CREATE TABLE IF NOT EXISTS datasets (
    name         VARCHAR PRIMARY KEY,
    spec         VARCHAR,     -- YAML / JSON text of the spec
    content_hash VARCHAR,
    added_at     TIMESTAMP
);

CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id VARCHAR PRIMARY KEY,
    run_id      VARCHAR,
    path        VARCHAR,
    neurons     VARCHAR,      -- JSON list of {site, layer, neuron, class, polarity, threshold}
    exit_layer  INTEGER,
    created_at  TIMESTAMP,
    sha256      VARCHAR,
    speedup     REAL          -- measured early exit vs `generate` on the same inputs (NULL until measured)
);

-- sha256:<hex> of the artifact manifest's canonical body (its `digest` field): `sn predict` refuses an artifact at
-- this path whose manifest no longer has it.
ALTER TABLE artifacts ADD COLUMN IF NOT EXISTS manifest_digest VARCHAR;
