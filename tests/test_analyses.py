"""The paper's analyses: each table against an independent recomputation (plain loops over the store, or numpy over
the leaderboard), each PNG decoded and non-trivial."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import xarray as xr
import zarr

from sn_store import analyses, leaderboard
from sn_store.errors import SnError
from tests.conftest import adapter, small_spec


def neuron_values(store: str, site: str, layer: int, index: int) -> np.ndarray:
    """One neuron's activations, read through xarray's coordinates (not the library's offsets)."""
    ds = xr.open_zarr(store, consolidated=False)
    at = np.flatnonzero((ds["neuron_site"].values.astype(object) == site) & (ds["neuron_index"].values == index))[0]
    return ds["activations"].sel(layer=layer).isel(neuron=at).values.astype(np.float32)


def store_arrays(store: str):
    g = zarr.open_group(store, mode="r")
    split = np.asarray(g["split"][:]).astype(object)
    return np.asarray(g["label"][:]).astype(int), split, np.asarray(g["model_pred"][:]).astype(int)


def evaluation(db, run_id, method, split="eval") -> float:
    return next(r["acc"] for r in leaderboard.run_evaluations(db, run_id) if r["method"] == method
                and r["split"] == split)


def test_threshold_curve_matches_loops(sn_tiny_run, sn_tiny_store):
    db, run_id = sn_tiny_run
    table = analyses.threshold_curve(db, run_id, k=2, n_grid=7)
    y, split, _ = store_arrays(sn_tiny_store)
    rows = table.to_pylist()
    assert len(rows) == 2 * 2 * 7 and {r["rank"] for r in rows} == {1, 2}
    top = {r["rank"]: r for r in leaderboard.top(db, run_id, 2).to_pylist()}
    for r in rows:
        a = neuron_values(sn_tiny_store, r["site"], r["layer"], r["neuron"])
        assert (r["site"], r["layer"], r["neuron"]) == (top[r["rank"]]["site"], top[r["rank"]]["layer"],
                                                        top[r["rank"]]["neuron"])
        hits = [(r["polarity"] * (float(a[i]) - r["alpha"]) > 0) == (y[i] == 1)
                for i in range(len(y)) if split[i] == r["split"]]
        assert r["acc"] == pytest.approx(sum(hits) / len(hits), abs=1e-6)
    assert sorted({r["alpha"] for r in rows}) == pytest.approx([-3, -2, -1, 0, 1, 2, 3])
    stored = leaderboard.query(db, f"SELECT count(*) AS n FROM threshold_curves WHERE run_id = '{run_id}'")
    assert stored["n"][0].as_py() == len(rows)


def test_layer_counts_match_numpy(sn_tiny_run):
    db, run_id = sn_tiny_run
    got = {(r["site"], r["layer"]): r for r in analyses.layer_counts(db, run_id).to_pylist()}
    neurons = leaderboard.run_neurons(db, run_id).to_pylist()
    base = {s: evaluation(db, run_id, "model", s) for s in ("probe", "eval")}
    assert set(got) == {(n["site"], n["layer"]) for n in neurons}
    for key, r in got.items():
        mine = [n for n in neurons if (n["site"], n["layer"]) == key]
        assert r["n_neurons"] == len(mine)
        for s in ("probe", "eval"):
            assert r[f"n_beat_{s}"] == sum(n[f"{s}_acc"] > base[s] for n in mine), (key, s)
    assert sum(r["n_beat_eval"] for r in got.values()) > 0  # the shipped model has SNs that beat it


def test_agreement_matches_the_store(sn_tiny_run, sn_tiny_store):
    db, run_id = sn_tiny_run
    table = analyses.agreement_vs_accuracy(db, run_id, top=3)
    y, split, model_pred = store_arrays(sn_tiny_store)
    ev = split == "eval"
    thresholds = {(n["site"], n["layer"], n["neuron"]): n for n in leaderboard.run_neurons(db, run_id).to_pylist()}
    assert [r["rank"] for r in table.to_pylist()] == [1, 2, 3]
    for r in table.to_pylist():
        n = thresholds[(r["site"], r["layer"], r["neuron"])]
        fires = n["polarity"] * (neuron_values(sn_tiny_store, r["site"], r["layer"], r["neuron"]) - n["threshold"]) > 0
        assert r["agreement"] == pytest.approx(np.mean(fires[ev] == (model_pred[ev] == 1)), abs=1e-6)
        assert r["eval_acc"] == pytest.approx(np.mean(fires[ev] == (y[ev] == 1)), abs=1e-6)
        assert r["model_eval_acc"] == pytest.approx(evaluation(db, run_id, "model"))


def test_stratified_subsets():
    y = np.array([0] * 30 + [1] * 10)
    probe = np.ones(40, dtype=bool)
    probe[[0, 35]] = False
    a, b = analyses.stratified_subset(probe, y, 8, 0), analyses.stratified_subset(probe, y, 8, 0)
    assert (a == b).all() and a.sum() == 8 and not (a & ~probe).any()
    assert a[y == 1].sum() == 2  # 9 of 38 probe samples are class 1: 8 * 9 / 38 = 1.9 -> 2 (largest remainder)
    assert (analyses.stratified_subset(probe, y, 8, 1) != a).any()
    assert analyses.default_sizes(32, 2) == [4, 8, 16, 32]


def test_probe_size_curve(sn_tiny_run, sn_tiny_store):
    db, run_id = sn_tiny_run
    table = analyses.probe_size_curve(db, run_id, sizes=[8, 32], seeds=2).to_pylist()
    sn = [r for r in table if r["method"] == "sn"]
    assert [(r["size"], r["seed"]) for r in sn] == [(8, 0), (8, 1), (32, 0)]
    full = sn[-1]  # the whole probe split re-selects the run's own best SN
    assert full["acc"] == pytest.approx(evaluation(db, run_id, "sn"), abs=1e-6)
    y, split, model_pred = store_arrays(sn_tiny_store)
    ev = split == "eval"
    for r in sn:  # each row's figures from its chosen neuron, recomputed
        [(site, layer, index, polarity, threshold)] = json.loads(r["neuron"])
        pred = (polarity * (neuron_values(sn_tiny_store, site, layer, index) - threshold) > 0)[ev]
        truth = y[ev] == 1
        tp = np.sum(pred & truth)
        fp, fn = np.sum(pred & ~truth), np.sum(~pred & truth)
        assert r["acc"] == pytest.approx(np.mean(pred == truth), abs=1e-6)
        assert r["precision"] == pytest.approx(tp / max(pred.sum(), 1), abs=1e-6)
        assert r["recall"] == pytest.approx(tp / truth.sum(), abs=1e-6)
        assert r["f1"] == pytest.approx(2 * tp / max(2 * tp + fp + fn, 1), abs=1e-6)  # the harmonic mean, from counts
    model = next(r for r in table if r["method"] == "model")
    assert model["acc"] == pytest.approx(np.mean(model_pred[ev] == y[ev]), abs=1e-6)
    with pytest.raises(SnError, match="probe sizes"):
        analyses.probe_size_curve(db, run_id, sizes=[64])


def test_prompt_robustness(sn_tiny_run, sn_tiny_store):
    db, run_id = sn_tiny_run
    same = {"name": "same", "question_template": "{question}"}  # the spec's own prompt, through the model again
    table = analyses.prompt_robustness(db, run_id, [same, {"name": "terse", "task_suffix": "Yes or no?"}],
                                       model=adapter("sn-tiny-llava"))
    acc = {(r["variant"], r["method"]): r for r in table.to_pylist()}
    assert set(acc) == {(v, m) for v in ("original", "same", "terse") for m in ("sn", "sn_ensemble")}
    assert acc[("original", "sn")]["acc"] == pytest.approx(evaluation(db, run_id, "sn"), abs=1e-6)
    assert acc[("original", "sn_ensemble")]["acc"] == pytest.approx(evaluation(db, run_id, "sn_ensemble"), abs=1e-6)
    for m in ("sn", "sn_ensemble"):  # rerunning the same prompt moves at most one sample across a threshold
        assert abs(acc[("same", m)]["acc"] - acc[("original", m)]["acc"]) <= 1 / 32 + 1e-6
    assert acc[("terse", "sn")]["prompt"].endswith("Yes or no?")
    # The activations themselves, recomputed through the model only up to the layers needed, match the store.
    from sn_store.datasets import load_dataset

    ds = load_dataset(small_spec("shapes-exist", n=64))
    top = leaderboard.top(db, run_id, 3).to_pylist()
    keys = [(r["site"], r["layer"], r["neuron"]) for r in top]
    got = analyses.variant_activations(adapter("sn-tiny-llava"), ds.samples[:8], keys, batch_size=3)
    want = np.stack([neuron_values(sn_tiny_store, *k)[:8] for k in keys], axis=1)
    np.testing.assert_allclose(got, want, atol=2e-2, rtol=2e-2)


def test_transfer(sn_tiny_run, sn_tiny_store, tmp_path_factory):
    from sn_store import extract, search
    from sn_store.datasets import load_dataset

    db, run_id = sn_tiny_run
    own = {(r["method"], r["split"]): r["acc"] for r in analyses.transfer(db, run_id, sn_tiny_store).to_pylist()}
    for method in ("model", "sn", "sn_ensemble"):  # onto its own store: the run's own evaluations
        assert own[(method, "eval")] == pytest.approx(evaluation(db, run_id, method), abs=1e-6)
    shift = str(tmp_path_factory.mktemp("shift") / "shift.zarr")
    extract(adapter("sn-tiny-llava"), load_dataset(small_spec("shapes-exist-shift", n=24)), store=shift,
            progress=False)
    rows = {(r["method"], r["split"]): r for r in analyses.transfer(db, run_id, shift).to_pylist()}
    assert rows[("sn", "all")]["n"] == 24 and rows[("sn", "all")]["target_dataset"] == "shapes-exist-shift"
    best = json.loads(next(r["detail"] for r in leaderboard.run_evaluations(db, run_id) if r["method"] == "sn"))[0]
    y, _, _ = store_arrays(shift)
    fires = best["polarity"] * (neuron_values(shift, best["site"], best["layer"], best["neuron"])
                                - float(best["threshold"])) > 0
    assert rows[("sn", "all")]["acc"] == pytest.approx(np.mean(fires == (y == 1)), abs=1e-6)
    assert len(analyses.transfers(db, run_id)) == 2 * 3 * 3  # two targets x three methods x (probe, eval, all)
    shift_run = search(shift, db=db, progress=False, sav=False)
    assert analyses.transfer_suite(db, [shift_run, run_id]) == [run_id]  # shapes-exist -> shapes-exist-shift
    assert analyses.transfer_suite(db, [shift_run]) == []

    other = tmp_path_factory.mktemp("other") / "other.zarr"
    shutil.copytree(shift, other)
    zarr.open_group(str(other), mode="r+").attrs["classes"] = ["yes", "no"]
    with pytest.raises(SnError, match="classes"):
        analyses.transfer(db, run_id, str(other))


def test_cli_transfer(sn_tiny_run, sn_tiny_store):
    import subprocess
    import sys

    db, run_id = sn_tiny_run
    res = subprocess.run([sys.executable, "-m", "sn_store", "transfer", "--run", run_id, "--store", sn_tiny_store,
                          "--db", db], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "sn_ensemble" in res.stdout and "shapes-exist" in res.stdout
    res = subprocess.run([sys.executable, "-m", "sn_store", "transfer", "--run", run_id, "--store",
                          sn_tiny_store + ".missing", "--db", db], capture_output=True, text=True)
    assert res.returncode == 1 and "no activation store" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_write_figures_pngs(sn_tiny_run, sn_tiny_store, tmp_path):
    import duckdb
    from PIL import Image

    shared_db, run_id = sn_tiny_run
    db = tmp_path / "own.duckdb"  # a copy: the transfer recorded here must not reach the other tests' database
    shutil.copy(shared_db, db)
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM transfers")  # whatever other tests recorded: this test stands on its own
    con.close()
    assert len(analyses.transfers(db, run_id)) == 0
    analyses.transfer(db, run_id, sn_tiny_store)  # the transfer figure is drawn from recorded transfers only
    assert len(analyses.transfers(db, run_id)) > 0
    figs = analyses.write_figures(db, run_id, tmp_path)
    names = {f.name for f in figs}
    assert {"threshold_curve", "layer_counts", "agreement", "probe_size", "prompt_robustness", "transfer"} <= names
    for f in figs:
        assert f.png == tmp_path / f"{f.name}.png" and f.table.num_rows > 0
        with Image.open(f.png) as im:
            im.verify()  # a whole, valid PNG
        with Image.open(f.png) as im:
            assert im.format == "PNG" and im.width >= 400 and im.height >= 250, (f.name, im.size)
            pixels = np.asarray(im.convert("RGB"), dtype=np.int16)
        assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, f.name  # drawn on



def test_a_database_older_than_the_analyses_is_migrated_on_read(sn_tiny_run, tmp_path):
    import duckdb

    from sn_store.sav import sav_heads

    db, run_id = sn_tiny_run
    old = tmp_path / "old.duckdb"
    shutil.copy(db, old)
    con = duckdb.connect(str(old))
    con.execute("DROP VIEW neurons_beating_model; DROP TABLE sav_heads")
    con.close()
    assert len(analyses.layer_counts(old, run_id)) == len(analyses.layer_counts(db, run_id)) > 0
    assert sav_heads(old, run_id).num_rows == 0  # the table is back, empty: this run's heads were dropped with it


def test_grid_run_curves_agree_with_the_search(sn_tiny_store, tmp_path):
    """On a grid search with the analysis' own grid, each top neuron's best probe point of the alpha curve is its
    searched probe accuracy, and the probe-size curve at the whole split re-selects the run's best SN."""
    from sn_store import search

    db = str(tmp_path / "grid.duckdb")
    run_id = search(sn_tiny_store, mode="grid", n_grid=13, db=db, progress=False, sav=False)
    curve = analyses.threshold_curve(db, run_id, k=3, n_grid=13).to_pylist()
    for row in leaderboard.top(db, run_id, 3).to_pylist():
        probe = [r["acc"] for r in curve if r["rank"] == row["rank"] and r["split"] == "probe"]
        assert max(probe) == pytest.approx(row["probe_acc"], abs=1e-6)
    full = analyses.probe_size_curve(db, run_id, sizes=[32], seeds=1).to_pylist()[0]
    assert full["acc"] == pytest.approx(evaluation(db, run_id, "sn"), abs=1e-6)
