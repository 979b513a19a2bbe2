"""Prediction with an early-exit artifact: on image files, or scored on a whole dataset."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from .artifact import EarlyExitClassifier
from .datasets import load_dataset
from .errors import SnError
from .evaluate import class_metrics


def predict_files(clf: EarlyExitClassifier, images: list[str], questions: list[str], batch_size: int = 16):
    """(path, class) for each image; one question for all images, or one per image."""
    if not images or not questions:
        raise SnError("give --image and --question (or --dataset)")
    if len(questions) not in (1, len(images)):
        raise SnError(f"{len(questions)} questions for {len(images)} images: give one, or one per image")
    questions = questions * len(images) if len(questions) == 1 else questions
    loaded = []
    for path in images:
        try:
            with Image.open(path) as img:
                loaded.append(img.convert("RGB"))
        except OSError as exc:
            raise SnError(f"image {path}: cannot read ({exc})") from None
    return list(zip(images, clf.predict(loaded, questions, batch_size)))


def predict_dataset(clf: EarlyExitClassifier, dataset: str, batch_size: int = 16) -> dict:
    """The artifact's figures on each split of a dataset apart, and its throughput. The neurons were chosen on the
    probe split of `chosen_on` (the manifest's dataset): on that dataset the probe figures are optimistic and only
    the eval split is held out; on another dataset both splits are new to them."""
    ds = load_dataset(dataset)
    if list(ds.spec.classes) != clf.classes:
        raise SnError(f"dataset {ds.spec.name} has classes {ds.spec.classes}, the artifact {clf.classes}")
    start = time.perf_counter()
    pred = clf.predict_indices([s.load_images() for s in ds.samples], [s.question for s in ds.samples], batch_size)
    seconds = time.perf_counter() - start
    y, split = ds.labels, np.asarray(ds.split)
    positive = clf.classes.index(ds.spec.positive_class) if ds.spec.positive_class else 1
    splits = {name: class_metrics(pred[split == name], y[split == name], len(clf.classes), positive)
              for name in ("probe", "eval") if (split == name).any()}
    return {"dataset": ds.spec.name, "chosen_on": clf.manifest.dataset, "splits": splits,
            "samples_per_s": len(y) / seconds}


def measure_speedup(clf: EarlyExitClassifier, full, images: list, questions: list[str], repeats: int = 7,
                    warmup: int = 2) -> dict:
    """How much faster the artifact answers than the full model's `generate(max_new_tokens=1)`, on the same inputs
    and device (both including preprocessing). `full` is a loaded Adapter.

    One timing of a few samples swings by 2-4x on a shared machine, so both run `warmup` times untimed, then
    `repeats` rounds each timing one call of each, interleaved so that a slow spell hits both alike. The speed-up is
    the median of the rounds' ratios, `speedup_q1`/`speedup_q3` its quartiles (the spread); seconds are medians."""
    import torch

    def generate():
        inputs = full.to_device(full.build_inputs(images, questions))
        full.model.generate(**inputs, max_new_tokens=1, do_sample=False, pad_token_id=full.tokenizer.pad_token_id)

    def early():
        clf.predict_indices(images, questions, batch_size=len(questions))

    def sync():
        if torch.cuda.is_available():  # CUDA runs asynchronously: wait before reading the clock
            torch.cuda.synchronize()

    def seconds(fn) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    if repeats < 1:
        raise SnError("repeats must be at least 1")
    with torch.inference_mode():
        for _ in range(warmup):
            generate(), early()
        rounds = np.array([(seconds(generate), seconds(early)) for _ in range(repeats)])
    q1, median, q3 = np.percentile(rounds[:, 0] / rounds[:, 1], [25, 50, 75])
    return {"full_s": float(np.median(rounds[:, 0])), "early_exit_s": float(np.median(rounds[:, 1])),
            "speedup": float(median), "speedup_q1": float(q1), "speedup_q3": float(q3), "repeats": repeats,
            "batch": len(questions)}

