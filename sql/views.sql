-- sn_store leaderboard views (DuckDB). Applied after schema.sql on every read-write connect.
-- NaN sorts above every number in DuckDB, so rankings and means treat NaN metrics as missing (nullif).

-- Every neuron row with its rank in its run and class: probe accuracy, then probe balanced accuracy, both
-- descending (missing last); remaining ties by (site, layer, neuron) so that ranks are unique and stable.
CREATE OR REPLACE VIEW top_neurons AS
SELECT
    n.*,
    row_number() OVER (
        PARTITION BY n.run_id, n.class
        ORDER BY nullif(n.probe_acc, 'nan'::REAL) DESC NULLS LAST,
                 nullif(n.probe_bal_acc, 'nan'::REAL) DESC NULLS LAST,
                 n.site, n.layer, n.neuron
    ) AS rank
FROM neurons AS n;

-- Per run, site and layer: how many neurons, and how many beat the base model on the held-out split
-- (a neuron counts once if any of its class rows has eval_acc > the model's eval accuracy): the paper's Fig. 3b.
-- n_beat_model is NULL when the run has no base-model evaluation, and for runs of more than two classes, where a
-- neuron's one-vs-rest accuracy is not comparable with the model's K-way accuracy.
CREATE OR REPLACE VIEW layer_summary AS
WITH base AS (
    SELECT run_id, max(acc) AS model_eval_acc
    FROM evaluations
    JOIN runs USING (run_id)
    WHERE method = 'model' AND split = 'eval' AND (runs.classes IS NULL OR len(runs.classes) = 2)
    GROUP BY run_id
)
SELECT
    n.run_id,
    n.site,
    n.layer,
    count(DISTINCT n.neuron) AS n_neurons,
    CASE WHEN any_value(b.model_eval_acc) IS NULL THEN NULL
         ELSE count(DISTINCT n.neuron) FILTER (WHERE nullif(n.eval_acc, 'nan'::REAL) > b.model_eval_acc) END AS n_beat_model,
    any_value(b.model_eval_acc) AS model_eval_acc,
    max(nullif(n.probe_acc, 'nan'::REAL)) AS best_probe_acc,
    max(nullif(n.eval_acc, 'nan'::REAL)) AS best_eval_acc
FROM neurons AS n
LEFT JOIN base AS b USING (run_id)
GROUP BY n.run_id, n.site, n.layer;

-- Neurons (model, site, layer, neuron) in the top 100 by probe accuracy (top_neurons.rank <= 100) in runs of the
-- same model on at least two different datasets, with how many datasets and the mean held-out accuracy of those
-- top-100 rows.
CREATE OR REPLACE VIEW cross_dataset_neurons AS
SELECT
    r.model,
    t.site,
    t.layer,
    t.neuron,
    count(DISTINCT r.dataset) AS n_datasets,
    count(DISTINCT t.run_id) AS n_runs,
    avg(nullif(t.eval_acc, 'nan'::REAL)) AS mean_eval_acc,
    list(DISTINCT r.dataset ORDER BY r.dataset) AS datasets
FROM top_neurons AS t
JOIN runs AS r USING (run_id)
WHERE t.rank <= 100
GROUP BY r.model, t.site, t.layer, t.neuron
HAVING count(DISTINCT r.dataset) >= 2;

-- One row per run: the base model, the best SN, the ensemble and the early-exit artifact on the eval split, and the
-- artifact's exit layer and measured speed-up (median, and quartiles of the repeated timings). The artifact is the
-- latest of the run; its early-exit accuracy is its own (evaluations.artifact_id), else the run's latest.
-- `sn demo` prints this view.
CREATE OR REPLACE VIEW probe_summary AS
WITH ev AS (
    SELECT run_id,
           arg_max(acc, rowid) FILTER (WHERE method = 'model') AS base_model_acc,
           arg_max(acc, rowid) FILTER (WHERE method = 'sn') AS best_sn_acc,
           arg_max(detail, rowid) FILTER (WHERE method = 'sn') AS best_sn,
           arg_max(acc, rowid) FILTER (WHERE method = 'sn_ensemble') AS ensemble_acc,
           arg_max(acc, rowid) FILTER (WHERE method = 'early_exit') AS early_exit_acc
    FROM evaluations
    WHERE split = 'eval'
    GROUP BY run_id
), art AS (
    SELECT run_id, arg_max(artifact_id, created_at) AS artifact_id, arg_max(exit_layer, created_at) AS exit_layer,
           arg_max(speedup, created_at) AS speedup, arg_max(speedup_q1, created_at) AS speedup_q1,
           arg_max(speedup_q3, created_at) AS speedup_q3, arg_max(path, created_at) AS artifact
    FROM artifacts
    GROUP BY run_id
), own AS (
    SELECT artifact_id, arg_max(acc, rowid) AS early_exit_acc
    FROM evaluations
    WHERE method = 'early_exit' AND split = 'eval' AND artifact_id IS NOT NULL
    GROUP BY artifact_id
)
SELECT r.run_id, r.model, r.dataset AS task, r.created_at, len(r.classes) AS n_classes, r.n_probe, r.n_eval,
       ev.base_model_acc, ev.best_sn_acc, ev.best_sn, ev.ensemble_acc, r.ensemble_k,
       coalesce(own.early_exit_acc, ev.early_exit_acc) AS early_exit_acc,
       art.exit_layer, art.speedup, art.speedup_q1, art.speedup_q3, art.artifact
FROM runs AS r
LEFT JOIN ev USING (run_id)
LEFT JOIN art USING (run_id)
LEFT JOIN own ON own.artifact_id = art.artifact_id;

-- Fig. 3b: per run, site and layer, how many neurons beat the base model on the probe split and on the eval split
-- (a neuron counts once if any of its rows beats it). Only binary runs with a base-model evaluation have rows.
CREATE OR REPLACE VIEW neurons_beating_model AS
WITH base AS (
    SELECT run_id,
           max(acc) FILTER (WHERE split = 'probe') AS model_probe_acc,
           max(acc) FILTER (WHERE split = 'eval') AS model_eval_acc
    FROM evaluations
    JOIN runs USING (run_id)
    WHERE method = 'model' AND (runs.classes IS NULL OR len(runs.classes) = 2)
    GROUP BY run_id
)
SELECT
    n.run_id,
    n.site,
    n.layer,
    count(DISTINCT n.neuron) AS n_neurons,
    count(DISTINCT n.neuron) FILTER (WHERE nullif(n.probe_acc, 'nan'::REAL) > b.model_probe_acc) AS n_beat_probe,
    count(DISTINCT n.neuron) FILTER (WHERE nullif(n.eval_acc, 'nan'::REAL) > b.model_eval_acc) AS n_beat_eval,
    any_value(b.model_probe_acc) AS model_probe_acc,
    any_value(b.model_eval_acc) AS model_eval_acc
FROM neurons AS n
JOIN base AS b USING (run_id)
GROUP BY n.run_id, n.site, n.layer;

-- Fig. 4: every valid neuron row with its probe rank, eval accuracy and agreement with the base model's answer on
-- the eval split, beside the base model's eval accuracy (NULL without a base-model evaluation).
CREATE OR REPLACE VIEW neuron_agreement AS
SELECT t.run_id, t.rank, t.class, t.site, t.layer, t.neuron, t.probe_acc, t.eval_acc, t.agreement,
       m.model_eval_acc
FROM top_neurons AS t
LEFT JOIN (SELECT run_id, max(acc) AS model_eval_acc FROM evaluations WHERE method = 'model' AND split = 'eval'
           GROUP BY run_id) AS m USING (run_id)
WHERE t.polarity <> 0;
