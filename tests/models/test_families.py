"""Every registered family, on its built-in tiny model: the three sites at the first generated token's position and
the base model's answer against an independent computation, batch size 1 against batch size 7 over mixed question
lengths, image sizes and image counts, and an exported early-exit artifact against the store's classifier."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from sn_store.artifact import EarlyExitClassifier
from sn_store.datasets import load_dataset
from sn_store.evaluate import sn_predictions
from sn_store.export import export
from sn_store.extract import Capture, extract
from sn_store.models import SITES, registered
from sn_store.search import search
from sn_store.store import StoreReader
from tests.conftest import adapter, small_spec

FAMILIES = sorted(registered())
# Families whose number of image tokens follows the image's size (dynamic resolution, any-resolution tiling), written
# out here from the families' papers rather than read from the adapters. The others give every image the same count.
VARIABLE_IMAGE_TOKENS = {"llava_next", "llava_onevision", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "internvl"}


def site_modules(layer) -> dict[str, str]:
    """Where the sites are, written out here rather than read from the adapters: the reference must not share their
    code. (Llama 3.2 Vision's cross-attention layers have `cross_attn` where the others have `self_attn`.)"""
    attn = "self_attn" if hasattr(layer, "self_attn") else "cross_attn"
    return {"mlp": "mlp.down_proj", "attn": f"{attn}.o_proj"}


def samples(multi_image: bool) -> tuple[list, list[str]]:
    """Seven samples: images of seven sizes and shapes (noise, so every patch differs), questions of many lengths,
    and, where the family takes them, one sample with two images."""
    rng = np.random.default_rng(0)
    sizes = [(32, 32), (64, 32), (40, 56), (24, 24), (80, 40), (32, 64), (48, 48)]
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    images = [*images[:6], [images[6], images[1]] if multi_image else images[6]]
    questions = ["Is there a red circle?", "What colour is the square in the picture?", "Shapes?",
                 "Is the star to the left of the circle in the image?", "How many shapes are there?",
                 "Answer with one word: is there a blue triangle above a yellow square in this picture?", "Which?"]
    return images, questions


def reference(ad, image, question: str, verbalizer_ids: list[int]) -> tuple[dict, np.ndarray]:
    """One sample alone (no padding): HF's `output_hidden_states` for `resid` (the last layer's is final-normed in
    transformers 5, so a hook on that layer), forward pre-hooks on the raw modules for `mlp` and `attn`."""
    layers = ad.model.get_decoder().layers
    got, handles = {}, []
    for i, layer in enumerate(layers):
        for site, path in site_modules(layer).items():
            handles.append(layer.get_submodule(path).register_forward_pre_hook(
                lambda m, a, key=(i, site): got.__setitem__(key, a[0][0, -1].clone())))
    last = len(layers) - 1
    handles.append(layers[last].register_forward_hook(
        lambda m, a, out: got.__setitem__((last, "resid"), (out[0] if isinstance(out, tuple) else out)[0, -1])))
    try:
        with torch.no_grad():
            out = ad.model(**ad.build_inputs([image], [question]), output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    for i in range(last):
        got[(i, "resid")] = out.hidden_states[i + 1][0, -1]  # hidden_states[0] is the embeddings
    return {k: v.float().numpy() for k, v in got.items()}, out.logits[0, -1, verbalizer_ids].float().numpy()


def record(ad, images, questions, ids) -> tuple[np.ndarray, np.ndarray]:
    layers = list(range(ad.num_layers))
    capture = Capture(ad, layers, list(SITES), stop_early=False)
    with capture.recorder, torch.no_grad():
        return capture.run(ad.to_device(ad.build_inputs(images, questions)), ids)


def image_token_counts(ad, images, questions) -> list[int]:
    """Image tokens per row of the batch the adapter builds: the config's image-token id counted in `input_ids`."""
    config = ad.model.config
    token = next(v for v in (getattr(config, "image_token_id", None), getattr(config, "image_token_index", None))
                 if v is not None)
    return (ad.build_inputs(images, questions)["input_ids"] == token).sum(1).tolist()


def as_float16(x):
    return np.asarray(x, dtype=np.float16).astype(np.float32)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_sites_and_answer_match_an_independent_forward_at_batch_1_and_7(model_type):
    ad = adapter(registered()[model_type].tiny_name)
    images, questions = samples(ad.multi_image)
    ids = ad.verbalizer_ids(["No", "Yes"])
    widths = [ad.site_width(s) for s in SITES]
    counts = image_token_counts(ad, images, questions)
    assert all(c > 0 for c in counts), counts  # every row holds its image(s)
    single = counts[:6]  # the samples with one image each (the seventh may hold two)
    if model_type in VARIABLE_IMAGE_TOKENS:  # the batch really mixes image-token counts, not only image sizes
        assert len(set(single)) > 1, f"{model_type}: one image-token count for every image size: {counts}"
    else:
        assert len(set(single)) == 1, f"{model_type}: image tokens vary with the size ({counts}): list it above"
    one = [record(ad, [im], [q], ids) for im, q in zip(images, questions)]
    seven_acts, seven_logits = record(ad, images, questions, ids)
    for j, (im, q) in enumerate(zip(images, questions)):
        want, want_logits = reference(ad, im, q, ids)
        acts, logits = one[j]
        for layer in range(ad.num_layers):
            cols = np.split(acts[0, layer], np.cumsum(widths)[:-1])
            for site, got in zip(SITES, cols):
                np.testing.assert_allclose(as_float16(got), as_float16(want[(layer, site)]), rtol=2e-3, atol=2e-4,
                                           err_msg=f"{model_type} sample {j} {site} layer {layer}")
        np.testing.assert_allclose(logits[0], want_logits, rtol=1e-4, atol=1e-5)
        # Batched with six other samples (left padding, masks, positions, mRoPE): the same values to float16.
        np.testing.assert_allclose(as_float16(seven_acts[j]), as_float16(acts[0]), rtol=2e-3, atol=2e-4,
                                   err_msg=f"{model_type} sample {j} in a batch of 7")
        np.testing.assert_allclose(seven_logits[j], logits[0], rtol=1e-3, atol=1e-4)
        assert seven_logits[j].argmax() == want_logits.argmax() or np.ptp(want_logits) < 1e-4


@pytest.fixture(scope="module")
def family_runs(tmp_path_factory):
    """Per family, once: a store of layers 0-1 of its tiny model on 16 samples, and its search."""
    done = {}

    def get(model_type: str) -> dict:
        if model_type not in done:
            tmp = tmp_path_factory.mktemp(model_type)
            ad = adapter(registered()[model_type].tiny_name)
            ds = load_dataset(small_spec(n=16))
            store = extract(ad, ds, store=str(tmp / "s.zarr"), layers="0-1", batch_size=5, progress=False)
            db = str(tmp / "sn.duckdb")
            done[model_type] = {"ad": ad, "ds": ds, "store": store, "db": db, "tmp": tmp,
                                "run": search(store, db=db, ensemble_k=3, progress=False)}
        return done[model_type]

    return get


def decoder_layer_keys(names, layer: int) -> set[str]:
    """The names inside text decoder layer `layer`, as `<what>` of `...language_model.layers.<layer>.<what>`
    (`text_model` in Idefics3/SmolVLM; the vision towers' layers are not the decoder's)."""
    mark = f".layers.{layer}."
    return {k.split(mark, 1)[1] for k in names if mark in k and ("language_model" in k or "text_model" in k)}


def check_holds_nothing_past_its_exit(ad, out, neurons) -> None:
    """Layers past the exit, the final norm and the LM head are absent; inside the exit layer, what comes after the
    deepest site it is read at: a resid neuron keeps the whole layer, an mlp neuron nothing of `down_proj` (and only
    its own rows of the projections into the MLP), an attn neuron neither `o_proj` nor the MLP."""
    exit_layer = max(n.layer for n in neurons)
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        mark = f".layers.{max(n.layer for n in neurons)}."
        shapes = {k.split(mark, 1)[1]: f.get_slice(k).get_shape() for k in keys  # in the exit layer, by suffix
                  if mark in k and ("language_model" in k or "text_model" in k)}
    layer_ids = {int(k.split(".layers.")[1].split(".")[0]) for k in keys
                 if ".layers." in k and ("language_model" in k or "text_model" in k)}
    assert layer_ids == set(range(exit_layer + 1))
    assert not any(k.startswith("lm_head") or k.endswith(("language_model.norm.weight", "text_model.norm.weight"))
                   for k in keys)
    full = decoder_layer_keys([n for n, _ in ad.model.named_parameters()], exit_layer)  # the untouched layer
    last = decoder_layer_keys(keys, exit_layer)
    assert last <= full
    sites = {n.site for n in neurons if n.layer == exit_layer}
    attn = "self_attn" if any(k.startswith("self_attn.") for k in full) else "cross_attn"  # mllama's cross layers
    if "resid" in sites:
        assert last == full, f"exit layer {exit_layer} lacks {sorted(full - last)}"
    elif "mlp" in sites:
        rows = len({n.index for n in neurons if n.layer == exit_layer and n.site == "mlp"})
        assert not any("down_proj" in k for k in last), sorted(last)
        into_mlp = [k for k in last if k in ("mlp.gate_proj.weight", "mlp.up_proj.weight")]
        assert into_mlp and all(shapes[k][0] == rows for k in into_mlp)  # only the exported neurons' rows
        assert any(k.startswith(f"{attn}.o_proj.") for k in last)  # the MLP's input needs the attention's output
        assert not any(k.startswith("post_feedforward_layernorm.") for k in last), sorted(last)  # after the MLP
    else:
        assert sites == {"attn"}
        assert not any("o_proj" in k or k.startswith("mlp.") for k in last), sorted(last)
        after = ("post_attention_layernorm.", "pre_feedforward_layernorm.", "post_feedforward_layernorm.")
        assert not any(k.startswith(after) for k in last), sorted(last)  # norms run on the attention's output
        assert {f"{attn}.{p}.weight" for p in ("q_proj", "k_proj", "v_proj")} <= last


@pytest.mark.parametrize("model_type", FAMILIES)
def test_artifact_equals_the_store_and_holds_nothing_past_its_exit(model_type, family_runs):
    r = family_runs(model_type)
    ds = r["ds"]
    out = export(r["run"], r["tmp"] / "art", ensemble=3, db=r["db"])  # export itself checks the eval split
    clf = EarlyExitClassifier.load(out, device="cpu")
    got = clf.predict_indices([s.load_image() for s in ds.samples], [s.question for s in ds.samples], batch_size=3)
    want = sn_predictions(StoreReader(r["store"]), clf.neurons)  # the store's classifier
    np.testing.assert_array_equal(got, want)  # every sample, both splits, another batch size
    check_holds_nothing_past_its_exit(r["ad"], out, clf.neurons)


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("model_type", FAMILIES)
def test_one_neuron_artifact_of_each_site_stops_inside_its_exit_layer(model_type, site, family_runs):
    """The best neuron of `site` in layer 1 (the store's last): the exit layer's tail, for this site's rule."""
    import duckdb

    r = family_runs(model_type)
    con = duckdb.connect(r["db"], read_only=True)
    try:
        (index,) = con.execute("SELECT neuron FROM top_neurons WHERE run_id = ? AND site = ? AND layer = 1 AND "
                               "polarity != 0 ORDER BY rank LIMIT 1", [r["run"], site]).fetchone()
    finally:
        con.close()
    out = export(r["run"], r["tmp"] / f"art-{site}", neuron=f"{site}:1:{index}", db=r["db"])
    clf = EarlyExitClassifier.load(out, device="cpu")
    assert [(n.site, n.layer, n.index) for n in clf.neurons] == [(site, 1, index)]
    ds = r["ds"]
    got = clf.predict_indices([s.load_image() for s in ds.samples], [s.question for s in ds.samples], batch_size=4)
    np.testing.assert_array_equal(got, sn_predictions(StoreReader(r["store"]), clf.neurons))
    check_holds_nothing_past_its_exit(r["ad"], out, clf.neurons)


def test_the_nine_families_are_registered_and_listed():
    nine = {"llava", "llava_next", "llava_onevision", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "idefics3", "smolvlm",
            "gemma3"}
    assert nine <= set(FAMILIES)
    res = subprocess.run([sys.executable, "-m", "sn_store", "models", "list"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for model_type in nine:
        family = registered()[model_type]
        row = next(line for line in res.stdout.splitlines() if f" {model_type} " in line)
        assert family.tiny_name in row and family.checkpoints[0] in row


def test_a_hub_id_offline_is_one_line_saying_how_to_point_at_a_local_folder(monkeypatch):
    import huggingface_hub.constants

    from sn_store.errors import SnError
    from sn_store.models import load_model

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no retries
    with pytest.raises(SnError) as err:
        load_model("llava-hf/llava-1.5-7b-hf-not-cached", device="cpu")
    message = str(err.value)
    assert "\n" not in message and "--local-dir DIR" in message and "--model DIR" in message


def test_recorder_stops_once_every_site_fired_in_any_order():
    ad = adapter("tiny-llava")
    images, questions = samples(False)
    later = []
    handle = ad.layers[2].register_forward_hook(lambda *a: later.append(1))
    wanted = [(1, "resid"), (0, "attn"), (1, "mlp"), (0, "resid")]  # not in the order the pass computes them
    try:
        with ad.recorder(wanted) as rec, torch.no_grad():
            out = rec.run(ad.to_device(ad.build_inputs(images[:2], questions[:2])))
    finally:
        handle.remove()
    assert out is None and later == []  # stopped inside layer 1: layer 2 never ran
    assert set(rec.values) == set(wanted) and all(v.shape == (2, ad.site_width(s)) for (_, s), v in rec.values.items())
