"""The `export` flow: one Prefect task over `sn_store.export.export`."""

from __future__ import annotations

from prefect import flow, task

from sn_store.export import export


@task(name="export-artifact")
def export_task(run: str | None, out: str | None, neuron: str | None, ensemble: int, db: str | None) -> str:
    return str(export(run, out, neuron=neuron, ensemble=ensemble, db=db))


@flow(name="export", log_prints=True)
def export_flow(run: str | None = None, out: str | None = None, neuron: str | None = None, ensemble: int = 1,
                db: str | None = None) -> str:
    """Write the early-exit artifact of a run (default: the latest); returns its directory."""
    return export_task(run, out, neuron, ensemble, db)


if __name__ == "__main__":
    export_flow()
