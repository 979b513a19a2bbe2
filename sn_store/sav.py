"""Sparse Attention Vectors (Mitra et al., `chancharikmitra/SAVs`), the baseline SNs are compared with, read from the
store's `attn` site (the concatenated head outputs at the last prompt position).

Per head: class-mean vectors over the probe split; a sample goes to the class whose mean is most cosine-similar;
the head's score is its probe accuracy. The top heads (probe accuracy, then a fixed (layer, head) order) predict by
majority vote; ties go to the class with the largest summed similarity among its voters. All heads of a layer are
scored at once: the layer's attn vector is reshaped to (sample, head, head_dim)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .errors import SnError
from .store import StoreReader

DEFAULT_HEADS = 20
HEAD_COLUMNS = ("rank", "layer", "head", "probe_acc", "eval_acc")


@dataclass(frozen=True)
class SavResult:
    heads: pa.Table  # HEAD_COLUMNS, rank 1 = best on probe
    pred: np.ndarray  # (sample,) the vote's class per sample
    evaluations: list[dict]  # rows of DuckDB `evaluations` (without run_id), method `sav`


def sav_refusal(store: StoreReader) -> str | None:
    """Why SAV cannot run on this store, or None when it can."""
    if "attn" not in store.sites:
        return f"store {store.path}: SAV needs the `attn` site (extract with --sites including attn)"
    if not store.attn_heads:
        return (f"store {store.path}: SAV needs the attribute `attn_heads` (the attn site's query heads); this store "
                "lacks it")
    width = int((store.neuron_site == "attn").sum())
    if width % store.attn_heads:
        return f"store {store.path}: attn_heads {store.attn_heads} does not divide the attn site's width {width}"
    return None


def head_similarities(vectors: np.ndarray, y: np.ndarray, probe: np.ndarray, n_classes: int) -> np.ndarray:
    """Cosine similarity (sample, head, class) of every sample's head vector with the probe class means.
    `vectors` is (sample, head, head_dim)."""
    x = vectors.astype(np.float64)
    onehot = np.eye(n_classes)[y[probe]]  # (probe, class)
    counts = np.maximum(onehot.sum(0), 1)
    means = np.einsum("pc,phd->hcd", onehot, x[probe]) / counts[None, :, None]
    x_unit = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    m_unit = means / np.maximum(np.linalg.norm(means, axis=-1, keepdims=True), 1e-12)
    return np.einsum("nhd,hcd->nhc", x_unit, m_unit)


def _head_preds(sim: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    if allowed is not None:  # options a question does not have are never chosen
        sim = np.where(allowed[:, None, :], sim, -np.inf)
    return sim.argmax(-1)


def majority_vote(preds: np.ndarray, sims: np.ndarray, n_classes: int) -> np.ndarray:
    """Per sample, the class most heads chose; ties: the largest summed similarity among its voters.
    `preds` is (sample, head) classes, `sims` (sample, head, class) similarities."""
    voted = np.eye(n_classes, dtype=bool)[preds]  # (sample, head, class)
    votes = voted.sum(1)
    strength = np.where(voted, sims, 0.0).sum(1)
    tied = votes == votes.max(1, keepdims=True)
    return np.argmax(np.where(tied, strength, -np.inf), axis=1)


def fit_sav(path: str | StoreReader, n_heads: int = DEFAULT_HEADS) -> SavResult:
    """Score every head of every layer of the store on the probe split, keep the best `n_heads`, vote."""
    from .evaluate import SPLITS, class_metrics

    if n_heads < 1:
        raise SnError("--sav-heads must be at least 1")
    store = path if isinstance(path, StoreReader) else StoreReader(path)
    refusal = sav_refusal(store)
    if refusal:
        raise SnError(refusal)
    y, split, probe, classes = store.labels, store.split, store.probe, store.classes
    n_h, layers = store.attn_heads, np.asarray(store.layers)
    where = np.flatnonzero(store.neuron_site == "attn")
    sims, preds = [], []
    for li in range(len(layers)):
        layer_acts = store.block(li, int(where[0]), int(where[-1]) + 1).astype(np.float32)
        sim = head_similarities(layer_acts.reshape(len(y), n_h, -1), y, probe, len(classes))
        sims.append(sim)
        preds.append(_head_preds(sim, store.class_mask))
    sim, pred = np.concatenate(sims, axis=1), np.concatenate(preds, axis=1)  # heads layer-major
    correct = pred == y[:, None]
    probe_acc = correct[probe].mean(0)
    eval_acc = correct[~probe].mean(0) if (~probe).any() else np.full(len(probe_acc), np.nan)
    top = np.lexsort((np.arange(len(probe_acc)), -probe_acc))[: min(n_heads, len(probe_acc))]
    vote = majority_vote(pred[:, top], sim[:, top], len(classes))
    heads = pa.table({
        "rank": np.arange(1, len(top) + 1, dtype=np.int32), "layer": layers[top // n_h].astype(np.int32),
        "head": (top % n_h).astype(np.int32), "probe_acc": probe_acc[top].astype(np.float32),
        "eval_acc": eval_acc[top].astype(np.float32),
    })
    detail = json.dumps([{"layer": int(r["layer"]), "head": int(r["head"])} for r in heads.to_pylist()])
    positive = store.positive_index
    rows = [{"method": "sav", "split": s, **class_metrics(vote[split == s], y[split == s], len(classes), positive),
             "detail": detail} for s in SPLITS]
    return SavResult(heads, vote, rows)


def sav_heads(db, run_id: str) -> pa.Table:
    """The SAV heads stored for a run, by rank (empty when SAV did not run)."""
    from .leaderboard import read_table

    return read_table(db, "SELECT * FROM sav_heads WHERE run_id = ? ORDER BY rank", [run_id])
