"""Questions with fewer options than the dataset has classes (ScienceQA: 2 to 5 of A-E). The store keeps the
options as `class_mask(sample, class)` (written only when some question has fewer, see store.py); the base model's
answer and any Super Neuron vote are taken over the options a question has."""

from __future__ import annotations

import numpy as np


def allowed_argmax(scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Per row, the index of the highest score among the allowed classes (all classes where `mask` is None)."""
    if mask is None:
        return scores.argmax(1)
    return np.where(mask, scores, -np.inf).argmax(1)
