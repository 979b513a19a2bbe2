"""The extract flow against a real temporary Prefect server."""

from __future__ import annotations

import numpy as np
import xarray as xr


def test_extract_flow_writes_the_store(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from sn_store.flows.extract import extract_flow

    from sn_store.extract import extract

    store = str(tmp_path / "flow.zarr")
    state = extract_flow(model="tiny-llava", dataset="shapes-exist", store=store, layers="0", sites=["resid"],
                         return_state=True)
    assert state.is_completed()
    assert state.result() == store
    got = xr.open_zarr(store, consolidated=False)
    direct = xr.open_zarr(extract("tiny-llava", "shapes-exist", store=str(tmp_path / "direct.zarr"), layers="0",
                                  sites=["resid"], progress=False), consolidated=False)
    np.testing.assert_array_equal(got["activations"].values, direct["activations"].values)

    import asyncio

    async def runs():
        async with get_client() as client:
            return await client.read_flow_runs(limit=10)

    assert any(r.state.is_completed() for r in asyncio.run(runs()))


def test_search_flow_writes_a_run(prefect_server, tmp_path):
    from sn_store.flows.search import search_flow

    from sn_store.leaderboard import query

    store = sn_store_extract(tmp_path)
    db = str(tmp_path / "sn.duckdb")
    state = search_flow(store=store, db=db, ensemble_k=3, return_state=True)
    assert state.is_completed()
    run_id = state.result()
    assert query(db, f"SELECT count(*) AS n FROM neurons WHERE run_id = '{run_id}'").to_pylist()[0]["n"] == 4 * 256


def sn_store_extract(tmp_path):
    from sn_store.datasets import load_dataset
    from sn_store.extract import extract
    from tests.conftest import adapter, small_spec

    return extract(adapter("tiny-llava"), load_dataset(small_spec(n=24)), store=str(tmp_path / "s.zarr"),
                   progress=False)
