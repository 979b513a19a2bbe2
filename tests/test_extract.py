"""Extraction against an independent computation: one sample per forward pass (no padding), HF's own
`output_hidden_states` for `resid`, separate hooks on the raw modules for `mlp` and `attn` and the last layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from sn_store.datasets import load_dataset
from sn_store.errors import SnError
from sn_store.extract import extract, parse_layers
from tests.conftest import adapter, small_spec


def reference(ad, ds, verbalizer_ids):
    """Per sample: {(site, layer): vector} and the verbalizer logits, computed without sn_store's capture code."""
    layers = ad.model.model.get_decoder().layers
    n_layers = len(layers)
    refs, logits = [], []
    for s in ds.samples:
        got = {}
        handles = []
        for i, layer in enumerate(layers):
            handles.append(layer.mlp.down_proj.register_forward_pre_hook(
                lambda m, a, i=i: got.__setitem__(("mlp", i), a[0][0, -1].clone())))
            handles.append(layer.self_attn.o_proj.register_forward_pre_hook(
                lambda m, a, i=i: got.__setitem__(("attn", i), a[0][0, -1].clone())))
        handles.append(layers[-1].register_forward_hook(
            lambda m, a, out: got.__setitem__(("resid", n_layers - 1), out[0, -1].clone())))
        with torch.no_grad():
            out = ad.model(**ad.build_inputs([s.load_image()], [s.question]), output_hidden_states=True)
        for h in handles:
            h.remove()
        for i in range(n_layers - 1):  # hidden_states[i + 1] is layer i's output; the last one is final-normed
            got[("resid", i)] = out.hidden_states[i + 1][0, -1]
        refs.append({k: v.float().numpy() for k, v in got.items()})
        logits.append(out.logits[0, -1, verbalizer_ids].float().numpy())
    return refs, np.array(logits)


def assert_matches_reference(store, ad, ds):
    x = xr.open_zarr(store, consolidated=False)  # plain xarray, no sn_store
    assert x["activations"].dims == ("sample", "layer", "neuron")
    acts = x["activations"].values
    sites = x["neuron_site"].values.astype(object)
    index = x["neuron_index"].values
    verbalizer_ids = x.attrs["verbalizer_ids"]
    refs, ref_logits = reference(ad, ds, verbalizer_ids)
    for li, layer in enumerate(x["layer"].values):
        for site in x.attrs["sites"]:
            cols = np.flatnonzero(sites == site)
            assert (index[cols] == np.arange(len(cols))).all()
            want = np.stack([r[(site, int(layer))] for r in refs])
            got = acts[:, li, cols].astype(np.float32)
            np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4, err_msg=f"{site} layer {layer}")
    return x, ref_logits


@pytest.mark.parametrize("name", ["tiny-llava", "tiny-qwen2-vl", "tiny-idefics3"])
def test_every_stored_value_matches_an_independent_forward(name, tmp_path):
    ad = adapter(name)
    ds = load_dataset(small_spec(n=20))
    store = extract(ad, ds, store=str(tmp_path / "s.zarr"), batch_size=6, chunk_samples=8, progress=False)
    x, ref_logits = assert_matches_reference(store, ad, ds)
    np.testing.assert_allclose(x["model_logits"].values, ref_logits, rtol=1e-4, atol=1e-5)
    assert (x["model_pred"].values == ref_logits.argmax(1)).all()
    assert (x["label"].values == ds.labels).all()
    assert list(x["split"].values.astype(object)) == ds.split
    assert list(x["sample_id"].values.astype(object)) == [s.id for s in ds.samples]
    assert x.attrs["complete"] is True
    assert x.attrs["classes"] == ["no", "yes"]
    assert x.attrs["model"]["model_type"] == ad.model.config.model_type
    assert "{question}" in x.attrs["prompt"]


def test_no_baseline_stops_early_with_the_same_values(tmp_path):
    ad = adapter("tiny-llava")
    ds = load_dataset(small_spec(n=12))
    calls = []
    handle = ad.layers[3].register_forward_hook(lambda *a: calls.append(1))
    try:
        store = extract(ad, ds, store=str(tmp_path / "s.zarr"), layers="1", sites="mlp,attn", baseline=False,
                        batch_size=4, progress=False)
    finally:
        handle.remove()
    assert calls == []  # layers after the deepest requested one never ran
    x, _ = assert_matches_reference(store, ad, ds)
    assert list(x["layer"].values) == [1]
    assert (x["model_pred"].values == -1).all()
    assert np.isnan(x["model_logits"].values).all()


def test_multiclass_and_float32_store(tmp_path):
    ad = adapter("tiny-qwen2-vl")
    ds = load_dataset(small_spec("shapes-color", n=16))
    store = extract(ad, ds, store=str(tmp_path / "s.zarr"), dtype="float32", layers="0,3", progress=False)
    x, _ref_logits = assert_matches_reference(store, ad, ds)
    assert x["activations"].dtype == np.float32
    assert x["model_logits"].shape == (16, 4)
    assert list(x["class"].values.astype(object)) == ["red", "green", "blue", "yellow"]


def test_rerun_of_a_complete_store_is_a_no_op_and_other_arguments_are_refused(tmp_path):
    ad = adapter("tiny-llava")
    ds = load_dataset(small_spec(n=8))
    path = str(tmp_path / "s.zarr")
    extract(ad, ds, store=path, layers="0", progress=False)
    stamp = (tmp_path / "s.zarr" / "zarr.json").stat().st_mtime_ns
    extract(ad, ds, store=path, layers="0", progress=False)
    assert (tmp_path / "s.zarr" / "zarr.json").stat().st_mtime_ns == stamp
    with pytest.raises(SnError, match=r"other arguments.*--overwrite \(overwrite=True in Python\)"):
        extract(ad, ds, store=path, layers="1", progress=False)
    extract(ad, ds, store=path, layers="1", overwrite=True, progress=False)
    assert list(xr.open_zarr(path, consolidated=False)["layer"].values) == [1]


def test_fsspec_url_store():
    ad = adapter("tiny-llava")
    ds = load_dataset(small_spec(n=6))
    url = "memory://sn-test/s.zarr"
    extract(ad, ds, store=url, layers="0", sites="resid", progress=False)
    x = xr.open_zarr(url, consolidated=False)
    assert x["activations"].shape == (6, 1, 64)


def test_float16_overflow_is_an_error_not_inf(tmp_path):
    ad = adapter("tiny-llava")
    ds = load_dataset(small_spec(n=4))
    handle = ad.layers[0].register_forward_hook(lambda m, a, out: out * 1e9)
    try:
        with pytest.raises(SnError, match="out of float16 range; extract with --dtype float32"):
            extract(ad, ds, store=str(tmp_path / "s.zarr"), layers="0", sites="resid", progress=False)
    finally:
        handle.remove()
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("arg,want", [(None, [0, 1, 2, 3]), ("0,2-3", [0, 2, 3]), ("-1", [3]), ([1, 1], [1])])
def test_parse_layers(arg, want):
    assert parse_layers(arg, 4) == want


@pytest.mark.parametrize("arg", ["4", "x", "1-9"])
def test_parse_layers_rejects(arg):
    with pytest.raises(SnError, match="--layers"):
        parse_layers(arg, 4)
