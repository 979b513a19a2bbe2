"""The shipped default model `sn-tiny-llava` (trained by infra/train_tiny.py): small, safetensors only, and its own
answers are above chance yet imperfect on every built-in synthetic task's held-out eval split."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from sn_store.datasets import load_dataset
from sn_store.models import load_model, resolve_model

TRAINED = {"shapes-exist": 2, "shapes-color": 4, "shapes-count": 4, "shapes-position": 2}
# n = 128 per eval split: at chance (p = 1/2 or 1/4) the accuracy's standard deviation is 0.044 or 0.038, so these
# floors sit more than 2.2 (binary) and 2.6 (4-way) standard deviations above chance.
FLOOR = {2: 0.6, 4: 0.35}


@functools.cache
def shipped():
    return load_model("sn-tiny-llava", device="cpu")


@functools.cache
def answers(name: str) -> tuple[np.ndarray, np.ndarray]:
    """First-token logits over the class verbalizers (the model's own answer) and labels, on the eval split."""
    adapter, ds = shipped(), load_dataset(name)
    samples = [s for s, split in zip(ds.samples, ds.split) if split == "eval"]
    ids = adapter.verbalizer_ids(ds.spec.class_verbalizers)
    assert len(set(ids)) == len(ids)
    logits = []
    with torch.no_grad():
        for i in range(0, len(samples), 64):
            part = samples[i : i + 64]
            inputs = adapter.build_inputs([s.load_image() for s in part], [s.question for s in part])
            logits.append(adapter.model(**inputs, logits_to_keep=1).logits[:, -1, ids].float())
    return torch.cat(logits).numpy(), np.array([s.label for s in samples])


def accuracy(name: str) -> float:
    logits, labels = answers(name)
    return float((logits.argmax(-1) == labels).mean())


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg)))


def test_name_resolves_to_the_package_folder():
    import sn_store.models

    path = Path(resolve_model("sn-tiny-llava"))
    assert path == Path(sn_store.models.__file__).parent / "shipped" / "sn-tiny-llava"
    assert shipped().model.config.model_type == "llava" and shipped().source == "sn-tiny-llava"


def test_directory_is_small_safetensors_only_with_a_card():
    path = Path(resolve_model("sn-tiny-llava"))
    files = [p for p in path.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 20 * 2**20
    names = {p.name for p in files}
    assert {"model.safetensors", "config.json", "README.md", "tokenizer.json"} <= names
    assert not [p for p in files if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}]
    assert "infra/train_tiny.py" in (path / "README.md").read_text()


@pytest.mark.parametrize("name,k", TRAINED.items())
def test_own_answer_is_above_chance_and_imperfect(name, k):
    acc = accuracy(name)
    assert FLOOR[k] < acc < 1.0, f"{name}: {acc:.3f}"


@pytest.mark.parametrize("name", TRAINED)
def test_model_card_reports_what_the_model_does(name):
    """The card's table was measured the same way: the figures agree up to one sample in 128."""
    card = (Path(resolve_model("sn-tiny-llava")) / "README.md").read_text()
    row = re.search(rf"^\| {re.escape(name)} \| [^|]+ \| \d \| [\d.]+ \| ([\d.]+) \|", card, re.M)
    assert row, f"{name} missing from the model card"
    assert abs(float(row.group(1)) - accuracy(name)) <= 1 / 128 + 1e-9


def test_distribution_shift_breaks_the_answer_not_the_information():
    """On shapes-exist-shift (never trained on) the answer collapses towards one class, yet its logit margin still
    ranks the classes well: what a threshold refitted on the new probe split (a Super Neuron) can use."""
    shifted = accuracy("shapes-exist-shift")
    assert shifted < accuracy("shapes-exist") - 0.2
    logits, labels = answers("shapes-exist-shift")
    assert auroc(labels, logits[:, 1] - logits[:, 0]) > 0.65
