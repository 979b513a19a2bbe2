"""The `extract` flow: one Prefect task over `sn_store.extract`. Its defaults run as they are (the UI's Quick run
sends no parameters)."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

import sn_store
from sn_store.pipeline import DEFAULT_MODEL


@task(name="extract-activations", retries=1, retry_delay_seconds=5)
def extract_task(model: str, dataset: str, store: str | None, sites: list[str] | None, layers: str | None,
                 batch_size: int, baseline: bool, dtype: str) -> str:
    # A retry resumes the store from its last complete chunk instead of starting over.
    return sn_store.extract(model, dataset, store=store, sites=sites, layers=layers, batch_size=batch_size,
                            baseline=baseline, dtype=dtype, progress=False)


@flow(name="extract", log_prints=True)
def extract_flow(model: str = DEFAULT_MODEL, dataset: str = "shapes-exist", store: str | None = None,
                 sites: list[str] | None = None, layers: str | None = None, batch_size: int = 16,
                 baseline: bool = True, dtype: str = "float16") -> str:
    """Extract first-token activations of `model` on `dataset` into a Zarr store; returns the store path."""
    path = extract_task(model, dataset, store, sites, layers, batch_size, baseline, dtype)
    get_run_logger().info("store written: %s", path)
    return path


if __name__ == "__main__":
    extract_flow()
