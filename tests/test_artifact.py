"""Early-exit artifacts: predictions equal the classifier on the stored activations, for every site and an
ensemble, on two families; only the exit's weights are shipped; tampering and missing files are refused."""

from __future__ import annotations

import json
import shutil

import duckdb
import numpy as np
import pytest
import xarray as xr
from safetensors import safe_open

from sn_store.artifact import EarlyExitClassifier
from sn_store.datasets import load_dataset
from sn_store.errors import SnError
from sn_store.export import export
from sn_store.extract import extract
from sn_store.models import resolve_model
from sn_store.search import search
from tests.conftest import adapter, small_spec


@pytest.fixture(scope="module", params=["tiny-llava", "tiny-qwen2-vl"])
def run(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("art")
    ds = load_dataset(small_spec(n=40))
    store = extract(adapter(request.param), ds, store=str(tmp / "s.zarr"), progress=False)
    db = str(tmp / "sn.duckdb")
    return {"name": request.param, "store": store, "db": db, "run": search(store, db=db, ensemble_k=3, progress=False),
            "tmp": tmp, "ds": ds}


def stored_prediction(x, site, layer, index, polarity, threshold):
    """The binary SN classifier applied to the stored (float16) activation, written out as a plain loop."""
    col = next(j for j, (s, i) in enumerate(zip(x["neuron_site"].values.astype(object), x["neuron_index"].values))
           if s == site and i == index)
    values = x["activations"].values[:, list(x["layer"].values).index(layer), col]
    return np.array([int(polarity * (float(v) - threshold) > 0) for v in values])


def best_of_site(db, run_id, site):
    con = duckdb.connect(db, read_only=True)
    row = con.execute("SELECT layer, neuron FROM top_neurons WHERE run_id = ? AND site = ? AND polarity != 0 "
                      "ORDER BY rank LIMIT 1", [run_id, site]).fetchall()[0]
    con.close()
    return f"{site}:{row[0]}:{row[1]}"


@pytest.mark.parametrize("site", ["resid", "mlp", "attn"])
def test_single_neuron_artifact_equals_the_store(run, site):
    out = export(run["run"], run["tmp"] / f"a-{site}", neuron=best_of_site(run["db"], run["run"], site), db=run["db"])
    clf = EarlyExitClassifier.load(out, device="cpu")
    (n,) = clf.neurons
    ds = run["ds"]
    got = clf.predict_indices([s.load_image() for s in ds.samples], [s.question for s in ds.samples], batch_size=7)
    x = xr.open_zarr(run["store"], consolidated=False).load()
    want = stored_prediction(x, n.site, n.layer, n.index, n.polarity, n.threshold)
    assert (got == want).all()  # every sample, both splits, other batch size than the extraction

    # Only what the exit needs is shipped.
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        shapes = {k: f.get_slice(k).get_shape() for k in keys}
    layer_keys = {k for k in keys if ".layers." in k and ("language_model" in k or "text_model" in k)}
    assert {int(k.split(".layers.")[1].split(".")[0]) for k in layer_keys} == set(range(n.layer + 1))
    assert not any(k.startswith("lm_head") or k.endswith("language_model.norm.weight") for k in keys)
    last = [k for k in layer_keys if f".layers.{n.layer}." in k]
    if site == "mlp":
        assert not any("down_proj" in k for k in last)
        assert [shapes[k][0] for k in last if "gate_proj.weight" in k or "up_proj.weight" in k] == [1, 1]
    if site == "attn":
        assert not any("o_proj" in k or ".mlp." in k for k in last)
    if site == "resid":
        assert any("down_proj" in k for k in last)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["neurons"][0]["site"] == site and manifest["exit_layer"] == n.layer
    assert manifest["classes"] == ["no", "yes"] and "{question}" in manifest["prompt"]
    assert set(manifest["files"]) == {p.name for p in out.iterdir()} - {"manifest.json"}


def test_ensemble_artifact_is_recorded_with_its_evaluation(run):
    out = export(run["run"], run["tmp"] / "ens", ensemble=3, db=run["db"])
    clf = EarlyExitClassifier.load(out, device="cpu")
    assert len(clf.neurons) == 3
    con = duckdb.connect(run["db"], read_only=True)
    ev = con.execute("SELECT acc, n FROM evaluations WHERE run_id = ? AND method = 'early_exit' "
                     "AND json_array_length(detail) = 3", [run["run"]]).fetchall()
    sn = con.execute("SELECT acc FROM evaluations WHERE run_id = ? AND method = 'sn_ensemble' AND split = 'eval'",
                     [run["run"]]).fetchall()
    arts = con.execute("SELECT path, exit_layer FROM artifacts WHERE run_id = ?", [run["run"]]).fetchall()
    con.close()
    # The ensemble run through the artifact scores exactly as the search's ensemble evaluation did.
    assert ev == [(pytest.approx(sn[0][0]), 20)]
    assert str(out.resolve()) in {p for p, _ in arts}
    # Each artifact's evaluation carries its id; a manifest lists the run's own evaluations, no other artifact's.
    con = duckdb.connect(run["db"], read_only=True)
    owners = con.execute("SELECT e.artifact_id, a.path FROM evaluations e LEFT JOIN artifacts a USING (artifact_id) "
                         "WHERE e.run_id = ? AND e.method = 'early_exit'", [run["run"]]).fetchall()
    con.close()
    assert len(owners) == len(arts) and all(path is not None for _, path in owners)
    manifest = json.loads((out / "manifest.json").read_text())
    assert {m["method"] for m in manifest["metrics"]["run"]} == {"model", "sn", "sn_ensemble", "sav"}  # SAV: attn
    assert manifest["metrics"]["early_exit_eval"]["acc"] == pytest.approx(sn[0][0])


def test_artifact_is_much_smaller_than_the_model(run):
    out = export(run["run"], run["tmp"] / "small", neuron=best_of_site(run["db"], run["run"], "mlp"), db=run["db"],
                 verify=False)
    full = (resolve_model(run["name"]) + "/model.safetensors")
    ratio = (out / "model.safetensors").stat().st_size / __import__("os").path.getsize(full)
    assert ratio < 0.8, ratio


@pytest.mark.parametrize("damage,message", [
    (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:-10]), "sha256"),
    (lambda d: (d / "tokenizer.json").write_text((d / "tokenizer.json").read_text().replace(":", ": ", 1)),
     "sha256"),
    (lambda d: (d / "config.json").unlink(), "config.json is missing"),
    (lambda d: (d / "extra.bin").write_bytes(b"\x80\x04"), "extra.bin is not in the manifest"),
    (lambda d: (d / "manifest.json").write_text(json.dumps({"format": 99})), "format 99"),
    (lambda d: (d / "manifest.json").unlink(), "not an sn_store artifact"),
])
def test_tampered_truncated_or_foreign_artifacts_are_refused(run, damage, message):
    good = run["tmp"] / "good"
    if not good.exists():
        export(run["run"], good, db=run["db"], verify=False)
    bad = run["tmp"] / "bad"
    shutil.rmtree(bad, ignore_errors=True)
    shutil.copytree(good, bad)
    damage(bad)
    with pytest.raises(SnError, match=message):
        EarlyExitClassifier.load(bad, device="cpu")


