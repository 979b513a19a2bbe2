"""The `demo` flow: the probe flow on every task of the built-in synthetic suite, and one table artifact of the
results (`demo-suite-<model>`), the table `sn demo` prints."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact
from sn_store.flows.probe import probe

from sn_store.analyses import transfer_suite
from sn_store.datasets import suite_specs
from sn_store.demo import suite_rows
from sn_store.pipeline import DEFAULT_MODEL, ProbeConfig, artifact_key
from sn_store.report import write_report


@flow(name="demo", log_prints=True)
def demo(model: str = DEFAULT_MODEL, tasks: list[str] | None = None, db: str | None = None) -> list[str]:
    """Probe `model` on each task (default: the synthetic suite); returns the run ids."""
    tasks = tasks or sorted(suite_specs())
    run_ids = [probe(ProbeConfig(model=model, dataset=task, db=db))["run_id"] for task in tasks]
    for run_id in transfer_suite(db, run_ids):  # e.g. shapes-exist's SNs on shapes-exist-shift: its page shows it
        write_report(run_id, db=db)
    publish_suite("demo-suite", model, db, run_ids)
    return run_ids


def publish_suite(kind: str, model: str, db: str | None, run_ids: list[str]) -> None:
    """The suite table (one row per task) as a Prefect table artifact keyed by `kind` and the model."""
    rows = suite_rows(db, run_ids)
    if rows:
        create_table_artifact(rows, key=artifact_key(kind, model), description=f"{model}: held-out accuracy per task")
