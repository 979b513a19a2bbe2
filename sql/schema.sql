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

-- The attention heads a run's SAV baseline (method `sav` in evaluations) votes with, best on probe first.
CREATE TABLE IF NOT EXISTS sav_heads (
    run_id    VARCHAR,
    rank      INTEGER,
    layer     INTEGER,
    head      INTEGER,     -- query head within the layer's attn site
    probe_acc REAL,
    eval_acc  REAL
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

-- The paper's analyses of a run (sn_store.analyses); each function replaces its run's rows.
-- Fig. 3a: accuracy of the run's top neurons for every threshold alpha of the grid over [-3, 3].
CREATE TABLE IF NOT EXISTS threshold_curves (
    run_id VARCHAR, class VARCHAR, rank INTEGER, site VARCHAR, layer INTEGER, neuron INTEGER, polarity TINYINT,
    alpha REAL, split VARCHAR, acc REAL
);

-- Fig. 5: eval figures of the best SN re-selected on stratified probe subsets (method sn, per size and seed) and of
-- the base model (method model, seed -1). Precision, recall, F1: of the positive class (K = 2) or macro (K > 2).
CREATE TABLE IF NOT EXISTS probe_size_curves (
    run_id VARCHAR, method VARCHAR, size INTEGER, seed INTEGER, acc REAL, precision REAL, recall REAL, f1 REAL,
    neuron VARCHAR  -- JSON [[site, layer, index, polarity, threshold], ...] of the SN(s) chosen on the subset
);

-- The run's SNs under reworded prompts (a spec's prompt_variants), on the eval split; variant `original` is read
-- from the store.
CREATE TABLE IF NOT EXISTS prompt_robustness (
    run_id VARCHAR, variant VARCHAR, prompt VARCHAR, method VARCHAR, split VARCHAR, acc REAL, bal_acc REAL, f1 REAL,
    n INTEGER
);

-- Distribution shift: the run's SNs (and the base model) on another store with the same classes (`sn transfer`).
CREATE TABLE IF NOT EXISTS transfers (
    run_id VARCHAR, target_store VARCHAR, target_dataset VARCHAR, method VARCHAR, split VARCHAR, acc REAL,
    bal_acc REAL, f1 REAL, mcc REAL, n INTEGER, created_at TIMESTAMP
);

-- Which artifact an evaluation belongs to (method early_exit; NULL for the run's own evaluations): a manifest lists
-- only its own. Rows of older databases are matched to their artifact where the run and the neurons say which.
ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS artifact_id VARCHAR;
UPDATE evaluations AS e SET artifact_id = (SELECT any_value(a.artifact_id) FROM artifacts AS a
                                           WHERE a.run_id = e.run_id AND a.neurons = e.detail)
WHERE e.method = 'early_exit' AND e.artifact_id IS NULL
  AND (SELECT count(*) FROM artifacts AS a WHERE a.run_id = e.run_id AND a.neurons = e.detail) = 1;

-- The speed-up's spread over repeated interleaved timings (speedup itself is their median).
ALTER TABLE artifacts ADD COLUMN IF NOT EXISTS speedup_q1 REAL;
ALTER TABLE artifacts ADD COLUMN IF NOT EXISTS speedup_q3 REAL;
ALTER TABLE artifacts ADD COLUMN IF NOT EXISTS speedup_repeats INTEGER;

-- Grid points of a grid-mode search (NULL for exact): part of what makes two searches of one store the same.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_grid INTEGER;

-- Finished probes (the whole DAG: extract, search, export, evaluate), one row per model, dataset name, dataset
-- content and probe settings: `reprobe` probes a registered dataset only when its key has no row here.
CREATE TABLE IF NOT EXISTS probes (
    model        VARCHAR,
    dataset      VARCHAR,
    content_hash VARCHAR,
    settings     VARCHAR,     -- canonical JSON of the settings that change the result (sites, layers, sizes, mode...)
    run_id       VARCHAR,
    artifact     VARCHAR,
    finished_at  TIMESTAMP,   -- UTC
    PRIMARY KEY (model, dataset, content_hash, settings)
);
