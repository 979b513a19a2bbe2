"""The probe DAG: extract -> search -> export -> evaluate, as Prefect tasks over the sn_store library.

A re-run after a failure skips what is done: the store resumes from its last chunk (a complete one is not touched)
and a finished search of the same store and settings is reused. Each run publishes three Prefect artifacts: the
extraction's progress (samples done of total), a table of the top neurons and a markdown summary, the last two keyed
by model and dataset (`top-neurons-<model>-<dataset>`, `probe-summary-<model>-<dataset>`) so that the Artifacts page
keeps one of each per pair. A finished probe is recorded (DuckDB `probes`): `reprobe` skips it next time. The last
stage writes the run's report and publishes a link to it and the results table (`sn_store.flows.report`).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NONE
from sn_store.flows.report import report_task

import sn_store
from sn_store.artifact import EarlyExitClassifier
from sn_store.datasets import Dataset
from sn_store.errors import SnError
from sn_store.export import export
from sn_store.leaderboard import record_probe, set_speedup
from sn_store.pipeline import (
    ProbeConfig,
    artifact_key,
    dataset_for,
    eval_samples,
    finished_search,
    probe_key,
    summary_markdown,
    top_rows,
)
from sn_store.predict import measure_speedup
from sn_store.workspace import subdir


def transient(task, task_run, state) -> bool:
    """Retry failures of the machine (I/O, memory, a lost worker), not bad input, which would fail the same way."""
    try:
        state.result()
    except SnError:
        return False
    except Exception:
        return True
    return True


@task(name="extract", retries=2, retry_delay_seconds=5, retry_condition_fn=transient, cache_policy=NONE)
def extract_stage(config: ProbeConfig, ds: Dataset) -> str:
    what = f"extraction of {config.model} on {ds.spec.name}"

    def report(done: int, total: int) -> None:
        update_progress_artifact(progress, 100.0 * done / total, description=f"{what}: {done} of {total} samples")

    progress = create_progress_artifact(0.0, key=artifact_key("extraction", config.model, config.dataset),
                                        description=f"{what}: 0 of {len(ds)} samples")
    store = sn_store.extract(config.model, ds, sites=config.sites, layers=config.layers,
                             batch_size=config.batch_size, progress=False, on_chunk=report)
    report(len(ds), len(ds))  # also when the store was complete already
    return store


@task(name="search", retries=1, retry_delay_seconds=5, retry_condition_fn=transient, cache_policy=NONE)
def search_stage(config: ProbeConfig, store: str) -> str:
    done = finished_search(store, config)
    if done:
        get_run_logger().info("search of %s already finished as run %s: reusing it", store, done)
        return done
    return sn_store.search(store, config.mode, dask_address=config.dask_address, ensemble_k=config.ensemble_k,
                           db=config.db, progress=False)


@task(name="export", retries=1, retry_condition_fn=transient, cache_policy=NONE)
def export_stage(config: ProbeConfig, run_id: str) -> str:
    out = subdir("artifacts") / f"{run_id}-top{config.export_ensemble}"
    return str(export(run_id, out, ensemble=config.export_ensemble, db=config.db, batch_size=config.batch_size))


@task(name="evaluate", cache_policy=NONE)
def evaluate_stage(config: ProbeConfig, artifact: str, store: str, ds: Dataset) -> dict:
    clf = EarlyExitClassifier.load(artifact)
    images, questions = eval_samples(store, ds, n=min(8, config.batch_size))
    speed = measure_speedup(clf, sn_store.load_model(config.model), images, questions, repeats=config.speedup_repeats)
    set_speedup(config.db, str(Path(artifact).resolve()), speed)
    return {**speed, "exit_layer": clf.plan.exit_layer}


@flow(name="probe", log_prints=True)
def probe(config: ProbeConfig = ProbeConfig()) -> dict:
    """Find the Super Neurons of a model on a dataset and ship the best as an early-exit classifier."""
    ds = dataset_for(config)
    store = extract_stage(config, ds)
    run_id = search_stage(config, store)
    artifact = export_stage(config, run_id)
    speed = evaluate_stage(config, artifact, store, ds)
    rows = top_rows(config, run_id)
    create_table_artifact(rows, key=artifact_key("top-neurons", config.model, config.dataset),
                          description=f"top neurons of {config.model} on {config.dataset} (run {run_id})")
    best = [r for r in rows if r["rank"] == 1]  # one per class: K > 2 runs rank each class one-vs-rest
    create_markdown_artifact(summary_markdown(config, run_id, store, artifact, speed["exit_layer"], speed, best),
                             key=artifact_key("probe-summary", config.model, config.dataset),
                             description=f"{config.model} on {config.dataset}")
    report = report_task(run_id, db=config.db)  # last: the page shows the early exit's speed-up
    record_probe(config.db, {**probe_key(config, ds), "run_id": run_id, "artifact": artifact})
    return {"run_id": run_id, "store": store, "artifact": artifact, "speedup": speed["speedup"], "report": report}


if __name__ == "__main__":
    probe()
