"""The store-level search against the kernel applied directly to the whole store in memory."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from sn_store.datasets import load_dataset
from sn_store.errors import SnError
from sn_store.extract import extract
from sn_store.search import fit_store as search
from sn_store.search_kernel import fit_block
from tests.conftest import adapter, free_port, small_spec


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    out = {}
    for name, spec in (("binary", small_spec(n=48)), ("multi", small_spec("shapes-color", n=48))):
        out[name] = extract(adapter("tiny-llava"), load_dataset(spec), store=str(tmp / f"{name}.zarr"),
                            chunk_neurons=100, progress=False)
    return out


def direct(path, mode):
    """Every layer's whole neuron axis in one kernel call: no blocks, no Dask, no store reads by the search."""
    x = xr.open_zarr(path, consolidated=False).load()
    y = x["label"].values
    probe = x["split"].values.astype(object) == "probe"
    rows = []
    for li, layer in enumerate(x["layer"].values):
        out = fit_block(x["activations"].values[:, li, :], y, probe, x["model_pred"].values, len(x["class"]),
                        mode=mode)
        sites = x["neuron_site"].values.astype(object)[out["neuron"]]
        idx = x["neuron_index"].values[out["neuron"]]
        classes = x["class"].values.astype(object)[out["class"]]
        for i in range(len(out["neuron"])):
            rows.append(((sites[i], int(layer), int(idx[i]), classes[i]),
                         (int(out["polarity"][i]), float(out["threshold"][i]), float(out["probe_acc"][i]),
                          float(out["eval_acc"][i]), float(out["agreement"][i]))))
    return dict(rows)


@pytest.mark.parametrize("kind", ["binary", "multi"])
@pytest.mark.parametrize("mode", ["exact", "grid"])
def test_search_equals_the_kernel_on_the_whole_store(stores, kind, mode):
    table = search(stores[kind], mode=mode, progress=False).to_pylist()
    want = direct(stores[kind], mode)
    n_classes = 1 if kind == "binary" else 4
    assert len(table) == len(want) == 4 * 256 * n_classes
    got = {(r["site"], r["layer"], r["neuron"], r["class"]):
           (r["polarity"], r["threshold"], r["probe_acc"], r["eval_acc"], r["agreement"]) for r in table}
    assert got.keys() == want.keys()
    for key, vals in want.items():
        np.testing.assert_array_equal(np.array(got[key], dtype=np.float64), np.array(vals), err_msg=str(key))


def test_search_refuses_unfinished_store_and_bad_mode(stores, tmp_path):
    with pytest.raises(SnError, match="--mode"):
        search(stores["binary"], mode="fast")
    import shutil

    import zarr
    shutil.copytree(stores["binary"], tmp_path / "s.zarr")
    zarr.open_group(str(tmp_path / "s.zarr"), mode="r+").attrs["complete"] = False
    with pytest.raises(SnError, match="has not finished"):
        search(str(tmp_path / "s.zarr"))


def test_distributed_search_equals_local(stores):
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1, stopped by PID afterwards."""
    import subprocess
    import sys
    from pathlib import Path

    from distributed import Client

    dask_bin = str(Path(sys.executable).parent / "dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rsplit(":", 1)[1]
    procs = [subprocess.Popen([dask_bin, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([dask_bin, "worker", address, "--nthreads", "1", "--no-dashboard",
                                           "--host", "127.0.0.1"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        local = search(stores["multi"], progress=False)
        remote = search(stores["multi"], dask_address=address, progress=False)
        assert remote.equals(local)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    assert all(p.returncode is not None for p in procs)