def test_export_errors(run):
    with pytest.raises(SnError, match="SITE:LAYER:INDEX"):
        export(run["run"], run["tmp"] / "x", neuron="mlp-1-2", db=run["db"])
    with pytest.raises(SnError, match="unknown run id"):
        export("nope", run["tmp"] / "x", db=run["db"])
    assert not (run["tmp"] / "x").exists()


def test_speedup_warms_up_then_takes_the_median_of_interleaved_rounds(run, monkeypatch):
    """A real artifact against the real model's `generate`; only the clock is ours, so the figures are known: the
    full model's k-th call (from 0, warm-ups included) takes 2 + k seconds, the artifact's 1."""
    import sn_store.predict as predict

    out = export(run["run"], run["tmp"] / "timed", db=run["db"], verify=False)
    clf, full = EarlyExitClassifier.load(out, device="cpu"), adapter(run["name"])
    now, calls = [0.0], []

    def wrap(obj, name, label, cost):
        real = getattr(obj, name)

        def timed(*args, **kwargs):
            calls.append(label)
            result = real(*args, **kwargs)
            now[0] += cost()
            return result
        monkeypatch.setattr(obj, name, timed)

    full_costs = iter(range(100))
    wrap(full.model, "generate", "full", lambda: 2 + next(full_costs))
    wrap(clf, "predict_indices", "early", lambda: 1.0)
    monkeypatch.setattr(predict.time, "perf_counter", lambda: now[0])
    ds = run["ds"]
    got = predict.measure_speedup(clf, full, [s.load_image() for s in ds.samples[:2]],
                                  [s.question for s in ds.samples[:2]], repeats=5, warmup=2)
    assert calls == ["full", "early"] * 7  # two untimed warm-ups, then five rounds, interleaved
    ratios = np.array([2 + k for k in range(2, 7)], dtype=float)  # the warm-ups used up costs 2 and 3
    assert got["speedup"] == pytest.approx(np.median(ratios)) and got["full_s"] == pytest.approx(np.median(ratios))
    assert (got["speedup_q1"], got["speedup_q3"]) == pytest.approx(tuple(np.percentile(ratios, [25, 75])))
    assert got["early_exit_s"] == 1.0 and got["repeats"] == 5 and got["batch"] == 2
    with pytest.raises(SnError, match="repeats"):
        predict.measure_speedup(clf, full, [], [], repeats=0)
