"""The `search` flow: one Prefect task over `sn_store.search` (threshold search, evaluations, DuckDB write)."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

import sn_store
from sn_store.pipeline import DEFAULT_MODEL


@task(name="search-neurons")
def search_task(store: str, mode: str, dask_address: str | None, ensemble_k: int, db: str | None) -> str:
    return sn_store.search(store, mode, dask_address=dask_address, ensemble_k=ensemble_k, db=db, progress=False)


@flow(name="search", log_prints=True)
def search_flow(store: str | None = None, mode: str = "exact", dask_address: str | None = None,
                ensemble_k: int = 5, db: str | None = None) -> str:
    """Search every neuron of a store and write the leaderboard; returns the run id. With no store given, the
    embedded default's store (the shipped model on shapes-exist) is extracted first, so a Quick run works."""
    if store is None:
        store = sn_store.extract(DEFAULT_MODEL, "shapes-exist", progress=False)
    run_id = search_task(store, mode, dask_address, ensemble_k, db)
    get_run_logger().info("run %s written", run_id)
    return run_id


if __name__ == "__main__":
    search_flow()
