"""Questions with fewer options than the dataset has classes (ScienceQA: 2 to 5 of A-E). The store keeps the
options as `class_mask(sample, class)` (written only when some question has fewer); the base model's answer and
any Super Neuron vote are taken over the options a question has. Extraction, the store and evaluation call these."""

from __future__ import annotations

import numpy as np
import zarr

CLASS_MASK = "class_mask"


def write_class_mask(group: zarr.Group, mask: np.ndarray | None, chunk_samples: int) -> None:
    """Store the (sample, class) options of a dataset that has questions with fewer options than classes."""
    if mask is not None:
        arr = group.create_array(CLASS_MASK, shape=mask.shape, dtype=bool, chunks=(chunk_samples, mask.shape[1]),
                                 dimension_names=("sample", "class"), fill_value=True)
        arr[...] = mask


def read_class_mask(group: zarr.Group) -> np.ndarray | None:
    return np.asarray(group[CLASS_MASK][:], dtype=bool) if CLASS_MASK in group else None


def allowed_argmax(scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Per row, the index of the highest score among the allowed classes (all classes where `mask` is None)."""
    if mask is None:
        return scores.argmax(1)
    return np.where(mask, scores, -np.inf).argmax(1)
