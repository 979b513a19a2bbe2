"""Evaluations of a run against sklearn's metrics and plain-loop re-implementations of the SN and ensemble rules."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest
import xarray as xr
from sklearn import metrics as skm

from sn_store.datasets import load_dataset
from sn_store.evaluate import class_metrics, evaluate_run
from sn_store.extract import extract
from sn_store.leaderboard import query, top
from sn_store.search import fit_store, search
from tests.conftest import adapter, small_spec


@pytest.mark.parametrize("k", [2, 4])
def test_class_metrics_match_sklearn(k):
    rng = np.random.default_rng(k)
    y, pred = rng.integers(0, k, 200), rng.integers(0, k, 200)
    pred[:120] = y[:120]
    got = class_metrics(pred, y, k, positive=1)
    assert got["acc"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["bal_acc"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert got["f1"] == pytest.approx(skm.f1_score(y == 1, pred == 1))
    assert got["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    assert got["n"] == 200


@pytest.fixture(scope="module", params=["shapes-exist", "shapes-color"])
def store(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("ev") / "s.zarr"
    return extract(adapter("tiny-llava"), load_dataset(small_spec(request.param, n=64)), store=str(path),
                   progress=False)


def loop_predictions(x, rows_by_class, n_classes):
    """Independent vote, one sample at a time: each class counts its neurons that fire; ties go to the class
    (binary: the side) of the largest spread-scaled margin."""
    probe = x["split"].values.astype(object) == "probe"
    layers = list(x["layer"].values)
    sites = x["neuron_site"].values.astype(object)
    idx = x["neuron_index"].values
    acts = x["activations"].values.astype(np.float32)

    def margin(r):
        a = acts[:, layers.index(r["layer"]), np.flatnonzero((sites == r["site"]) & (idx == r["neuron"]))[0]]
        return r["polarity"] * (a - np.float32(r["threshold"])) / (a[probe].std() or 1.0)

    z = {c: [margin(r) for r in rows] for c, rows in rows_by_class.items()}
    preds = []
    for i in range(acts.shape[0]):
        if n_classes == 2:
            zs = [m[i] for m in z[1]]
            fired = sum(v > 0 for v in zs)
            if 2 * fired == len(zs):
                preds.append(int(zs[int(np.argmax(np.abs(zs)))] > 0))
            else:
                preds.append(int(2 * fired > len(zs)))
            continue
        votes = {c: sum(m[i] > 0 for m in ms) for c, ms in z.items()}
        strongest = {c: max(m[i] for m in ms) for c, ms in z.items()}
        most = max(votes.values())
        preds.append(max((c for c in votes if votes[c] == most), key=lambda c: (strongest[c], -c)))
    return np.array(preds)


def test_sn_and_ensemble_rows_equal_a_plain_loop(store):
    x = xr.open_zarr(store, consolidated=False).load()
    table = fit_store(store, progress=False)
    rows = evaluate_run(store, table, ensemble_k=3)
    by = {(r["method"], r["split"]): r for r in rows}
    classes = list(x.attrs["classes"])
    y = x["label"].values.astype(np.int64)
    ev = x["split"].values.astype(object) == "eval"
    n_classes = len(classes)
    model = class_metrics(x["model_pred"].values[ev].astype(np.int64), y[ev], n_classes)
    assert by[("model", "eval")]["acc"] == pytest.approx(model["acc"])
    valid = [r for r in table.to_pylist() if r["polarity"] != 0]
    order = sorted(valid, key=lambda r: (-r["probe_acc"], -r["probe_bal_acc"], r["layer"], r["site"], r["neuron"]))
    wanted = [1] if n_classes == 2 else range(n_classes)
    for method, k in (("sn", 1), ("sn_ensemble", 3)):
        chosen = {c: [r for r in order if r["class"] == classes[c]][:k] for c in wanted}
        pred = loop_predictions(x, chosen, n_classes)
        want = class_metrics(pred[ev], y[ev], n_classes)
        assert by[(method, "eval")]["acc"] == pytest.approx(want["acc"]), method
        assert by[(method, "eval")]["mcc"] == pytest.approx(want["mcc"]), method
        used = json.loads(by[(method, "eval")]["detail"])
        assert len(used) == k * len(wanted)
    if n_classes == 2:  # the best SN's probe accuracy is the leaderboard's top probe_acc
        assert by[("sn", "probe")]["acc"] == pytest.approx(order[0]["probe_acc"], abs=1e-6)


def test_search_writes_the_whole_run(store, tmp_path):
    db = str(tmp_path / "sn.duckdb")
    run_id = search(store, db=db, ensemble_k=3, progress=False)
    con = duckdb.connect(db, read_only=True)
    n_rows = con.execute("SELECT count(*) FROM neurons WHERE run_id = ?", [run_id]).fetchall()[0][0]
    x = xr.open_zarr(store, consolidated=False)
    n_classes = len(x.attrs["classes"])
    assert n_rows == x.sizes["layer"] * x.sizes["neuron"] * (1 if n_classes == 2 else n_classes)
    methods = con.execute("SELECT method, split FROM evaluations WHERE run_id = ? ORDER BY ALL", [run_id]).fetchall()
    assert methods == sorted((m, s) for m in ("model", "sav", "sn", "sn_ensemble") for s in ("eval", "probe"))
    run = con.execute("SELECT dataset, mode, n_probe, n_eval FROM runs WHERE run_id = ?", [run_id]).fetchall()[0]
    assert run == (x.attrs["dataset"]["name"], "exact", 32, 32)
    con.close()
    best = top(db, run_id, k=1).to_pylist()
    assert len(best) == (1 if n_classes == 2 else n_classes)

    summary = query(
        db, f"SELECT n_neurons, n_beat_model FROM layer_summary WHERE run_id = '{run_id}'").to_pylist()
    assert sum(r["n_neurons"] for r in summary) == x.sizes["layer"] * x.sizes["neuron"]
    if n_classes > 2:  # one-vs-rest accuracy is not comparable with the model's K-way accuracy
        assert all(r["n_beat_model"] is None for r in summary)
    else:
        assert all(r["n_beat_model"] is not None for r in summary)
