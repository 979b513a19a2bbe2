import json

import pytest
import torch
from safetensors.torch import load_file

from sn_store.errors import SnError
from sn_store.models import adapter_class, load_model, registered, resolve_model
from sn_store.models.tiny import build_tiny
from tests.conftest import FAMILIES, adapter


def test_registry_covers_the_three_layouts():
    assert set(FAMILIES) <= set(registered())
    with pytest.raises(SnError, match="unknown model type 'gpt2'"):
        adapter_class("gpt2")


def test_tiny_build_is_deterministic_and_a_normal_hf_directory(tmp_path):
    a = build_tiny("llava", tmp_path / "a", seed=3)
    b = build_tiny("llava", tmp_path / "b", seed=3)
    c = build_tiny("llava", tmp_path / "c", seed=4)
    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a, b, c))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    assert json.loads((a / "config.json").read_text())["model_type"] == "llava"
    # It loads back through the same path as a real model directory.
    loaded = load_model(str(a), device="cpu")
    assert loaded.model.config.model_type == "llava"
    assert loaded.model.dtype == torch.float32


def test_builtin_names_resolve_to_built_directories(tiny_name):
    path = resolve_model(tiny_name)
    assert (path and (__import__("pathlib").Path(path) / "config.json").is_file())
    ad = adapter(tiny_name)
    assert ad.num_layers == 4
    assert {s: ad.site_width(s) for s in ("resid", "mlp", "attn")} == {"resid": 64, "mlp": 128, "attn": 64}


def test_inputs_are_left_padded_and_end_with_the_generation_prompt(tiny_name):
    from PIL import Image

    ad = adapter(tiny_name)
    imgs = [Image.new("RGB", (40, 40), c) for c in ("red", "blue")]
    batch = ad.build_inputs(imgs, ["Is there a red circle?", "What colour is the square in the picture now?"])
    mask = batch["attention_mask"]
    assert mask[:, -1].all()  # the last position is a real token for every sample: left padding
    assert (mask[0] == 0).any()  # the shorter prompt was padded on the left
    tail = ad.tokenizer.decode(batch["input_ids"][1, -3:])
    assert tail.strip().endswith(ad.prompt("x").strip()[-3:])
    if tiny_name == "tiny-qwen2-vl":
        assert "mm_token_type_ids" in batch


def test_verbalizer_ids_are_first_tokens(tiny_name):
    ad = adapter(tiny_name)
    ids = ad.verbalizer_ids(["No", "Yes"])
    assert ids[0] != ids[1]
    assert ad.tokenizer.decode([ids[1]]).startswith("Y")


def test_unknown_hub_id_or_bad_directory_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(SnError, match="unknown model type 'gpt2'"):
        load_model(str(tmp_path), device="cpu")
